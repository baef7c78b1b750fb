package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	neturl "net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/internal/testenv"
	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
)

// openPostgresStore opens a store on url with the given number of
// committers.
func openPostgresStore(t *testing.T, url string, committers int) *Store {
	t.Helper()
	return openWith(t, url, Options{Committers: committers})
}

type queuedResult struct {
	seq int64
	err error
}

// runQueued queues writes, in order, behind a blocked committer (s must
// have one), so they run as one batch, and returns their results.
func runQueued(t *testing.T, s *Store, writes []queuedWrite) []queuedResult {
	t.Helper()
	release := blockCommitter(t, s)
	results := make([]chan queuedResult, len(writes))
	for i, w := range writes {
		ctx, cancel := context.WithCancel(t.Context())
		t.Cleanup(cancel)
		results[i] = make(chan queuedResult, 1)
		go func() {
			seq, err := w.write(ctx, s)
			results[i] <- queuedResult{seq, err}
		}()
		waitQueued(t, s, i+1)
		if w.cancel {
			cancel()
			if r := <-results[i]; !errors.Is(r.err, context.Canceled) {
				t.Fatalf("%s: got error %v, want %v", w.name, r.err, context.Canceled)
			}
			results[i] <- queuedResult{0, context.Canceled}
		}
	}
	release()
	out := make([]queuedResult, len(writes))
	for i := range writes {
		out[i] = <-results[i]
	}
	return out
}

// checkResults compares results with the writes' wants.
func checkResults(t *testing.T, writes []queuedWrite, results []queuedResult) {
	t.Helper()
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
	}
}

// checkGapFree checks that room's events are 1..head with no gap.
func checkGapFree(t *testing.T, s *Store, room string, wantHead int64) []roomfeed.Event {
	t.Helper()
	if got := mustHead(t, s, room); got != wantHead {
		t.Errorf("%s: Head: got %d, want %d", room, got, wantHead)
	}
	evs := allEvents(t, s, room, 0)
	if int64(len(evs)) != wantHead {
		t.Errorf("%s: events: got %d, want %d", room, len(evs), wantHead)
	}
	for i, ev := range evs {
		if ev.Seq != int64(i+1) {
			t.Errorf("%s event %d: got seq %d, want %d", room, i, ev.Seq, i+1)
		}
	}
	return evs
}

// runWriters runs n writers at once, writer w making writes calls of
// write(w, i), and fails the test with their errors.
func runWriters(t *testing.T, n, writes int, write func(w, i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range n {
		wg.Go(func() {
			for i := range writes {
				if err := write(w, i); err != nil {
					errs <- fmt.Errorf("writer %d write %d: %w", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// checkRoomHistory checks the history of room in s after concurrent
// writes: gap-free up to its head, times in seq order, each element
// event's version the count of the writes to that element so far, and each
// element's version in cur (another node, or s) that count. It returns the
// head.
func checkRoomHistory(t *testing.T, s, cur *Store, room string) int64 {
	t.Helper()
	head := mustHead(t, s, room)
	evs := checkGapFree(t, s, room, head)
	versions := map[string]int64{}
	for i, ev := range evs {
		if i > 0 && ev.At.Before(evs[i-1].At) {
			t.Errorf("%s event %d: at %v before the previous %v", room, ev.Seq, ev.At, evs[i-1].At)
		}
		if ev.Type != roomfeed.TypeCreated && ev.Type != roomfeed.TypeUpdated {
			continue
		}
		var p payloadElement
		if err := json.Unmarshal(ev.Data, &p); err != nil {
			t.Fatalf("%s event %d: %v", room, ev.Seq, err)
		}
		versions[p.Element.ID]++
		if p.Element.Version != versions[p.Element.ID] {
			t.Errorf("%s event %d: element %s got version %d, want %d", room, ev.Seq, p.Element.ID, p.Element.Version, versions[p.Element.ID])
		}
	}
	for id, v := range versions {
		if got := mustGet(t, cur, room, id); got.Version != v {
			t.Errorf("%s/%s: got version %d, want %d", room, id, got.Version, v)
		}
	}
	return head
}

func patchWrite(room, id, patch string, pre Precondition) func(context.Context, *Store) (int64, error) {
	return func(ctx context.Context, s *Store) (int64, error) {
		ev, err := evOf(s.Patch(ctx, room, id, json.RawMessage(patch), pre, Meta{}))
		return ev.Seq, err
	}
}

func deleteWrite(room, id string, pre Precondition) func(context.Context, *Store) (int64, error) {
	return func(ctx context.Context, s *Store) (int64, error) {
		ev, err := evOf(s.Delete(ctx, room, id, pre, Meta{}))
		return ev.Seq, err
	}
}

func messageWrite(room, name string) func(context.Context, *Store) (int64, error) {
	return func(ctx context.Context, s *Store) (int64, error) {
		ev, err := evOf(s.Message(ctx, room, name, json.RawMessage(`{"n":1}`), Meta{OpID: "op"}))
		return ev.Seq, err
	}
}

// TestPostgresGroupCommit runs batches of writes on PostgreSQL: each write
// sees the writes before it in its batch, a write that fails leaves no trace
// and takes no seq, and a batch PostgreSQL rejects is run again write by
// write. Room w1 holds element x (version 1) at seq 1 first.
func TestPostgresGroupCommit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		writes    func(t *testing.T, db rawDB) []queuedWrite
		wantHeads map[string]int64
		// wantElements are the elements' versions after the batch; 0 means
		// the element does not exist.
		wantElements map[string]int64
	}{
		{
			name: "rooms and repeated elements",
			writes: func(*testing.T, rawDB) []queuedWrite {
				return []queuedWrite{
					{name: "put w1/a", write: putWrite("w1", "a", Precondition{IfNoneMatchAny: true}), wantSeq: 2},
					{name: "patch w1/a", write: patchWrite("w1", "a", `{"p":1}`, Precondition{IfMatch: ptr(int64(1))}), wantSeq: 3},
					{name: "put w2/a", write: putWrite("w2", "a", Precondition{}), wantSeq: 1},
					{name: "delete w1/x", write: deleteWrite("w1", "x", Precondition{IfMatch: ptr(int64(1))}), wantSeq: 4},
					{name: "patch w1/x deleted", write: patchWrite("w1", "x", `{}`, Precondition{}), wantErr: ErrNotFound},
					{name: "put w1/x again", write: putWrite("w1", "x", Precondition{IfNoneMatchAny: true}), wantSeq: 5},
					{name: "message w2", write: messageWrite("w2", "hi"), wantSeq: 2},
					{name: "patch w1/a again", write: patchWrite("w1", "a", `{"q":2}`, Precondition{IfMatch: ptr(int64(2))}), wantSeq: 6},
					{name: "delete w2/a", write: deleteWrite("w2", "a", Precondition{}), wantSeq: 3},
				}
			},
			wantHeads:    map[string]int64{"w1": 6, "w2": 3},
			wantElements: map[string]int64{"w1/a": 3, "w1/x": 3, "w2/a": 0},
		},
		{
			name: "failed preconditions leave no trace",
			writes: func(*testing.T, rawDB) []queuedWrite {
				return []queuedWrite{
					{name: "put a", write: putWrite("w1", "a", Precondition{IfNoneMatchAny: true}), wantSeq: 2},
					{name: "put x stale", write: putWrite("w1", "x", Precondition{IfMatch: ptr(int64(7))}), wantErr: ErrVersionMismatch},
					{name: "put a exists", write: putWrite("w1", "a", Precondition{IfNoneMatchAny: true}), wantErr: ErrExists},
					{name: "delete missing", write: deleteWrite("w1", "nope", Precondition{}), wantErr: ErrNotFound},
					{name: "patch in a new room", write: patchWrite("w3", "a", `{}`, Precondition{}), wantErr: ErrNotFound},
					{name: "put in a new room stale", write: putWrite("w4", "a", Precondition{IfMatchAny: true}), wantErr: ErrVersionMismatch},
					{name: "message", write: messageWrite("w1", "hi"), wantSeq: 3},
				}
			},
			wantHeads:    map[string]int64{"w1": 3, "w3": 0, "w4": 0},
			wantElements: map[string]int64{"w1/a": 1, "w1/x": 1, "w1/nope": 0, "w3/a": 0, "w4/a": 0},
		},
		{
			name: "only failed writes",
			writes: func(*testing.T, rawDB) []queuedWrite {
				return []queuedWrite{
					{name: "patch in a new room", write: patchWrite("w3", "a", `{}`, Precondition{}), wantErr: ErrNotFound},
					{name: "put x stale", write: putWrite("w1", "x", Precondition{IfMatch: ptr(int64(7))}), wantErr: ErrVersionMismatch},
				}
			},
			wantHeads:    map[string]int64{"w1": 1, "w3": 0},
			wantElements: map[string]int64{"w1/x": 1, "w3/a": 0},
		},
		{
			name: "a write cancelled while queued is not run",
			writes: func(*testing.T, rawDB) []queuedWrite {
				return []queuedWrite{
					{name: "put a", write: putWrite("w1", "a", Precondition{}), wantSeq: 2},
					{name: "put b cancelled", write: putWrite("w1", "b", Precondition{}), cancel: true, wantErr: context.Canceled},
					{name: "put c", write: putWrite("w1", "c", Precondition{}), wantSeq: 3},
				}
			},
			wantHeads:    map[string]int64{"w1": 3},
			wantElements: map[string]int64{"w1/a": 1, "w1/b": 0, "w1/c": 1},
		},
		{
			name: "a rejected batch runs its writes alone",
			writes: func(t *testing.T, db rawDB) []queuedWrite {
				return []queuedWrite{
					{name: "put a", write: putWrite("w1", "a", Precondition{}), wantSeq: 2},
					{name: "deferred violation", write: deferredFK(t, db), wantErr: errAnyErr},
					{name: "put a again", write: putWrite("w1", "a", Precondition{IfMatch: ptr(int64(1))}), wantSeq: 3},
					{name: "put x stale", write: putWrite("w1", "x", Precondition{IfMatch: ptr(int64(7))}), wantErr: ErrVersionMismatch},
					{name: "put w2/a", write: putWrite("w2", "a", Precondition{}), wantSeq: 1},
				}
			},
			wantHeads:    map[string]int64{"w1": 3, "w2": 1},
			wantElements: map[string]int64{"w1/a": 2, "w1/x": 1, "w2/a": 1},
		},
		{
			name: "a panicking write is undone alone",
			writes: func(*testing.T, rawDB) []queuedWrite {
				return []queuedWrite{
					{name: "put a", write: putWrite("w1", "a", Precondition{}), wantSeq: 2},
					{name: "panic", write: func(ctx context.Context, s *Store) (seq int64, err error) {
						defer func() {
							if v := recover(); v != nil {
								err = fmt.Errorf("%w: recovered %v", errAnyErr, v)
							}
						}()
						err = s.write(ctx, "w1", sqlstore.Reads{}, func(context.Context, sqlstore.Tx) (roomfeed.Event, error) { panic("boom") })
						return 0, fmt.Errorf("got error %v, want a panic", err)
					}, wantErr: errAnyErr},
					{name: "put c", write: putWrite("w1", "c", Precondition{}), wantSeq: 3},
				}
			},
			wantHeads:    map[string]int64{"w1": 3},
			wantElements: map[string]int64{"w1/a": 1, "w1/c": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := testenv.PostgresURL(t)
			s := openPostgresStore(t, url, 1)
			mustPut(t, s, "w1", "x", "thing", `{}`)
			writes := tt.writes(t, openRaw(t, url))
			checkResults(t, writes, runQueued(t, s, writes))

			list, err := s.RoomHeads(t.Context(), time.Time{})
			if err != nil {
				t.Fatalf("RoomHeads: %v", err)
			}
			heads := map[string]int64{}
			for _, h := range list {
				heads[h.Room] = h.Seq
			}
			for room, want := range tt.wantHeads {
				evs := checkGapFree(t, s, room, want)
				// The stored payloads are what replaying them gives.
				for _, ev := range evs {
					if !json.Valid(ev.Data) {
						t.Errorf("%s event %d: invalid payload %s", room, ev.Seq, ev.Data)
					}
				}
				if _, listed := heads[room]; listed != (want > 0) {
					t.Errorf("RoomHeads lists %s: got %v, want %v", room, listed, want > 0)
				}
			}
			for key, want := range tt.wantElements {
				room, id, _ := cutKey(key)
				el, err := s.Get(t.Context(), room, id)
				switch {
				case want == 0 && !errors.Is(err, ErrNotFound):
					t.Errorf("Get %s: got %+v, %v, want %v", key, el, err, ErrNotFound)
				case want != 0 && (err != nil || el.Version != want):
					t.Errorf("Get %s: got version %d, %v, want version %d", key, el.Version, err, want)
				}
			}
			// And the store goes on writing.
			if _, ev := mustPut(t, s, "w1", "after", "thing", `{}`); ev.Seq != tt.wantHeads["w1"]+1 {
				t.Errorf("next write: got seq %d, want %d", ev.Seq, tt.wantHeads["w1"]+1)
			}
		})
	}
}

func cutKey(key string) (room, id string, ok bool) {
	for i := range len(key) {
		if key[i] == '/' {
			return key[:i], key[i+1:], true
		}
	}
	return key, "", false
}

// TestPostgresBatchPayloads: the events of a batch are the bytes the writes
// returned, and replaying a batch's events gives the stored elements, as
// when the same writes run one by one.
func TestPostgresBatchPayloads(t *testing.T) {
	t.Parallel()
	s := openPostgresStore(t, testenv.PostgresURL(t), 1)
	var (
		mu  sync.Mutex
		got = map[int64]roomfeed.Event{}
	)
	record := func(ev roomfeed.Event) {
		mu.Lock()
		defer mu.Unlock()
		got[ev.Seq] = ev
	}
	meta := Meta{OpID: "op-1", Actor: "ann"}
	writes := []queuedWrite{
		{name: "put", write: func(ctx context.Context, s *Store) (int64, error) {
			ev, err := evOf(s.Put(ctx, "p", "a", "thing", json.RawMessage(`{ "b": [1, 2],  "a": "<&>" }`), Precondition{}, meta))
			record(ev)
			return ev.Seq, err
		}, wantSeq: 1},
		{name: "patch", write: func(ctx context.Context, s *Store) (int64, error) {
			ev, err := evOf(s.Patch(ctx, "p", "a", json.RawMessage(`{"c":{"d":null,"e":1.50}}`), Precondition{}, meta))
			record(ev)
			return ev.Seq, err
		}, wantSeq: 2},
		{name: "message", write: func(ctx context.Context, s *Store) (int64, error) {
			ev, err := evOf(s.Message(ctx, "p", "chat", json.RawMessage(` "hé" `), meta))
			record(ev)
			return ev.Seq, err
		}, wantSeq: 3},
		{name: "delete", write: func(ctx context.Context, s *Store) (int64, error) {
			ev, err := evOf(s.Delete(ctx, "p", "a", Precondition{}, meta))
			record(ev)
			return ev.Seq, err
		}, wantSeq: 4},
		{name: "put again", write: func(ctx context.Context, s *Store) (int64, error) {
			_, ev, created, err := elOf(s.Put(ctx, "p", "a", "other", nil, Precondition{}, Meta{}))
			if err == nil && !created {
				err = errors.New("got created false, want true")
			}
			record(ev)
			return ev.Seq, err
		}, wantSeq: 5},
	}
	checkResults(t, writes, runQueued(t, s, writes))
	evs := checkGapFree(t, s, "p", 5)
	for _, ev := range evs {
		want := got[ev.Seq]
		if string(ev.Data) != string(want.Data) || ev.Type != want.Type || !ev.At.Equal(want.At) {
			t.Errorf("event %d: got %s %s %v, want %s %s %v", ev.Seq, ev.Type, ev.Data, ev.At, want.Type, want.Data, want.At)
		}
	}
	el := mustGet(t, s, "p", "a")
	var last payloadElement
	if err := json.Unmarshal(evs[4].Data, &last); err != nil {
		t.Fatalf("last event: %v", err)
	}
	if el.Version != 4 || last.Element.Version != 4 || el.Kind != "other" || string(el.Data) != "{}" {
		t.Errorf("element: got %+v (event version %d), want version 4, kind other, data {}", el, last.Element.Version)
	}
}

// TestPostgresTwoNodes: two stores (two nodes) with several committers each
// write the same rooms and elements at once: no deadlock, every room's seqs
// are gap-free, and each element's version counts the writes to it.
func TestPostgresTwoNodes(t *testing.T) {
	t.Parallel()
	for _, committers := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("committers=%d", committers), func(t *testing.T) {
			t.Parallel()
			url := testenv.PostgresURL(t)
			nodes := []*Store{openPostgresStore(t, url, committers), openPostgresStore(t, url, committers)}
			const (
				writers = 8 // per node
				writes  = 40
				rooms   = 5
			)
			runWriters(t, 2*writers, writes, func(w, i int) error {
				n := w / writers // writers 0..7 write through node 0, 8..15 through node 1
				room := "r" + strconv.Itoa((n+w+i)%rooms)
				if i%2 == 0 {
					_, err := nodes[n].Message(t.Context(), room, "m", nil, Meta{})
					return err
				}
				_, err := nodes[n].Put(t.Context(), room, "e"+strconv.Itoa(i%3), "thing", json.RawMessage(fmt.Sprintf(`{"n":%d,"w":%d}`, n, w)), Precondition{}, Meta{})
				return err
			})
			var total int64
			for r := range rooms {
				total += checkRoomHistory(t, nodes[1], nodes[0], "r"+strconv.Itoa(r))
			}
			if total != 2*writers*writes {
				t.Errorf("events in all rooms: got %d, want %d", total, 2*writers*writes)
			}
		})
	}
}

// TestPostgresHangs: a database that accepts connections and never
// answers (a stalled proxy) fails every call with ErrUnavailable once
// Options.QueryTimeout has passed, instead of holding it; when it answers
// again the store works on.
func TestPostgresHangs(t *testing.T) {
	t.Parallel()
	u, err := neturl.Parse(testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.StartProxy(t, u.Host)
	u.Host = proxy.Addr()
	const timeout = time.Second // well above a write on a busy machine
	s, err := Open(t.Context(), u.String(), Options{QueryTimeout: timeout})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	mustPut(t, s, "h", "before", "thing", `{}`)

	proxy.SetStall(true)
	ctx := t.Context()
	calls := []struct {
		name string
		call func() error
	}{
		{"Put", func() error {
			_, err := s.Put(ctx, "h", "x", "thing", json.RawMessage(`{}`), Precondition{}, Meta{})
			return err
		}},
		{"Get", func() error { _, err := s.Get(ctx, "h", "before"); return err }},
		{"Snapshot", func() error { _, err := s.Snapshot(ctx, "h"); return err }},
		{"Head", func() error { _, err := s.Head(ctx, "h"); return err }},
		{"EventsAfter", func() error { _, err := s.EventsAfter(ctx, "h", 0, 10); return err }},
		{"Ping", func() error { return s.Ping(ctx) }},
	}
	// All at once, with writes at once (a batch) besides.
	var wg sync.WaitGroup
	for _, c := range calls {
		wg.Go(func() {
			if err := c.call(); !errors.Is(err, ErrUnavailable) {
				t.Errorf("%s while the database hangs: got %v, want %v", c.name, err, ErrUnavailable)
			}
		})
	}
	for i := range 8 {
		wg.Go(func() {
			_, err := s.Put(ctx, fmt.Sprint("h", i%3), "y", "thing", json.RawMessage(`{}`), Precondition{}, Meta{})
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("Put %d while the database hangs: got %v, want %v", i, err, ErrUnavailable)
			}
		})
	}
	wg.Wait()

	proxy.SetStall(false)
	var last error
	for range 100 { // the pool replaces the connections it gave up
		if _, last = s.Put(ctx, "h", "after", "thing", json.RawMessage(`{}`), Precondition{}, Meta{}); last == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if last != nil {
		t.Fatalf("Put after the database answers again: %v", last)
	}
	// Whatever the stalled writes did, the history has no gap.
	checkGapFree(t, s, "h", mustHead(t, s, "h"))
}

// TestPostgresBatchLocksRooms: a batch locks the rooms it names without
// writing them: a room whose writes all fail keeps its row version (xmin),
// while a room written gets its new seq.
func TestPostgresBatchLocksRooms(t *testing.T) {
	t.Parallel()
	url := testenv.PostgresURL(t)
	s := openPostgresStore(t, url, 1)
	raw := openRaw(t, url)
	mustPut(t, s, "kept", "x", "thing", `{}`)
	mustPut(t, s, "written", "x", "thing", `{}`)
	xmin := func(room string) string {
		t.Helper()
		var v string
		if err := raw.QueryRowContext(t.Context(), `SELECT xmin::text FROM rooms WHERE room = $1`, room).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	kept, written := xmin("kept"), xmin("written")
	writes := []queuedWrite{
		{name: "stale put in kept", write: putWrite("kept", "x", Precondition{IfMatch: ptr(int64(7))}), wantErr: ErrVersionMismatch},
		{name: "put in written", write: putWrite("written", "y", Precondition{}), wantSeq: 2},
	}
	checkResults(t, writes, runQueued(t, s, writes))
	if got := xmin("kept"); got != kept {
		t.Errorf("room kept: row version got xmin %s, want %s (locked, not rewritten)", got, kept)
	}
	if got := xmin("written"); got == written {
		t.Errorf("room written: row version still xmin %s, want a new one", got)
	}
	if got := mustHead(t, s, "written"); got != 2 {
		t.Errorf("room written: got head %d, want 2", got)
	}
}
