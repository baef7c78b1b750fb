package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/repo"
)

// openSQLite opens a store on a new SQLite file, closed when the test ends.
func openSQLite(t *testing.T) *repo.Store {
	t.Helper()
	store, err := repo.Open(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "rf.db"), repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return store
}

func TestRetentionPass(t *testing.T) {
	ctx := t.Context()
	store := openSQLite(t)
	for _, room := range []string{"big", "small"} {
		n := map[string]int{"big": 50, "small": 5}[room]
		for i := range n {
			if _, err := store.Put(ctx, room, "e", "item", json.RawMessage(`{"i":`+strconv.Itoa(i)+`}`), repo.Precondition{}, repo.Meta{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	oldest := func(room string) int64 {
		t.Helper()
		evs, err := store.EventsAfter(ctx, room, 0, 1)
		if err == nil {
			return evs[0].Seq
		}
		for after := int64(1); after < 100; after++ {
			if evs, err := store.EventsAfter(ctx, room, after, 1); err == nil {
				return evs[0].Seq
			}
		}
		t.Fatalf("%s: no event found", room)
		return 0
	}
	tops := map[string]int64{"big": 35, "small": 5} // "big" is published up to 35 only
	r := &retention{store: store, keep: 10, interval: time.Second, logger: slog.New(slog.DiscardHandler),
		tops: func(_ context.Context, rooms []string) ([]int64, error) {
			out := make([]int64, len(rooms))
			for i, room := range rooms {
				out[i] = tops[room]
			}
			return out, nil
		}}
	n, err := r.pass(ctx)
	if err != nil || n != 35 {
		t.Fatalf("first pass: got %d, %v; want 35 events deleted (up to the published top)", n, err)
	}
	if got := oldest("big"); got != 36 {
		t.Errorf("big: oldest event %d, want 36 (36..50 are not published)", got)
	}
	if got := oldest("small"); got != 1 {
		t.Errorf("small: oldest event %d, want 1 (under the count)", got)
	}
	tops["big"] = 50
	if n, err := r.pass(ctx); err != nil || n != 5 {
		t.Fatalf("second pass: got %d, %v; want 5", n, err)
	}
	if got := oldest("big"); got != 41 {
		t.Errorf("big: oldest event %d, want 41 (the newest 10)", got)
	}

	// Age: everything is older than a nanosecond, but only up to the top.
	r = &retention{store: store, maxAge: time.Nanosecond, interval: time.Second, logger: r.logger}
	time.Sleep(2 * time.Millisecond)
	if n, err := r.pass(ctx); err != nil || n != 10+5 {
		t.Fatalf("age pass: got %d, %v; want 15", n, err)
	}
}

func TestKeyTrim(t *testing.T) {
	ctx := t.Context()
	store := openSQLite(t)
	answer := func(repo.Outcome) (repo.Answer, error) { return repo.Answer{Status: 201}, nil }
	write := func(key string) repo.Outcome {
		t.Helper()
		out, err := store.Message(ctx, "w1", "m", nil, repo.Meta{Idem: &repo.Idempotency{Key: key, Fingerprint: "fp", Answer: answer}})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	// "new" must still be within the TTL when the pass runs, however long
	// its write took to return on a loaded machine: a TTL of 2 s, and
	// "old" written more than that before.
	const ttl = 2 * time.Second
	write("old")
	time.Sleep(ttl + 200*time.Millisecond)
	write("new")
	trim := keyTrim(store, ttl, time.Second, slog.New(slog.DiscardHandler))
	if n, err := trim.pass(ctx); err != nil || n != 1 {
		t.Fatalf("pass: got %d, %v; want 1 key deleted", n, err)
	}
	if out := write("old"); out.Replayed != nil {
		t.Error("the trimmed key was replayed; want it applied anew")
	}
	if out := write("new"); out.Replayed == nil {
		t.Error("the kept key was applied again; want a replay")
	}
}

// countingStore counts the rooms retention trims.
type countingStore struct {
	retentionStore
	visited []string
}

func (c *countingStore) Trim(ctx context.Context, room string, keep int64, maxAge time.Duration, below int64) (int64, error) {
	c.visited = append(c.visited, room)
	return c.retentionStore.Trim(ctx, room, keep, maxAge, below)
}

// TestRetentionVisitsChangedRooms: after a first pass over every room, a
// pass visits only the rooms written since the previous one, the rooms a
// pass had to leave events in (held back by the published top), and, with
// an age limit, the rooms whose oldest event has aged out since; an idle
// room is not visited.
func TestRetentionVisitsChangedRooms(t *testing.T) {
	ctx := t.Context()
	store := openSQLite(t)
	write := func(room string, n int) {
		t.Helper()
		for i := range n {
			if _, err := store.Put(ctx, room, "e", "item", json.RawMessage(`{"i":`+strconv.Itoa(i)+`}`), repo.Precondition{}, repo.Meta{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	rooms := make([]string, 20)
	for i := range rooms {
		rooms[i] = "r" + strconv.Itoa(10+i)
		write(rooms[i], 15)
	}
	counted := &countingStore{retentionStore: store}
	tops := map[string]int64{}
	r := &retention{store: counted, keep: 10, interval: time.Second, logger: slog.New(slog.DiscardHandler),
		tops: func(ctx context.Context, rs []string) ([]int64, error) {
			out := make([]int64, len(rs))
			for i, room := range rs {
				head, err := store.Head(ctx, room)
				if top, held := tops[room]; held {
					head = top
				}
				out[i] = head
				if err != nil {
					return nil, err
				}
			}
			return out, nil
		}}
	for _, step := range []struct {
		name        string
		before      func()
		wantVisited []string
		wantTrimmed int64
	}{
		{"first pass: every room", nil, rooms, 20 * 5},
		{"two rooms written", func() { write("r10", 1); write("r11", 2) }, []string{"r10", "r11"}, 3},
		{"nothing written", nil, nil, 0},
		{"written, not all published", func() { write("r12", 4); tops["r12"] = 7 }, []string{"r12"}, 2},
		{"published since", func() { delete(tops, "r12") }, []string{"r12"}, 2},
		{"idle again", nil, nil, 0},
	} {
		if step.before != nil {
			step.before()
		}
		counted.visited = nil
		n, err := r.pass(ctx)
		if err != nil || n != step.wantTrimmed {
			t.Errorf("%s: got %d events trimmed, %v; want %d", step.name, n, err, step.wantTrimmed)
		}
		if !slices.Equal(counted.visited, step.wantVisited) {
			t.Errorf("%s: visited %d rooms %v, want %d %v", step.name, len(counted.visited), counted.visited,
				len(step.wantVisited), step.wantVisited)
		}
	}
}

// TestRetentionVisitsAgedRooms: with an age limit, a room nobody writes to
// is visited again once its oldest event has aged out, and no longer once
// it holds no event.
func TestRetentionVisitsAgedRooms(t *testing.T) {
	ctx := t.Context()
	store := openSQLite(t)
	for _, room := range []string{"a", "b"} {
		if _, err := store.Put(ctx, room, "e", "item", json.RawMessage(`{}`), repo.Precondition{}, repo.Meta{}); err != nil {
			t.Fatal(err)
		}
	}
	// The first two passes must run before the events age out, however
	// slow a loaded machine writes and reads.
	const maxAge = 2 * time.Second
	counted := &countingStore{retentionStore: store}
	r := &retention{store: counted, maxAge: maxAge, interval: time.Second, logger: slog.New(slog.DiscardHandler)}
	pass := func(what string, want []string, wantTrimmed int64) {
		t.Helper()
		counted.visited = nil
		if n, err := r.pass(ctx); err != nil || n != wantTrimmed {
			t.Errorf("%s: got %d events trimmed, %v; want %d", what, n, err, wantTrimmed)
		}
		if !slices.Equal(counted.visited, want) {
			t.Errorf("%s: visited %v, want %v", what, counted.visited, want)
		}
	}
	pass("first pass", []string{"a", "b"}, 0)
	pass("nothing aged yet", nil, 0)
	time.Sleep(maxAge + 200*time.Millisecond)
	pass("aged out", []string{"a", "b"}, 2)
	time.Sleep(maxAge + 200*time.Millisecond)
	pass("nothing left to age", nil, 0)
}
