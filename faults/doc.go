// Package faults holds roomfeed's fault suite: Go tests that build the
// roomfeed binary once, run nodes as child processes over the real
// PostgreSQL and Redis services (plus throwaway redis-servers and TCP proxies
// the tests own), break things for real (SIGKILL, SIGTERM, Redis stopped and
// restarted empty, PostgreSQL cut off, SQLite's disk filled) and check from
// the outside that every acknowledged write reaches every subscriber exactly
// once and in order.
//
// The package has no non-test code; see harness_test.go for the tools and
// README.md "Guarantees" for what the tests establish.
package faults
