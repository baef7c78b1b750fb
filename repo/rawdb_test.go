package repo

import (
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5" // registers pgx5:// for migrateTo
	_ "github.com/golang-migrate/migrate/v4/database/sqlite" // registers sqlite:// for migrateTo
	"github.com/golang-migrate/migrate/v4/source/iofs"

	"github.com/roomfeed/roomfeed/migrations"
	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
)

// rawDB is a second connection to a test store's database, for what a test
// sets up, breaks or counts behind the store's back.
type rawDB struct {
	*sql.DB
	postgres bool
}

func isPostgres(url string) bool { return strings.HasPrefix(url, "postgres") }

// openRaw connects to the database of url, a test store's URL.
func openRaw(t *testing.T, url string) rawDB {
	t.Helper()
	driver, dsn := "sqlite", strings.TrimPrefix(url, "sqlite://")+"?_pragma=busy_timeout(10000)"
	if isPostgres(url) {
		driver, dsn = "pgx", url
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() { db.Close() })
	return rawDB{DB: db, postgres: isPostgres(url)}
}

// bind rewrites the ? placeholders of query for the database.
func (db rawDB) bind(query string) string {
	if !db.postgres {
		return query
	}
	return sqlstore.Bind(query)
}

// exec runs query (with ? placeholders) and fails the test on an error.
func (db rawDB) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(t.Context(), db.bind(query), args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// migrateTo migrates the database of url to version (0 = the latest) with
// golang-migrate alone, as an older release left it or as an operator
// rolls it back.
func migrateTo(t *testing.T, url string, version uint) {
	t.Helper()
	dir, dbURL := "sqlite", url
	if isPostgres(url) {
		dir, dbURL = "postgres", "pgx5"+url[strings.Index(url, "://"):]
	}
	src, err := iofs.New(migrations.FS, dir)
	if err != nil {
		t.Fatalf("migrations: %v", err)
	}
	m, err := migrate.NewWithSourceInstance("iofs", src, dbURL)
	if err != nil {
		t.Fatalf("migrate %s: %v", url, err)
	}
	defer m.Close()
	if version == 0 {
		err = m.Up()
	} else {
		err = m.Migrate(version)
	}
	if err != nil && !errors.Is(err, migrate.ErrNoChange) {
		t.Fatalf("migrate to version %d (0 = the latest): %v", version, err)
	}
}
