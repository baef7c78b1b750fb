package repo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/internal/testenv"
)

// backends lists the dialects every store test runs against; url returns a
// fresh, empty database for the test.
var backends = []struct {
	name string
	url  func(t *testing.T) string
}{
	{"sqlite", func(t *testing.T) string { return "sqlite://" + filepath.Join(t.TempDir(), "rf.db") }},
	{"postgres", func(t *testing.T) string { return testenv.PostgresURL(t) }},
}

// forEachURL runs fn as a parallel subtest per backend with a fresh
// database URL.
func forEachURL(t *testing.T, fn func(t *testing.T, url string)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			fn(t, b.url(t))
		})
	}
}

// forEachBackend runs fn as a parallel subtest per backend with an open
// store on a fresh database.
func forEachBackend(t *testing.T, fn func(t *testing.T, s *Store)) {
	t.Helper()
	forEachURL(t, func(t *testing.T, url string) {
		fn(t, openStore(t, url))
	})
}

func openStore(t *testing.T, url string) *Store {
	t.Helper()
	s, err := Open(t.Context(), url, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func ptr[T any](v T) *T { return &v }

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func mustPut(t *testing.T, s *Store, room, id, kind, data string) (roomfeed.Element, roomfeed.Event) {
	t.Helper()
	out, err := s.Put(t.Context(), room, id, kind, json.RawMessage(data), Precondition{}, Meta{})
	if err != nil {
		t.Fatalf("Put %s/%s: %v", room, id, err)
	}
	return out.Element, out.Event
}

// evOf returns the event of a write's outcome.
func evOf(out Outcome, err error) (roomfeed.Event, error) { return out.Event, err }

// elOf returns the element, event and creation of a write's outcome.
func elOf(out Outcome, err error) (roomfeed.Element, roomfeed.Event, bool, error) {
	return out.Element, out.Event, out.Created, err
}

func mustHead(t *testing.T, s *Store, room string) int64 {
	t.Helper()
	seq, err := s.Head(t.Context(), room)
	if err != nil {
		t.Fatalf("Head %s: %v", room, err)
	}
	return seq
}

func mustGet(t *testing.T, s *Store, room, id string) roomfeed.Element {
	t.Helper()
	el, err := s.Get(t.Context(), room, id)
	if err != nil {
		t.Fatalf("Get %s/%s: %v", room, id, err)
	}
	return el
}

// allEvents pages through the room's events after `after`.
func allEvents(t *testing.T, s *Store, room string, after int64) []roomfeed.Event {
	t.Helper()
	var all []roomfeed.Event
	for {
		evs, err := s.EventsAfter(t.Context(), room, after, 50)
		if err != nil {
			t.Fatalf("EventsAfter %d: %v", after, err)
		}
		if len(evs) == 0 {
			return all
		}
		all = append(all, evs...)
		after = evs[len(evs)-1].Seq
	}
}

func equalElement(a, b roomfeed.Element) bool {
	return a.ID == b.ID && a.Kind == b.Kind && a.Version == b.Version &&
		bytes.Equal(a.Data, b.Data) && a.UpdatedAt.Equal(b.UpdatedAt)
}

func TestOpen(t *testing.T) {
	t.Parallel()
	t.Run("unsupported scheme", func(t *testing.T) {
		t.Parallel()
		if _, err := Open(t.Context(), "mysql://x", Options{}); err == nil {
			t.Fatal("got nil error, want one")
		}
	})
	t.Run("sqlite creates the directory", func(t *testing.T) {
		t.Parallel()
		s := openStore(t, "sqlite://"+filepath.Join(t.TempDir(), "a", "b", "rf.db"))
		if got := s.Dialect(); got != "sqlite" {
			t.Errorf("Dialect: got %q, want sqlite", got)
		}
		if err := s.Ping(t.Context()); err != nil {
			t.Errorf("Ping: %v", err)
		}
	})
	t.Run("postgres unreachable", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		_, err := Open(ctx, "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", Options{})
		wantErr(t, "Open", err, ErrUnavailable)
	})
	forEachURL(t, func(t *testing.T, url string) {
		want := "sqlite"
		if isPostgres(url) {
			want = "postgres"
		}
		if got := openStore(t, url).Dialect(); got != want {
			t.Errorf("Dialect: got %q, want %q", got, want)
		}
	})
}

func TestPutPayload(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		el, ev, created, err := elOf(s.Put(ctx, "w1", "c1", "character",
			json.RawMessage(`{ "name" : "Aria", "html": "<b>&amp;</b>" }`), Precondition{IfNoneMatchAny: true},
			Meta{OpID: "op-1", Actor: "alice"}))
		if err != nil {
			t.Fatalf("Put: %v", err)
		}
		if !created {
			t.Errorf("created: got false, want true")
		}
		wantData := `{"name":"Aria","html":"<b>&amp;</b>"}`
		if el.Version != 1 || string(el.Data) != wantData || el.Kind != "character" {
			t.Errorf("element: got %+v, want version 1 kind character data %s", el, wantData)
		}
		if el.UpdatedAt.Location() != time.UTC || el.UpdatedAt.Nanosecond()%1000 != 0 {
			t.Errorf("updated_at: got %v, want UTC with microseconds", el.UpdatedAt)
		}
		ts := el.UpdatedAt.Format(time.RFC3339Nano)
		want := `{"id":"1","room":"w1","type":"element.created","element":{"id":"c1","kind":"character","version":1,` +
			`"data":` + wantData + `,"updated_at":"` + ts + `"},"op_id":"op-1","actor":"alice","at":"` + ts + `"}`
		if string(ev.Data) != want {
			t.Errorf("payload:\n got %s\nwant %s", ev.Data, want)
		}
		if ev.Seq != 1 || ev.Type != roomfeed.TypeCreated || ev.Room != "w1" || !ev.At.Equal(el.UpdatedAt) {
			t.Errorf("event: got seq %d type %q room %q at %v, want 1 %q w1 %v", ev.Seq, ev.Type, ev.Room, ev.At, roomfeed.TypeCreated, el.UpdatedAt)
		}
		if got := mustGet(t, s, "w1", "c1"); !equalElement(got, el) {
			t.Errorf("Get: got %+v, want %+v", got, el)
		}
		stored := allEvents(t, s, "w1", 0)
		if len(stored) != 1 || !bytes.Equal(stored[0].Data, ev.Data) || !stored[0].At.Equal(ev.At) || stored[0].Type != ev.Type {
			t.Errorf("EventsAfter: got %+v, want [%+v]", stored, ev)
		}

		// Replace, changing the kind; no meta means no op_id/actor keys.
		el2, ev2, created, err := elOf(s.Put(ctx, "w1", "c1", "npc", json.RawMessage(`{"name":"Bo"}`), Precondition{IfMatch: ptr(int64(1))}, Meta{}))
		if err != nil {
			t.Fatalf("Put replace: %v", err)
		}
		if created || el2.Version != 2 || el2.Kind != "npc" || string(el2.Data) != `{"name":"Bo"}` {
			t.Errorf("replace: got created %v %+v, want replaced version 2 kind npc", created, el2)
		}
		ts = el2.UpdatedAt.Format(time.RFC3339Nano)
		want = `{"id":"2","room":"w1","type":"element.updated","element":{"id":"c1","kind":"npc","version":2,` +
			`"data":{"name":"Bo"},"updated_at":"` + ts + `"},"at":"` + ts + `"}`
		if string(ev2.Data) != want {
			t.Errorf("payload:\n got %s\nwant %s", ev2.Data, want)
		}

		_, err = s.Put(ctx, "w1", "c2", "npc", json.RawMessage(`{"name":`), Precondition{}, Meta{})
		wantErr(t, "Put invalid JSON", err, ErrInvalid)
		_, err = s.Put(ctx, "w1", "c2", "npc", json.RawMessage(`[1]`), Precondition{}, Meta{})
		wantErr(t, "Put non-object", err, ErrInvalid)
		if got := mustHead(t, s, "w1"); got != 2 {
			t.Errorf("Head: got %d, want 2", got)
		}
	})
}

func TestConcurrentWriters(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		const (
			writers      = 50
			opsPerWriter = 4 // put shared, put own, patch own, message
			room         = "busy"
		)
		var (
			mu   sync.Mutex
			seqs []int64
			got  = map[int64]roomfeed.Event{}
			wg   sync.WaitGroup
		)
		record := func(ev roomfeed.Event) {
			mu.Lock()
			defer mu.Unlock()
			seqs = append(seqs, ev.Seq)
			got[ev.Seq] = ev
		}
		errs := make(chan error, writers)
		for i := range writers {
			wg.Go(func() {
				ctx := t.Context()
				id := fmt.Sprintf("el-%d", i)
				ev, err := evOf(s.Put(ctx, room, "shared", "counter", json.RawMessage(fmt.Sprintf(`{"by":%d}`, i)), Precondition{}, Meta{}))
				if err != nil {
					errs <- fmt.Errorf("writer %d: put shared: %w", i, err)
					return
				}
				record(ev)
				if ev, err = evOf(s.Put(ctx, room, id, "thing", json.RawMessage(`{"n":0}`), Precondition{IfNoneMatchAny: true}, Meta{})); err != nil {
					errs <- fmt.Errorf("writer %d: put own: %w", i, err)
					return
				}
				record(ev)
				if ev, err = evOf(s.Patch(ctx, room, id, json.RawMessage(`{"n":1}`), Precondition{IfMatch: ptr(int64(1))}, Meta{})); err != nil {
					errs <- fmt.Errorf("writer %d: patch own: %w", i, err)
					return
				}
				record(ev)
				if ev, err = evOf(s.Message(ctx, room, "ping", json.RawMessage(strconv.Itoa(i)), Meta{Actor: id})); err != nil {
					errs <- fmt.Errorf("writer %d: message: %w", i, err)
					return
				}
				record(ev)
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			return
		}

		const n = writers * opsPerWriter
		slices.Sort(seqs)
		for i, seq := range seqs {
			if seq != int64(i+1) {
				t.Fatalf("seqs: got %d at position %d, want %d (no gap, no duplicate); all: %v", seq, i, i+1, seqs)
			}
		}
		if len(seqs) != n {
			t.Fatalf("writes: got %d, want %d", len(seqs), n)
		}
		if head := mustHead(t, s, room); head != n {
			t.Errorf("Head: got %d, want %d", head, n)
		}
		evs, err := s.EventsAfter(t.Context(), room, 0, 1000)
		if err != nil {
			t.Fatalf("EventsAfter: %v", err)
		}
		if len(evs) != n {
			t.Fatalf("EventsAfter: got %d events, want %d", len(evs), n)
		}
		for i, ev := range evs {
			if ev.Seq != int64(i+1) {
				t.Fatalf("event %d: got seq %d, want %d", i, ev.Seq, i+1)
			}
			var p struct{ ID, Type string }
			if err := json.Unmarshal(ev.Data, &p); err != nil {
				t.Fatalf("event %d: payload %s: %v", ev.Seq, ev.Data, err)
			}
			if p.ID != strconv.FormatInt(ev.Seq, 10) || p.Type != ev.Type {
				t.Errorf("event %d: got payload id %q type %q, want %q %q", ev.Seq, p.ID, p.Type, strconv.FormatInt(ev.Seq, 10), ev.Type)
			}
			if !bytes.Equal(ev.Data, got[ev.Seq].Data) {
				t.Errorf("event %d: got stored payload %s, want %s", ev.Seq, ev.Data, got[ev.Seq].Data)
			}
			if i > 0 && ev.At.Before(evs[i-1].At) {
				t.Errorf("event %d: at %v before previous %v", ev.Seq, ev.At, evs[i-1].At)
			}
		}
		if shared := mustGet(t, s, room, "shared"); shared.Version != writers {
			t.Errorf("shared version: got %d, want %d", shared.Version, writers)
		}
	})
}

func TestPreconditions(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		const room = "w1"
		mustPut(t, s, room, "c1", "character", `{"name":"Aria"}`)
		want, _ := mustPut(t, s, room, "c1", "character", `{"name":"Aria","hp":3}`) // version 2
		head := mustHead(t, s, room)

		tests := []struct {
			name  string
			write func() error
			want  error
		}{
			{"put stale If-Match changing what changed since", func() error {
				_, err := s.Put(ctx, room, "c1", "character", json.RawMessage(`{"name":"Aria","hp":5}`), Precondition{IfMatch: ptr(int64(1))}, Meta{})
				return err
			}, ErrConflict},
			{"put If-Match of a version not written yet", func() error {
				_, err := s.Put(ctx, room, "c1", "character", json.RawMessage(`{}`), Precondition{IfMatch: ptr(int64(3))}, Meta{})
				return err
			}, ErrVersionMismatch},
			{"put If-None-Match on existing", func() error {
				_, err := s.Put(ctx, room, "c1", "character", json.RawMessage(`{}`), Precondition{IfNoneMatchAny: true}, Meta{})
				return err
			}, ErrExists},
			{"put If-Match on missing", func() error {
				_, err := s.Put(ctx, room, "nope", "character", json.RawMessage(`{}`), Precondition{IfMatch: ptr(int64(1))}, Meta{})
				return err
			}, ErrVersionMismatch},
			{"put If-Match any on missing", func() error {
				_, err := s.Put(ctx, room, "nope", "character", json.RawMessage(`{}`), Precondition{IfMatchAny: true}, Meta{})
				return err
			}, ErrVersionMismatch},
			{"delete If-Match any on missing", func() error {
				_, err := s.Delete(ctx, room, "nope", Precondition{IfMatchAny: true}, Meta{})
				return err
			}, ErrVersionMismatch},
			{"patch stale If-Match", func() error {
				_, err := s.Patch(ctx, room, "c1", json.RawMessage(`{"hp":1}`), Precondition{IfMatch: ptr(int64(3))}, Meta{})
				return err
			}, ErrVersionMismatch},
			{"patch If-Match on missing", func() error {
				_, err := s.Patch(ctx, room, "nope", json.RawMessage(`{"hp":1}`), Precondition{IfMatch: ptr(int64(1))}, Meta{})
				return err
			}, ErrVersionMismatch},
			{"patch missing", func() error {
				_, err := s.Patch(ctx, room, "nope", json.RawMessage(`{"hp":1}`), Precondition{}, Meta{})
				return err
			}, ErrNotFound},
			{"patch not an object", func() error {
				_, err := s.Patch(ctx, room, "c1", json.RawMessage(`[1]`), Precondition{}, Meta{})
				return err
			}, ErrInvalid},
			{"delete stale If-Match", func() error {
				_, err := s.Delete(ctx, room, "c1", Precondition{IfMatch: ptr(int64(1))}, Meta{})
				return err
			}, ErrVersionMismatch},
			{"delete If-Match on missing", func() error {
				_, err := s.Delete(ctx, room, "nope", Precondition{IfMatch: ptr(int64(2))}, Meta{})
				return err
			}, ErrVersionMismatch},
			{"delete missing", func() error {
				_, err := s.Delete(ctx, room, "nope", Precondition{}, Meta{})
				return err
			}, ErrNotFound},
		}
		for _, tt := range tests {
			wantErr(t, tt.name, tt.write(), tt.want)
			if got := mustHead(t, s, room); got != head {
				t.Errorf("%s: Head got %d, want %d", tt.name, got, head)
			}
			if got := mustGet(t, s, room, "c1"); !equalElement(got, want) {
				t.Errorf("%s: element got %+v, want %+v", tt.name, got, want)
			}
			if _, err := s.Get(ctx, room, "nope"); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s: Get missing: got %v, want %v", tt.name, err, ErrNotFound)
			}
		}

		// Matching preconditions succeed and continue the sequence.
		el, ev, _, err := elOf(s.Put(ctx, room, "c1", "character", json.RawMessage(`{"name":"Aria"}`), Precondition{IfMatch: ptr(int64(2))}, Meta{}))
		if err != nil || el.Version != 3 || ev.Seq != head+1 {
			t.Fatalf("Put matching If-Match: got %+v seq %d err %v, want version 3 seq %d", el, ev.Seq, err, head+1)
		}
		el, ev, created, err := elOf(s.Put(ctx, room, "c2", "character", json.RawMessage(`{}`), Precondition{IfNoneMatchAny: true}, Meta{}))
		if err != nil || !created || el.Version != 1 || ev.Seq != head+2 {
			t.Fatalf("Put If-None-Match new: got %+v created %v seq %d err %v, want version 1 created seq %d", el, created, ev.Seq, err, head+2)
		}
		el, ev, created, err = elOf(s.Put(ctx, room, "c2", "character", json.RawMessage(`{"n":1}`), Precondition{IfMatchAny: true}, Meta{}))
		if err != nil || created || el.Version != 2 || ev.Seq != head+3 {
			t.Fatalf("Put If-Match any on existing: got %+v created %v seq %d err %v, want version 2 replaced seq %d", el, created, ev.Seq, err, head+3)
		}
	})
}

func TestDelete(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		mustPut(t, s, "w1", "c1", "character", `{"name":"Aria"}`)
		mustPut(t, s, "w1", "c2", "item", `{}`)
		ev, err := evOf(s.Delete(ctx, "w1", "c1", Precondition{IfMatch: ptr(int64(1))}, Meta{OpID: "op-9"}))
		if err != nil {
			t.Fatalf("Delete: %v", err)
		}
		ts := ev.At.Format(time.RFC3339Nano)
		want := `{"id":"3","room":"w1","type":"element.deleted","element":{"id":"c1","kind":"character","version":2,"updated_at":"` +
			ts + `"},"op_id":"op-9","at":"` + ts + `"}`
		if ev.Seq != 3 || ev.Type != roomfeed.TypeDeleted || string(ev.Data) != want {
			t.Errorf("Delete event: got seq %d type %q payload\n %s\nwant seq 3 type %q payload\n %s", ev.Seq, ev.Type, ev.Data, roomfeed.TypeDeleted, want)
		}
		_, err = s.Get(ctx, "w1", "c1")
		wantErr(t, "Get deleted", err, ErrNotFound)
		_, err = s.Delete(ctx, "w1", "c1", Precondition{}, Meta{})
		wantErr(t, "Delete again", err, ErrNotFound)
		snap, err := s.Snapshot(ctx, "w1")
		if err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		if snap.Cursor != 3 || len(snap.Elements) != 1 || snap.Elements[0].ID != "c2" {
			t.Errorf("Snapshot: got cursor %d elements %+v, want cursor 3 and only c2", snap.Cursor, snap.Elements)
		}
		// Recreating goes on from the tombstone's version (2), so versions of
		// an id never repeat and an If-Match from before the delete fails.
		stale := int64(1)
		_, err = s.Put(ctx, "w1", "c1", "character", json.RawMessage(`{}`), Precondition{IfMatch: &stale}, Meta{})
		wantErr(t, "Put with a version from before the delete", err, ErrVersionMismatch)
		el, _, created, err := elOf(s.Put(ctx, "w1", "c1", "character", json.RawMessage(`{}`), Precondition{IfNoneMatchAny: true}, Meta{}))
		if err != nil || !created || el.Version != 3 {
			t.Errorf("recreate: got %+v created %v err %v, want version 3 created", el, created, err)
		}
		_, err = s.Put(ctx, "w1", "c1", "character", json.RawMessage(`{}`), Precondition{IfMatch: &stale}, Meta{})
		wantErr(t, "Put with version 1 after the re-create", err, ErrVersionMismatch)
	})
}

func TestMessage(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		mustPut(t, s, "w1", "c1", "character", `{}`)
		ev, err := evOf(s.Message(ctx, "w1", "cursor.moved", json.RawMessage(`{"x": 1, "y": [2, 3], "s": "a<b"}`), Meta{OpID: "o1", Actor: "bob"}))
		if err != nil {
			t.Fatalf("Message: %v", err)
		}
		want := `{"id":"2","room":"w1","type":"cursor.moved","data":{"x":1,"y":[2,3],"s":"a<b"},"op_id":"o1","actor":"bob","at":"` +
			ev.At.Format(time.RFC3339Nano) + `"}`
		if ev.Seq != 2 || ev.Type != "cursor.moved" || string(ev.Data) != want {
			t.Errorf("Message: got seq %d type %q payload\n %s\nwant seq 2 type cursor.moved payload\n %s", ev.Seq, ev.Type, ev.Data, want)
		}
		ev, err = evOf(s.Message(ctx, "w1", "hello", nil, Meta{}))
		if err != nil {
			t.Fatalf("Message without data: %v", err)
		}
		want = `{"id":"3","room":"w1","type":"hello","data":null,"at":"` + ev.At.Format(time.RFC3339Nano) + `"}`
		if string(ev.Data) != want {
			t.Errorf("Message without data: got %s, want %s", ev.Data, want)
		}
		// A message in a new room creates the room.
		if ev, err := evOf(s.Message(ctx, "w2", "hello", json.RawMessage(`"hi"`), Meta{})); err != nil || ev.Seq != 1 {
			t.Errorf("Message in new room: got seq %d err %v, want seq 1", ev.Seq, err)
		}
		snap, err := s.Snapshot(ctx, "w1")
		if err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		if snap.Cursor != 3 || len(snap.Elements) != 1 || snap.Elements[0].Version != 1 {
			t.Errorf("Snapshot: got cursor %d elements %+v, want cursor 3 and c1 at version 1", snap.Cursor, snap.Elements)
		}
		_, err = s.Message(ctx, "w1", "bad", json.RawMessage(`{`), Meta{})
		wantErr(t, "Message invalid JSON", err, ErrInvalid)
	})
}

func TestUnknownRoom(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		_, err := s.Get(ctx, "nowhere", "c1")
		wantErr(t, "Get", err, ErrNotFound)
		snap, err := s.Snapshot(ctx, "nowhere")
		if err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		if snap.Room != "nowhere" || snap.Cursor != 0 || snap.Elements == nil || len(snap.Elements) != 0 {
			t.Errorf("Snapshot: got %+v, want room nowhere, cursor 0, empty non-nil elements", snap)
		}
		if got := mustHead(t, s, "nowhere"); got != 0 {
			t.Errorf("Head: got %d, want 0", got)
		}
		evs, err := s.EventsAfter(ctx, "nowhere", 0, 10)
		if err != nil || len(evs) != 0 {
			t.Errorf("EventsAfter: got %v, %v, want no events", evs, err)
		}
	})
}

func TestSnapshotSorted(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		for _, id := range []string{"b", "a", "B", "a.1", "_x", "Z9"} {
			mustPut(t, s, "w1", id, "thing", `{}`)
		}
		mustPut(t, s, "other", "c", "thing", `{}`)
		snap, err := s.Snapshot(t.Context(), "w1")
		if err != nil {
			t.Fatalf("Snapshot: %v", err)
		}
		var ids []string
		for _, el := range snap.Elements {
			ids = append(ids, el.ID)
		}
		want := []string{"B", "Z9", "_x", "a", "a.1", "b"} // byte order
		if !slices.Equal(ids, want) || snap.Cursor != 6 {
			t.Errorf("Snapshot: got ids %v cursor %d, want %v cursor 6", ids, snap.Cursor, want)
		}
	})
}

func TestEventsAfterPaging(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		for i := range 25 {
			if _, err := s.Message(ctx, "w1", "m", json.RawMessage(strconv.Itoa(i)), Meta{}); err != nil {
				t.Fatalf("Message: %v", err)
			}
		}
		var after int64
		var sizes []int
		for {
			evs, err := s.EventsAfter(ctx, "w1", after, 10)
			if err != nil {
				t.Fatalf("EventsAfter %d: %v", after, err)
			}
			if len(evs) == 0 {
				break
			}
			for i, ev := range evs {
				if ev.Seq != after+int64(i)+1 {
					t.Fatalf("EventsAfter %d: event %d got seq %d, want %d", after, i, ev.Seq, after+int64(i)+1)
				}
			}
			sizes = append(sizes, len(evs))
			after = evs[len(evs)-1].Seq
		}
		if want := []int{10, 10, 5}; !slices.Equal(sizes, want) {
			t.Errorf("page sizes: got %v, want %v", sizes, want)
		}
		if evs, err := s.EventsAfter(ctx, "w1", 30, 10); err != nil || len(evs) != 0 {
			t.Errorf("EventsAfter beyond head: got %d events, %v, want none", len(evs), err)
		}
		if evs, err := s.EventsAfter(ctx, "w1", 20, 0); err != nil || len(evs) != 5 {
			t.Errorf("EventsAfter limit 0: got %d events, %v, want 5", len(evs), err)
		}
	})
}

func TestTrim(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		for i := range 20 {
			if _, err := s.Message(ctx, "w1", "m", json.RawMessage(strconv.Itoa(i)), Meta{}); err != nil {
				t.Fatalf("Message: %v", err)
			}
		}
		mustPut(t, s, "w2", "c1", "thing", `{}`)

		trim := func(keep int64, maxAge time.Duration, below, want int64) {
			t.Helper()
			n, err := s.Trim(ctx, "w1", keep, maxAge, below)
			if err != nil {
				t.Fatalf("Trim(%d, %v, %d): %v", keep, maxAge, below, err)
			}
			if n != want {
				t.Errorf("Trim(%d, %v, %d): got %d deleted, want %d", keep, maxAge, below, n, want)
			}
		}
		oldest := func(room string, want int64) {
			t.Helper()
			if got, err := s.Oldest(ctx, room); err != nil || got != want {
				t.Errorf("Oldest(%s): got %d, %v; want %d", room, got, err, want)
			}
		}
		oldest("w1", 1)
		oldest("nowhere", 0)
		trim(0, 0, 20, 0)         // no limits
		trim(5, 0, 10, 10)        // keep 5 would delete 1..15, but only up to 10 are published
		trim(5, 0, 20, 5)         // now 11..15
		trim(5, 0, 20, 0)         // idempotent
		trim(0, time.Hour, 20, 0) // nothing that old
		for _, after := range []int64{0, 10, 14} {
			_, err := s.EventsAfter(ctx, "w1", after, 10)
			wantErr(t, fmt.Sprintf("EventsAfter(%d) after trim", after), err, roomfeed.ErrTrimmed)
		}
		if evs := allEvents(t, s, "w1", 15); len(evs) != 5 || evs[0].Seq != 16 {
			t.Errorf("EventsAfter(15): got %d events, want 16..20", len(evs))
		}
		oldest("w1", 16)
		time.Sleep(5 * time.Millisecond)
		trim(0, time.Millisecond, 18, 3) // by age: 16..18
		trim(0, time.Millisecond, 20, 2) // the rest
		_, err := s.EventsAfter(ctx, "w1", 19, 10)
		wantErr(t, "EventsAfter(19) with nothing retained", err, roomfeed.ErrTrimmed)
		oldest("w1", 0)
		if evs, err := s.EventsAfter(ctx, "w1", 20, 10); err != nil || len(evs) != 0 {
			t.Errorf("EventsAfter(head): got %d events, %v, want none", len(evs), err)
		}
		// Writing continues the sequence; other rooms are untouched.
		ev, err := evOf(s.Message(ctx, "w1", "m", nil, Meta{}))
		if err != nil || ev.Seq != 21 {
			t.Errorf("Message after trim: got seq %d err %v, want 21", ev.Seq, err)
		}
		if evs := allEvents(t, s, "w1", 20); len(evs) != 1 {
			t.Errorf("EventsAfter(20): got %d events, want 1", len(evs))
		}
		oldest("w1", 21)
		oldest("w2", 1)
		if evs := allEvents(t, s, "w2", 0); len(evs) != 1 {
			t.Errorf("w2 events: got %d, want 1", len(evs))
		}
	})
}

func TestRoomHeads(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		mustPut(t, s, "a", "c1", "thing", `{}`)
		mustPut(t, s, "a", "c2", "thing", `{}`)
		time.Sleep(2 * time.Millisecond)
		mid := time.Now()
		time.Sleep(2 * time.Millisecond)
		mustPut(t, s, "b", "c1", "thing", `{}`)

		heads, err := s.RoomHeads(ctx, time.Time{})
		if err != nil {
			t.Fatalf("RoomHeads: %v", err)
		}
		if want := []roomfeed.RoomHead{{Room: "a", Seq: 2}, {Room: "b", Seq: 1}}; !slices.Equal(heads, want) {
			t.Errorf("RoomHeads(zero): got %v, want %v", heads, want)
		}
		heads, err = s.RoomHeads(ctx, mid)
		if err != nil {
			t.Fatalf("RoomHeads: %v", err)
		}
		if want := []roomfeed.RoomHead{{Room: "b", Seq: 1}}; !slices.Equal(heads, want) {
			t.Errorf("RoomHeads(mid): got %v, want %v", heads, want)
		}
		heads, err = s.RoomHeads(ctx, time.Now().Add(time.Minute))
		if err != nil || len(heads) != 0 {
			t.Errorf("RoomHeads(future): got %v, %v, want none", heads, err)
		}
	})
}

func TestRestart(t *testing.T) {
	t.Parallel()
	forEachURL(t, func(t *testing.T, url string) {
		ctx := t.Context()
		s, err := Open(ctx, url, Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		mustPut(t, s, "w1", "c1", "character", `{"name":"Aria"}`)
		mustPut(t, s, "w1", "c1", "character", `{"name":"Aria","hp":1}`)
		if _, err := s.Message(ctx, "w1", "hello", nil, Meta{}); err != nil {
			t.Fatalf("Message: %v", err)
		}
		before := allEvents(t, s, "w1", 0)
		el := mustGet(t, s, "w1", "c1")
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}

		s = openStore(t, url)
		if got := mustHead(t, s, "w1"); got != 3 {
			t.Errorf("Head after restart: got %d, want 3", got)
		}
		after := allEvents(t, s, "w1", 0)
		if len(after) != len(before) {
			t.Fatalf("events after restart: got %d, want %d", len(after), len(before))
		}
		for i := range before {
			if !bytes.Equal(after[i].Data, before[i].Data) || after[i].Seq != before[i].Seq || !after[i].At.Equal(before[i].At) {
				t.Errorf("event %d after restart: got %+v, want %+v", i, after[i], before[i])
			}
		}
		if got := mustGet(t, s, "w1", "c1"); !equalElement(got, el) {
			t.Errorf("element after restart: got %+v, want %+v", got, el)
		}
		_, ev := mustPut(t, s, "w1", "c2", "item", `{}`)
		if ev.Seq != 4 {
			t.Errorf("seq after restart: got %d, want 4", ev.Seq)
		}
	})
}

// payloadElement is the part of an element event payload a client applies.
type payloadElement struct {
	Type    string           `json:"type"`
	Element roomfeed.Element `json:"element"`
}

func TestSnapshotConsistency(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		const (
			room    = "w1"
			writers = 6
			ops     = 25
		)
		ctx := t.Context()
		var wg sync.WaitGroup
		errs := make(chan error, writers+1)
		for w := range writers {
			wg.Go(func() {
				for i := range ops {
					id := fmt.Sprintf("e%d", (w*7+i)%8)
					var err error
					switch i % 4 {
					case 0, 1:
						_, err = s.Put(ctx, room, id, "thing", json.RawMessage(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)), Precondition{}, Meta{})
					case 2:
						_, err = s.Patch(ctx, room, id, json.RawMessage(fmt.Sprintf(`{"p":%d,"w":null}`, i)), Precondition{}, Meta{})
					case 3:
						_, err = s.Delete(ctx, room, id, Precondition{}, Meta{})
					}
					if err != nil && !errors.Is(err, ErrNotFound) {
						errs <- fmt.Errorf("writer %d op %d: %w", w, i, err)
						return
					}
				}
			})
		}
		// Snapshots are kept one per cursor; a later snapshot at the same
		// cursor must hold exactly the same elements.
		done := make(chan struct{})
		var snaps []Snapshot
		byCursor := map[int64]Snapshot{}
		var snapWG sync.WaitGroup
		snapWG.Go(func() {
			for {
				snap, err := s.Snapshot(ctx, room)
				if err != nil {
					errs <- fmt.Errorf("snapshot: %w", err)
					return
				}
				if prev, ok := byCursor[snap.Cursor]; !ok {
					byCursor[snap.Cursor] = snap
					snaps = append(snaps, snap)
				} else if !slices.EqualFunc(prev.Elements, snap.Elements, equalElement) {
					errs <- fmt.Errorf("two snapshots at cursor %d differ: %+v and %+v", snap.Cursor, prev.Elements, snap.Elements)
					return
				}
				select {
				case <-done:
					return
				default:
				}
			}
		})
		wg.Wait()
		close(done)
		snapWG.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			return
		}

		final, err := s.Snapshot(ctx, room)
		if err != nil {
			t.Fatalf("final Snapshot: %v", err)
		}
		if len(snaps) < 2 {
			t.Fatalf("snapshots: got %d, want at least 2", len(snaps))
		}
		for _, snap := range snaps {
			state := map[string]roomfeed.Element{}
			for _, el := range snap.Elements {
				state[el.ID] = el
			}
			for _, ev := range allEvents(t, s, room, snap.Cursor) {
				var p payloadElement
				if err := json.Unmarshal(ev.Data, &p); err != nil {
					t.Fatalf("event %d: %v", ev.Seq, err)
				}
				if p.Type == roomfeed.TypeDeleted {
					delete(state, p.Element.ID)
				} else {
					state[p.Element.ID] = p.Element
				}
			}
			if len(state) != len(final.Elements) {
				t.Fatalf("snapshot at %d + events: got %d elements, want %d", snap.Cursor, len(state), len(final.Elements))
			}
			for _, want := range final.Elements {
				if got := state[want.ID]; !equalElement(got, want) {
					t.Fatalf("snapshot at %d + events: element %s got %+v, want %+v", snap.Cursor, want.ID, got, want)
				}
			}
		}
		t.Logf("%d snapshots checked, cursors %d..%d", len(snaps), snaps[0].Cursor, snaps[len(snaps)-1].Cursor)
	})
}

// TestElementJSON: an element write's ElementJSON is the element its
// event carries, the same bytes, for every kind of element write.
func TestElementJSON(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		writes := []struct {
			name  string
			write func() (Outcome, error)
		}{
			{"put", func() (Outcome, error) {
				return s.Put(ctx, "w1", "c1", "character", json.RawMessage(`{"name":"Aria <b>","hp":3}`), Precondition{}, Meta{OpID: `a"b`})
			}},
			{"patch", func() (Outcome, error) {
				return s.Patch(ctx, "w1", "c1", json.RawMessage(`{"hp":4}`), Precondition{}, Meta{})
			}},
			{"merge", func() (Outcome, error) {
				return s.Patch(ctx, "w1", "c1", json.RawMessage(`{"name":"Bo"}`), Precondition{IfMatch: ptr(int64(1))}, Meta{})
			}},
			{"delete", func() (Outcome, error) { return s.Delete(ctx, "w1", "c1", Precondition{}, Meta{}) }},
			{"revert", func() (Outcome, error) { return s.Revert(ctx, "w1", "c1", 2, Precondition{}, Meta{Actor: "ana"}) }},
		}
		for _, w := range writes {
			out, err := w.write()
			if err != nil {
				t.Fatalf("%s: %v", w.name, err)
			}
			var ev struct{ Element json.RawMessage }
			if err := json.Unmarshal(out.Event.Data, &ev); err != nil || !bytes.Equal(ev.Element, out.ElementJSON) {
				t.Errorf("%s: ElementJSON %s, want the event's element %s (%v)", w.name, out.ElementJSON, ev.Element, err)
			}
			var el roomfeed.Element
			if err := json.Unmarshal(out.ElementJSON, &el); err != nil || !equalElement(el, out.Element) {
				t.Errorf("%s: ElementJSON decodes to %+v (%v), want %+v", w.name, el, err, out.Element)
			}
		}
	})
}
