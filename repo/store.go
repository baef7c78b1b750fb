// Package repo owns the SQL store: elements and their kept versions, the
// per-room sequence, the event history (also the transactional outbox) and
// the idempotency keys of writes. It holds what a write does (Put, Patch,
// Delete, Message, with a stale If-Match merged three ways from its kept
// version) and the group-commit queues. Each write commits in one
// transaction with its room locked, so sequence numbers are gap-free per
// room and commit order is sequence order. The dialects, repo/sqlite (the
// embedded default) and repo/postgres, commit the batches the queues hand
// them and return the same bytes for the same writes.
package repo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
	"github.com/roomfeed/roomfeed/repo/postgres"
	"github.com/roomfeed/roomfeed/repo/sqlite"
)

const (
	// DefaultPageSize is the EventsAfter limit used when the caller passes 0.
	DefaultPageSize = 1000

	// defaultQueryTimeout is Options.QueryTimeout's default.
	defaultQueryTimeout = 5 * time.Second

	// DefaultVersionsKeep is Options.VersionsKeep's default.
	DefaultVersionsKeep = 100
)

// Options tune Open.
type Options struct {
	Logger       *slog.Logger // may be nil
	MaxOpenConns int          // 0 = a sensible default per dialect
	// QueryTimeout bounds each call that serves a request (a write with its
	// wait in the queue and for its batch, Get, Snapshot, Head,
	// EventsAfter, Ping) and each batch. A database that does not answer in
	// time (PostgreSQL accepts connections and hangs, another process holds
	// SQLite's write lock, a disk hangs) fails the call with ErrUnavailable
	// instead of holding it until the client gives up. 0 = 5s; negative = no
	// bound (batches then get 30s).
	QueryTimeout time.Duration
	// Committers is the number of PostgreSQL group committers, each of
	// which runs one batch at a time on its own connection; every room is
	// served by the same one. 0 = one per two CPUs.
	Committers int
	// VersionsKeep is the number of newest versions kept per element (at
	// least); older ones are deleted by the write that passes them. 0 =
	// DefaultVersionsKeep.
	VersionsKeep int
}

// Store is the SQL store. It is safe for concurrent use.
type Store struct {
	db      backend
	timeout time.Duration // Options.QueryTimeout, resolved; 0 = none
	keep    int64         // Options.VersionsKeep, resolved
	// commits run the writes in batches; a room always goes to the same
	// one. SQLite has one, for its single write connection.
	commits []*committer
	// onCommit is the hook OnCommit set (nil: none).
	onCommit atomic.Pointer[func([]roomfeed.Event)]
}

// backend is an open database of one dialect: *sqlite.DB or *postgres.DB.
// The reads return the driver's errors (Get: sql.ErrNoRows for a missing
// element); Store classifies and wraps them.
type backend interface {
	// RunBatch commits a batch of queued writes; see sqlstore.Write.
	RunBatch(batch []sqlstore.Write, errs []error) error
	Get(ctx context.Context, room, id string) (roomfeed.Element, error)
	Snapshot(ctx context.Context, room string) (cursor int64, els []roomfeed.Element, err error)
	SnapshotAt(ctx context.Context, room string, at int64) (sqlstore.At, error)
	History(ctx context.Context, room, id string, before int64, limit int) (sqlstore.History, error)
	Head(ctx context.Context, room string) (int64, error)
	Oldest(ctx context.Context, room string) (int64, error)
	OldestTime(ctx context.Context, room string) (time.Time, bool, error)
	EventsAfter(ctx context.Context, room string, after int64, limit int) ([]roomfeed.Event, error)
	RoomHeads(ctx context.Context, since time.Time) ([]roomfeed.RoomHead, error)
	Trim(ctx context.Context, room string, keep int64, maxAge time.Duration, below int64) (int64, error)
	TrimKeys(ctx context.Context, before time.Time) (int64, error)
	Ping(ctx context.Context) error
	Close() error
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
	s := &Store{timeout: opts.QueryTimeout, keep: int64(opts.VersionsKeep)}
	if s.keep <= 0 {
		s.keep = DefaultVersionsKeep
	}
	switch {
	case s.timeout == 0:
		s.timeout = defaultQueryTimeout
	case s.timeout < 0:
		s.timeout = 0
	}
	var (
		name       string
		committers = 1
		err        error
	)
	switch {
	case strings.HasPrefix(url, "sqlite://"), strings.HasPrefix(url, "sqlite3://"):
		name = "sqlite"
		s.db, err = sqlite.Open(ctx, url, sqlite.Options{MaxOpenConns: opts.MaxOpenConns, QueryTimeout: s.timeout})
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		name = "postgres"
		s.db, err = postgres.Open(ctx, url, postgres.Options{Logger: log, MaxOpenConns: opts.MaxOpenConns, QueryTimeout: s.timeout})
		if committers = opts.Committers; committers <= 0 {
			committers = max(1, runtime.GOMAXPROCS(0)/2)
		}
	default:
		return nil, errors.New("open store: unsupported database url scheme (want sqlite:// or postgres://)")
	}
	if err != nil {
		return nil, fmt.Errorf("open store: %w", sqlstore.Classify(err))
	}
	s.commits = make([]*committer, committers)
	for i := range s.commits {
		s.commits[i] = newCommitter(s.db.RunBatch, s.announce)
	}
	log.LogAttrs(ctx, slog.LevelInfo, "store opened", slog.String("dialect", name))
	return s, nil
}

// OnCommit sets the hook that receives the events of every committed batch
// of writes, in commit order (so in seq order per room, batch after batch),
// before those writes are answered. It replaces the hook set before. It is
// called on the commit path: it should queue the events, not publish them
// itself; blocking it holds the next batches of the same committer (which
// is how a slow log slows the writers). Set it before the first write: the
// events committed before are not handed to it.
func (s *Store) OnCommit(fn func(events []roomfeed.Event)) { s.onCommit.Store(&fn) }

// announce hands the events of a committed batch to the OnCommit hook.
func (s *Store) announce(evs []roomfeed.Event) {
	if fn := s.onCommit.Load(); fn != nil && *fn != nil {
		(*fn)(evs)
	}
}

// Close closes the database handles. Writes still queued fail with
// ErrUnavailable; a batch being committed finishes first.
func (s *Store) Close() error {
	for _, c := range s.commits {
		c.close()
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

// bound limits ctx to the store's query timeout; a context it ran out has
// the cause sqlstore.ErrNoAnswer.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeoutCause(ctx, s.timeout, sqlstore.ErrNoAnswer)
}

// committer returns the committer of room: always the same one.
func (s *Store) committer(room string) *committer {
	n := uint32(len(s.commits))
	if n == 1 {
		return s.commits[0]
	}
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(room); i++ {
		h ^= uint32(room[i])
		h *= 16777619
	}
	return s.commits[h%n]
}

// write runs fn as one write on room, with the room row locked and the next
// sequence number taken, and commits it. An error from fn undoes the write,
// including the sequence number. reads are what fn reads: PostgreSQL reads
// them together with the sequence number.
func (s *Store) write(ctx context.Context, room string, reads sqlstore.Reads, fn sqlstore.Func) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return sqlstore.ClassifyBounded(ctx, s.committer(room).do(ctx, room, reads, fn))
}
