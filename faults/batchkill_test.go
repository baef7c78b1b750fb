package faults

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/testenv"
)

// TestKillMidGroupCommit SIGKILLs a node again and again while 16 writers
// keep its group committer busy (batches of several writes in one
// transaction), on the embedded SQLite and on PostgreSQL. After every
// restart the database is sound (SQLite: PRAGMA integrity_check) and
// holds every acknowledged write at its Event-ID, plus perhaps writes
// that got no answer, and never part of a write: seqs are gap-free up to
// the room's seq, every element row is the state its last event says
// (a deleted one has none), every kept version is the one of its event,
// no op is applied twice. At the end every subscriber holds exactly the
// history.
func TestKillMidGroupCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	for _, tc := range []struct {
		name  string
		kills int
		setup func(t *testing.T) (dbURL string, args []string)
	}{
		{"sqlite", 6, func(t *testing.T) (string, []string) {
			u := "sqlite://" + filepath.Join(t.TempDir(), "rf.db")
			return u, []string{"--database-url", u}
		}},
		{"postgres", 3, func(t *testing.T) (string, []string) {
			b := newBackend(t)
			return b.pgURL, b.args()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dbURL, args := tc.setup(t)
			killMidBatches(t, dbURL, args, tc.kills)
		})
	}
}

func killMidBatches(t *testing.T, dbURL string, args []string, kills int) {
	n := startNode(t, "A", args...)
	rooms := []string{testenv.UniqueName("kb"), testenv.UniqueName("kb"), testenv.UniqueName("kb"), testenv.UniqueName("kb")}
	subs := make(map[string][]*subscriber)
	for _, room := range rooms {
		subs[room] = []*subscriber{startSubscriber(t, "sub-"+room, room, func(int) *node { return n })}
	}
	hc := newClient(t, 10*time.Second)
	l := newLedger()
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var wg sync.WaitGroup
	for i := range 16 {
		room := rooms[i%len(rooms)]
		wg.Go(func() { putDeleteWriter(ctx, hc, l, "w"+strconv.Itoa(i), room, n) })
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for k := range kills {
		before, _, _ := l.snapshot()
		eventually(t, 20*time.Second, "writes acknowledged before the kill", func() error {
			if acks, _, _ := l.snapshot(); len(acks) < len(before)+50 {
				return fmt.Errorf("%w: %d acknowledged", errNotYet, len(acks)-len(before))
			}
			return nil
		})
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		n.kill()
		acks, _, st := l.snapshot()
		t.Logf("kill %d: %d writes acknowledged so far, %d got no answer (in flight at a kill, or sent to the dead node)",
			k+1, len(acks), st["error"])
		n.start()
		checkWhole(t, dbURL, rooms, l)
	}
	time.Sleep(500 * time.Millisecond)
	stop()
	wg.Wait()
	for _, room := range rooms {
		rep := checkFeed(t, dbURL, room, l, subs[room], 30*time.Second)
		t.Logf("%s: acknowledged %d, unacknowledged %d, committed %d, events checked %d",
			room, rep.Acked, rep.Failed, rep.Committed, rep.Checked)
	}
	checkWhole(t, dbURL, rooms, l)
}

// putDeleteWriter puts and sometimes deletes elements of room until ctx is
// done, recording every outcome (a delete of a missing element is a 404,
// not acknowledged).
func putDeleteWriter(ctx context.Context, c *http.Client, l *ledger, name, room string, n *node) {
	for i := 0; ctx.Err() == nil; i++ {
		op := name + "-" + strconv.Itoa(i)
		el := n.URL() + "/rooms/" + room + "/elements/" + name + "-e" + strconv.Itoa(i%3)
		var r writeResult
		if i%5 == 4 {
			r = do(ctx, c, http.MethodDelete, el, op, "", "")
		} else {
			r = do(ctx, c, http.MethodPut, el, op, "application/json", `{"kind":"item","data":{"i":`+strconv.Itoa(i)+`}}`)
		}
		if ctx.Err() != nil && !r.acked() {
			return
		}
		l.record(room, op, r)
		if r.Err != nil {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// checkWhole checks, in one read transaction per room, that the database
// holds whole writes only: see TestKillMidGroupCommit. On SQLite it runs
// PRAGMA integrity_check first.
func checkWhole(tb testing.TB, dbURL string, rooms []string, l *ledger) {
	tb.Helper()
	if strings.HasPrefix(dbURL, "sqlite://") {
		checkIntegrity(tb, dbURL)
	}
	db := openTruth(tb, dbURL)
	defer db.Close()
	acks, _, _ := l.snapshot()
	for _, room := range rooms {
		var mine []ack
		for _, a := range acks {
			if a.Room == room {
				mine = append(mine, a)
			}
		}
		if err := checkRoomWhole(db, room, mine); err != nil {
			tb.Errorf("room %s: %v", room, err)
		}
	}
}

// roomState is what one read transaction saw of a room.
type roomState struct {
	seq      int64
	events   []sqlEvent
	elements map[string]elementRow
	versions map[string]int64 // "id/version" → seq
}

type elementRow struct {
	Version int64
	Data    string
}

func checkRoomWhole(db *sql.DB, room string, acks []ack) error {
	st, err := readRoom(db, room)
	if err != nil {
		return err
	}
	if int64(len(st.events)) != st.seq {
		return fmt.Errorf("the room's seq is %d but it has %d events", st.seq, len(st.events))
	}
	ops := make(map[string]int64)
	type last struct {
		typ     string
		version int64
		data    json.RawMessage
		seqs    map[int64]int64 // version → seq
	}
	fold := make(map[string]*last)
	for i, e := range st.events {
		if e.Seq != int64(i+1) {
			return fmt.Errorf("event %d has seq %d: a gap", i+1, e.Seq)
		}
		var p struct {
			Type    string `json:"type"`
			OpID    string `json:"op_id"`
			Element struct {
				ID      string          `json:"id"`
				Version int64           `json:"version"`
				Data    json.RawMessage `json:"data"`
			} `json:"element"`
		}
		if err := json.Unmarshal([]byte(e.Payload), &p); err != nil {
			return fmt.Errorf("event %d: %v", e.Seq, err)
		}
		if prev, dup := ops[p.OpID]; dup {
			return fmt.Errorf("op %s applied twice: events %d and %d", p.OpID, prev, e.Seq)
		}
		ops[p.OpID] = e.Seq
		f := fold[p.Element.ID]
		if f == nil {
			f = &last{seqs: make(map[int64]int64)}
			fold[p.Element.ID] = f
		}
		f.typ, f.version, f.data = p.Type, p.Element.Version, p.Element.Data
		f.seqs[p.Element.Version] = e.Seq
	}
	for _, a := range acks {
		if seq, ok := ops[a.Op]; !ok || seq != a.Seq {
			return fmt.Errorf("acknowledged write %s (Event-ID %d) is not there (found at %d)", a.Op, a.Seq, seq)
		}
	}
	for id, f := range fold {
		row, exists := st.elements[id]
		switch {
		case f.typ == "element.deleted" && exists:
			return fmt.Errorf("element %s exists at version %d, but its last event deleted it", id, row.Version)
		case f.typ != "element.deleted" && !exists:
			return fmt.Errorf("element %s is missing, but its last event (version %d) is a %s", id, f.version, f.typ)
		case exists && (row.Version != f.version || !jsonEqual(row.Data, string(f.data))):
			return fmt.Errorf("element %s is version %d %s, but its last event is version %d %s", id, row.Version, row.Data, f.version, f.data)
		}
		for v, seq := range f.seqs {
			if got, ok := st.versions[id+"/"+strconv.FormatInt(v, 10)]; v > f.version-100 && (!ok || got != seq) {
				return fmt.Errorf("version %d of %s: got seq %d (kept: %v), want %d, the seq of its event", v, id, got, ok, seq)
			}
		}
	}
	for id := range st.elements {
		if fold[id] == nil {
			return fmt.Errorf("element %s exists without any event", id)
		}
	}
	return nil
}

// readRoom reads the room's seq, events, elements and kept versions in one
// read transaction.
func readRoom(db *sql.DB, room string) (roomState, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tx, err := db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelSerializable})
	if err != nil {
		return roomState{}, err
	}
	defer tx.Rollback()
	st := roomState{elements: make(map[string]elementRow), versions: make(map[string]int64)}
	if err := tx.QueryRowContext(ctx, `SELECT seq FROM rooms WHERE room = $1`, room).Scan(&st.seq); err != nil && err != sql.ErrNoRows {
		return st, fmt.Errorf("room seq: %w", err)
	}
	err = scanRows(ctx, tx, `SELECT seq, payload FROM events WHERE room = $1 ORDER BY seq`, room, func(rows *sql.Rows) error {
		var e sqlEvent
		err := rows.Scan(&e.Seq, &e.Payload)
		st.events = append(st.events, e)
		return err
	})
	if err == nil {
		err = scanRows(ctx, tx, `SELECT id, version, data FROM elements WHERE room = $1`, room, func(rows *sql.Rows) error {
			var (
				id string
				r  elementRow
			)
			err := rows.Scan(&id, &r.Version, &r.Data)
			st.elements[id] = r
			return err
		})
	}
	if err == nil {
		err = scanRows(ctx, tx, `SELECT id, version, seq FROM element_versions WHERE room = $1`, room, func(rows *sql.Rows) error {
			var (
				id     string
				v, seq int64
			)
			err := rows.Scan(&id, &v, &seq)
			st.versions[id+"/"+strconv.FormatInt(v, 10)] = seq
			return err
		})
	}
	return st, err
}

func scanRows(ctx context.Context, tx *sql.Tx, query, room string, scan func(*sql.Rows) error) error {
	rows, err := tx.QueryContext(ctx, query, room)
	if err != nil {
		return fmt.Errorf("%s: %w", query, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// jsonEqual reports whether two JSON texts hold the same value.
func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return string(xb) == string(yb)
}
