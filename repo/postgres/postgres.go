// Package postgres is the store on PostgreSQL: it opens and migrates the
// database, and writes in two pipelined round trips, a single write (see
// DB.writeAlone) or a group-committed batch with its rooms locked in
// sorted order and multi-row statements (see batch); a batch PostgreSQL
// rejects runs again write by write. Reads are sqlstore's.
package postgres

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/golang-migrate/migrate/v4/database"
	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver

	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
)

const (
	// defaultConns is the default size of the pool.
	defaultConns = 10

	// defaultBatchTimeout bounds a batch when Options.QueryTimeout is 0.
	defaultBatchTimeout = 30 * time.Second

	// writeAttempts bounds the runs of a write transaction that PostgreSQL
	// aborted with a serialization failure or a deadlock.
	writeAttempts = 5
)

// Options tune Open.
type Options struct {
	Logger       *slog.Logger // debug lines of retried writes and rejected batches; not nil
	MaxOpenConns int          // the pool's size; 0 = defaultConns
	// QueryTimeout bounds each batch (and each write of a rejected batch
	// run again), so a connection that hangs cannot stop its committer for
	// good; 0 = defaultBatchTimeout. The writes of a batch that runs out of
	// time fail; like a write whose context ends during COMMIT, they may or
	// may not have committed.
	QueryTimeout time.Duration
}

// DB is an open PostgreSQL store: one pool for reads and writes.
type DB struct {
	*sqlstore.DB
	pool         *sql.DB
	log          *slog.Logger
	batchTimeout time.Duration
	q            statements
}

// statements are sqlstore's write statements with $n placeholders; pgx
// prepares and caches them per connection.
type statements struct {
	nextSeq, element, tomb, saveElement, deleteElement, saveTomb, insertEvent string
	version, saveVersion, dropVersions, key, saveKey                          string
}

// timeArg converts t into a query argument.
func timeArg(t time.Time) any { return t.UTC().Truncate(time.Microsecond) }

// Open connects to url ("postgres://..." or "postgresql://...") and applies
// the migrations. Query parameters other than the libpq ones (search_path,
// application_name, ...) are sent as run-time parameters; migrations run
// in that search_path too.
func Open(ctx context.Context, url string, opts Options) (*DB, error) {
	if err := migrations.Up(ctx, url); err != nil {
		return nil, err
	}
	pool, err := sql.Open("pgx", url)
	if err != nil {
		return nil, err
	}
	n := opts.MaxOpenConns
	if n <= 0 {
		n = defaultConns
	}
	pool.SetMaxOpenConns(n)
	pool.SetMaxIdleConns(n)
	pool.SetConnMaxIdleTime(5 * time.Minute)
	pool.SetConnMaxLifetime(30 * time.Minute)
	db := &DB{pool: pool, log: opts.Logger, batchTimeout: opts.QueryTimeout, DB: sqlstore.NewDB(pool, pool, sqlstore.Dialect{
		Bind:     sqlstore.Bind,
		Time:     timeArg,
		Snapshot: sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead},
	})}
	if db.batchTimeout <= 0 {
		db.batchTimeout = defaultBatchTimeout
	}
	if err := db.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping: %w", sqlstore.Classify(err))
	}
	db.q = statements{
		nextSeq: sqlstore.Bind(qNextSeq), element: sqlstore.Bind(sqlstore.SelectElement),
		tomb: sqlstore.Bind(sqlstore.SelectTomb), saveElement: sqlstore.Bind(sqlstore.SaveElement),
		deleteElement: sqlstore.Bind(sqlstore.DeleteElement), saveTomb: sqlstore.Bind(sqlstore.SaveTomb),
		insertEvent: sqlstore.Bind(sqlstore.InsertEvent), version: sqlstore.Bind(sqlstore.SelectVersion),
		saveVersion: sqlstore.Bind(sqlstore.SaveVersion), dropVersions: sqlstore.Bind(sqlstore.DropVersions),
		key: sqlstore.Bind(sqlstore.SelectKey), saveKey: sqlstore.Bind(sqlstore.SaveKey),
	}
	return db, nil
}

// migrations are PostgreSQL's, run on two connections.
var migrations = sqlstore.Migrations{SQLDriver: "pgx", Conns: 2, Dir: "postgres", DriverName: "pgx5",
	Driver: func(db *sql.DB) (database.Driver, error) {
		return migratepgx.WithInstance(db, &migratepgx.Config{})
	}}

// withConn runs fn on a pgx connection of the pool, for pipelined batches.
func (db *DB) withConn(ctx context.Context, fn func(*pgx.Conn) error) error {
	conn, err := db.pool.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("unexpected driver connection %T", dc)
		}
		return fn(c.Conn())
	})
}

// commit sends the statements of b with COMMIT, the second round trip of
// a transaction, and returns the first error.
func commit(ctx context.Context, c *pgx.Conn, b *pgx.Batch) error {
	b.Queue(`COMMIT`)
	br := c.SendBatch(ctx, b)
	var err error
	for range b.Len() {
		if _, err = br.Exec(); err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// A COMMIT of a transaction that failed answers ROLLBACK without an
	// error; the statements before it would have failed first, but make
	// sure.
	if st := c.PgConn().TxStatus(); st != 'I' {
		return fmt.Errorf("commit: transaction status %q after COMMIT", st)
	}
	return nil
}

// rollback ends a failed transaction so the connection can be reused. When
// that is not possible (the context is done, the connection is broken),
// database/sql discards the connection: the pgx driver refuses to reset a
// session that is still in a transaction.
func rollback(ctx context.Context, c *pgx.Conn) {
	if c.IsClosed() || c.PgConn().TxStatus() == 'I' || ctx.Err() != nil {
		return
	}
	c.Exec(ctx, `ROLLBACK`)
}

// retryable reports whether PostgreSQL rolled the transaction back because
// of a serialization failure or a deadlock, so running it again is safe.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "40001" || pgErr.Code == "40P01"
	}
	return false
}
