package repo

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"testing"
)

// TestVersionsKept: each write of an element records its version (seq,
// type, kind, data, actor, op id), the newest VersionsKeep are kept per
// element whatever the event retention does, and a deleted element keeps
// them, its deletion included.
func TestVersionsKept(t *testing.T) {
	t.Parallel()
	forEachURL(t, func(t *testing.T, url string) {
		s, db := openWith(t, url, Options{VersionsKeep: 3}), openRaw(t, url)
		ctx := t.Context()
		meta := Meta{OpID: "op", Actor: "ann"}
		for i := range 10 {
			data := json.RawMessage(fmt.Sprintf(`{"i":%d}`, i+1))
			if i%2 == 1 {
				if _, err := s.Patch(ctx, "w1", "x", data, Precondition{}, meta); err != nil {
					t.Fatal(err)
				}
			} else if _, err := s.Put(ctx, "w1", "x", "thing", data, Precondition{}, meta); err != nil {
				t.Fatal(err)
			}
		}
		mustPut(t, s, "w1", "y", "other", `{"y":1}`) // seq 11
		mustPut(t, s, "w1", "y", "other", `{"y":2}`) // seq 12
		want := []versionRow{
			{Version: 8, Seq: 8, Type: "updated", Kind: "thing", Data: `{"i":8}`, Actor: "ann", OpID: "op"},
			{Version: 9, Seq: 9, Type: "updated", Kind: "thing", Data: `{"i":9}`, Actor: "ann", OpID: "op"},
			{Version: 10, Seq: 10, Type: "updated", Kind: "thing", Data: `{"i":10}`, Actor: "ann", OpID: "op"},
		}
		if got := versionRows(t, db, "w1", "x"); !slices.Equal(got, want) {
			t.Errorf("x: got %+v, want %+v", got, want)
		}
		wantY := []versionRow{
			{Version: 1, Seq: 11, Type: "created", Kind: "other", Data: `{"y":1}`},
			{Version: 2, Seq: 12, Type: "updated", Kind: "other", Data: `{"y":2}`},
		}
		if got := versionRows(t, db, "w1", "y"); !slices.Equal(got, wantY) {
			t.Errorf("y: got %+v, want %+v", got, wantY)
		}

		// Trimming the whole event history leaves the versions alone.
		if n, err := s.Trim(ctx, "w1", 1, 0, 12); err != nil || n != 11 {
			t.Fatalf("Trim: got %d, %v, want 11 events deleted", n, err)
		}
		if got := versionRows(t, db, "w1", "x"); !slices.Equal(got, want) {
			t.Errorf("x after Trim: got %+v, want %+v", got, want)
		}

		// A deletion is a version too (no data, the last kind).
		if _, err := s.Delete(ctx, "w1", "x", Precondition{}, Meta{Actor: "bob"}); err != nil {
			t.Fatal(err)
		}
		want = append(want[1:], versionRow{Version: 11, Seq: 13, Type: "deleted", Kind: "thing", Actor: "bob"})
		if got := versionRows(t, db, "w1", "x"); !slices.Equal(got, want) {
			t.Errorf("x after Delete: got %+v, want %+v", got, want)
		}
	})
}

// TestVersionsKeptConcurrent: concurrent writers (in batches on both
// stores) leave each element exactly its newest VersionsKeep versions.
func TestVersionsKeptConcurrent(t *testing.T) {
	t.Parallel()
	const (
		keep     = 4
		elements = 3
	)
	forEachURL(t, func(t *testing.T, url string) {
		s, db := openWith(t, url, Options{VersionsKeep: keep}), openRaw(t, url)
		runWriters(t, 12, 10, func(w, i int) error {
			_, err := s.Put(t.Context(), "w1", "e"+strconv.Itoa((w+i)%elements), "thing", json.RawMessage(fmt.Sprintf(`{"w":%d}`, w)), Precondition{}, Meta{})
			return err
		})
		for e := range elements {
			id := "e" + strconv.Itoa(e)
			el := mustGet(t, s, "w1", id)
			rows := versionRows(t, db, "w1", id)
			var want []int64
			for v := el.Version - keep + 1; v <= el.Version; v++ {
				want = append(want, v)
			}
			if got := versionNumbers(rows); !slices.Equal(got, want) {
				t.Errorf("%s at version %d: got versions %v, want %v", id, el.Version, got, want)
			}
			if last := rows[len(rows)-1]; last.Data != string(el.Data) {
				t.Errorf("%s: newest version holds %s, want %s", id, last.Data, el.Data)
			}
		}
	})
}

// TestMigrateVersions: migration 4 backfills one version per element (its
// current one, seq 0), which a stale If-Match then merges from; it can be
// undone and applied again.
func TestMigrateVersions(t *testing.T) {
	t.Parallel()
	forEachURL(t, func(t *testing.T, url string) {
		migrateTo(t, url, 3)
		db := openRaw(t, url)
		const at = "2026-01-01T00:00:00.000000Z"
		db.exec(t, `INSERT INTO rooms (room, seq, updated_at) VALUES ('w1', 5, ?)`, at)
		db.exec(t, `INSERT INTO elements (room, id, kind, version, data, updated_at) VALUES ('w1', 'a', 'thing', 1, '{"n":1}', ?)`, at)
		db.exec(t, `INSERT INTO elements (room, id, kind, version, data, updated_at) VALUES ('w1', 'b', 'other', 4, '{"m":4}', ?)`, at)

		s := openStore(t, url)
		want := map[string][]versionRow{
			"a": {{Version: 1, Type: "created", Kind: "thing", Data: `{"n":1}`}},
			"b": {{Version: 4, Type: "updated", Kind: "other", Data: `{"m":4}`}},
		}
		for id, rows := range want {
			if got := versionRows(t, db, "w1", id); !slices.Equal(got, rows) {
				t.Errorf("%s: got %+v, want %+v", id, got, rows)
			}
		}
		mustPut(t, s, "w1", "b", "other", `{"m":5}`)
		out, err := s.Patch(t.Context(), "w1", "b", json.RawMessage(`{"k":1}`), Precondition{IfMatch: ptr(int64(4))}, Meta{})
		if err != nil || out.MergedFrom != 4 || string(out.Element.Data) != `{"m":5,"k":1}` {
			t.Fatalf("merge from the migrated version: got %+v, %v", out, err)
		}

		migrateTo(t, url, 3)
		migrateTo(t, url, 0)
		if got := versionNumbers(versionRows(t, db, "w1", "b")); !slices.Equal(got, []int64{6}) {
			t.Errorf("b after down and up: got versions %v, want [6]", got)
		}
	})
}
