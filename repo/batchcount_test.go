package repo

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/roomfeed/roomfeed/internal/testenv"
)

// errAnyOutcome in a queuedWrite's wantErr marks a write whose outcome
// differs by dialect and is not checked (errAnyErr wants some error).
var errAnyOutcome = errors.New("any outcome")

// TestBatchElementCount: rooms.elements stays the number of element rows
// through batches that mix creations, replacements, deletions, failed
// writes and writes over the room limit, in rooms that exist and rooms the
// batch creates. On PostgreSQL the batch counts itself (the trigger is off
// for it), and a rejected batch's writes, run alone, are counted by the
// trigger. Room r1 holds a, b and c first, room r2 holds x.
func TestBatchElementCount(t *testing.T) {
	t.Parallel()
	limit2 := Precondition{MaxElements: 2}
	limit4 := Precondition{MaxElements: 4}
	tests := []struct {
		name   string
		writes func(t *testing.T, db rawDB) []queuedWrite
		want   map[string]int64 // rooms' element counts after the batch
	}{
		{
			name: "creations in existing and new rooms",
			writes: func(*testing.T, rawDB) []queuedWrite {
				return []queuedWrite{
					{name: "put r1/d", write: putWrite("r1", "d", Precondition{}), wantErr: nil},
					{name: "put r2/y", write: putWrite("r2", "y", Precondition{}), wantErr: nil},
					{name: "put new/a", write: putWrite("new", "a", Precondition{}), wantErr: nil},
					{name: "put new/b", write: putWrite("new", "b", Precondition{}), wantErr: nil},
				}
			},
			want: map[string]int64{"r1": 4, "r2": 2, "new": 2},
		},
		{
			name: "creations, replacements and deletions",
			writes: func(*testing.T, rawDB) []queuedWrite {
				return []queuedWrite{
					{name: "replace r1/a", write: putWrite("r1", "a", Precondition{}), wantErr: nil},
					{name: "delete r1/b", write: deleteWrite("r1", "b", Precondition{}), wantErr: nil},
					{name: "put r1/d", write: putWrite("r1", "d", Precondition{}), wantErr: nil},
					{name: "patch r1/c", write: patchWrite("r1", "c", `{"p":1}`, Precondition{}), wantErr: nil},
					{name: "delete r2/x", write: deleteWrite("r2", "x", Precondition{}), wantErr: nil},
					{name: "put r2/y", write: putWrite("r2", "y", Precondition{}), wantErr: nil},
				}
			},
			want: map[string]int64{"r1": 3, "r2": 1},
		},
		{
			name: "an element created and deleted in the batch, another deleted and created again",
			writes: func(*testing.T, rawDB) []queuedWrite {
				return []queuedWrite{
					{name: "put r1/d", write: putWrite("r1", "d", Precondition{}), wantErr: nil},
					{name: "delete r1/d", write: deleteWrite("r1", "d", Precondition{}), wantErr: nil},
					{name: "delete r1/a", write: deleteWrite("r1", "a", Precondition{}), wantErr: nil},
					{name: "put r1/a again", write: putWrite("r1", "a", Precondition{}), wantErr: nil},
					{name: "delete r2/x", write: deleteWrite("r2", "x", Precondition{}), wantErr: nil},
					{name: "put new/a", write: putWrite("new", "a", Precondition{}), wantErr: nil},
					{name: "delete new/a", write: deleteWrite("new", "a", Precondition{}), wantErr: nil},
				}
			},
			want: map[string]int64{"r1": 3, "r2": 0, "new": 0},
		},
		{
			name: "failed writes change no count",
			writes: func(*testing.T, rawDB) []queuedWrite {
				return []queuedWrite{
					{name: "put r1/a stale", write: putWrite("r1", "a", Precondition{IfMatch: ptr(int64(7))}), wantErr: ErrVersionMismatch},
					{name: "delete r1/a stale", write: deleteWrite("r1", "a", Precondition{IfMatch: ptr(int64(7))}), wantErr: ErrVersionMismatch},
					{name: "delete r1/nope", write: deleteWrite("r1", "nope", Precondition{}), wantErr: ErrNotFound},
					{name: "put r1/a exists", write: putWrite("r1", "a", Precondition{IfNoneMatchAny: true}), wantErr: ErrExists},
					{name: "put r2/y", write: putWrite("r2", "y", Precondition{}), wantErr: nil},
					{name: "delete r2/x stale", write: deleteWrite("r2", "x", Precondition{IfMatch: ptr(int64(9))}), wantErr: ErrVersionMismatch},
					{name: "put new/a stale", write: putWrite("new", "a", Precondition{IfMatchAny: true}), wantErr: ErrVersionMismatch},
				}
			},
			want: map[string]int64{"r1": 3, "r2": 2},
		},
		{
			name: "writes over the limit",
			writes: func(*testing.T, rawDB) []queuedWrite {
				return []queuedWrite{
					{name: "put r2/y", write: putWrite("r2", "y", limit2), wantErr: nil},
					{name: "put r2/z over", write: putWrite("r2", "z", limit2), wantErr: ErrRoomFull},
					{name: "put r1/d", write: putWrite("r1", "d", limit4), wantErr: nil},
					{name: "put r1/e over", write: putWrite("r1", "e", limit4), wantErr: ErrRoomFull},
					{name: "delete r1/a", write: deleteWrite("r1", "a", Precondition{}), wantErr: nil},
					{name: "put r1/e", write: putWrite("r1", "e", limit4), wantErr: nil},
					{name: "put r1/f over", write: putWrite("r1", "f", limit4), wantErr: ErrRoomFull},
					{name: "replace r1/b in a full room", write: putWrite("r1", "b", limit4), wantErr: nil},
					{name: "put new/a", write: putWrite("new", "a", Precondition{MaxElements: 1}), wantErr: nil},
					{name: "put new/b over", write: putWrite("new", "b", Precondition{MaxElements: 1}), wantErr: ErrRoomFull},
				}
			},
			want: map[string]int64{"r1": 4, "r2": 2, "new": 1},
		},
		{
			// PostgreSQL runs the writes again alone (counted by the
			// trigger); SQLite fails them all.
			name: "a rejected batch",
			writes: func(t *testing.T, db rawDB) []queuedWrite {
				return []queuedWrite{
					{name: "put r1/d", write: putWrite("r1", "d", Precondition{}), wantErr: errAnyOutcome},
					{name: "delete r1/a", write: deleteWrite("r1", "a", Precondition{}), wantErr: errAnyOutcome},
					{name: "deferred violation", write: deferredFK(t, db), wantErr: errAnyOutcome},
					{name: "put new/a", write: putWrite("new", "a", Precondition{}), wantErr: errAnyOutcome},
					{name: "delete r2/x", write: deleteWrite("r2", "x", Precondition{}), wantErr: errAnyOutcome},
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			forEachURL(t, func(t *testing.T, url string) {
				s, db := openWith(t, url, Options{Committers: 1}), openRaw(t, url)
				for _, id := range []string{"a", "b", "c"} {
					mustPut(t, s, "r1", id, "thing", `{}`)
				}
				mustPut(t, s, "r2", "x", "thing", `{}`)
				writes := tt.writes(t, db)
				for i, r := range runQueued(t, s, writes) {
					if w := writes[i]; w.wantErr != errAnyOutcome && !errors.Is(r.err, w.wantErr) {
						t.Errorf("%s: got error %v, want %v", w.name, r.err, w.wantErr)
					}
				}
				for _, room := range []string{"r1", "r2", "new", "w1"} {
					if want, ok := tt.want[room]; ok {
						wantCount(t, db, room, want)
						continue
					}
					if !roomExists(t, db, room) {
						continue
					}
					if column, rows := elementCounts(t, db, room); column != rows {
						t.Errorf("room %s: got rooms.elements %d and %d element rows, want them equal", room, column, rows)
					}
				}
				// The next writes, alone, start from the right count.
				mustPut(t, s, "r1", "next", "thing", `{}`)
				_, rows := elementCounts(t, db, "r1")
				wantCount(t, db, "r1", rows)
			})
		})
	}
}

// roomExists reports whether the rooms table has a row for room.
func roomExists(t *testing.T, db rawDB, room string) bool {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), db.bind(`SELECT count(*) FROM rooms WHERE room = ?`), room).Scan(&n); err != nil {
		t.Fatalf("room %s: %v", room, err)
	}
	return n > 0
}

// TestPostgresCountOutsideRoomfeed: inserts and deletes of elements made
// outside roomfeed (as with psql), which do not say they count, are still
// counted by the trigger, also in a session where an earlier transaction
// did say so (the setting is transaction-local); and a transaction that
// says so is not counted.
func TestPostgresCountOutsideRoomfeed(t *testing.T) {
	t.Parallel()
	url := testenv.PostgresURL(t)
	s, db := openStore(t, url), openRaw(t, url)
	ctx := t.Context()
	mustPut(t, s, "r", "a", "thing", `{}`)
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	exec := func(query string) {
		t.Helper()
		if _, err := conn.ExecContext(ctx, query); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
	}
	const insert = `INSERT INTO elements (room, id, kind, version, data, updated_at)
		VALUES ('r', '%s', 'thing', 1, '{}', now())`
	steps := []struct {
		what      string
		queries   []string
		wantCount int64 // rooms.elements after the step
	}{
		{"psql inserts b and c", []string{fmt.Sprintf(insert, "b"), fmt.Sprintf(insert, "c")}, 3},
		{"psql deletes a", []string{`DELETE FROM elements WHERE room = 'r' AND id = 'a'`}, 2},
		{"a transaction that counts itself inserts d", []string{`BEGIN`,
			`SELECT set_config('roomfeed.counts_elements', 'on', true)`, fmt.Sprintf(insert, "d"), `COMMIT`}, 2},
		{"then the same session inserts e", []string{fmt.Sprintf(insert, "e")}, 3},
		// d, inserted uncounted, is the one missing from the count.
		{"and deletes everything", []string{`DELETE FROM elements WHERE room = 'r'`}, -1},
	}
	for _, st := range steps {
		for _, q := range st.queries {
			exec(q)
		}
		if column, _ := elementCounts(t, db, "r"); column != st.wantCount {
			t.Fatalf("after %q: got rooms.elements %d, want %d", st.what, column, st.wantCount)
		}
	}
}

// TestPostgresBatchWritesRoomsOnce: a batch creating elements in several
// rooms, existing or new, writes one new version of each room row: the
// trigger makes none for it. A trigger of the test's logs every update of
// a room row.
func TestPostgresBatchWritesRoomsOnce(t *testing.T) {
	t.Parallel()
	url := testenv.PostgresURL(t)
	s, db := openPostgresStore(t, url, 1), openRaw(t, url)
	for _, room := range []string{"a", "b", "c"} {
		mustPut(t, s, room, "x", "thing", `{}`)
	}
	db.exec(t, `CREATE TABLE room_updates (room text NOT NULL)`)
	db.exec(t, `CREATE FUNCTION log_room_update() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO room_updates VALUES (NEW.room); RETURN NULL; END $$`)
	db.exec(t, `CREATE TRIGGER log_room_update AFTER UPDATE ON rooms FOR EACH ROW EXECUTE FUNCTION log_room_update()`)
	var writes []queuedWrite
	for i, room := range []string{"a", "b", "c", "new1", "new2"} {
		seq := int64(2)
		if i >= 3 {
			seq = 1
		}
		writes = append(writes, queuedWrite{name: "put " + room + "/y", write: putWrite(room, "y", Precondition{}), wantSeq: seq})
	}
	writes = append(writes, queuedWrite{name: "put a/z", write: putWrite("a", "z", Precondition{}), wantSeq: 3})
	checkResults(t, writes, runQueued(t, s, writes))

	rows, err := db.QueryContext(t.Context(), `SELECT room, count(*) FROM room_updates
		WHERE room <> 'blocker' GROUP BY room ORDER BY room`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[string]int{}
	for rows.Next() {
		var (
			room string
			n    int
		)
		if err := rows.Scan(&room, &n); err != nil {
			t.Fatal(err)
		}
		got[room] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, room := range []string{"a", "b", "c", "new1", "new2"} {
		if got[room] != 1 {
			t.Errorf("room %s: got %d updates of its row, want 1", room, got[room])
		}
	}
	for room, want := range map[string]int64{"a": 3, "b": 2, "c": 2, "new1": 1, "new2": 1} {
		wantCount(t, db, room, want)
	}
}

// TestPostgresCountWithOtherWriters: batches of the store and writers that
// the trigger counts (a store's writes alone, an older roomfeed, psql)
// change elements of the same rooms at once; the counts stay exact.
func TestPostgresCountWithOtherWriters(t *testing.T) {
	t.Parallel()
	const (
		rooms   = 3
		writers = 6
		rounds  = 12
	)
	url := testenv.PostgresURL(t)
	s, db := openStore(t, url), openRaw(t, url)
	ctx := t.Context()
	for r := range rooms {
		mustPut(t, s, fmt.Sprint("r", r), "seed", "thing", `{}`)
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range rounds {
				room, id := fmt.Sprint("r", i%rooms), fmt.Sprintf("s%d-%d", w, i)
				if _, err := s.Put(ctx, room, id, "thing", json.RawMessage(`{}`), Precondition{}, Meta{}); err != nil {
					t.Errorf("Put %s/%s: %v", room, id, err)
					return
				}
				if i%3 == 0 {
					if _, err := s.Delete(ctx, room, id, Precondition{}, Meta{}); err != nil {
						t.Errorf("Delete %s/%s: %v", room, id, err)
						return
					}
				}
			}
		})
	}
	for w := range 2 {
		wg.Go(func() {
			for i := range rounds {
				room, id := fmt.Sprint("r", i%rooms), fmt.Sprintf("p%d-%d", w, i)
				if _, err := db.ExecContext(ctx, `INSERT INTO elements (room, id, kind, version, data, updated_at)
					VALUES ($1, $2, 'thing', 1, '{}', now())`, room, id); err != nil {
					t.Errorf("insert %s/%s: %v", room, id, err)
					return
				}
				if i%2 == 0 {
					if _, err := db.ExecContext(ctx, `DELETE FROM elements WHERE room = $1 AND id = $2`, room, id); err != nil {
						t.Errorf("delete %s/%s: %v", room, id, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	for r := range rooms {
		room := fmt.Sprint("r", r)
		if column, rows := elementCounts(t, db, room); column != rows {
			t.Errorf("room %s: got rooms.elements %d and %d element rows, want them equal", room, column, rows)
		}
	}
}

// TestMigrateBatchCount: migration 5 on a version 4 database with
// elements, batches and psql writing after it, and back to version 4 (a
// newer store still writing meanwhile): the counts stay exact.
func TestMigrateBatchCount(t *testing.T) {
	t.Parallel()
	url := testenv.PostgresURL(t)
	migrateTo(t, url, 4)
	db := openRaw(t, url)
	for room, n := range map[string]int{"r3": 3, "r1": 1} {
		db.exec(t, `INSERT INTO rooms (room, seq, updated_at) VALUES (?, ?, ?)`, room, n, "2026-01-01T00:00:00.000000Z")
		for i := range n {
			db.exec(t, `INSERT INTO elements (room, id, kind, version, data, updated_at) VALUES (?, ?, 'thing', 1, '{}', ?)`,
				room, fmt.Sprint("e", i), "2026-01-01T00:00:00.000000Z")
		}
	}
	wantCount(t, db, "r3", 3)
	wantCount(t, db, "r1", 1)

	s := openPostgresStore(t, url, 1) // migrates to 5
	batch := func(step string, want map[string]int64) {
		t.Helper()
		writes := []queuedWrite{
			{name: step + ": put r3/x", write: putWrite("r3", "x"+step, Precondition{})},
			{name: step + ": delete r1/e0", write: deleteWrite("r1", "e0", Precondition{})},
			{name: step + ": put r1/x", write: putWrite("r1", "x"+step, Precondition{})},
			{name: step + ": put r3/full", write: putWrite("r3", "full", Precondition{MaxElements: 1}), wantErr: ErrRoomFull},
		}
		for i, r := range runQueued(t, s, writes) {
			if w := writes[i]; !errors.Is(r.err, w.wantErr) && !(w.name == step+": delete r1/e0" && errors.Is(r.err, ErrNotFound)) {
				t.Errorf("%s: got error %v, want %v", w.name, r.err, w.wantErr)
			}
		}
		for room, n := range want {
			wantCount(t, db, room, n)
		}
	}
	batch("v5", map[string]int64{"r3": 4, "r1": 1})
	db.exec(t, `INSERT INTO elements (room, id, kind, version, data, updated_at) VALUES ('r3', 'psql', 'thing', 1, '{}', now())`)
	wantCount(t, db, "r3", 5)

	migrateTo(t, url, 4) // the store goes on writing
	db.exec(t, `DELETE FROM elements WHERE room = 'r3' AND id = 'psql'`)
	wantCount(t, db, "r3", 4)
	batch("v4", map[string]int64{"r3": 5, "r1": 2})
}
