package repo

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	neturl "net/url"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/roomfeed/roomfeed"
)

// elementCounts returns rooms.elements and the number of rows of elements
// of room.
func elementCounts(t *testing.T, db rawDB, room string) (column, rows int64) {
	t.Helper()
	err := db.QueryRowContext(t.Context(),
		db.bind(`SELECT elements, (SELECT COUNT(*) FROM elements WHERE room = ?) FROM rooms WHERE room = ?`),
		room, room).Scan(&column, &rows)
	if err != nil {
		t.Fatalf("count elements of %s: %v", room, err)
	}
	return column, rows
}

func wantCount(t *testing.T, db rawDB, room string, want int64) {
	t.Helper()
	column, rows := elementCounts(t, db, room)
	if column != want || rows != want {
		t.Errorf("room %s: got rooms.elements %d and %d element rows, want %d", room, column, rows, want)
	}
}

func TestRoomLimit(t *testing.T) {
	t.Parallel()
	forEachURL(t, func(t *testing.T, url string) {
		s, db := openStore(t, url), openRaw(t, url)
		ctx := t.Context()
		limit3 := Precondition{MaxElements: 3}
		put := func(id string, pre Precondition) error {
			_, err := s.Put(ctx, "lim", id, "thing", json.RawMessage(`{}`), pre, Meta{})
			return err
		}
		steps := []struct {
			what string
			do   func() error
			want error
		}{
			{"create a", func() error { return put("a", limit3) }, nil},
			{"create b", func() error { return put("b", limit3) }, nil},
			{"create c", func() error { return put("c", limit3) }, nil},
			{"create d in a full room", func() error { return put("d", limit3) }, ErrRoomFull},
			{"create-only d in a full room", func() error {
				return put("d", Precondition{IfNoneMatchAny: true, MaxElements: 3})
			}, ErrRoomFull},
			{"replace a in a full room", func() error { return put("a", limit3) }, nil},
			{"patch b in a full room", func() error {
				_, err := s.Patch(ctx, "lim", "b", json.RawMessage(`{"x":1}`), Precondition{}, Meta{})
				return err
			}, nil},
			{"create d with a higher limit", func() error { return put("d", Precondition{MaxElements: 4}) }, nil},
			{"delete b", func() error {
				_, err := s.Delete(ctx, "lim", "b", Precondition{}, Meta{})
				return err
			}, nil},
			{"delete c", func() error {
				_, err := s.Delete(ctx, "lim", "c", Precondition{}, Meta{})
				return err
			}, nil},
			{"re-create b", func() error { return put("b", limit3) }, nil},
			{"create e in a full room", func() error { return put("e", limit3) }, ErrRoomFull},
			{"create e without a limit", func() error { return put("e", Precondition{}) }, nil},
		}
		for _, st := range steps {
			if err := st.do(); !errors.Is(err, st.want) {
				t.Fatalf("%s: got error %v, want %v", st.what, err, st.want)
			}
		}
		wantCount(t, db, "lim", 4)
		// The refused creations took no sequence number: 10 writes succeeded.
		if got := mustHead(t, s, "lim"); got != 10 {
			t.Errorf("head: got %d, want 10", got)
		}
		if got := len(allEvents(t, s, "lim", 0)); got != 10 {
			t.Errorf("events: got %d, want 10", got)
		}
	})
}

// TestRoomLimitConcurrent: writers that create and delete at once in one
// room (merged into batches on both stores) never take it above its limit,
// and the count stays exact.
func TestRoomLimitConcurrent(t *testing.T) {
	t.Parallel()
	const (
		limit   = 5
		writers = 12
		rounds  = 15
	)
	forEachURL(t, func(t *testing.T, url string) {
		s, db := openStore(t, url), openRaw(t, url)
		ctx := t.Context()
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			full int
		)
		for w := range writers {
			wg.Go(func() {
				for i := range rounds {
					id := fmt.Sprintf("w%d-%d", w, i)
					_, err := s.Put(ctx, "busy", id, "thing", json.RawMessage(`{}`), Precondition{MaxElements: limit}, Meta{})
					if errors.Is(err, ErrRoomFull) {
						mu.Lock()
						full++
						mu.Unlock()
						continue
					}
					if err != nil {
						t.Errorf("Put %s: %v", id, err)
						return
					}
					if i%2 == 0 { // keep every other one, delete the rest
						continue
					}
					if _, err := s.Delete(ctx, "busy", id, Precondition{}, Meta{}); err != nil {
						t.Errorf("Delete %s: %v", id, err)
						return
					}
				}
			})
		}
		wg.Wait()
		if full == 0 {
			t.Errorf("no creation was refused; %d writers with %d rounds should fill a room of %d", writers, rounds, limit)
		}
		// Replay the history: the room never held more than limit.
		live := map[string]bool{}
		for _, ev := range allEvents(t, s, "busy", 0) {
			var p struct {
				Element struct{ ID string } `json:"element"`
			}
			if err := json.Unmarshal(ev.Data, &p); err != nil {
				t.Fatalf("event %d: %v", ev.Seq, err)
			}
			switch ev.Type {
			case roomfeed.TypeCreated:
				live[p.Element.ID] = true
			case roomfeed.TypeDeleted:
				delete(live, p.Element.ID)
			}
			if len(live) > limit {
				t.Fatalf("after event %d: got %d elements, want at most %d", ev.Seq, len(live), limit)
			}
		}
		wantCount(t, db, "busy", int64(len(live)))
	})
}

// TestMigrateElementCount: migration 3 counts the elements of rooms that
// existed before it, and the triggers keep the count from then on.
func TestMigrateElementCount(t *testing.T) {
	t.Parallel()
	forEachURL(t, func(t *testing.T, url string) {
		ctx := t.Context()
		migrateTo(t, url, 2)
		db := openRaw(t, url)
		// Rooms of a version 2 database: r3 with 3 elements, r1 with
		// 1, r0 with none left.
		for room, n := range map[string]int{"r3": 3, "r1": 1, "r0": 0} {
			db.exec(t, `INSERT INTO rooms (room, seq, updated_at) VALUES (?, ?, ?)`, room, n+1, "2026-01-01T00:00:00.000000Z")
			for i := range n {
				db.exec(t, `INSERT INTO elements (room, id, kind, version, data, updated_at) VALUES (?, ?, 'thing', 1, '{}', ?)`,
					room, fmt.Sprint("e", i), "2026-01-01T00:00:00.000000Z")
			}
		}

		s := openStore(t, url)
		for room, n := range map[string]int64{"r3": 3, "r1": 1, "r0": 0} {
			wantCount(t, db, room, n)
		}
		_, err := s.Put(ctx, "r3", "new", "thing", json.RawMessage(`{}`), Precondition{MaxElements: 3}, Meta{})
		wantErr(t, "Put into r3 with a limit of 3", err, ErrRoomFull)
		mustPut(t, s, "r1", "new", "thing", `{}`)
		wantCount(t, db, "r1", 2)

		if db.postgres {
			// A session with another search_path (an operator in
			// psql) deleting by the table's full name: the trigger
			// still counts in this schema's rooms.
			u, err := neturl.Parse(url)
			if err != nil {
				t.Fatal(err)
			}
			q := u.Query()
			schema := q.Get("search_path")
			q.Del("search_path")
			u.RawQuery = q.Encode()
			other, err := sql.Open("pgx", u.String())
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			del := `DELETE FROM ` + pgx.Identifier{schema, "elements"}.Sanitize() + ` WHERE room = 'r3' AND id = 'e0'`
			if _, err := other.ExecContext(ctx, del); err != nil {
				t.Fatalf("%s: %v", del, err)
			}
			wantCount(t, db, "r3", 2)
		}
	})
}

// TestMigrateDownAndUp: migrations 3 and 4 can be undone and applied
// again.
func TestMigrateDownAndUp(t *testing.T) {
	t.Parallel()
	forEachURL(t, func(t *testing.T, url string) {
		for _, to := range []uint{0, 3, 0, 2, 0} {
			migrateTo(t, url, to)
		}
	})
}
