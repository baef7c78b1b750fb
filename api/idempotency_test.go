package api_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/internal/ssetest"
)

// replayedHeaders are the headers a replay repeats, when the first answer
// had them.
var replayedHeaders = []string{"Content-Type", "ETag", "Event-ID", "Location", "Merged-From"}

// checkReplay checks that again is first byte for byte (status, body, the
// replayed headers), with Idempotent-Replayed: true where first had none.
func checkReplay(t *testing.T, what string, first, again response) {
	t.Helper()
	if first.Header.Get("Idempotent-Replayed") != "" {
		t.Errorf("%s: the first answer has Idempotent-Replayed", what)
	}
	if got := again.Header.Get("Idempotent-Replayed"); got != "true" {
		t.Errorf("%s: Idempotent-Replayed: got %q, want true", what, got)
	}
	if again.Status != first.Status || !bytes.Equal(again.Body, first.Body) {
		t.Errorf("%s: got %d %s, want %d %s", what, again.Status, again.Body, first.Status, first.Body)
	}
	for _, h := range replayedHeaders {
		if got, want := again.Header.Values(h), first.Header.Values(h); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: %s: got %q, want %q", what, h, got, want)
		}
	}
}

// TestIdempotentWrites sends every write route twice with one key (an
// Idempotency-Key, or an Op-ID alone): the second answer is the first byte
// for byte with Idempotent-Replayed: true, and a subscriber gets each
// write's event once.
func TestIdempotentWrites(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{})
		base := ts.URL + "/rooms/w1"
		feed := ssetest.Open(t, base+"/events", "0")
		mp := "application/merge-patch+json"
		writes := []struct {
			name, method, url, body string
			headers                 []string
			status                  int
		}{
			{"PUT creates", "PUT", base + "/elements/c1", `{"kind":"character","data":{"name":"Aria","hp":3}}`, []string{"Idempotency-Key", `"put-1"`}, 201},
			{"PUT replaces", "PUT", base + "/elements/c1", `{"kind":"character","data":{"name":"Aria","hp":4}}`, []string{"Idempotency-Key", "put-2", "If-Match", `"1"`}, 200},
			{"PATCH with Op-ID alone", "PATCH", base + "/elements/c1", `{"title":"bard"}`, []string{"Op-ID", "patch-1", "Content-Type", mp}, 200},
			{"stale PATCH, merged", "PATCH", base + "/elements/c1", `{"hp":9}`, []string{"Idempotency-Key", "patch-2", "If-Match", `"2"`, "Content-Type", mp}, 200},
			{"POST creates", "POST", base + "/elements", `{"kind":"place","data":{"name":"Harbor"}}`, []string{"Idempotency-Key", "post-1"}, 201},
			{"POST message", "POST", base + "/messages", `{"event":"chat","data":{"text":"hi"}}`, []string{"Idempotency-Key", "msg-1", "Op-ID", "msg-1"}, 201},
			{"DELETE", "DELETE", base + "/elements/c1", ``, []string{"Idempotency-Key", "del-1"}, 200},
		}
		for i, w := range writes {
			first := do(t, w.method, w.url, w.body, w.headers...)
			mustStatus(t, first, w.status)
			again := do(t, w.method, w.url, w.body, w.headers...)
			checkReplay(t, w.name, first, again)
			if got, want := first.Header.Get("Event-ID"), strconv.Itoa(i+1); got != want {
				t.Errorf("%s: Event-ID: got %s, want %s", w.name, got, want)
			}
		}
		// The merged PATCH's answer says so; the POST's names its element.
		r := do(t, "PATCH", base+"/elements/c1", `{"hp":9}`, "Idempotency-Key", "patch-2", "If-Match", `"2"`, "Content-Type", mp)
		if got := r.Header.Get("Merged-From"); got != `"2"` {
			t.Errorf("merged PATCH replay: Merged-From %q, want \"2\"", got)
		}
		// The subscriber got one event per write, then the marker.
		mustStatus(t, do(t, "POST", base+"/messages", `{"event":"marker"}`), http.StatusCreated)
		for i := range writes {
			ev := feed.MustNext(t, 5*time.Second)
			if ev.ID != strconv.Itoa(i+1) {
				t.Fatalf("event %d: got id %s (%s), want %d", i+1, ev.ID, ev.Type, i+1)
			}
		}
		if ev := feed.MustNext(t, 5*time.Second); ev.Type != "marker" {
			t.Errorf("after the writes: got %s %s, want the marker (a replay was published)", ev.Type, ev.Data)
		}
	})
}

// TestIdempotencyKeyReused: the key of one request sent with another (body,
// precondition, path) is 422 idempotency_key_reused and changes nothing;
// the key in another room is another key.
func TestIdempotencyKeyReused(t *testing.T) {
	ts := newServer(t, backends[0], serverOpts{})
	el := ts.URL + "/rooms/w1/elements/c1"
	mustStatus(t, do(t, "PUT", el, `{"kind":"character","data":{"name":"A"}}`, "Idempotency-Key", "k1"), http.StatusCreated)
	for _, r := range []response{
		do(t, "PUT", el, `{"kind":"character","data":{"name":"B"}}`, "Idempotency-Key", "k1"),
		do(t, "PUT", el, `{"kind":"character","data":{"name":"A"}}`, "Idempotency-Key", "k1", "If-Match", `"1"`),
		do(t, "PUT", ts.URL+"/rooms/w1/elements/c2", `{"kind":"character","data":{"name":"A"}}`, "Op-ID", "k1"),
		do(t, "POST", ts.URL+"/rooms/w1/messages", `{"event":"chat"}`, "Idempotency-Key", "k1"),
	} {
		if r.Status != http.StatusUnprocessableEntity || r.errorCode(t) != "idempotency_key_reused" {
			t.Errorf("got %d %s, want 422 idempotency_key_reused", r.Status, r.Body)
		}
	}
	assertUnchanged(t, ts, "w1", 1)
	mustStatus(t, do(t, "PUT", ts.URL+"/rooms/w2/elements/c1", `{"kind":"character","data":{"name":"B"}}`, "Idempotency-Key", "k1"), http.StatusCreated)
}

// TestIdempotencyKeyForms: a quoted key and the bare key are the same key;
// a refused write records nothing.
func TestIdempotencyKeyForms(t *testing.T) {
	ts := newServer(t, backends[0], serverOpts{})
	el := ts.URL + "/rooms/w1/elements/c1"
	body := `{"kind":"character","data":{"name":"A"}}`
	refused := do(t, "PUT", el, body, "Idempotency-Key", `"a\"b\\c"`, "If-Match", `"1"`)
	mustStatus(t, refused, http.StatusPreconditionFailed)
	first := do(t, "PUT", el, body, "Idempotency-Key", `"a\"b\\c"`)
	mustStatus(t, first, http.StatusCreated)
	checkReplay(t, "bare key", first, do(t, "PUT", el, body, "Idempotency-Key", `a"b\c`))
	checkReplay(t, "Op-ID", first, do(t, "PUT", el, body, "Op-ID", `a"b\c`))
	var ev struct {
		OpID string `json:"op_id"`
	}
	evs, err := ts.Store.EventsAfter(t.Context(), "w1", 0, 10)
	if err != nil || len(evs) != 1 || json.Unmarshal(evs[0].Data, &ev) != nil || ev.OpID != `a"b\c` {
		t.Errorf("events: got %v (%v), want one with op_id a\"b\\c", evs, err)
	}
}

// TestIdempotencyKeySpaces: a key may hold spaces (printable ASCII, as the
// draft's sf-string); quoted, bare and as Op-ID it is one key.
func TestIdempotencyKeySpaces(t *testing.T) {
	ts := newServer(t, backends[0], serverOpts{})
	msgs := ts.URL + "/rooms/w1/messages"
	body := `{"event":"chat","data":{"text":"hi"}}`
	first := do(t, "POST", msgs, body, "Idempotency-Key", `"retry of 7 b"`)
	mustStatus(t, first, http.StatusCreated)
	for _, h := range [][]string{{"Idempotency-Key", `"retry of 7 b"`}, {"Idempotency-Key", "retry of 7 b"}, {"Op-ID", "retry of 7 b"}} {
		checkReplay(t, h[0]+": "+h[1], first, do(t, "POST", msgs, body, h...))
	}
	if evs, err := ts.Store.EventsAfter(t.Context(), "w1", 0, 10); err != nil || len(evs) != 1 {
		t.Errorf("events: got %d (%v), want 1", len(evs), err)
	}
}

// TestMergedWrites: a PATCH or PUT with a stale If-Match is merged when
// the paths differ (200, Merged-From), is 409 conflict with the paths and
// the current element when they do not; a stale DELETE is 412.
func TestMergedWrites(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{})
		el := ts.URL + "/rooms/w1/elements/c1"
		mp := "application/merge-patch+json"
		mustStatus(t, do(t, "PUT", el, `{"kind":"character","data":{"name":"Aria","hp":3}}`), http.StatusCreated)
		mustStatus(t, do(t, "PATCH", el, `{"name":"Aria B"}`, "Content-Type", mp), http.StatusOK) // version 2

		r := do(t, "PATCH", el, `{"hp":4}`, "If-Match", `"1"`, "Content-Type", mp)
		mustStatus(t, r, http.StatusOK)
		if r.Header.Get("Merged-From") != `"1"` || r.Header.Get("ETag") != `"3"` {
			t.Errorf("merged PATCH: Merged-From %q ETag %q, want \"1\" and \"3\"", r.Header.Get("Merged-From"), r.Header.Get("ETag"))
		}
		if data := r.json(t)["data"].(map[string]any); data["name"] != "Aria B" || data["hp"] != float64(4) {
			t.Errorf("merged PATCH: got %v, want name Aria B and hp 4", data)
		}
		r = do(t, "PUT", el, `{"kind":"character","data":{"name":"Aria","hp":3,"title":"bard"}}`, "If-Match", `"2"`)
		mustStatus(t, r, http.StatusOK)
		if r.Header.Get("Merged-From") != `"2"` {
			t.Errorf("merged PUT: Merged-From %q, want \"2\"", r.Header.Get("Merged-From"))
		}
		if got := r.json(t)["data"].(map[string]any)["name"]; got != "Aria" {
			t.Errorf("merged PUT: name %v, want Aria (only the PUT changed it)", got)
		}
		// Version 4 is {"name":"Aria","hp":4,"title":"bard"}: a write from
		// version 3 that renames too conflicts.
		r = do(t, "PATCH", el, `{"name":"Aria C","mood":"calm"}`, "If-Match", `"3"`, "Content-Type", mp)
		checkConflictAnswer(t, r)
		if r := do(t, "DELETE", el, "", "If-Match", `"3"`); r.Status != http.StatusPreconditionFailed || r.errorCode(t) != "version_mismatch" {
			t.Errorf("stale DELETE: got %d %s, want 412 version_mismatch", r.Status, r.Body)
		}
		if got, err := ts.Store.Head(t.Context(), "w1"); err != nil || got != 4 {
			t.Errorf("head: got %d, %v, want 4 (refused writes write nothing)", got, err)
		}
	})
}

// checkConflictAnswer checks the 409 of a PATCH {"name":"Aria C",...} from
// version 3 {"name":"Aria B","hp":4} onto version 4, which renamed to Aria.
func checkConflictAnswer(t *testing.T, r response) {
	t.Helper()
	if r.Status != http.StatusConflict || r.errorCode(t) != "conflict" {
		t.Fatalf("got %d %s, want 409 conflict", r.Status, r.Body)
	}
	var body struct {
		Error struct {
			Code, Message string
			Conflicts     json.RawMessage
			Current       struct {
				ID      string
				Version int64
				Data    json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	if want := `[{"path":"/name","base":"Aria B","theirs":"Aria","mine":"Aria C"}]`; string(body.Error.Conflicts) != want {
		t.Errorf("conflicts: got %s, want %s", body.Error.Conflicts, want)
	}
	if c := body.Error.Current; c.ID != "c1" || c.Version != 4 || string(c.Data) != `{"name":"Aria","hp":4,"title":"bard"}` {
		t.Errorf("current: got %+v, want c1 version 4", c)
	}
}

// TestIdempotencyMetrics: replays and reused keys are counted.
func TestIdempotencyMetrics(t *testing.T) {
	m := api.NewMetrics(prometheus.NewRegistry(), nil, nil)
	ts := newServer(t, backends[0], serverOpts{cfg: api.Config{Metrics: m}})
	msg := ts.URL + "/rooms/w1/messages"
	for range 3 {
		do(t, "POST", msg, `{"event":"chat"}`, "Idempotency-Key", "k")
	}
	do(t, "POST", msg, `{"event":"other"}`, "Idempotency-Key", "k")
	r := do(t, "GET", ts.URL+"/metrics", "")
	values := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	for sc.Scan() {
		if name, v, ok := strings.Cut(sc.Text(), " "); ok && !strings.HasPrefix(name, "#") {
			values[name] = v
		}
	}
	if got := values["roomfeed_idempotent_replays_total"]; got != "2" {
		t.Errorf("roomfeed_idempotent_replays_total: got %q, want 2", got)
	}
	if got := values["roomfeed_idempotency_key_reuses_total"]; got != "1" {
		t.Errorf("roomfeed_idempotency_key_reuses_total: got %q, want 1", got)
	}
	if got := values[`roomfeed_events_written_total{kind="message"}`]; got != "1" {
		t.Errorf("events written: got %q, want 1", got)
	}
}
