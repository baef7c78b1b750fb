package faults

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/ssetest"
	"github.com/roomfeed/roomfeed/internal/testenv"
)

// modelElement is an element as the model holds it.
type modelElement struct {
	Kind    string
	Version int64
	Data    map[string]any
}

// modelEvent is what the model expects event seq to carry.
type modelEvent struct {
	Type    string
	ID      string // element id; empty for messages
	Kind    string
	Version int64
	Data    any // element data (nil for a deletion) or message data
	Op      string
}

// roomModel is the in-memory model of one room.
type roomModel struct {
	elements map[string]*modelElement
	versions map[string][]modelElement // every version of each element's current life, oldest first
	tombs    map[string]int64          // last version of deleted elements: a re-create goes on from it
	events   []modelEvent              // events[i] has seq i+1
}

// TestModelRandomized drives two nodes over PostgreSQL and Redis with a
// random sequence of writes (PUT, PATCH, DELETE with and without
// preconditions, stale If-Match bases that merge or conflict, messages)
// through random nodes, subscriber reconnections with random cursors,
// snapshots, and node restarts (SIGKILL or SIGTERM), and checks every
// answer, every snapshot and every feed against a simple in-memory model
// of the room, and in the end that the snapshot is the fold of the feed.
// ROOMFEED_MODEL_SEED replays a run; ROOMFEED_MODEL_OPS sets its length.
func TestModelRandomized(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	b := newBackend(t)
	runModel(t, []*node{startNode(t, "A", b.args()...), startNode(t, "B", b.args()...)})
}

// TestModelRandomizedEmbedded is TestModelRandomized on the embedded
// default: one node on SQLite with the in-process log.
func TestModelRandomizedEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	dbURL := "sqlite://" + filepath.Join(t.TempDir(), "roomfeed.db")
	runModel(t, []*node{startNode(t, "A", "--database-url", dbURL)})
}

func runModel(t *testing.T, nodes []*node) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("ROOMFEED_MODEL_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("ROOMFEED_MODEL_SEED: %v", err)
		}
	}
	ops := 400
	if s := os.Getenv("ROOMFEED_MODEL_OPS"); s != "" {
		ops, _ = strconv.Atoi(s)
	}
	t.Logf("seed %d, %d operations", seed, ops)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("replay with ROOMFEED_MODEL_SEED=%d ROOMFEED_MODEL_OPS=%d go test -run '%s$' ./faults", seed, ops, t.Name())
		}
	})
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	room := testenv.UniqueName("model")
	followers := []*subscriber{
		startSubscriber(t, "follow1", room, func(i int) *node { return nodes[i%len(nodes)] }),
		startSubscriber(t, "follow2", room, func(i int) *node { return nodes[(i+1)%len(nodes)] }),
	}
	hc := newClient(t, 10*time.Second)
	m := &roomModel{elements: make(map[string]*modelElement), versions: make(map[string][]modelElement), tombs: make(map[string]int64)}
	ids := []string{"e0", "e1", "e2", "e3", "e4", "e5"}
	counts := map[string]int{}

	for step := range ops {
		n := nodes[rng.IntN(len(nodes))]
		op := "op" + strconv.Itoa(step)
		id := ids[rng.IntN(len(ids))]
		cur := m.elements[id]
		where := fmt.Sprintf("step %d (seed %d)", step, seed)
		switch k := rng.IntN(100); {
		case k < 30: // PUT
			kind := "thing"
			if rng.IntN(8) == 0 {
				kind = "other"
			}
			data := randomObject(rng, false)
			if cur != nil && rng.IntN(2) == 0 {
				data = mergePatch(cur.Data, smallPatch(rng)) // an edit of the current version
			}
			hdr, want := modelPrecondition(rng, cur)
			base, stale := m.staleBase(rng, id)
			var exp staleOutcome
			if stale {
				data = m.edit(rng, id, base) // what a client holding version base sends
				exp = m.expectStale(id, base, kind, data)
				hdr, want = map[string]string{"If-Match": etagOf(base)}, exp.Status
				counts["stale "+strconv.Itoa(want)]++
			}
			body, _ := json.Marshal(map[string]any{"kind": kind, "data": data})
			r := doWith(t, hc, http.MethodPut, n.URL()+"/rooms/"+room+"/elements/"+id, op, "application/json", string(body), hdr)
			if want == 0 {
				want = http.StatusOK
				if cur == nil {
					want = http.StatusCreated
				}
			}
			what := where + " PUT " + id + " " + fmt.Sprint(hdr)
			switch {
			case !m.check(t, what, r, want):
				m.checkRefusal(t, what, r, id, exp)
			case stale:
				m.applyMerge(t, what, r, id, base, exp, op)
			default:
				m.put(id, kind, data, op)
			}
			counts["put"]++
		case k < 50: // PATCH
			hdr, want := modelPrecondition(rng, cur)
			if hdr["If-None-Match"] != "" {
				hdr, want = nil, 0
			}
			patch := randomObject(rng, true)
			if rng.IntN(2) == 0 {
				patch = smallPatch(rng)
			}
			base, stale := m.staleBase(rng, id)
			var exp staleOutcome
			if stale {
				patch = smallPatch(rng)
				exp = m.expectStale(id, base, "", patch)
				hdr, want = map[string]string{"If-Match": etagOf(base)}, exp.Status
				counts["stale "+strconv.Itoa(want)]++
			}
			body, _ := json.Marshal(patch)
			r := doWith(t, hc, http.MethodPatch, n.URL()+"/rooms/"+room+"/elements/"+id, op, "application/merge-patch+json", string(body), hdr)
			if want == 0 {
				want = http.StatusOK
				if cur == nil {
					want = http.StatusNotFound
				}
			}
			what := where + " PATCH " + id + " " + fmt.Sprint(hdr)
			switch {
			case !m.check(t, what, r, want):
				m.checkRefusal(t, what, r, id, exp)
			case stale:
				m.applyMerge(t, what, r, id, base, exp, op)
			default:
				m.put(id, cur.Kind, mergePatch(cur.Data, patch), op)
			}
			counts["patch"]++
		case k < 62: // DELETE
			hdr, want := modelPrecondition(rng, cur)
			if hdr["If-None-Match"] != "" {
				hdr, want = nil, 0
			}
			r := doWith(t, hc, http.MethodDelete, n.URL()+"/rooms/"+room+"/elements/"+id, op, "", "", hdr)
			if want == 0 {
				want = http.StatusOK
				if cur == nil {
					want = http.StatusNotFound
				}
			}
			if m.check(t, where+" DELETE "+id+" "+fmt.Sprint(hdr), r, want) {
				delete(m.elements, id)
				delete(m.versions, id)
				m.tombs[id] = cur.Version + 1
				m.events = append(m.events, modelEvent{"element.deleted", id, cur.Kind, cur.Version + 1, nil, op})
			}
			counts["delete"]++
		case k < 72: // message
			data := randomObject(rng, false)
			body, _ := json.Marshal(map[string]any{"event": "chat", "data": data})
			r := doWith(t, hc, http.MethodPost, n.URL()+"/rooms/"+room+"/messages", op, "application/json", string(body), nil)
			if m.check(t, where+" message", r, http.StatusCreated) {
				m.events = append(m.events, modelEvent{Type: "chat", Data: data, Op: op})
			}
			counts["message"]++
		case k < 88: // a subscriber (re)connects with a random cursor
			cursor := rng.Int64N(int64(len(m.events)) + 1)
			m.checkReplay(t, where, n, room, cursor)
			counts["reconnect"]++
		case k < 98: // snapshot
			m.checkSnapshot(t, where, hc, n, room)
			counts["snapshot"]++
		default: // restart a node
			if rng.IntN(2) == 0 {
				n.kill()
				counts["kill"]++
			} else {
				if _, err := n.term(15 * time.Second); err != nil {
					t.Errorf("%s: SIGTERM: %v", where, err)
				}
				counts["term"]++
			}
			n.start()
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	waitCaughtUp(t, followers, int64(len(m.events)), 30*time.Second)
	for _, f := range followers {
		f.mu.Lock()
		evs := append([]feedEvent(nil), f.events...)
		viol := append([]string(nil), f.violations...)
		f.mu.Unlock()
		for _, v := range viol {
			t.Errorf("%s: %s", f.name, v)
		}
		if len(evs) != len(m.events) {
			t.Errorf("%s received %d events, want %d", f.name, len(evs), len(m.events))
		}
		for i, e := range evs {
			if err := m.match(e); err != nil {
				t.Errorf("%s: event %d: %v", f.name, i+1, err)
				break
			}
		}
		checkFold(t, hc, nodes[0], room, f.name, evs)
	}
	t.Logf("%d events, operations %v", len(m.events), counts)
}

// modelPrecondition picks no precondition, a right or wrong If-Match, or
// If-None-Match: *, and the status it implies (0: the operation's own).
func modelPrecondition(rng *rand.Rand, cur *modelElement) (map[string]string, int) {
	switch rng.IntN(6) {
	case 0:
		if cur == nil {
			return map[string]string{"If-Match": `"1"`}, http.StatusPreconditionFailed
		}
		return map[string]string{"If-Match": `"` + strconv.FormatInt(cur.Version, 10) + `"`}, 0
	case 1:
		v := int64(7)
		if cur != nil {
			v = cur.Version + 1 + rng.Int64N(3)
		}
		return map[string]string{"If-Match": `"` + strconv.FormatInt(v, 10) + `"`}, http.StatusPreconditionFailed
	case 2:
		if cur != nil {
			return map[string]string{"If-None-Match": "*"}, http.StatusPreconditionFailed
		}
		return map[string]string{"If-None-Match": "*"}, 0
	}
	return nil, 0
}

// doWith sends one request with extra headers.
func doWith(tb testing.TB, hc *http.Client, method, u, op, ctype, body string, hdr map[string]string) writeResult {
	tb.Helper()
	req, err := http.NewRequestWithContext(tb.(*testing.T).Context(), method, u, stringsReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Op-ID", op)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return writeResult{Err: err}
	}
	defer resp.Body.Close()
	b, _ := readAll(resp.Body)
	r := writeResult{Status: resp.StatusCode, Body: string(b), Header: resp.Header}
	if id := resp.Header.Get("Event-ID"); id != "" {
		r.Seq, _ = strconv.ParseInt(id, 10, 64)
	}
	return r
}

// check compares an answer with the model's expectation and reports
// whether the write took effect.
func (m *roomModel) check(tb testing.TB, what string, r writeResult, want int) bool {
	tb.Helper()
	if r.Err != nil {
		tb.Errorf("%s: %v", what, r.Err)
		return false
	}
	if r.Status != want {
		tb.Errorf("%s: got %d %s, want %d", what, r.Status, r.Body, want)
		return false
	}
	if r.Status/100 != 2 {
		return false
	}
	if head := int64(len(m.events)); r.Seq != head+1 {
		tb.Errorf("%s: Event-ID %d, want %d", what, r.Seq, head+1)
	}
	return true
}

// match compares a received event with the model's event of its seq.
func (m *roomModel) match(e feedEvent) error {
	if e.Seq < 1 || e.Seq > int64(len(m.events)) {
		return fmt.Errorf("seq %d outside 1..%d", e.Seq, len(m.events))
	}
	want := m.events[e.Seq-1]
	var got struct {
		ID      string `json:"id"`
		Type    string `json:"type"`
		Element *struct {
			ID      string `json:"id"`
			Kind    string `json:"kind"`
			Version int64  `json:"version"`
			Data    any    `json:"data"`
		} `json:"element"`
		Data any    `json:"data"`
		OpID string `json:"op_id"`
	}
	if err := json.Unmarshal([]byte(e.Data), &got); err != nil {
		return fmt.Errorf("seq %d: %v", e.Seq, err)
	}
	if e.Type != want.Type || got.Type != want.Type || got.ID != strconv.FormatInt(e.Seq, 10) || got.OpID != want.Op {
		return fmt.Errorf("seq %d: got %s %s, want type %s op %s", e.Seq, e.Type, e.Data, want.Type, want.Op)
	}
	wantData := normalize(want.Data)
	if want.ID == "" {
		if !reflect.DeepEqual(got.Data, wantData) {
			return fmt.Errorf("seq %d: message data %s, want %v", e.Seq, e.Data, wantData)
		}
		return nil
	}
	if got.Element == nil || got.Element.ID != want.ID || got.Element.Kind != want.Kind || got.Element.Version != want.Version ||
		!reflect.DeepEqual(got.Element.Data, wantData) {
		return fmt.Errorf("seq %d: got %s, want %+v", e.Seq, e.Data, want)
	}
	return nil
}

// checkReplay opens the feed at cursor and checks it replays exactly the
// model's events after it, then closes it.
func (m *roomModel) checkReplay(tb testing.TB, where string, n *node, room string, cursor int64) {
	tb.Helper()
	s, err := ssetest.Dial(tb.(*testing.T).Context(), n.URL()+"/rooms/"+room+"/events", strconv.FormatInt(cursor, 10))
	if err != nil {
		tb.Errorf("%s: open feed at %d on %s: %v", where, cursor, n.name, err)
		return
	}
	defer s.Close()
	for seq := cursor + 1; seq <= int64(len(m.events)); seq++ {
		ev, err := s.Next(10 * time.Second)
		if err != nil {
			tb.Errorf("%s: feed at %d on %s: waiting for %d: %v", where, cursor, n.name, seq, err)
			return
		}
		got, _ := strconv.ParseInt(ev.ID, 10, 64)
		if got != seq {
			tb.Errorf("%s: feed at %d on %s: got id %q (%s), want %d", where, cursor, n.name, ev.ID, ev.Type, seq)
			return
		}
		if err := m.match(feedEvent{Seq: got, Type: ev.Type, Data: ev.Data}); err != nil {
			tb.Errorf("%s: feed at %d on %s: %v", where, cursor, n.name, err)
			return
		}
	}
}

// checkSnapshot compares the room's snapshot with the model.
func (m *roomModel) checkSnapshot(tb testing.TB, where string, hc *http.Client, n *node, room string) {
	tb.Helper()
	var snap struct {
		Cursor   string `json:"cursor"`
		Elements []struct {
			ID      string `json:"id"`
			Kind    string `json:"kind"`
			Version int64  `json:"version"`
			Data    any    `json:"data"`
		} `json:"elements"`
	}
	status, err := getJSON(tb.(*testing.T).Context(), hc, n.URL()+"/rooms/"+room+"/elements", &snap)
	if err != nil || status != http.StatusOK {
		tb.Errorf("%s: snapshot on %s: got %d, %v", where, n.name, status, err)
		return
	}
	if snap.Cursor != strconv.Itoa(len(m.events)) {
		tb.Errorf("%s: snapshot cursor %s, want %d", where, snap.Cursor, len(m.events))
	}
	if len(snap.Elements) != len(m.elements) {
		tb.Errorf("%s: snapshot has %d elements, model %d", where, len(snap.Elements), len(m.elements))
	}
	for _, el := range snap.Elements {
		want, ok := m.elements[el.ID]
		if !ok || el.Kind != want.Kind || el.Version != want.Version || !reflect.DeepEqual(el.Data, normalize(want.Data)) {
			tb.Errorf("%s: snapshot element %s: got %s v%d %v, model %+v", where, el.ID, el.Kind, el.Version, el.Data, want)
		}
	}
}

// randomObject makes a small JSON object; with nulls (for patches) some
// values are null.
func randomObject(rng *rand.Rand, nulls bool) map[string]any {
	obj := map[string]any{}
	for _, k := range []string{"a", "b", "c", "d"} {
		switch rng.IntN(6) {
		case 0, 1:
		case 2:
			obj[k] = rng.IntN(100)
		case 3:
			obj[k] = "s" + strconv.Itoa(rng.IntN(10))
		case 4:
			obj[k] = map[string]any{"x": rng.IntN(5), "y": []any{rng.IntN(3), "z"}}
		case 5:
			if nulls {
				obj[k] = nil
			} else {
				obj[k] = true
			}
		}
	}
	return obj
}

// mergePatch applies an RFC 7386 merge patch to a copy of target.
func mergePatch(target map[string]any, patch map[string]any) map[string]any {
	out := make(map[string]any, len(target))
	for k, v := range target {
		out[k] = v
	}
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(out, k)
		case map[string]any:
			sub, _ := out[k].(map[string]any)
			out[k] = mergePatch(sub, pv)
		default:
			out[k] = v
		}
	}
	return out
}

// normalize turns a Go value into what encoding/json decodes it to.
func normalize(v any) any {
	if v == nil {
		return nil
	}
	b, _ := json.Marshal(v)
	var out any
	_ = json.Unmarshal(b, &out)
	return out
}
