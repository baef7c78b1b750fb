// Package migrations owns the SQL schema of the roomfeed store: one
// directory of golang-migrate files per dialect (sqlite/, postgres/),
// embedded so the binary carries them. Files are never edited once landed;
// changes come as new numbered migrations.
package migrations

import "embed"

// FS holds sqlite/*.sql and postgres/*.sql; open a dialect with
// iofs.New(FS, "sqlite") or iofs.New(FS, "postgres").
//
//go:embed sqlite/*.sql postgres/*.sql
var FS embed.FS
