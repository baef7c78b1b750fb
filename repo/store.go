// Package repo owns the SQL store: elements, the per-room sequence and the
// event history, which doubles as the transactional outbox.
//
// Every write locks the room row, takes the next sequence number, writes the
// element and inserts the event in one transaction, so sequence numbers are
// gap-free per room and commit order equals sequence order. On both
// dialects the writes queued at once share one transaction and one commit
// (group commit): on SQLite each runs in its own savepoint; on PostgreSQL a
// batch locks its rooms and reads its elements in one round trip, runs the
// writes in Go and sends all their changes with COMMIT in a second one. The
// store speaks SQLite (embedded default) and PostgreSQL; both dialects return
// the same bytes for the same writes.
package repo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	migratepgx "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	migratesqlite "github.com/golang-migrate/migrate/v4/database/sqlite"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // registers the "sqlite" database/sql driver

	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
)

const (
	dialectSQLite   = "sqlite"
	dialectPostgres = "postgres"

	// DefaultPageSize is the EventsAfter limit used when the caller passes 0.
	DefaultPageSize = 1000

	// writeAttempts bounds the retries of a write transaction that
	// PostgreSQL aborted with a serialization failure or a deadlock.
	writeAttempts = 5

	// defaultPostgresConns is the default size of the PostgreSQL pool. More
	// did not help on 2 cores: with 64 writers into one room, 16 or 32
	// connections only put more backends in the room lock's queue.
	defaultPostgresConns = 10
)

// Options tune Open.
type Options struct {
	Logger       *slog.Logger // may be nil
	MaxOpenConns int          // 0 = a sensible default per dialect
	// QueryTimeout bounds each call that serves a request (a write with its
	// wait in the queue, Get, Snapshot, Head, EventsAfter, Ping) and each
	// PostgreSQL batch. A database that does not answer in time (it accepts
	// connections and hangs) fails the call with ErrUnavailable instead of
	// holding it until the client gives up. 0 = 5s; negative = no bound
	// (PostgreSQL batches then get 30s).
	QueryTimeout time.Duration
	// Committers is the number of PostgreSQL group committers, each of
	// which runs one batch at a time on its own connection; every room is
	// served by the same one. 0 = one per two CPUs: on 2 cores one committer
	// (bigger batches) wrote as fast as two and faster than four.
	Committers int
}

// Store is the SQL store. It is safe for concurrent use.
type Store struct {
	dialect string
	log     *slog.Logger
	timeout time.Duration // Options.QueryTimeout, resolved; 0 = none
	// write runs write transactions. For SQLite it holds a single connection,
	// used by the committer, so writers queue in Go instead of failing with
	// SQLITE_BUSY; for PostgreSQL it is the same pool as read.
	write *sql.DB
	read  *sql.DB
	db    *sqlstore.DB         // the reads, retention and ping of either dialect
	stmts map[string]*sql.Stmt // SQLite: prepared write statements; read-only after Open
	pgq   map[string]string    // PostgreSQL: write statements with $n placeholders
	// commits runs the SQLite writes in batches (nil for PostgreSQL).
	commits *committer
	// pgCommits run the PostgreSQL writes in batches; a room always goes
	// to the same one (nil for SQLite).
	pgCommits []*committer
}

// Open connects to the database named by url, applies the embedded
// migrations and returns the store.
//
// url is "sqlite://relative/path.db", "sqlite:///absolute/path.db",
// "postgres://..." or "postgresql://...". Query parameters of a PostgreSQL
// URL other than the libpq ones (search_path, application_name, ...) are
// sent as run-time parameters; migrations run in that search_path too.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var (
		s   *Store
		err error
	)
	switch {
	case strings.HasPrefix(url, "sqlite://"), strings.HasPrefix(url, "sqlite3://"):
		s, err = openSQLite(ctx, url, opts)
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		s, err = openPostgres(ctx, url, opts)
	default:
		return nil, errors.New("open store: unsupported database url scheme (want sqlite:// or postgres://)")
	}
	if err != nil {
		return nil, fmt.Errorf("open store: %w", sqlstore.Classify(err))
	}
	s.log = log
	switch s.timeout = opts.QueryTimeout; {
	case s.timeout == 0:
		s.timeout = defaultQueryTimeout
	case s.timeout < 0:
		s.timeout = 0
	}
	s.prepareWrites(ctx)
	if s.dialect == dialectSQLite {
		s.commits = newCommitter(s.runBatch)
	} else {
		n := opts.Committers
		if n <= 0 {
			n = max(1, runtime.GOMAXPROCS(0)/2)
		}
		s.pgCommits = make([]*committer, n)
		for i := range s.pgCommits {
			s.pgCommits[i] = newCommitter(s.runPostgresBatch)
		}
	}
	log.LogAttrs(ctx, slog.LevelInfo, "store opened", slog.String("dialect", s.dialect))
	return s, nil
}

func openSQLite(ctx context.Context, url string, opts Options) (*Store, error) {
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
	dsn := path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)" +
		"&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)&_txlock=immediate"
	if query != "" {
		dsn += "&" + query
	}

	if err := migrateSQLite(ctx, dsn); err != nil {
		return nil, err
	}

	write, err := sql.Open("sqlite", dsn)
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
	n := opts.MaxOpenConns
	if n <= 0 {
		n = max(4, runtime.GOMAXPROCS(0))
	}
	read.SetMaxOpenConns(n)
	read.SetMaxIdleConns(n)

	s := &Store{dialect: dialectSQLite, write: write, read: read, db: sqlstore.NewDB(read, write, sqlstore.Dialect{
		Bind:     func(q string) string { return q },
		Time:     func(t time.Time) any { return t.UTC().Truncate(time.Microsecond).Format(sqliteTime) },
		Snapshot: sql.TxOptions{ReadOnly: true},
	})}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// migrateSQLite migrates the database to the latest version.
func migrateSQLite(ctx context.Context, dsn string) error {
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return err
	}
	drv, err := migratesqlite.WithInstance(db, &migratesqlite.Config{})
	if err != nil {
		db.Close()
		return fmt.Errorf("migrate: %w", err)
	}
	return sqlstore.Migrate(dialectSQLite, "sqlite", drv)
}

func openPostgres(ctx context.Context, url string, opts Options) (*Store, error) {
	if err := migratePostgres(ctx, url); err != nil {
		return nil, err
	}
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, err
	}
	n := opts.MaxOpenConns
	if n <= 0 {
		n = defaultPostgresConns
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxIdleTime(5 * time.Minute)
	db.SetConnMaxLifetime(30 * time.Minute)
	s := &Store{dialect: dialectPostgres, write: db, read: db, db: sqlstore.NewDB(db, db, sqlstore.Dialect{
		Bind:     sqlstore.Bind,
		Time:     func(t time.Time) any { return t.UTC().Truncate(time.Microsecond) },
		Snapshot: sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead},
	})}
	if err := s.Ping(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// migratePostgres migrates the database to the latest version.
func migratePostgres(ctx context.Context, url string) error {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return err
	}
	db.SetMaxOpenConns(2)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return err
	}
	drv, err := migratepgx.WithInstance(db, &migratepgx.Config{})
	if err != nil {
		db.Close()
		return fmt.Errorf("migrate: %w", err)
	}
	return sqlstore.Migrate(dialectPostgres, "pgx5", drv)
}

// Close closes the database handles. Writes still queued fail with
// ErrUnavailable; a batch being committed finishes first.
func (s *Store) Close() error {
	if s.commits != nil {
		s.commits.close()
	}
	for _, c := range s.pgCommits {
		c.close()
	}
	for _, st := range s.stmts {
		st.Close()
	}
	return s.db.Close()
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.db.Ping(ctx); err != nil {
		return fmt.Errorf("ping: %w", sqlstore.ClassifyBounded(ctx, err))
	}
	return nil
}

// defaultQueryTimeout is Options.QueryTimeout's default.
const defaultQueryTimeout = 5 * time.Second

// bound limits ctx to the store's query timeout.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeoutCause(ctx, s.timeout, sqlstore.ErrNoAnswer)
}

// sqliteTime is the fixed-width text form of times in SQLite: it sorts as
// it compares.
const sqliteTime = "2006-01-02T15:04:05.000000Z"

// timeArg converts t into a query argument for the dialect.
func (s *Store) timeArg(t time.Time) any {
	t = t.UTC().Truncate(time.Microsecond)
	if s.dialect == dialectSQLite {
		return t.Format(sqliteTime)
	}
	return t
}
