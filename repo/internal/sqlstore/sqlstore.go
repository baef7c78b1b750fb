// Package sqlstore holds what the SQLite and PostgreSQL stores share: the
// store's errors and their classification, the statements and reads that
// are the same on both dialects, times as both store them, and the
// migration runner.
package sqlstore
