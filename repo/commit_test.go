package repo

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/internal/testenv"
	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
)

// blockCommitter occupies the SQLite committer (or a PostgreSQL store's
// only one) with a write (in room
// "blocker") that waits until release is called, so the writes made
// meanwhile queue up and go into the next batch together. release is also
// called when the test ends.
func blockCommitter(t *testing.T, s *Store) (release func()) {
	t.Helper()
	started, unblock := make(chan struct{}), make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- s.write(context.Background(), "blocker", sqlstore.Reads{}, func(context.Context, sqlstore.Tx) (roomfeed.Event, error) {
			close(started)
			<-unblock
			return roomfeed.Event{}, nil
		})
	}()
	<-started
	var once sync.Once
	release = func() {
		once.Do(func() {
			close(unblock)
			if err := <-errc; err != nil {
				t.Errorf("blocking write: got error %v, want none", err)
			}
		})
	}
	t.Cleanup(release)
	return release
}

// firstCommitter is SQLite's committer or the first PostgreSQL one (the
// only one with Options.Committers 1).
func firstCommitter(s *Store) *committer { return s.commits[0] }

// waitQueued waits until n writes are queued for the (first) committer.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	c := firstCommitter(s)
	for {
		c.mu.Lock()
		got := len(c.queue)
		c.mu.Unlock()
		if got == n {
			return
		}
		if got > n {
			t.Fatalf("queued writes: got %d, want %d", got, n)
		}
		runtime.Gosched()
	}
}

// errAnyErr in a want means "some error".
var errAnyErr = errors.New("any error")

// queuedWrite is one write of a group commit test. It returns the seq its
// event took.
type queuedWrite struct {
	name    string
	write   func(ctx context.Context, s *Store) (int64, error)
	cancel  bool // cancel its context while it is queued
	wantSeq int64
	wantErr error  // nil, a sentinel, context.Canceled or errAnyErr
	errText string // the error's text contains it
}

func putWrite(room, id string, pre Precondition) func(context.Context, *Store) (int64, error) {
	return func(ctx context.Context, s *Store) (int64, error) {
		ev, err := evOf(s.Put(ctx, room, id, "thing", json.RawMessage(`{"id":"`+id+`"}`), pre, Meta{}))
		return ev.Seq, err
	}
}

// deferredFK creates a table whose foreign key is checked at COMMIT, and a
// trigger that breaks it for every event of type "violate"; it returns a
// write that records such an event: the COMMIT of its transaction fails.
func deferredFK(t *testing.T, db rawDB) func(context.Context, *Store) (int64, error) {
	t.Helper()
	db.exec(t, `CREATE TABLE late_fk (room TEXT NOT NULL
		REFERENCES rooms (room) DEFERRABLE INITIALLY DEFERRED)`)
	if db.postgres {
		db.exec(t, `CREATE FUNCTION late_fk_violate() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN INSERT INTO late_fk (room) VALUES ('no such room'); RETURN NULL; END $$`)
		db.exec(t, `CREATE TRIGGER late_fk AFTER INSERT ON events
			FOR EACH ROW WHEN (NEW.type = 'violate') EXECUTE FUNCTION late_fk_violate()`)
	} else {
		db.exec(t, `CREATE TRIGGER late_fk AFTER INSERT ON events WHEN NEW.type = 'violate'
			BEGIN INSERT INTO late_fk (room) VALUES ('no such room'); END`)
	}
	return func(ctx context.Context, s *Store) (int64, error) {
		ev, err := evOf(s.Message(ctx, "w1", "violate", nil, Meta{}))
		return ev.Seq, err
	}
}

func TestGroupCommit(t *testing.T) {
	t.Parallel()
	const room = "w1"
	tests := []struct {
		name string
		// writes are queued in this order behind a blocked committer, so
		// they run as one batch; the room holds element x at seq 1 first.
		writes   func(t *testing.T, db rawDB) []queuedWrite
		wantHead int64
	}{
		{"a failed precondition is undone alone", func(*testing.T, rawDB) []queuedWrite {
			return []queuedWrite{
				{name: "put a", write: putWrite(room, "a", Precondition{IfNoneMatchAny: true}), wantSeq: 2},
				{name: "put x stale", write: putWrite(room, "x", Precondition{IfMatch: ptr(int64(7))}), wantErr: ErrVersionMismatch},
				{name: "put b exists", write: putWrite(room, "a", Precondition{IfNoneMatchAny: true}), wantErr: ErrExists},
				{name: "patch x", write: func(ctx context.Context, s *Store) (int64, error) {
					ev, err := evOf(s.Patch(ctx, room, "x", json.RawMessage(`{"p":1}`), Precondition{IfMatch: ptr(int64(1))}, Meta{}))
					return ev.Seq, err
				}, wantSeq: 3},
				{name: "delete missing", write: func(ctx context.Context, s *Store) (int64, error) {
					ev, err := evOf(s.Delete(ctx, room, "nope", Precondition{}, Meta{}))
					return ev.Seq, err
				}, wantErr: ErrNotFound},
				{name: "message", write: func(ctx context.Context, s *Store) (int64, error) {
					ev, err := evOf(s.Message(ctx, room, "hi", nil, Meta{}))
					return ev.Seq, err
				}, wantSeq: 4},
				{name: "put other room", write: putWrite("w2", "a", Precondition{}), wantSeq: 1},
			}
		}, 4},
		{"a write cancelled while queued is not run", func(*testing.T, rawDB) []queuedWrite {
			return []queuedWrite{
				{name: "put a", write: putWrite(room, "a", Precondition{}), wantSeq: 2},
				{name: "put b cancelled", write: putWrite(room, "b", Precondition{}), cancel: true, wantErr: context.Canceled},
				{name: "put c", write: putWrite(room, "c", Precondition{}), wantSeq: 3},
			}
		}, 3},
		{"a failed commit fails every write of the batch", func(t *testing.T, db rawDB) []queuedWrite {
			return []queuedWrite{
				{name: "put a", write: putWrite(room, "a", Precondition{}), wantErr: errAnyErr, errText: "FOREIGN KEY"},
				{name: "deferred violation", write: deferredFK(t, db), wantErr: errAnyErr, errText: "FOREIGN KEY"},
				{name: "put c", write: putWrite(room, "c", Precondition{}), wantErr: errAnyErr, errText: "FOREIGN KEY"},
			}
		}, 1},
		{"a panicking write is undone alone", func(*testing.T, rawDB) []queuedWrite {
			return []queuedWrite{
				{name: "put a", write: putWrite(room, "a", Precondition{}), wantSeq: 2},
				{name: "panic", write: func(ctx context.Context, s *Store) (seq int64, err error) {
					defer func() {
						if v := recover(); v != nil {
							err = fmt.Errorf("%w: recovered %v", errAnyErr, v)
						}
					}()
					err = s.write(ctx, room, sqlstore.Reads{}, func(context.Context, sqlstore.Tx) (roomfeed.Event, error) { panic("boom") })
					return 0, fmt.Errorf("got error %v, want a panic", err)
				}, wantErr: errAnyErr},
				{name: "put c", write: putWrite(room, "c", Precondition{}), wantSeq: 3},
			}
		}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := "sqlite://" + filepath.Join(t.TempDir(), "rf.db")
			s := openStore(t, url)
			x, _ := mustPut(t, s, room, "x", "thing", `{}`)
			writes := tt.writes(t, openRaw(t, url))
			results := runQueued(t, s, writes)
			for i, w := range writes {
				r := results[i]
				switch {
				case w.wantErr == errAnyErr:
					if r.err == nil {
						t.Errorf("%s: got seq %d, want an error", w.name, r.seq)
					}
				case w.wantErr != nil:
					if !errors.Is(r.err, w.wantErr) {
						t.Errorf("%s: got error %v, want %v", w.name, r.err, w.wantErr)
					}
				case r.err != nil || r.seq != w.wantSeq:
					t.Errorf("%s: got seq %d error %v, want seq %d", w.name, r.seq, r.err, w.wantSeq)
				}
				if w.errText != "" && (r.err == nil || !strings.Contains(r.err.Error(), w.errText)) {
					t.Errorf("%s: got error %v, want one with %q", w.name, r.err, w.errText)
				}
			}

			// Only the committed writes left a trace, with gap-free seqs.
			if got := mustHead(t, s, room); got != tt.wantHead {
				t.Errorf("Head: got %d, want %d", got, tt.wantHead)
			}
			evs := allEvents(t, s, room, 0)
			if int64(len(evs)) != tt.wantHead {
				t.Errorf("events: got %d, want %d", len(evs), tt.wantHead)
			}
			for i, ev := range evs {
				if ev.Seq != int64(i+1) {
					t.Errorf("event %d: got seq %d, want %d", i, ev.Seq, i+1)
				}
			}
			for _, id := range []string{"b", "nope"} {
				if _, err := s.Get(t.Context(), room, id); !errors.Is(err, ErrNotFound) {
					t.Errorf("Get %s: got %v, want %v", id, err, ErrNotFound)
				}
			}
			if tt.wantHead == 1 {
				if _, err := s.Get(t.Context(), room, "a"); !errors.Is(err, ErrNotFound) {
					t.Errorf("Get a after the failed commit: got %v, want %v", err, ErrNotFound)
				}
				if got := mustGet(t, s, room, "x"); !equalElement(got, x) {
					t.Errorf("x after the failed commit: got %+v, want %+v", got, x)
				}
			}
			// And the store goes on writing.
			if _, ev := mustPut(t, s, room, "after", "thing", `{}`); ev.Seq != tt.wantHead+1 {
				t.Errorf("next write: got seq %d, want %d", ev.Seq, tt.wantHead+1)
			}
		})
	}
}

// TestCloseWithQueuedWrites: Close answers the queued writes with
// ErrUnavailable, lets the batch in flight commit, stops every committer,
// and may be called again; on both backends.
func TestCloseWithQueuedWrites(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"sqlite", func(t *testing.T) string { return "sqlite://" + filepath.Join(t.TempDir(), "rf.db") }},
		{"postgres", func(t *testing.T) string { return testenv.PostgresURL(t) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			testCloseWithQueuedWrites(t, tt.url(t))
		})
	}
}

func testCloseWithQueuedWrites(t *testing.T, url string) {
	s, err := Open(t.Context(), url, Options{Committers: 1})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	release := blockCommitter(t, s)
	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.Message(t.Context(), "w1", "m", json.RawMessage(strconv.Itoa(i)), Meta{})
		})
	}
	waitQueued(t, s, n)

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	wg.Wait() // the queued writes are answered before the batch in flight ends
	for i, err := range errs {
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("write %d: got error %v, want %v", i, err, ErrUnavailable)
		}
	}
	if _, err := s.Message(t.Context(), "w1", "m", nil, Meta{}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("write after Close: got error %v, want %v", err, ErrUnavailable)
	}
	release() // the batch in flight commits, then the committer stops
	if err := <-closed; err != nil {
		t.Errorf("Close: %v", err)
	}
	for i, c := range s.commits {
		select {
		case <-c.stopped:
		default:
			t.Errorf("committer %d still running after Close returned", i)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestConcurrentWriteRooms runs 16 writers over one room and over many
// rooms: every room's seqs are gap-free, every element has the version of
// the number of writes to it, and events replay to the stored elements.
func TestConcurrentWriteRooms(t *testing.T) {
	t.Parallel()
	for _, rooms := range []int{1, 40} {
		t.Run(fmt.Sprintf("rooms=%d", rooms), func(t *testing.T) {
			t.Parallel()
			forEachBackend(t, func(t *testing.T, s *Store) {
				const (
					writers = 16
					writes  = 30
				)
				runWriters(t, writers, writes, func(w, i int) error {
					room := "r" + strconv.Itoa((w*writes+i)%rooms)
					id := "e" + strconv.Itoa(i%3) // shared by all writers
					_, err := s.Put(t.Context(), room, id, "thing", json.RawMessage(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)), Precondition{}, Meta{})
					return err
				})
				var total int64
				for r := range rooms {
					total += checkRoomHistory(t, s, s, "r"+strconv.Itoa(r))
				}
				if total != writers*writes {
					t.Errorf("events in all rooms: got %d, want %d", total, writers*writes)
				}
			})
		})
	}
}

// TestWriteErrors checks that a write failing inside its transaction leaves
// no trace, is classified as before and does not disturb the next writes.
func TestWriteErrors(t *testing.T) {
	t.Parallel()
	const room = "w1"
	tests := []struct {
		name   string
		setup  func(t *testing.T, db rawDB) // before the write; the room is at seq 1
		ctx    func(t *testing.T) context.Context
		want   error // errors.Is
		notErr error // !errors.Is
		undo   func(t *testing.T, db rawDB)
	}{
		{
			name: "unique violation on the event",
			setup: func(t *testing.T, db rawDB) {
				insertEvent(t, db, room, 2)
			},
			ctx:    func(t *testing.T) context.Context { return t.Context() },
			want:   errAnyErr,
			notErr: ErrUnavailable,
			undo: func(t *testing.T, db rawDB) {
				db.exec(t, `DELETE FROM events WHERE room = ? AND seq = 2`, room)
			},
		},
		{
			name:  "cancelled context",
			setup: func(*testing.T, rawDB) {},
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithCancel(t.Context())
				cancel()
				return ctx
			},
			want:   context.Canceled,
			notErr: ErrUnavailable,
			undo:   func(*testing.T, rawDB) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			forEachURL(t, func(t *testing.T, url string) {
				s, db := openStore(t, url), openRaw(t, url)
				mustPut(t, s, room, "x", "thing", `{}`)
				tt.setup(t, db)
				_, err := s.Put(tt.ctx(t), room, "a", "thing", json.RawMessage(`{}`), Precondition{}, Meta{})
				switch {
				case err == nil:
					t.Fatal("Put: got no error, want one")
				case tt.want != errAnyErr && !errors.Is(err, tt.want):
					t.Errorf("Put: got error %v, want %v", err, tt.want)
				case errors.Is(err, tt.notErr):
					t.Errorf("Put: got error %v, want one that is not %v", err, tt.notErr)
				}
				if got := mustHead(t, s, room); got != 1 {
					t.Errorf("Head: got %d, want 1", got)
				}
				if _, err := s.Get(t.Context(), room, "a"); !errors.Is(err, ErrNotFound) {
					t.Errorf("Get a: got %v, want %v", err, ErrNotFound)
				}
				tt.undo(t, db)
				for i := range 3 { // more than one, to reuse the connection
					if _, ev := mustPut(t, s, room, "b", "thing", `{}`); ev.Seq != int64(2+i) {
						t.Errorf("next write %d: got seq %d, want %d", i, ev.Seq, 2+i)
					}
				}
			})
		})
	}
}

func insertEvent(t *testing.T, db rawDB, room string, seq int64) {
	t.Helper()
	db.exec(t, `INSERT INTO events (room, seq, type, payload, at) VALUES (?, ?, 'x', '{}', ?)`,
		room, seq, "2026-01-01T00:00:00.000000Z")
}

// TestPostgresFailedCommit: a COMMIT that fails (a deferred constraint) is
// the write's error, rolls the write back and leaves the connection usable.
func TestPostgresFailedCommit(t *testing.T) {
	t.Parallel()
	url := testenv.PostgresURL(t)
	s, err := Open(t.Context(), url, Options{MaxOpenConns: 1})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	mustPut(t, s, "w1", "x", "thing", `{}`)
	violate := deferredFK(t, openRaw(t, url))
	if _, err := violate(t.Context(), s); err == nil || errors.Is(err, ErrUnavailable) {
		t.Fatalf("write with a failing COMMIT: got error %v, want a constraint error", err)
	}
	if got := mustHead(t, s, "w1"); got != 1 {
		t.Errorf("Head: got %d, want 1", got)
	}
	if _, ev := mustPut(t, s, "w1", "y", "thing", `{}`); ev.Seq != 2 {
		t.Errorf("next write: got seq %d, want 2", ev.Seq)
	}
}

// TestPostgresConnectionCut: a write on a connection the server terminated
// is ErrUnavailable (or, if the pool noticed first, succeeds on a new
// connection); it leaves no trace and the next writes go on.
func TestPostgresConnectionCut(t *testing.T) {
	t.Parallel()
	app := testenv.UniqueName("rf_cut_")
	url := testenv.PostgresURL(t) + "&application_name=" + app
	s, err := Open(t.Context(), url, Options{MaxOpenConns: 1})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	mustPut(t, s, "w1", "x", "thing", `{}`)

	admin, err := sql.Open("pgx", testenv.PostgresURL(t))
	if err != nil {
		t.Fatalf("open admin: %v", err)
	}
	t.Cleanup(func() { admin.Close() })
	// The function is in the select list, so it runs only for the rows
	// the WHERE clause kept (in the WHERE clause it could run first).
	rows, err := admin.QueryContext(t.Context(),
		`SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity WHERE application_name = $1`, app)
	if err != nil {
		t.Fatalf("terminate the store's connection: %v", err)
	}
	var cut []bool
	for rows.Next() {
		var ok bool
		if err := rows.Scan(&ok); err != nil {
			t.Fatalf("terminate the store's connection: %v", err)
		}
		cut = append(cut, ok)
	}
	if err := rows.Err(); err != nil || len(cut) != 1 || !cut[0] {
		t.Fatalf("terminate the store's connection: got %v, %v, want [true]", cut, err)
	}

	ev, err := evOf(s.Put(t.Context(), "w1", "a", "thing", json.RawMessage(`{}`), Precondition{}, Meta{}))
	want := int64(2)
	switch {
	case err == nil:
		t.Logf("the pool replaced the connection before the write (seq %d)", ev.Seq)
		want = 3
	case !errors.Is(err, ErrUnavailable):
		t.Fatalf("Put on a cut connection: got error %v, want %v", err, ErrUnavailable)
	}
	if _, ev := mustPut(t, s, "w1", "b", "thing", `{}`); ev.Seq != want {
		t.Errorf("next write: got seq %d, want %d", ev.Seq, want)
	}
}
