package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/testenv"
)

// testAnswer is the answer the tests record: the event's seq and payload.
func testAnswer(out Outcome) (Answer, error) {
	return Answer{
		Status: 201,
		Header: map[string]string{"Event-ID": strconv.FormatInt(out.Event.Seq, 10), "ETag": strconv.FormatInt(out.Element.Version, 10)},
		Body:   out.Event.Data,
	}, nil
}

// keyed makes a write idempotent with key and fingerprint fp.
func keyed(key, fp string) Meta {
	return Meta{Actor: "ann", Idem: &Idempotency{Key: key, Fingerprint: fp, Answer: testAnswer}}
}

// roomState is what a write may change in a room, to compare.
func roomState(t *testing.T, s *Store, db rawDB, room string) string {
	t.Helper()
	var events, versions, keys int
	err := db.QueryRowContext(t.Context(), db.bind(`SELECT (SELECT COUNT(*) FROM events WHERE room = ?),
		(SELECT COUNT(*) FROM element_versions WHERE room = ?), (SELECT COUNT(*) FROM idempotency_keys WHERE room = ?)`),
		room, room, room).Scan(&events, &versions, &keys)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot(t.Context(), room)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(snap)
	return fmt.Sprintf("events %d, versions %d, keys %d, %s", events, versions, keys, b)
}

// TestIdempotentWrites: every kind of write with a key is applied once;
// the same request again gets the recorded answer and changes nothing (no
// seq, no event, no version), another request with the key is
// ErrKeyReused, and the key in another room is another key.
func TestIdempotentWrites(t *testing.T) {
	t.Parallel()
	writes := []struct {
		name  string
		write func(ctx context.Context, s *Store, room string, meta Meta) (Outcome, error)
	}{
		{"put", func(ctx context.Context, s *Store, room string, meta Meta) (Outcome, error) {
			return s.Put(ctx, room, "x", "thing", json.RawMessage(`{"a":1}`), Precondition{}, meta)
		}},
		{"patch", func(ctx context.Context, s *Store, room string, meta Meta) (Outcome, error) {
			return s.Patch(ctx, room, "x", json.RawMessage(`{"b":2}`), Precondition{IfMatch: ptr(int64(1))}, meta)
		}},
		{"stale patch, merged", func(ctx context.Context, s *Store, room string, meta Meta) (Outcome, error) {
			return s.Patch(ctx, room, "x", json.RawMessage(`{"c":3}`), Precondition{IfMatch: ptr(int64(1))}, meta)
		}},
		{"message", func(ctx context.Context, s *Store, room string, meta Meta) (Outcome, error) {
			return s.Message(ctx, room, "chat", json.RawMessage(`"hi"`), meta)
		}},
		{"delete", func(ctx context.Context, s *Store, room string, meta Meta) (Outcome, error) {
			return s.Delete(ctx, room, "x", Precondition{}, meta)
		}},
	}
	forEachURL(t, func(t *testing.T, url string) {
		s, db := openStore(t, url), openRaw(t, url)
		ctx := t.Context()
		for i, w := range writes {
			key := "key-" + strconv.Itoa(i)
			first, err := w.write(ctx, s, "w1", keyed(key, "fp"))
			if err != nil || first.Replayed != nil {
				t.Fatalf("%s: got %+v, %v, want it applied", w.name, first, err)
			}
			var p struct {
				OpID string `json:"op_id"`
			}
			if err := json.Unmarshal(first.Event.Data, &p); err != nil || p.OpID != key {
				t.Errorf("%s: event op_id: got %q (%v), want the key %q", w.name, p.OpID, err, key)
			}
			before := roomState(t, s, db, "w1")
			again, err := w.write(ctx, s, "w1", keyed(key, "fp"))
			want, _ := testAnswer(first)
			if err != nil || again.Replayed == nil || !reflect.DeepEqual(*again.Replayed, want) {
				t.Fatalf("%s again: got %+v, %v, want the recorded answer %+v", w.name, again, err, want)
			}
			if !reflect.DeepEqual(again, Outcome{Replayed: again.Replayed}) {
				t.Errorf("%s again: got %+v, want only Replayed", w.name, again)
			}
			_, err = w.write(ctx, s, "w1", keyed(key, "another request"))
			wantErr(t, w.name+" with the key of another request", err, ErrKeyReused)
			if after := roomState(t, s, db, "w1"); after != before {
				t.Errorf("%s: a replay or a reused key changed the room:\nbefore %s\nafter  %s", w.name, before, after)
			}
		}
		// The same key in another room is another key.
		if out, err := s.Message(ctx, "w2", "chat", nil, keyed("key-0", "other")); err != nil || out.Replayed != nil || out.Event.Seq != 1 {
			t.Errorf("key-0 in w2: got %+v, %v, want it applied at seq 1", out, err)
		}
	})
}

// TestIdempotentFailuresRecordNothing: a refused write, or one whose answer
// cannot be built, records no key: the key applies later.
func TestIdempotentFailuresRecordNothing(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		mustPut(t, s, "w1", "x", "thing", `{}`)
		_, err := s.Put(ctx, "w1", "x", "thing", json.RawMessage(`{}`), Precondition{IfNoneMatchAny: true}, keyed("k", "fp"))
		wantErr(t, "refused put", err, ErrExists)
		broken := keyed("k", "fp")
		broken.Idem.Answer = func(Outcome) (Answer, error) { return Answer{}, errors.New("no answer") }
		if _, err := s.Put(ctx, "w1", "x", "thing", json.RawMessage(`{}`), Precondition{}, broken); err == nil {
			t.Fatal("put whose answer fails: got no error")
		}
		if got := mustHead(t, s, "w1"); got != 1 {
			t.Errorf("head: got %d, want 1", got)
		}
		out, err := s.Put(ctx, "w1", "x", "thing", json.RawMessage(`{}`), Precondition{}, keyed("k", "fp"))
		if err != nil || out.Replayed != nil || out.Event.Seq != 2 {
			t.Errorf("put with the key: got %+v, %v, want it applied at seq 2", out, err)
		}
	})
}

// TestIdempotentConcurrent: 50 writes with one key at once (batches form
// on both stores; two nodes on PostgreSQL) apply once; the others replay
// its answer.
func TestIdempotentConcurrent(t *testing.T) {
	t.Parallel()
	const writers = 50
	forEachURL(t, func(t *testing.T, url string) {
		nodes, db := openNodes(t, url), openRaw(t, url)
		var (
			mu      sync.Mutex
			applied []Outcome
			answers []Answer
		)
		runWriters(t, writers, 1, func(w, _ int) error {
			out, err := nodes[w%len(nodes)].Put(t.Context(), "w1", "x", "thing", json.RawMessage(`{"n":1}`), Precondition{}, keyed("once", "fp"))
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			if out.Replayed == nil {
				applied = append(applied, out)
			} else {
				answers = append(answers, *out.Replayed)
			}
			return nil
		})
		if len(applied) != 1 {
			t.Fatalf("applied: got %d writes, want 1", len(applied))
		}
		want, _ := testAnswer(applied[0])
		for _, a := range answers {
			if !reflect.DeepEqual(a, want) {
				t.Fatalf("replayed %+v, want %+v", a, want)
			}
		}
		checkGapFree(t, nodes[0], "w1", 1)
		if rows := versionRows(t, db, "w1", "x"); len(rows) != 1 {
			t.Errorf("versions: got %d, want 1", len(rows))
		}
	})
}

// keyedMessage is a queued message with a key: applied (wantSeq > 0) or
// replayed (wantSeq 0: its seq is the replayed answer's Event-ID).
func keyedMessage(name, key, fp string, wantSeq int64) queuedWrite {
	return queuedWrite{name: name, wantSeq: wantSeq, write: func(ctx context.Context, s *Store) (int64, error) {
		out, err := s.Message(ctx, "w1", "m", nil, keyed(key, fp))
		switch {
		case err != nil:
			return 0, err
		case (out.Replayed != nil) != (wantSeq == 0):
			return 0, fmt.Errorf("got replayed %v, want %v", out.Replayed != nil, wantSeq == 0)
		case out.Replayed != nil:
			return 0, nil
		}
		return out.Event.Seq, nil
	}}
}

// TestIdempotentInBatch: two writes with one key in one batch: the second
// replays the first; on PostgreSQL also when the batch is rejected and
// its writes run alone.
func TestIdempotentInBatch(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name             string
		postgres, reject bool
	}{{"sqlite", false, false}, {"postgres", true, false}, {"postgres rejected batch", true, true}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := "sqlite://" + t.TempDir() + "/rf.db"
			if tt.postgres {
				url = testenv.PostgresURL(t)
			}
			s, db := openWith(t, url, Options{Committers: 1}), openRaw(t, url)
			mustPut(t, s, "w1", "x", "thing", `{}`)
			if _, err := s.Message(t.Context(), "w1", "m", nil, keyed("old", "fp")); err != nil { // seq 2
				t.Fatal(err)
			}
			writes := []queuedWrite{
				keyedMessage("a", "a", "fp", 3),
				keyedMessage("a again", "a", "fp", 0),
				keyedMessage("old again", "old", "fp", 0),
				{name: "a reused", wantErr: ErrKeyReused, write: func(ctx context.Context, s *Store) (int64, error) {
					return seqOf(s.Put(ctx, "w1", "x", "thing", nil, Precondition{}, keyed("a", "other")))
				}},
				keyedMessage("b", "b", "fp", 4),
				keyedMessage("b again", "b", "fp", 0),
			}
			if tt.reject {
				writes = append(writes[:2], append([]queuedWrite{{name: "deferred violation", write: deferredFK(t, db), wantErr: errAnyErr}}, writes[2:]...)...)
			}
			checkResults(t, writes, runQueued(t, s, writes))
			checkGapFree(t, s, "w1", 4)
		})
	}
}

// seqOf returns the seq of a write's event.
func seqOf(out Outcome, err error) (int64, error) { return out.Event.Seq, err }

// TestTrimIdempotency deletes the keys recorded before a time, however
// many, and only those: a trimmed key applies anew.
func TestTrimIdempotency(t *testing.T) {
	t.Parallel()
	forEachURL(t, func(t *testing.T, url string) {
		s, db := openStore(t, url), openRaw(t, url)
		ctx := t.Context()
		for _, k := range []struct{ room, key string }{{"w1", "k1"}, {"w1", "k2"}, {"w2", "k1"}} {
			if _, err := s.Message(ctx, k.room, "m", nil, keyed(k.key, "fp")); err != nil {
				t.Fatal(err)
			}
		}
		const bulk = 2100 // more than one DELETE of TrimKeys
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range bulk {
			if _, err := tx.ExecContext(ctx, db.bind(`INSERT INTO idempotency_keys (room, key, fingerprint, status, header, body, seq, created_at)
				VALUES ('w1', ?, 'fp', 200, '{}', ?, 1, '2020-01-01T00:00:00.000000Z')`), fmt.Sprint("bulk-", i), []byte{}); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		mid := time.Now()
		time.Sleep(5 * time.Millisecond)
		if _, err := s.Message(ctx, "w1", "m", nil, keyed("k3", "fp")); err != nil {
			t.Fatal(err)
		}
		if n, err := s.TrimIdempotency(ctx, mid); err != nil || n != bulk+3 {
			t.Fatalf("TrimIdempotency: got %d, %v, want %d", n, err, bulk+3)
		}
		if out, err := s.Message(ctx, "w1", "m", nil, keyed("k1", "fp")); err != nil || out.Replayed != nil {
			t.Errorf("k1 after the trim: got %+v, %v, want it applied anew", out, err)
		}
		if out, err := s.Message(ctx, "w1", "m", nil, keyed("k3", "fp")); err != nil || out.Replayed == nil {
			t.Errorf("k3 after the trim: got %+v, %v, want a replay", out, err)
		}
		if n, err := s.TrimIdempotency(ctx, time.Now().Add(time.Minute)); err != nil || n != 2 {
			t.Errorf("TrimIdempotency(later): got %d, %v, want 2", n, err)
		}
	})
}
