package repo

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/internal/testenv"
)

// versionRow is a row of element_versions as a test reads it.
type versionRow struct {
	Version, Seq     int64
	Type, Kind, Data string // Data "" for NULL
	Actor, OpID      string
}

// versionRows reads the kept versions of an element, oldest first.
func versionRows(t *testing.T, db rawDB, room, id string) []versionRow {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), db.bind(`SELECT version, seq, type, kind, data, actor, op_id
		FROM element_versions WHERE room = ? AND id = ? ORDER BY version`), room, id)
	if err != nil {
		t.Fatalf("versions of %s/%s: %v", room, id, err)
	}
	defer rows.Close()
	var out []versionRow
	for rows.Next() {
		var (
			v    versionRow
			data sql.NullString
		)
		if err := rows.Scan(&v.Version, &v.Seq, &v.Type, &v.Kind, &data, &v.Actor, &v.OpID); err != nil {
			t.Fatal(err)
		}
		v.Data = data.String
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// versionNumbers returns the versions of rows.
func versionNumbers(rows []versionRow) []int64 {
	var out []int64
	for _, r := range rows {
		out = append(out, r.Version)
	}
	return out
}

func openWith(t *testing.T, url string, opts Options) *Store {
	t.Helper()
	s, err := Open(t.Context(), url, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// openNodes opens a store on url, two on PostgreSQL (two nodes).
func openNodes(t *testing.T, url string) []*Store {
	t.Helper()
	nodes := []*Store{openStore(t, url)}
	if isPostgres(url) {
		nodes = append(nodes, openStore(t, url))
	}
	return nodes
}

// mergeCase is one stale write: version 1 of an element is base (kind
// thing), version 2 theirs (a PUT with If-Match "1"), then mine is a PUT
// or PATCH with If-Match "1".
type mergeCase struct {
	name         string
	base         string
	theirsKind   string // "" = thing
	theirs       string
	method       string // PUT or PATCH
	mineKind     string // PUT's kind; "" = thing
	mine         string // PUT's data or PATCH's patch
	want         string // the merged data
	wantKind     string // "" = thing
	conflicts    []string
	wantMismatch bool
}

var mergeCases = []mergeCase{
	{name: "disjoint fields, patch", base: `{"name":"a","hp":1}`, theirs: `{"name":"b","hp":1}`,
		method: "PATCH", mine: `{"hp":2}`, want: `{"name":"b","hp":2}`},
	{name: "disjoint fields, put", base: `{"name":"a","hp":1}`, theirs: `{"name":"b","hp":1}`,
		method: "PUT", mine: `{"name":"a","hp":2}`, want: `{"name":"b","hp":2}`},
	{name: "same path changed differently", base: `{"name":"a"}`, theirs: `{"name":"b"}`,
		method: "PATCH", mine: `{"name":"c"}`, conflicts: []string{"/name"}},
	{name: "same change on both sides", base: `{"name":"a","hp":1}`, theirs: `{"name":"b","hp":1}`,
		method: "PATCH", mine: `{"name":"b","hp":3}`, want: `{"name":"b","hp":3}`},
	{name: "nested disjoint", base: `{"s":{"hp":1,"mp":1},"n":1}`, theirs: `{"s":{"hp":2,"mp":1},"n":1}`,
		method: "PATCH", mine: `{"s":{"mp":3}}`, want: `{"s":{"hp":2,"mp":3},"n":1}`},
	{name: "nested conflict", base: `{"s":{"hp":1,"mp":1}}`, theirs: `{"s":{"hp":2,"mp":1}}`,
		method: "PATCH", mine: `{"s":{"hp":3}}`, conflicts: []string{"/s/hp"}},
	{name: "null deletes an untouched member", base: `{"a":1,"b":1}`, theirs: `{"a":1,"b":2}`,
		method: "PATCH", mine: `{"a":null}`, want: `{"b":2}`},
	{name: "null deletes what theirs changed", base: `{"a":1,"b":1}`, theirs: `{"a":1,"b":2}`,
		method: "PATCH", mine: `{"b":null}`, conflicts: []string{"/b"}},
	{name: "theirs deleted what mine changed", base: `{"a":1,"b":1}`, theirs: `{"a":1}`,
		method: "PATCH", mine: `{"b":5}`, conflicts: []string{"/b"}},
	{name: "put leaves out a member theirs kept", base: `{"a":1,"b":1}`, theirs: `{"a":2,"b":1}`,
		method: "PUT", mine: `{"a":1}`, want: `{"a":2}`},
	{name: "arrays are leaves", base: `{"tags":["a"]}`, theirs: `{"tags":["a","b"]}`,
		method: "PATCH", mine: `{"tags":["a","c"]}`, conflicts: []string{"/tags"}},
	{name: "an array changed on one side", base: `{"tags":["a"],"n":1}`, theirs: `{"tags":["a"],"n":2}`,
		method: "PATCH", mine: `{"tags":["x"]}`, want: `{"tags":["x"],"n":2}`},
	{name: "object against leaf", base: `{"o":{"a":1}}`, theirs: `{"o":{"a":2}}`,
		method: "PUT", mine: `{"o":"flat"}`, conflicts: []string{"/o"}},
	{name: "two conflicts and a merge", base: `{"a":1,"b":1,"c":1}`, theirs: `{"a":2,"b":2,"c":1}`,
		method: "PATCH", mine: `{"a":3,"b":3,"c":3}`, conflicts: []string{"/a", "/b"}},
	{name: "kind changed by mine", base: `{"a":1}`, theirs: `{"a":2}`,
		method: "PUT", mineKind: "other", mine: `{"a":1,"b":1}`, want: `{"a":2,"b":1}`, wantKind: "other"},
	{name: "kind changed by theirs, patch", base: `{"a":1}`, theirsKind: "other", theirs: `{"a":1}`,
		method: "PATCH", mine: `{"b":1}`, want: `{"a":1,"b":1}`, wantKind: "other"},
	{name: "kind changed by theirs, put", base: `{"a":1}`, theirsKind: "other", theirs: `{"a":1}`,
		method: "PUT", mine: `{"a":1,"b":1}`, want: `{"a":1,"b":1}`, wantKind: "other"},
	{name: "kind changed alike", base: `{"a":1}`, theirsKind: "other", theirs: `{"a":1}`,
		method: "PUT", mineKind: "other", mine: `{"a":3}`, want: `{"a":3}`, wantKind: "other"},
	{name: "kind changed differently", base: `{"a":1}`, theirsKind: "other", theirs: `{"a":1}`,
		method: "PUT", mineKind: "third", mine: `{"a":3}`, wantMismatch: true},
}

func (c mergeCase) write(ctx context.Context, s *Store, id string, pre Precondition, meta Meta) (Outcome, error) {
	if c.method == "PUT" {
		return s.Put(ctx, "w1", id, or(c.mineKind, "thing"), json.RawMessage(c.mine), pre, meta)
	}
	return s.Patch(ctx, "w1", id, json.RawMessage(c.mine), pre, meta)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// TestMerge runs the stale writes of mergeCases through the store: a
// disjoint change is written on the current version as one element.updated
// event (version type merged), a conflict or a kind changed both ways
// writes nothing.
func TestMerge(t *testing.T) {
	t.Parallel()
	forEachURL(t, func(t *testing.T, url string) {
		s, db := openStore(t, url), openRaw(t, url)
		ctx := t.Context()
		for i, c := range mergeCases {
			id := fmt.Sprint("e", i)
			mustPut(t, s, "w1", id, "thing", c.base)
			theirs, err := s.Put(ctx, "w1", id, or(c.theirsKind, "thing"), json.RawMessage(c.theirs), Precondition{IfMatch: ptr(int64(1))}, Meta{})
			if err != nil || theirs.MergedFrom != 0 {
				t.Fatalf("%s: theirs: got %+v, %v", c.name, theirs, err)
			}
			head := mustHead(t, s, "w1")
			out, err := c.write(ctx, s, id, Precondition{IfMatch: ptr(int64(1))}, Meta{OpID: "mine", Actor: "bob"})
			switch {
			case c.wantMismatch:
				wantErr(t, c.name, err, ErrVersionMismatch)
			case c.conflicts != nil:
				checkConflict(t, c.name, err, c.conflicts, theirs.Element)
			default:
				checkMerged(t, c.name, out, err, c.want, or(c.wantKind, "thing"), head)
				if got := mustGet(t, s, "w1", id); !equalElement(got, out.Element) {
					t.Errorf("%s: Get: got %+v, want %+v", c.name, got, out.Element)
				}
				rows := versionRows(t, db, "w1", id)
				want := versionRow{Version: 3, Seq: head + 1, Type: "merged", Kind: out.Element.Kind, Data: c.want, Actor: "bob", OpID: "mine"}
				if len(rows) != 3 || rows[2] != want {
					t.Errorf("%s: versions: got %+v, want 3 ending with %+v", c.name, rows, want)
				}
				continue
			}
			if got := mustHead(t, s, "w1"); got != head {
				t.Errorf("%s: head: got %d, want %d (nothing written)", c.name, got, head)
			}
			if got := mustGet(t, s, "w1", id); !equalElement(got, theirs.Element) {
				t.Errorf("%s: element: got %+v, want theirs %+v", c.name, got, theirs.Element)
			}
		}
	})
}

// checkMerged checks a merged write's outcome: version 3 of kind and data
// want, merged from 1, recorded as element.updated at head+1.
func checkMerged(t *testing.T, name string, out Outcome, err error, want, kind string, head int64) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: got error %v, want a merge", name, err)
		return
	}
	el := out.Element
	if string(el.Data) != want || el.Kind != kind || el.Version != 3 || out.MergedFrom != 1 || out.Created {
		t.Errorf("%s: got %s kind %s version %d merged from %d, want %s kind %s version 3 merged from 1",
			name, el.Data, el.Kind, el.Version, out.MergedFrom, want, kind)
	}
	var p struct {
		payloadElement
		OpID  string `json:"op_id"`
		Actor string `json:"actor"`
	}
	if err := json.Unmarshal(out.Event.Data, &p); err != nil {
		t.Fatalf("%s: payload: %v", name, err)
	}
	if out.Event.Seq != head+1 || p.Type != roomfeed.TypeUpdated || !equalElement(p.Element, el) || p.OpID != "mine" || p.Actor != "bob" {
		t.Errorf("%s: event: got seq %d %s, want seq %d element.updated of %+v by bob, op mine", name, out.Event.Seq, out.Event.Data, head+1, el)
	}
}

// checkConflict checks a conflict's paths and its current element.
func checkConflict(t *testing.T, name string, err error, paths []string, current roomfeed.Element) {
	t.Helper()
	var ce *ConflictError
	if !errors.Is(err, ErrConflict) || !errors.As(err, &ce) {
		t.Errorf("%s: got error %v, want a *ConflictError", name, err)
		return
	}
	var got []string
	for _, c := range ce.Conflicts {
		got = append(got, c.Path)
	}
	if !slices.Equal(got, paths) {
		t.Errorf("%s: conflicts: got %v, want %v", name, got, paths)
	}
	if !equalElement(ce.Current, current) {
		t.Errorf("%s: current: got %+v, want %+v", name, ce.Current, current)
	}
}

// TestMergeConflictSides: a conflict says what each side holds at the
// path; a side that removed the member is absent.
func TestMergeConflictSides(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		mustPut(t, s, "w1", "c1", "thing", `{"a":1,"b":1}`)
		mustPut(t, s, "w1", "c1", "thing", `{"a":2}`)
		_, err := s.Patch(t.Context(), "w1", "c1", json.RawMessage(`{"a":3,"b":4}`), Precondition{IfMatch: ptr(int64(1))}, Meta{})
		var ce *ConflictError
		if !errors.As(err, &ce) {
			t.Fatalf("got %v, want a *ConflictError", err)
		}
		got, _ := json.Marshal(ce.Conflicts)
		want := `[{"path":"/a","base":1,"theirs":2,"mine":3},{"path":"/b","base":1,"mine":4}]`
		if string(got) != want {
			t.Errorf("conflicts: got %s, want %s", got, want)
		}
	})
}

// TestMergeBase: only a kept version of the element's current life is a
// base; others are 412, as is any stale Delete.
func TestMergeBase(t *testing.T) {
	t.Parallel()
	forEachURL(t, func(t *testing.T, url string) {
		s := openWith(t, url, Options{VersionsKeep: 3})
		ctx := t.Context()
		for i := range 5 { // versions 1..5; 3, 4 and 5 kept
			mustPut(t, s, "w1", "x", "thing", fmt.Sprintf(`{"n":%d}`, i+1))
		}
		patch := func(ifMatch int64, p string) (Outcome, error) {
			return s.Patch(ctx, "w1", "x", json.RawMessage(p), Precondition{IfMatch: ptr(ifMatch)}, Meta{})
		}
		for _, base := range []int64{1, 2, 7} {
			_, err := patch(base, `{"m":1}`)
			wantErr(t, fmt.Sprintf("patch from version %d", base), err, ErrVersionMismatch)
		}
		if out, err := patch(3, `{"m":1}`); err != nil || out.MergedFrom != 3 || string(out.Element.Data) != `{"n":5,"m":1}` {
			t.Fatalf("patch from kept version 3: got %+v, %v", out, err)
		} // version 6
		_, err := s.Delete(ctx, "w1", "x", Precondition{IfMatch: ptr(int64(5))}, Meta{})
		wantErr(t, "stale delete", err, ErrVersionMismatch)

		// Kept versions from before a delete belong to another life of the
		// id: a client holding one must not merge into the new element.
		if _, err := s.Delete(ctx, "w1", "x", Precondition{}, Meta{}); err != nil { // tombstone 7
			t.Fatal(err)
		}
		mustPut(t, s, "w1", "x", "thing", `{"n":8}`)
		for _, base := range []int64{6, 7} {
			_, err := patch(base, `{"m":1}`)
			wantErr(t, fmt.Sprintf("patch from version %d, before the delete", base), err, ErrVersionMismatch)
		}
		mustPut(t, s, "w1", "x", "thing", `{"n":9}`)
		if out, err := patch(8, `{"m":1}`); err != nil || out.MergedFrom != 8 || string(out.Element.Data) != `{"n":9,"m":1}` {
			t.Fatalf("patch from version 8: got %+v, %v", out, err)
		}
		// If-None-Match: * never merges.
		_, err = s.Put(ctx, "w1", "x", "thing", json.RawMessage(`{}`), Precondition{IfNoneMatchAny: true}, Meta{})
		wantErr(t, "If-None-Match: *", err, ErrExists)
	})
}

// mergeWrites are the writes of TestMergeInBatch: element x holds version
// 1 {"a":1,"b":1,"c":1} at seq 1; keep is Options.VersionsKeep.
func mergeWrites(keep int) []queuedWrite {
	patch := func(name string, ifMatch int64, p string) queuedWrite {
		return queuedWrite{name: name, write: patchWrite("w1", "x", p, Precondition{IfMatch: ptr(ifMatch)})}
	}
	w := []queuedWrite{
		patch("patch a", 1, `{"a":2}`),
		patch("patch b from 1", 1, `{"b":2}`),
		patch("patch c from 2, written in the batch", 2, `{"c":2}`),
		patch("patch a from 1 again", 1, `{"a":3}`),
		{name: "put y stale", write: putWrite("w1", "y", Precondition{IfMatch: ptr(int64(1))}), wantErr: ErrVersionMismatch},
		patch("patch d from the current version", 4, `{"d":1}`),
	}
	w[0].wantSeq = 2
	w[3].wantErr = ErrConflict
	if keep == 1 { // version 1 is dropped by the first write, 2 by the second
		w[1].wantErr = ErrVersionMismatch
		w[2].wantSeq = 3
		w[5].wantErr = ErrVersionMismatch
		w[3].wantErr = ErrVersionMismatch
		return w
	}
	w[1].wantSeq, w[2].wantSeq, w[5].wantSeq = 3, 4, 5
	return w
}

// TestMergeInBatch: stale writes queued together (one batch on both
// stores) merge from versions read with the batch or written by its
// earlier writes, and drop versions in order; on PostgreSQL a batch
// PostgreSQL rejects runs its writes alone with the same outcomes.
func TestMergeInBatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		postgres bool
		keep     int
		reject   bool
		want     string
		versions []int64
	}{
		{"sqlite", false, 0, false, `{"a":2,"b":2,"c":2,"d":1}`, []int64{1, 2, 3, 4, 5}},
		{"sqlite keep 1", false, 1, false, `{"a":2,"b":1,"c":2}`, []int64{3}},
		{"postgres", true, 0, false, `{"a":2,"b":2,"c":2,"d":1}`, []int64{1, 2, 3, 4, 5}},
		{"postgres keep 1", true, 1, false, `{"a":2,"b":1,"c":2}`, []int64{3}},
		{"postgres rejected batch", true, 0, true, `{"a":2,"b":2,"c":2,"d":1}`, []int64{1, 2, 3, 4, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := "sqlite://" + t.TempDir() + "/rf.db"
			if tt.postgres {
				url = testenv.PostgresURL(t)
			}
			s, db := openWith(t, url, Options{Committers: 1, VersionsKeep: tt.keep}), openRaw(t, url)
			mustPut(t, s, "w1", "x", "thing", `{"a":1,"b":1,"c":1}`)
			writes := mergeWrites(tt.keep)
			if tt.reject {
				writes = slices.Insert(writes, 2, queuedWrite{name: "deferred violation", write: deferredFK(t, db), wantErr: errAnyErr})
			}
			checkResults(t, writes, runQueued(t, s, writes))
			if got := mustGet(t, s, "w1", "x"); string(got.Data) != tt.want {
				t.Errorf("x: got %s, want %s", got.Data, tt.want)
			}
			rows := versionRows(t, db, "w1", "x")
			if got := versionNumbers(rows); !slices.Equal(got, tt.versions) {
				t.Errorf("versions kept: got %v, want %v", got, tt.versions)
			}
			for _, r := range rows {
				if r.Version > 1 && r.Seq != r.Version {
					t.Errorf("version %d: got seq %d, want %d", r.Version, r.Seq, r.Version)
				}
			}
			checkGapFree(t, s, "w1", mustHead(t, s, "w1"))
		})
	}
}

// TestConcurrentMerges: writers that each set their own member with the
// If-Match they read, at once (batches form on both stores, and on two
// PostgreSQL nodes), are never refused: every member is there.
func TestConcurrentMerges(t *testing.T) {
	t.Parallel()
	const writers = 40
	forEachURL(t, func(t *testing.T, url string) {
		nodes := openNodes(t, url)
		mustPut(t, nodes[0], "w1", "x", "thing", `{}`)
		runWriters(t, writers, 1, func(w, _ int) error {
			s := nodes[w%len(nodes)]
			cur, err := s.Get(t.Context(), "w1", "x")
			if err != nil {
				return err
			}
			_, err = s.Patch(t.Context(), "w1", "x", json.RawMessage(fmt.Sprintf(`{"m%d":%d}`, w, w)), Precondition{IfMatch: &cur.Version}, Meta{})
			return err
		})
		got := mustGet(t, nodes[0], "w1", "x")
		var data map[string]int
		if err := json.Unmarshal(got.Data, &data); err != nil {
			t.Fatal(err)
		}
		if len(data) != writers || got.Version != writers+1 {
			t.Errorf("x: got version %d with %d members, want version %d with %d", got.Version, len(data), writers+1, writers)
		}
		checkRoomHistory(t, nodes[0], nodes[0], "w1")
	})
}
