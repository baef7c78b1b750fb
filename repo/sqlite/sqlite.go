// Package sqlite is the store on SQLite, the embedded default: it opens and
// migrates a database file, commits each batch of writes in one
// transaction with a savepoint per write (one fsync per batch), and reads
// beside the writer.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/golang-migrate/migrate/v4/database"
	migratesqlite "github.com/golang-migrate/migrate/v4/database/sqlite"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
)

// defaultBatchTimeout bounds a batch when Options.QueryTimeout is 0.
const defaultBatchTimeout = 30 * time.Second

// Options tune Open.
type Options struct {
	MaxOpenConns int // the read pool's size; 0 = a default
	// QueryTimeout bounds each batch, its wait for the write lock included
	// (another process holding it, a disk that does not answer), so that a
	// stuck batch fails instead of stopping the committer for good; 0 =
	// defaultBatchTimeout. The writes of a batch that runs out of time fail;
	// one whose COMMIT had started may or may not have committed.
	QueryTimeout time.Duration
}

// DB is an open SQLite store. It writes on a single connection, one batch
// at a time (RunBatch), so writers queue in Go instead of failing with
// SQLITE_BUSY; it reads from a pool beside it (WAL).
type DB struct {
	*sqlstore.DB
	write        *sql.DB
	stmts        map[string]*sql.Stmt // the write statements prepared on write; read-only after Open
	batchTimeout time.Duration
	ckpt         *checkpointer // set once Open succeeds
}

// timeFormat is the fixed-width text form of times in SQLite: it sorts as
// it compares.
const timeFormat = "2006-01-02T15:04:05.000000Z"

// timeArg converts t into a query argument.
func timeArg(t time.Time) any { return t.UTC().Truncate(time.Microsecond).Format(timeFormat) }

// Open opens the database of url ("sqlite://relative/path.db" or
// "sqlite:///absolute/path.db", with optional driver query parameters),
// creating its directory, and applies the migrations.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	path, query, _ := strings.Cut(url[strings.Index(url, "://")+3:], "?")
	if path == "" {
		return nil, errors.New("sqlite url has no path")
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create database directory: %w", err)
		}
	}
	// A plain file name (no "file:" URI), so any character may appear in it.
	// WAL lets readers run beside the writer; synchronous FULL makes a
	// commit durable before it is acknowledged; BEGIN IMMEDIATE takes the
	// write lock up front, so another process waits (busy_timeout) instead of
	// failing half way through a transaction.
	// The write connection checkpoints only past commitCheckpointPages: the
	// checkpointer does it beside the writer.
	dsn := path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
		"&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)&_txlock=immediate"
	writeDSN := dsn + "&_pragma=wal_autocheckpoint(" + strconv.Itoa(commitCheckpointPages) + ")"
	if query != "" {
		dsn += "&" + query
		writeDSN += "&" + query // the URL's own pragmas come last, so they win
	}

	if err := migrations.Up(ctx, dsn); err != nil {
		return nil, err
	}

	write, err := sql.Open("sqlite", writeDSN)
	if err != nil {
		return nil, err
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxIdleTime(0)
	write.SetConnMaxLifetime(0)

	read, err := sql.Open("sqlite", dsn)
	if err != nil {
		write.Close()
		return nil, err
	}
	maxConns := opts.MaxOpenConns
	if maxConns <= 0 {
		maxConns = max(4, runtime.GOMAXPROCS(0))
	}
	read.SetMaxOpenConns(maxConns)
	read.SetMaxIdleConns(maxConns)

	db := &DB{write: write, batchTimeout: opts.QueryTimeout, DB: sqlstore.NewDB(read, write, sqlstore.Dialect{
		Bind:     func(query string) string { return query },
		Time:     timeArg,
		Snapshot: sql.TxOptions{ReadOnly: true},
	})}
	if db.batchTimeout <= 0 {
		db.batchTimeout = defaultBatchTimeout
	}
	if err := db.Ping(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("ping: %w", sqlstore.Classify(err))
	}
	db.prepare(ctx)
	db.ckpt = startCheckpointer(read, db.batchTimeout)
	return db, nil
}

// migrations are SQLite's, run on one connection.
var migrations = sqlstore.Migrations{SQLDriver: "sqlite", Conns: 1, Dir: "sqlite", DriverName: "sqlite",
	Driver: func(db *sql.DB) (database.Driver, error) {
		return migratesqlite.WithInstance(db, &migratesqlite.Config{})
	}}

// Close stops the checkpointer and closes the prepared statements and the
// database handles.
func (db *DB) Close() error {
	if db.ckpt != nil {
		db.ckpt.close()
	}
	for _, st := range db.stmts {
		st.Close()
	}
	return db.DB.Close()
}
