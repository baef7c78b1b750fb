package repo

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed"
)

// foldEvents folds events (in seq order) into the elements they leave,
// sorted by id: what a subscriber that applied them holds.
func foldEvents(t *testing.T, evs []roomfeed.Event) []roomfeed.Element {
	t.Helper()
	state := map[string]roomfeed.Element{}
	for _, ev := range evs {
		if !ev.IsElement() {
			continue
		}
		var p struct {
			Element roomfeed.Element `json:"element"`
		}
		if err := json.Unmarshal(ev.Data, &p); err != nil {
			t.Fatalf("event %d: %v", ev.Seq, err)
		}
		if ev.Type == roomfeed.TypeDeleted {
			delete(state, p.Element.ID)
		} else {
			state[p.Element.ID] = p.Element
		}
	}
	els := make([]roomfeed.Element, 0, len(state))
	for _, el := range state {
		els = append(els, el)
	}
	slices.SortFunc(els, func(a, b roomfeed.Element) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return els
}

func equalElements(a, b []roomfeed.Element) bool {
	return slices.EqualFunc(a, b, equalElement)
}

// checkTimeTravel checks the room as of every k-th seq (and 0 and the head)
// against the fold of evs, all of the room's events, up to it. A seq the
// store cannot reach must be below the oldest seq it names, which must be
// reachable. It returns how many seqs were reachable.
func checkTimeTravel(t *testing.T, s *Store, room string, evs []roomfeed.Event, k int) (reached int) {
	t.Helper()
	head := int64(len(evs))
	for at := int64(0); at <= head; at++ {
		if at%int64(k) != 0 && at != head {
			continue
		}
		snap, err := s.SnapshotAt(t.Context(), room, at)
		var trimmed *TrimmedError
		if errors.As(err, &trimmed) {
			if !errors.Is(err, ErrSnapshotTrimmed) || trimmed.Oldest <= at || trimmed.Oldest > head {
				t.Fatalf("SnapshotAt(%d): got %v (oldest %d), want history trimmed with an oldest seq in (%d, %d]", at, err, trimmed.Oldest, at, head)
			}
			if _, err := s.SnapshotAt(t.Context(), room, trimmed.Oldest); err != nil {
				t.Fatalf("SnapshotAt(%d), the oldest reachable seq named: %v", trimmed.Oldest, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("SnapshotAt(%d): %v", at, err)
		}
		reached++
		if snap.Cursor != at {
			t.Errorf("SnapshotAt(%d): got cursor %d, want %d", at, snap.Cursor, at)
		}
		if want := foldEvents(t, evs[:at]); !equalElements(snap.Elements, want) {
			t.Fatalf("SnapshotAt(%d):\n got %s\nwant %s", at, mustJSON(t, snap.Elements), mustJSON(t, want))
		}
	}
	if _, err := s.SnapshotAt(t.Context(), room, head+1); !errors.Is(err, ErrAhead) {
		t.Errorf("SnapshotAt(head+1): got %v, want ErrAhead", err)
	}
	return reached
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// modelSeed is the seed of the randomized history tests:
// ROOMFEED_HISTORY_SEED replays a run.
func modelSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("ROOMFEED_HISTORY_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("ROOMFEED_HISTORY_SEED: %v", err)
		}
	}
	t.Logf("seed %d (replay with ROOMFEED_HISTORY_SEED=%d)", seed, seed)
	return seed
}

// modelVersion is a version as the model expects it: its data, nil for a
// deletion.
type modelVersion struct {
	kind string
	data json.RawMessage
}

// historyModel is what the writes of the randomized test should have left:
// every version of every element, and which exist.
type historyModel struct {
	versions map[string][]modelVersion // id -> versions 1..n
	exists   map[string]bool
	keep     int
}

func (m *historyModel) latest(id string) int64 { return int64(len(m.versions[id])) }

// expectRevert is what reverting id to version to must do: an error, or
// nil and the version restored.
func (m *historyModel) expectRevert(id string, to int64) (modelVersion, error) {
	n := m.latest(id)
	switch {
	case n == 0:
		return modelVersion{}, ErrNotFound
	case to < 1 || to > n:
		return modelVersion{}, ErrNoVersion
	case to <= n-int64(m.keep):
		return modelVersion{}, ErrVersionsTrimmed
	case m.versions[id][to-1].data == nil:
		return modelVersion{}, ErrDeletedVersion
	}
	return m.versions[id][to-1], nil
}

// randomWrite makes one random write on room and checks its outcome
// against the model, which it updates.
func (m *historyModel) randomWrite(t *testing.T, s *Store, rng *rand.Rand, room string, step int) {
	t.Helper()
	ctx := t.Context()
	id := "e" + strconv.Itoa(rng.IntN(5))
	data := json.RawMessage(fmt.Sprintf(`{"step":%d,"k%d":%d,"n":{"a":%d}}`, step, rng.IntN(3), rng.IntN(100), rng.IntN(3)))
	kinds := []string{"character", "place"}
	var (
		out Outcome
		err error
	)
	switch op := rng.IntN(10); {
	case op < 3:
		kind := kinds[rng.IntN(2)]
		out, err = s.Put(ctx, room, id, kind, data, Precondition{}, Meta{Actor: "model"})
		if err == nil {
			m.versions[id] = append(m.versions[id], modelVersion{kind, out.Element.Data})
			m.exists[id] = true
		}
	case op < 5:
		out, err = s.Patch(ctx, room, id, data, Precondition{}, Meta{})
		if !m.exists[id] {
			wantErr(t, "Patch of a missing element", err, ErrNotFound)
			return
		}
		if err == nil {
			m.versions[id] = append(m.versions[id], modelVersion{out.Element.Kind, out.Element.Data})
		}
	case op < 6 && m.exists[id] && m.latest(id) > 1:
		// A stale If-Match: merged or a conflict.
		base := m.latest(id) - 1
		out, err = s.Patch(ctx, room, id, json.RawMessage(fmt.Sprintf(`{"m%d":%d}`, step, step)), Precondition{IfMatch: &base}, Meta{})
		if err == nil {
			m.versions[id] = append(m.versions[id], modelVersion{out.Element.Kind, out.Element.Data})
		}
		if errors.Is(err, ErrConflict) || errors.Is(err, ErrVersionMismatch) {
			return
		}
	case op < 7:
		out, err = s.Delete(ctx, room, id, Precondition{}, Meta{})
		if !m.exists[id] {
			wantErr(t, "Delete of a missing element", err, ErrNotFound)
			return
		}
		if err == nil {
			m.versions[id] = append(m.versions[id], modelVersion{out.Element.Kind, nil})
			m.exists[id] = false
		}
	case op < 9:
		to := rng.Int64N(m.latest(id)+2) + int64(rng.IntN(2)) - 1 // -1 .. latest+1
		want, wantE := m.expectRevert(id, to)
		out, err = s.Revert(ctx, room, id, to, Precondition{}, Meta{Actor: "undo"})
		if wantE != nil {
			wantErr(t, fmt.Sprintf("Revert %s to %d", id, to), err, wantE)
			return
		}
		if err != nil {
			t.Fatalf("Revert %s to %d: %v", id, to, err)
		}
		if out.Element.Kind != want.kind || string(out.Element.Data) != string(want.data) || out.Created == m.exists[id] {
			t.Fatalf("Revert %s to %d: got %s %s created %v, want %s %s created %v",
				id, to, out.Element.Kind, out.Element.Data, out.Created, want.kind, want.data, !m.exists[id])
		}
		m.versions[id] = append(m.versions[id], want)
		m.exists[id] = true
	default:
		out, err = s.Message(ctx, room, "chat", json.RawMessage(`{"step":`+strconv.Itoa(step)+`}`), Meta{})
		if err != nil {
			t.Fatalf("Message: %v", err)
		}
		return
	}
	if err != nil {
		t.Fatalf("step %d on %s: %v", step, id, err)
	}
	if out.Element.Version != m.latest(id) {
		t.Fatalf("step %d on %s: got version %d, want %d", step, id, out.Element.Version, m.latest(id))
	}
}

// TestTimeTravelModel: random histories of creates, replacements, patches,
// merges, deletes, reverts and messages; the room as of every k-th seq
// equals the fold of its events up to that seq, on both dialects, with
// every version kept and with few kept (then the seqs it cannot reach are
// 410s naming a seq it can). Reverts are checked against a model of every
// version.
func TestTimeTravelModel(t *testing.T) {
	t.Parallel()
	seed := modelSeed(t)
	for _, keep := range []int{1000, 3} {
		t.Run("keep="+strconv.Itoa(keep), func(t *testing.T) {
			t.Parallel()
			forEachURL(t, func(t *testing.T, url string) {
				s := openWith(t, url, Options{VersionsKeep: keep})
				rng := rand.New(rand.NewPCG(seed, uint64(keep)))
				m := &historyModel{versions: map[string][]modelVersion{}, exists: map[string]bool{}, keep: keep}
				for step := range 300 {
					m.randomWrite(t, s, rng, "w1", step)
				}
				evs := allEvents(t, s, "w1", 0)
				reached := checkTimeTravel(t, s, "w1", evs, 3)
				if keep >= 300 && reached != len(evs)/3+1+min(1, len(evs)%3) {
					t.Errorf("with every version kept: got %d seqs reachable, want every one checked", reached)
				}
				if reached == 0 {
					t.Errorf("no seq reachable, want at least the head")
				}
				// Retention of events changes nothing: the versions are kept.
				if _, err := s.Trim(t.Context(), "w1", 1, 0, int64(len(evs))); err != nil {
					t.Fatal(err)
				}
				if got := checkTimeTravel(t, s, "w1", evs, 3); got != reached {
					t.Errorf("after trimming the events: got %d seqs reachable, want %d as before", got, reached)
				}
			})
		})
	}
}

// TestTimeTravelConcurrent: writers racing on a few elements (in batches
// on both stores), reverts among them; the room as of every seq equals
// the fold.
func TestTimeTravelConcurrent(t *testing.T) {
	t.Parallel()
	forEachURL(t, func(t *testing.T, url string) {
		s := openStore(t, url)
		ctx := t.Context()
		runWriters(t, 8, 15, func(w, i int) error {
			id := "e" + strconv.Itoa((w+i)%3)
			var err error
			switch i % 5 {
			case 0, 1:
				_, err = s.Put(ctx, "w1", id, "thing", json.RawMessage(fmt.Sprintf(`{"w":%d,"i":%d}`, w, i)), Precondition{}, Meta{})
			case 2:
				_, err = s.Patch(ctx, "w1", id, json.RawMessage(fmt.Sprintf(`{"p%d":%d}`, w, i)), Precondition{}, Meta{})
			case 3:
				_, err = s.Delete(ctx, "w1", id, Precondition{}, Meta{})
			case 4:
				_, err = s.Revert(ctx, "w1", id, 1, Precondition{}, Meta{})
			}
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			return err
		})
		evs := allEvents(t, s, "w1", 0)
		if got := checkTimeTravel(t, s, "w1", evs, 1); got != len(evs)+1 {
			t.Errorf("got %d seqs reachable, want all %d", got, len(evs)+1)
		}
	})
}

func mustRevert(t *testing.T, s *Store, room, id string, to int64) Outcome {
	t.Helper()
	out, err := s.Revert(t.Context(), room, id, to, Precondition{}, Meta{Actor: "ann"})
	if err != nil {
		t.Fatalf("Revert %s to %d: %v", id, to, err)
	}
	return out
}

// revertedFrom reads reverted_from from an event's data (0 when absent).
func revertedFrom(t *testing.T, ev roomfeed.Event) int64 {
	t.Helper()
	var p struct {
		RevertedFrom int64 `json:"reverted_from"`
	}
	if err := json.Unmarshal(ev.Data, &p); err != nil {
		t.Fatal(err)
	}
	return p.RevertedFrom
}

// TestRevert: a revert restores a version's kind and data as the next
// version (type reverted), of a delete (re-creating the element), of a
// merged version and of a revert; its event says which version it wrote
// again; the refusals.
func TestRevert(t *testing.T) {
	t.Parallel()
	forEachURL(t, func(t *testing.T, url string) {
		s, db := openWith(t, url, Options{VersionsKeep: 5}), openRaw(t, url)
		ctx := t.Context()
		mustPut(t, s, "w1", "c1", "character", `{"name":"Aria","hp":3}`) // v1
		mustPut(t, s, "w1", "c1", "place", `{"name":"Harbor"}`)          // v2
		base := int64(2)
		if _, err := s.Patch(ctx, "w1", "c1", json.RawMessage(`{"hp":4}`), Precondition{}, Meta{}); err != nil { // v3
			t.Fatal(err)
		}
		merged, err := s.Patch(ctx, "w1", "c1", json.RawMessage(`{"x":1}`), Precondition{IfMatch: &base}, Meta{}) // v4 merged
		if err != nil || merged.MergedFrom != 2 {
			t.Fatalf("merge: got %+v, %v", merged, err)
		}
		if _, err := s.Delete(ctx, "w1", "c1", Precondition{}, Meta{}); err != nil { // v5
			t.Fatal(err)
		}

		// Of a delete: version 1 comes back as version 6, created.
		out := mustRevert(t, s, "w1", "c1", 1)
		if !out.Created || out.Element.Version != 6 || out.Element.Kind != "character" || string(out.Element.Data) != `{"name":"Aria","hp":3}` {
			t.Fatalf("revert of a delete: got %+v", out)
		}
		if out.Event.Type != roomfeed.TypeCreated || revertedFrom(t, out.Event) != 1 {
			t.Errorf("revert of a delete: got event %s %s, want element.created with reverted_from 1", out.Event.Type, out.Event.Data)
		}
		if got := mustGet(t, s, "w1", "c1"); !equalElement(got, out.Element) {
			t.Errorf("Get: got %+v, want %+v", got, out.Element)
		}
		// Of the merged version.
		out = mustRevert(t, s, "w1", "c1", 4)
		if out.Created || out.Element.Version != 7 || out.Element.Kind != "place" || string(out.Element.Data) != `{"name":"Harbor","hp":4,"x":1}` {
			t.Fatalf("revert of a merge: got %+v %s", out, out.Element.Data)
		}
		if out.Event.Type != roomfeed.TypeUpdated || revertedFrom(t, out.Event) != 4 {
			t.Errorf("revert of a merge: got event %s %s, want element.updated with reverted_from 4", out.Event.Type, out.Event.Data)
		}
		// Of a revert.
		out = mustRevert(t, s, "w1", "c1", 6)
		if out.Element.Version != 8 || string(out.Element.Data) != `{"name":"Aria","hp":3}` || revertedFrom(t, out.Event) != 6 {
			t.Fatalf("revert of a revert: got %+v %s", out, out.Event.Data)
		}
		rows := versionRows(t, db, "w1", "c1")
		if got := rows[len(rows)-1]; got.Type != "reverted" || got.Actor != "ann" || got.Version != 8 {
			t.Errorf("newest version: got %+v, want type reverted by ann", got)
		}

		eight, seven := int64(8), int64(7)
		for _, c := range []struct {
			name string
			id   string
			to   int64
			pre  Precondition
			want error
		}{
			{"stale If-Match", "c1", 1, Precondition{IfMatch: &seven}, ErrVersionMismatch},
			{"a deletion", "c1", 5, Precondition{IfMatch: &eight}, ErrDeletedVersion},
			{"beyond the newest", "c1", 9, Precondition{}, ErrNoVersion},
			{"version 0", "c1", 0, Precondition{}, ErrNoVersion},
			{"not kept", "c1", 3, Precondition{}, ErrVersionsTrimmed},
			{"never existed", "nobody", 1, Precondition{}, ErrNotFound},
			{"If-Match on one that never existed", "nobody", 1, Precondition{IfMatch: &eight}, ErrVersionMismatch},
		} {
			head := mustHead(t, s, "w1")
			_, err := s.Revert(ctx, "w1", c.id, c.to, c.pre, Meta{})
			wantErr(t, c.name, err, c.want)
			if got := mustHead(t, s, "w1"); got != head {
				t.Errorf("%s: head moved from %d to %d", c.name, head, got)
			}
		}
		var trimmed *TrimmedError
		if _, err := s.Revert(ctx, "w1", "c1", 1, Precondition{}, Meta{}); !errors.As(err, &trimmed) || trimmed.Oldest != 4 {
			t.Errorf("revert to a trimmed version: got %v, want a TrimmedError naming version 4", err)
		}
		// If-Match of a deleted element's newest version, its deletion.
		if _, err := s.Delete(ctx, "w1", "c1", Precondition{}, Meta{}); err != nil { // v9
			t.Fatal(err)
		}
		nine := int64(9)
		if out, err := s.Revert(ctx, "w1", "c1", 8, Precondition{IfMatch: &nine}, Meta{}); err != nil || !out.Created || out.Element.Version != 10 {
			t.Errorf("revert of a delete with If-Match of the deletion: got %+v, %v", out, err)
		}
	})
}

// TestRevertIdempotent: a revert with an idempotency key is applied once;
// its retry gets the recorded answer.
func TestRevertIdempotent(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		mustPut(t, s, "w1", "c1", "character", `{"v":1}`)
		mustPut(t, s, "w1", "c1", "character", `{"v":2}`)
		first, err := s.Revert(ctx, "w1", "c1", 1, Precondition{}, keyed("undo-1", "fp"))
		if err != nil || first.Replayed != nil {
			t.Fatalf("first: got %+v, %v", first, err)
		}
		again, err := s.Revert(ctx, "w1", "c1", 1, Precondition{}, keyed("undo-1", "fp"))
		if err != nil || again.Replayed == nil {
			t.Fatalf("retry: got %+v, %v, want a replay", again, err)
		}
		if got := mustHead(t, s, "w1"); got != 3 {
			t.Errorf("head: got %d, want 3 (one revert)", got)
		}
		_, err = s.Revert(ctx, "w1", "c1", 2, Precondition{}, keyed("undo-1", "other"))
		wantErr(t, "key reused", err, ErrKeyReused)
	})
}

// TestHistoryPaging: the versions newest first, in pages, a deleted
// element's included; paging past the kept ones is a TrimmedError naming
// the oldest kept.
func TestHistoryPaging(t *testing.T) {
	t.Parallel()
	forEachURL(t, func(t *testing.T, url string) {
		s := openWith(t, url, Options{VersionsKeep: 6})
		ctx := t.Context()
		for i := range 7 {
			if _, err := s.Put(ctx, "w1", "c1", "character", json.RawMessage(fmt.Sprintf(`{"i":%d}`, i+1)), Precondition{}, Meta{Actor: "ann", OpID: "op" + strconv.Itoa(i+1)}); err != nil {
				t.Fatal(err)
			}
		}
		mustPut(t, s, "w1", "other", "place", `{}`)                                              // seq 8
		if _, err := s.Delete(ctx, "w1", "c1", Precondition{}, Meta{Actor: "bob"}); err != nil { // v8, seq 9
			t.Fatal(err)
		}
		var got []int64
		before, pages := int64(0), 0
		for {
			h, err := s.History(ctx, "w1", "c1", before, 2)
			if err != nil {
				t.Fatalf("History before %d: %v", before, err)
			}
			pages++
			for _, v := range h.Versions {
				got = append(got, v.Version)
			}
			if h.Next == 0 {
				break
			}
			before = h.Next
		}
		if want := []int64{8, 7, 6, 5, 4, 3}; !slices.Equal(got, want) || pages != 3 {
			t.Errorf("got versions %v in %d pages, want %v in 3", got, pages, want)
		}
		h, err := s.History(ctx, "w1", "c1", 0, 2)
		if err != nil {
			t.Fatal(err)
		}
		if del, upd := h.Versions[0], h.Versions[1]; del.Type != "deleted" || del.Data != nil || del.Seq != 9 || del.Actor != "bob" ||
			upd.Type != "updated" || string(upd.Data) != `{"i":7}` || upd.Seq != 7 || upd.OpID != "op7" || upd.Kind != "character" {
			t.Errorf("newest two: got %+v", h.Versions)
		}
		var trimmed *TrimmedError
		if _, err := s.History(ctx, "w1", "c1", 3, 10); !errors.As(err, &trimmed) || !errors.Is(err, ErrVersionsTrimmed) || trimmed.Oldest != 3 {
			t.Errorf("before the oldest kept: got %v, want versions trimmed naming 3", err)
		}
		if h, err := s.History(ctx, "w1", "c1", 4, 10); err != nil || len(h.Versions) != 1 || h.Next != 0 {
			t.Errorf("before 4: got %+v, %v, want version 3 alone", h, err)
		}
		if h, err := s.History(ctx, "w1", "other", 1, 10); err != nil || len(h.Versions) != 0 || h.Next != 0 {
			t.Errorf("before 1: got %+v, %v, want nothing", h, err)
		}
		_, err = s.History(ctx, "w1", "nobody", 0, 10)
		wantErr(t, "History of an element that never existed", err, ErrNotFound)
	})
}

// TestSnapshotAtTrimmedVersions: an element that lost old versions limits
// how far back the room reaches, to the seq of its oldest kept version.
func TestSnapshotAtTrimmedVersions(t *testing.T) {
	t.Parallel()
	forEachURL(t, func(t *testing.T, url string) {
		s := openWith(t, url, Options{VersionsKeep: 2})
		mustPut(t, s, "w1", "a", "thing", `{"v":1}`) // seq 1
		mustPut(t, s, "w1", "b", "thing", `{"v":1}`) // seq 2
		mustPut(t, s, "w1", "b", "thing", `{"v":2}`) // seq 3
		mustPut(t, s, "w1", "b", "thing", `{"v":3}`) // seq 4: b keeps versions 2 (seq 3) and 3
		_, err := s.SnapshotAt(t.Context(), "w1", 2)
		var trimmed *TrimmedError
		if !errors.As(err, &trimmed) || trimmed.Oldest != 3 {
			t.Fatalf("SnapshotAt(2): got %v, want history trimmed naming seq 3", err)
		}
		snap, err := s.SnapshotAt(t.Context(), "w1", 3)
		if err != nil || len(snap.Elements) != 2 || string(snap.Elements[1].Data) != `{"v":2}` {
			t.Fatalf("SnapshotAt(3): got %+v, %v", snap, err)
		}
		if snap, err := s.SnapshotAt(t.Context(), "empty", 0); err != nil || len(snap.Elements) != 0 || snap.Elements == nil {
			t.Errorf("SnapshotAt(0) of an empty room: got %+v, %v, want no elements", snap, err)
		}
		if _, err := s.SnapshotAt(t.Context(), "empty", 1); !errors.Is(err, ErrAhead) {
			t.Errorf("SnapshotAt(1) of an empty room: got %v, want ErrAhead", err)
		}
	})
}

// TestTimeTravelAfterUpgrade: elements kept from before versions were
// recorded (migration 000004 gave their current version seq 0) and
// deletions from then are known from the upgrade on: the room reaches back
// to the seq before its first element write since, and not beyond.
func TestTimeTravelAfterUpgrade(t *testing.T) {
	t.Parallel()
	forEachURL(t, func(t *testing.T, url string) {
		ctx := t.Context()
		migrateTo(t, url, 3)
		db := openRaw(t, url)
		const at = "2026-01-01T00:00:00.000000Z"
		db.exec(t, `INSERT INTO rooms (room, seq, updated_at) VALUES ('r', 5, ?)`, at)
		db.exec(t, `INSERT INTO elements (room, id, kind, version, data, updated_at) VALUES ('r', 'a', 'thing', 2, '{"a":2}', ?)`, at)
		db.exec(t, `INSERT INTO elements (room, id, kind, version, data, updated_at) VALUES ('r', 'b', 'thing', 1, '{"b":1}', ?)`, at)
		db.exec(t, `INSERT INTO tombstones (room, id, version) VALUES ('r', 'gone', 2)`)
		s := openStore(t, url)

		names := func(at int64) (string, int64) {
			t.Helper()
			snap, err := s.SnapshotAt(ctx, "r", at)
			var trimmed *TrimmedError
			if errors.As(err, &trimmed) {
				return "", trimmed.Oldest
			}
			if err != nil {
				t.Fatalf("SnapshotAt(%d): %v", at, err)
			}
			var out []string
			for _, el := range snap.Elements {
				out = append(out, el.ID+string(el.Data))
			}
			return fmt.Sprint(out), 0
		}
		check := func(at int64, want string, wantOldest int64) {
			t.Helper()
			if got, oldest := names(at); got != want || oldest != wantOldest {
				t.Errorf("at %d: got %q (oldest %d), want %q (oldest %d)", at, got, oldest, want, wantOldest)
			}
		}
		check(5, `[a{"a":2} b{"b":1}]`, 0) // the head
		check(4, "", 5)
		if _, err := s.Message(ctx, "r", "chat", nil, Meta{}); err != nil { // 6
			t.Fatal(err)
		}
		check(5, "", 6)                             // no element written since the upgrade: the head alone
		mustPut(t, s, "r", "b", "thing", `{"b":2}`) // 7
		mustPut(t, s, "r", "c", "thing", `{"c":1}`) // 8
		check(5, "", 6)
		check(6, `[a{"a":2} b{"b":1}]`, 0)
		check(7, `[a{"a":2} b{"b":2}]`, 0)
		check(8, `[a{"a":2} b{"b":2} c{"c":1}]`, 0)

		h, err := s.History(ctx, "r", "a", 0, 10)
		if err != nil || len(h.Versions) != 1 || h.Versions[0].Seq != 0 || h.Versions[0].Version != 2 {
			t.Errorf("History of a: got %+v, %v, want version 2 of seq 0 alone", h, err)
		}
		if h, err := s.History(ctx, "r", "gone", 0, 10); err != nil || len(h.Versions) != 0 {
			t.Errorf("History of an element deleted before the upgrade: got %+v, %v, want no versions", h, err)
		}
		var trimmed *TrimmedError
		if _, err := s.Revert(ctx, "r", "a", 1, Precondition{}, Meta{}); !errors.As(err, &trimmed) || trimmed.Oldest != 2 {
			t.Errorf("Revert to a version never recorded: got %v, want versions trimmed naming 2", err)
		}
		if out, err := s.Revert(ctx, "r", "a", 2, Precondition{}, Meta{}); err != nil || string(out.Element.Data) != `{"a":2}` || out.Element.Version != 3 {
			t.Errorf("Revert to the version kept by the upgrade: got %+v, %v", out, err)
		}
	})
}
