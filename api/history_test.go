package api_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/repo"
)

type historyAnswer struct {
	Room     string `json:"room"`
	ID       string `json:"id"`
	Versions []struct {
		Version int64           `json:"version"`
		Seq     string          `json:"seq"`
		At      string          `json:"at"`
		Actor   string          `json:"actor"`
		OpID    string          `json:"op_id"`
		Type    string          `json:"type"`
		Kind    string          `json:"kind"`
		Data    json.RawMessage `json:"data"`
	} `json:"versions"`
	Next *int64 `json:"next"`
}

func decodeInto(t *testing.T, r response, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// foldPage folds the events of one JSON page of history (from 0) up to
// seq at into the elements they leave, as JSON sorted by id.
func foldPage(t *testing.T, base, room string, at int64) string {
	t.Helper()
	r := do(t, http.MethodGet, fmt.Sprintf("%s/rooms/%s/events?format=json&after=0&limit=5000", base, room), "")
	mustStatus(t, r, http.StatusOK)
	var page struct {
		Events []struct {
			ID      string           `json:"id"`
			Type    string           `json:"type"`
			Element roomfeed.Element `json:"element"`
		} `json:"events"`
	}
	decodeInto(t, r, &page)
	state := map[string]roomfeed.Element{}
	for _, ev := range page.Events {
		if seq, _ := strconv.ParseInt(ev.ID, 10, 64); seq > at || !strings.HasPrefix(ev.Type, "element.") {
			continue
		}
		if ev.Type == roomfeed.TypeDeleted {
			delete(state, ev.Element.ID)
			continue
		}
		state[ev.Element.ID] = ev.Element
	}
	els := []roomfeed.Element{}
	for _, id := range slices.Sorted(maps.Keys(state)) {
		els = append(els, state[id])
	}
	b, _ := json.Marshal(els)
	return string(b)
}

// scrapeMetrics reads the server's /metrics into name{labels} -> value.
func scrapeMetrics(t *testing.T, base string) map[string]string {
	t.Helper()
	r := do(t, http.MethodGet, base+"/metrics", "")
	mustStatus(t, r, http.StatusOK)
	values := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(r.Body))
	for sc.Scan() {
		if name, v, ok := strings.Cut(sc.Text(), " "); ok && !strings.HasPrefix(name, "#") {
			values[name] = v
		}
	}
	return values
}

// TestHistoryRoutes: an element's history through HTTP, paged, a deletion
// included; the room as of every seq equals the fold of the JSON page of
// events; reverts (of a delete, with If-Match, with an idempotency key)
// and the metrics of reads.
func TestHistoryRoutes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		metrics := api.NewMetrics(prometheus.NewRegistry(), nil, nil)
		ts := newServer(t, be, serverOpts{cfg: api.Config{Metrics: metrics}})
		el := ts.URL + "/rooms/w1/elements/c1"
		mustStatus(t, do(t, http.MethodPut, el, `{"kind":"character","data":{"name":"Aria","hp":3}}`, "Op-ID", "op-1"), http.StatusCreated) // v1, seq 1
		mustStatus(t, do(t, http.MethodPatch, el, `{"hp":4}`, "Content-Type", "application/merge-patch+json"), http.StatusOK)               // v2, seq 2
		mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/w1/messages", `{"event":"chat","data":"hi"}`), http.StatusCreated)              // seq 3
		mustStatus(t, do(t, http.MethodDelete, el, ""), http.StatusOK)                                                                      // v3, seq 4

		r := do(t, http.MethodGet, el+"/history?limit=2", "")
		mustStatus(t, r, http.StatusOK)
		var h historyAnswer
		decodeInto(t, r, &h)
		if h.Room != "w1" || h.ID != "c1" || len(h.Versions) != 2 || h.Next == nil || *h.Next != 2 {
			t.Fatalf("first page: got %s", r.Body)
		}
		if v := h.Versions[0]; v.Version != 3 || v.Type != "deleted" || string(v.Data) != "null" || v.Seq != "4" {
			t.Errorf("newest version: got %+v, want the deletion at seq 4 with data null", v)
		}
		r = do(t, http.MethodGet, el+"/history?limit=2&before=2", "")
		mustStatus(t, r, http.StatusOK)
		decodeInto(t, r, &h)
		if len(h.Versions) != 1 || h.Next != nil || h.Versions[0].OpID != "op-1" || h.Versions[0].Type != "created" ||
			h.Versions[0].Kind != "character" || string(h.Versions[0].Data) != `{"name":"Aria","hp":3}` {
			t.Errorf("second page: got %s, want version 1 and next null", r.Body)
		}
		if !strings.Contains(string(r.Body), `"next":null`) {
			t.Errorf("second page: got %s, want \"next\":null", r.Body)
		}

		// Revert the delete: version 1 comes back, created.
		r = do(t, http.MethodPost, el+"/revert", `{"to_version":1}`, "If-Match", `"3"`, "Idempotency-Key", `"undo-1"`)
		mustStatus(t, r, http.StatusCreated)
		if r.Header.Get("ETag") != `"4"` || r.Header.Get("Event-ID") != "5" {
			t.Errorf("revert: got ETag %s Event-ID %s, want \"4\" and 5", r.Header.Get("ETag"), r.Header.Get("Event-ID"))
		}
		again := do(t, http.MethodPost, el+"/revert", `{"to_version":1}`, "If-Match", `"3"`, "Idempotency-Key", `"undo-1"`)
		checkReplay(t, "revert", r, again)
		mustStatus(t, do(t, http.MethodPost, el+"/revert", `{"to_version":2}`, "If-Match", `"3"`), http.StatusPreconditionFailed)
		r = do(t, http.MethodPost, el+"/revert", `{"to_version":2}`, "If-Match", `"4"`)
		mustStatus(t, r, http.StatusOK)
		if data := r.json(t)["data"].(map[string]any); data["hp"] != 4.0 {
			t.Errorf("revert to 2: got data %v, want hp 4", data)
		}
		r = do(t, http.MethodGet, ts.URL+"/rooms/w1/events?format=json&after=4", "")
		mustStatus(t, r, http.StatusOK)
		if body := string(r.Body); !strings.Contains(body, `"type":"element.created"`) || !strings.Contains(body, `"reverted_from":1`) ||
			!strings.Contains(body, `"type":"element.updated"`) || !strings.Contains(body, `"reverted_from":2`) {
			t.Errorf("events of the reverts: got %s, want element.created with reverted_from 1, then element.updated with 2", body)
		}
		r = do(t, http.MethodGet, el+"/history?limit=1", "")
		decodeInto(t, r, &h)
		if h.Versions[0].Type != "reverted" || h.Versions[0].Version != 5 {
			t.Errorf("newest version after the reverts: got %s, want version 5 of type reverted", r.Body)
		}

		// The room as of every seq is the fold of its events.
		for at := int64(0); at <= 6; at++ {
			r := do(t, http.MethodGet, ts.URL+"/rooms/w1/elements?at="+strconv.FormatInt(at, 10), "")
			mustStatus(t, r, http.StatusOK)
			var snap struct {
				Room     string             `json:"room"`
				Cursor   string             `json:"cursor"`
				Elements []roomfeed.Element `json:"elements"`
			}
			decodeInto(t, r, &snap)
			if snap.Room != "w1" || snap.Cursor != strconv.FormatInt(at, 10) || r.Header.Get("Event-ID") != snap.Cursor {
				t.Errorf("at %d: got room %s cursor %s Event-ID %s", at, snap.Room, snap.Cursor, r.Header.Get("Event-ID"))
			}
			got, _ := json.Marshal(snap.Elements)
			if want := foldPage(t, ts.URL, "w1", at); string(got) != want {
				t.Errorf("at %d:\n got %s\nwant %s", at, got, want)
			}
		}
		r = do(t, http.MethodGet, ts.URL+"/rooms/w1/elements?at=7", "")
		mustStatus(t, r, http.StatusBadRequest)
		if code := r.errorCode(t); code != "cursor_ahead" {
			t.Errorf("at beyond the head: got code %s, want cursor_ahead", code)
		}
		for _, c := range []struct {
			method, path, body string
			status             int
			code               string
		}{
			{http.MethodGet, "/rooms/w1/elements/nobody/history", "", 404, "not_found"},
			{http.MethodPost, "/rooms/w1/elements/nobody/revert", `{"to_version":1}`, 404, "not_found"},
			{http.MethodPost, "/rooms/w1/elements/c1/revert", `{"to_version":9}`, 404, "version_not_found"},
			{http.MethodPost, "/rooms/w1/elements/c1/revert", `{"to_version":3}`, 422, "version_deleted"},
		} {
			r := do(t, c.method, ts.URL+c.path, c.body)
			if r.Status != c.status || r.errorCode(t) != c.code {
				t.Errorf("%s %s %s: got %d %s, want %d %s", c.method, c.path, c.body, r.Status, r.Body, c.status, c.code)
			}
		}
		values := scrapeMetrics(t, ts.URL)
		if got := values[`roomfeed_history_reads_total{kind="versions"}`]; got != "3" { // answered reads only: the 404 is not one
			t.Errorf("history reads of versions: got %q, want 3", got)
		}
		if got := values[`roomfeed_history_reads_total{kind="snapshot_at"}`]; got != "7" {
			t.Errorf("history reads of snapshots: got %q, want 7", got)
		}
	})
}

// TestHistoryTrimmed: asking for versions older than the kept ones, or for
// the room as of a seq they no longer describe, is a 410 naming the
// oldest kept version or the oldest reachable seq, which are served.
func TestHistoryTrimmed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{})
		ctx := t.Context()
		writes := repo.DefaultVersionsKeep + 2
		for i := range writes {
			if _, err := ts.Store.Put(ctx, "w1", "c1", "thing", json.RawMessage(fmt.Sprintf(`{"i":%d}`, i+1)), repo.Precondition{}, repo.Meta{}); err != nil {
				t.Fatal(err)
			}
		}
		// Retention of the events changes nothing.
		if _, err := ts.Store.Trim(ctx, "w1", 1, 0, int64(writes)); err != nil {
			t.Fatal(err)
		}
		r := do(t, http.MethodGet, ts.URL+"/rooms/w1/elements/c1/history?before=3", "")
		mustStatus(t, r, http.StatusGone)
		if code, oldest := r.errorCode(t), r.json(t)["error"].(map[string]any)["oldest"]; code != "versions_trimmed" || oldest != "3" {
			t.Errorf("before 3: got %s, want versions_trimmed with oldest 3", r.Body)
		}
		r = do(t, http.MethodGet, ts.URL+"/rooms/w1/elements/c1/history?before=4&limit=500", "")
		mustStatus(t, r, http.StatusOK)
		var h historyAnswer
		decodeInto(t, r, &h)
		if len(h.Versions) != 1 || h.Versions[0].Version != 3 || h.Next != nil {
			t.Errorf("before 4: got %s, want version 3 alone", r.Body)
		}
		r = do(t, http.MethodGet, ts.URL+"/rooms/w1/elements/c1/history?limit=500", "")
		decodeInto(t, r, &h)
		if len(h.Versions) != repo.DefaultVersionsKeep {
			t.Errorf("every kept version: got %d, want %d", len(h.Versions), repo.DefaultVersionsKeep)
		}
		r = do(t, http.MethodGet, ts.URL+"/rooms/w1/elements?at=2", "")
		mustStatus(t, r, http.StatusGone)
		if code, oldest := r.errorCode(t), r.json(t)["error"].(map[string]any)["oldest"]; code != "history_trimmed" || oldest != "3" {
			t.Errorf("at 2: got %s, want history_trimmed with oldest 3", r.Body)
		}
		r = do(t, http.MethodGet, ts.URL+"/rooms/w1/elements?at=3", "")
		mustStatus(t, r, http.StatusOK)
		if !strings.Contains(string(r.Body), `"data":{"i":3}`) {
			t.Errorf("at 3: got %s, want c1 at {\"i\":3}", r.Body)
		}
		r = do(t, http.MethodPost, ts.URL+"/rooms/w1/elements/c1/revert", `{"to_version":1}`)
		mustStatus(t, r, http.StatusGone)
		if code, oldest := r.errorCode(t), r.json(t)["error"].(map[string]any)["oldest"]; code != "versions_trimmed" || oldest != "3" {
			t.Errorf("revert to 1: got %s, want versions_trimmed with oldest 3", r.Body)
		}
	})
}

// TestHistoryOpenModeActor: without tokens, the ?client= name a write
// gives is its actor (the person of presence and signals); a bad one is
// 400 bad_client and writes nothing.
func TestHistoryOpenModeActor(t *testing.T) {
	ts := newServer(t, backends[0], serverOpts{})
	el := ts.URL + "/rooms/w1/elements/c1"
	mustStatus(t, do(t, http.MethodPut, el+"?client=ana", `{"kind":"character","data":{"v":1}}`), http.StatusCreated)
	mustStatus(t, do(t, http.MethodPatch, el, `{"v":2}`, "Content-Type", "application/merge-patch+json"), http.StatusOK)
	r := do(t, http.MethodPut, el+"?client=no%20one", `{"kind":"character","data":{"v":3}}`)
	if r.Status != http.StatusBadRequest || r.errorCode(t) != "bad_client" {
		t.Errorf("a write with a bad client name: got %d %s, want 400 bad_client", r.Status, r.Body)
	}
	var h historyAnswer
	decodeInto(t, do(t, http.MethodGet, el+"/history", ""), &h)
	var actors []string
	for _, v := range h.Versions {
		actors = append(actors, v.Actor)
	}
	if want := []string{"", "ana"}; !slices.Equal(actors, want) {
		t.Errorf("actors, newest first: got %q, want %q", actors, want)
	}
}

// TestHistoryAuthorization: the history and the room as of a seq need the
// room's read grant, a revert its write grant; the revert's version and
// event carry the token's sub as actor.
func TestHistoryAuthorization(t *testing.T) {
	ts, _ := newAuthServer(t, backends[0], api.Config{})
	writer := hs256(t, grant("alice", []string{"w1"}, []string{"w1"}))
	reader := hs256(t, grant("bob", []string{"w1"}, nil))
	other := hs256(t, grant("eve", []string{"w2"}, []string{"w2"}))
	el := ts.URL + "/rooms/w1/elements/c1"
	mustStatus(t, do(t, http.MethodPut, el, `{"kind":"character","data":{"v":1}}`, bearer(writer)...), http.StatusCreated)
	mustStatus(t, do(t, http.MethodPut, el, `{"kind":"character","data":{"v":2}}`, bearer(writer)...), http.StatusOK)
	for _, c := range []struct {
		name, method, url, body string
		headers                 []string
		status                  int
	}{
		{"history without a token", http.MethodGet, el + "/history", "", nil, 401},
		{"history with another room's grant", http.MethodGet, el + "/history", "", bearer(other), 403},
		{"history with a read grant", http.MethodGet, el + "/history", "", bearer(reader), 200},
		{"at without a token", http.MethodGet, ts.URL + "/rooms/w1/elements?at=1", "", nil, 401},
		{"at with another room's grant", http.MethodGet, ts.URL + "/rooms/w1/elements?at=1", "", bearer(other), 403},
		{"at with a read grant", http.MethodGet, ts.URL + "/rooms/w1/elements?at=1", "", bearer(reader), 200},
		{"revert without a token", http.MethodPost, el + "/revert", `{"to_version":1}`, nil, 401},
		{"revert with a read grant", http.MethodPost, el + "/revert", `{"to_version":1}`, bearer(reader), 403},
		{"revert with another room's grant", http.MethodPost, el + "/revert", `{"to_version":1}`, bearer(other), 403},
		{"revert with a write grant", http.MethodPost, el + "/revert", `{"to_version":1}`, bearer(writer), 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, c.method, c.url, c.body, c.headers...)
			if r.Status != c.status {
				t.Errorf("got %d %s, want %d", r.Status, r.Body, c.status)
			}
		})
	}
	r := do(t, http.MethodGet, el+"/history?limit=1", "", bearer(reader)...)
	var h historyAnswer
	decodeInto(t, r, &h)
	if len(h.Versions) != 1 || h.Versions[0].Actor != "alice" || h.Versions[0].Type != "reverted" || string(h.Versions[0].Data) != `{"v":1}` {
		t.Errorf("after the revert: got %s, want version 3 reverted by alice to {\"v\":1}", r.Body)
	}
	if head, err := ts.Store.Head(t.Context(), "w1"); err != nil || head != 3 {
		t.Errorf("head: got %d, %v, want 3 (the refused reverts wrote nothing)", head, err)
	}
}
