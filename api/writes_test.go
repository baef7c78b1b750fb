package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/roomfeed/roomfeed/api"
)

func TestElementLifecycle(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{})
		el := ts.URL + "/rooms/w1/elements/c1"

		r := do(t, http.MethodPut, el, `{"kind":"character","data":{"name":"Aria","hp":3}}`, "Op-ID", "op-1")
		mustStatus(t, r, http.StatusCreated)
		if got, want := r.Header.Get("ETag"), `"1"`; got != want {
			t.Errorf("ETag: got %s, want %s", got, want)
		}
		if got, want := r.Header.Get("Event-ID"), "1"; got != want {
			t.Errorf("Event-ID: got %s, want %s", got, want)
		}

		r = do(t, http.MethodPut, el, `{"kind":"character","data":{"name":"Aria B"}}`, "If-Match", `"1"`)
		mustStatus(t, r, http.StatusOK)
		if got, want := r.Header.Get("ETag"), `"2"`; got != want {
			t.Errorf("ETag after replace: got %s, want %s", got, want)
		}

		r = do(t, http.MethodPatch, el, `{"hp":null,"title":"bard","name":"Aria C"}`, "Content-Type", "application/merge-patch+json")
		mustStatus(t, r, http.StatusOK)
		data := r.json(t)["data"].(map[string]any)
		if data["name"] != "Aria C" || data["title"] != "bard" || data["hp"] != nil {
			t.Errorf("patched data: got %v, want name Aria C, title bard, no hp", data)
		}

		r = do(t, http.MethodGet, el, "")
		mustStatus(t, r, http.StatusOK)
		if got, want := r.Header.Get("ETag"), `"3"`; got != want {
			t.Errorf("GET ETag: got %s, want %s", got, want)
		}

		r = do(t, http.MethodPost, ts.URL+"/rooms/w1/elements", `{"kind":"place","data":{"name":"Harbor"}}`)
		mustStatus(t, r, http.StatusCreated)
		newID, _ := r.json(t)["id"].(string)
		if newID == "" || !strings.HasSuffix(r.Header.Get("Location"), "/elements/"+newID) {
			t.Errorf("created id %q, Location %q", newID, r.Header.Get("Location"))
		}

		r = do(t, http.MethodPost, ts.URL+"/rooms/w1/messages", `{"event":"cursor.moved","data":{"x":1}}`)
		mustStatus(t, r, http.StatusCreated)
		if got, want := r.Header.Get("Event-ID"), "5"; got != want {
			t.Errorf("message Event-ID: got %s, want %s", got, want)
		}

		r = do(t, http.MethodDelete, el, "", "If-Match", `"3"`)
		mustStatus(t, r, http.StatusOK)
		if got, want := r.Header.Get("Event-ID"), "6"; got != want {
			t.Errorf("delete Event-ID: got %s, want %s", got, want)
		}
		mustStatus(t, do(t, http.MethodGet, el, ""), http.StatusNotFound)

		r = do(t, http.MethodGet, ts.URL+"/rooms/w1/elements", "")
		mustStatus(t, r, http.StatusOK)
		snap := r.json(t)
		if snap["cursor"] != "6" || snap["room"] != "w1" {
			t.Errorf("snapshot: got cursor %v room %v, want 6 w1", snap["cursor"], snap["room"])
		}
		if els := snap["elements"].([]any); len(els) != 1 {
			t.Errorf("snapshot: got %d elements, want 1", len(els))
		}

		r = do(t, http.MethodGet, ts.URL+"/rooms/never-written/elements", "")
		mustStatus(t, r, http.StatusOK)
		if snap := r.json(t); snap["cursor"] != "0" || len(snap["elements"].([]any)) != 0 {
			t.Errorf("unknown room snapshot: got %s, want cursor 0 and no elements", r.Body)
		}
	})
}

func TestVersionConflicts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{})
		el := ts.URL + "/rooms/w1/elements/c1"
		mustStatus(t, do(t, http.MethodPut, el, `{"kind":"character","data":{"name":"A"}}`), http.StatusCreated)
		mustStatus(t, do(t, http.MethodPut, el, `{"kind":"character","data":{"name":"B"}}`), http.StatusOK)

		tests := []struct {
			name, method, url, body string
			headers                 []string
			status                  int
			code                    string
		}{
			{"If-Match of a later version on PUT", http.MethodPut, el, `{"kind":"character","data":{}}`, []string{"If-Match", `"3"`}, 412, "version_mismatch"},
			{"If-Match of a later version on PATCH", http.MethodPatch, el, `{"x":1}`, []string{"If-Match", `"3"`, "Content-Type", "application/merge-patch+json"}, 412, "version_mismatch"},
			{"stale If-Match on DELETE", http.MethodDelete, el, ``, []string{"If-Match", `"5"`}, 412, "version_mismatch"},
			{"If-None-Match on existing", http.MethodPut, el, `{"kind":"character","data":{}}`, []string{"If-None-Match", "*"}, 412, "already_exists"},
			{"If-Match on missing", http.MethodPut, ts.URL + "/rooms/w1/elements/nope", `{"kind":"character","data":{}}`, []string{"If-Match", `"1"`}, 412, "version_mismatch"},
			{"If-Match star on missing", http.MethodPut, ts.URL + "/rooms/w1/elements/nope", `{"kind":"character","data":{}}`, []string{"If-Match", "*"}, 412, "version_mismatch"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				r := do(t, tt.method, tt.url, tt.body, tt.headers...)
				if r.Status != tt.status {
					t.Fatalf("got status %d, want %d (%s)", r.Status, tt.status, r.Body)
				}
				if got := r.errorCode(t); got != tt.code {
					t.Errorf("got code %s, want %s", got, tt.code)
				}
				assertUnchanged(t, ts, "w1", 2)
			})
		}
		r := do(t, http.MethodPut, el, `{"kind":"character","data":{"name":"C"}}`, "If-Match", "*")
		mustStatus(t, r, http.StatusOK)
	})
}

// assertUnchanged checks that room w1 still has head seq `head` and element
// c1 at version head (the fixture writes c1 only).
func assertUnchanged(t *testing.T, ts *testServer, room string, head int64) {
	t.Helper()
	got, err := ts.Store.Head(t.Context(), room)
	if err != nil {
		t.Fatalf("head: %v", err)
	}
	if got != head {
		t.Errorf("room %s head: got %d, want %d (a rejected write changed the history)", room, got, head)
	}
	snap, err := ts.Store.Snapshot(t.Context(), room)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if len(snap.Elements) != 1 || snap.Elements[0].ID != "c1" || snap.Elements[0].Version != head {
		t.Errorf("room %s: got %+v, want only c1 at version %d", room, snap.Elements, head)
	}
}

func TestBadInput(t *testing.T) {
	ts := newServer(t, backends[0], serverOpts{cfg: apiConfigSmall()})
	el := ts.URL + "/rooms/w1/elements/c1"
	mustStatus(t, do(t, http.MethodPut, el, `{"kind":"character","data":{"name":"A"}}`), http.StatusCreated)

	big := `{"kind":"item","data":{"s":"` + strings.Repeat("x", 3000) + `"}}`
	huge := `{"kind":"item","data":{"s":"` + strings.Repeat("x", 9000) + `"}}`
	deep := strings.Repeat(`{"a":`, 10001) + "1" + strings.Repeat("}", 10001)
	mp := "application/merge-patch+json"
	tests := []struct {
		name, method, url, body string
		headers                 []string
		status                  int
		code                    string
	}{
		{"not JSON", "PUT", el, `kind=character`, nil, 400, "bad_json"},
		{"truncated JSON", "PUT", el, `{"kind":"character","data":{`, nil, 400, "bad_json"},
		{"trailing data", "PUT", el, `{"kind":"character","data":{}} {}`, nil, 400, "bad_json"},
		{"wrong content type", "PUT", el, `{"kind":"character","data":{}}`, []string{"Content-Type", "text/plain"}, 415, "unsupported_media_type"},
		{"no content type", "PUT", el, `{"kind":"character","data":{}}`, []string{"Content-Type", ""}, 415, "unsupported_media_type"},
		{"data is an array", "PUT", el, `{"kind":"character","data":[1]}`, nil, 400, "bad_data"},
		{"data is a string", "PUT", el, `{"kind":"character","data":"x"}`, nil, 400, "bad_data"},
		{"data is null", "PUT", el, `{"kind":"character","data":null}`, nil, 400, "bad_data"},
		{"data missing", "PUT", el, `{"kind":"character"}`, nil, 400, "bad_data"},
		{"kind missing", "PUT", el, `{"data":{}}`, nil, 400, "bad_kind"},
		{"kind upper case", "PUT", el, `{"kind":"Character","data":{}}`, nil, 400, "bad_kind"},
		{"kind not a string", "PUT", el, `{"kind":5,"data":{}}`, nil, 400, "bad_json"},
		{"unknown field", "PUT", el, `{"kind":"character","data":{},"version":3}`, nil, 400, "bad_json"},
		{"body id differs", "PUT", el, `{"id":"c2","kind":"character","data":{}}`, nil, 400, "bad_id"},
		{"body is an array", "PUT", el, `[]`, nil, 400, "bad_json"},
		{"invalid UTF-8", "PUT", el, "{\"kind\":\"character\",\"data\":{\"n\":\"\xff\"}}", nil, 400, "bad_json"},
		{"deep nesting", "PUT", el, `{"kind":"character","data":` + deep + `}`, nil, 413, "body_too_large"},
		{"data too large", "PUT", el, big, nil, 413, "data_too_large"},
		{"body too large", "PUT", el, huge, nil, 413, "body_too_large"},
		{"bad element id", "PUT", ts.URL + "/rooms/w1/elements/-x", `{"kind":"character","data":{}}`, nil, 400, "bad_id"},
		{"element id with dot dot", "GET", ts.URL + "/rooms/w1/elements/..", ``, nil, 400, "bad_id"},
		{"bad room", "PUT", ts.URL + "/rooms/_w/elements/c1", `{"kind":"character","data":{}}`, nil, 400, "bad_room"},
		{"room too long", "GET", ts.URL + "/rooms/" + strings.Repeat("r", 129) + "/elements", ``, nil, 400, "bad_room"},
		{"unknown element", "GET", ts.URL + "/rooms/w1/elements/nope", ``, nil, 404, "not_found"},
		{"unknown room element", "GET", ts.URL + "/rooms/nowhere/elements/c1", ``, nil, 404, "not_found"},
		{"patch unknown element", "PATCH", ts.URL + "/rooms/w1/elements/nope", `{"a":1}`, []string{"Content-Type", mp}, 404, "not_found"},
		{"delete unknown element", "DELETE", ts.URL + "/rooms/w1/elements/nope", ``, nil, 404, "not_found"},
		{"patch not an object", "PATCH", el, `[1,2]`, []string{"Content-Type", mp}, 400, "bad_patch"},
		{"patch wrong content type", "PATCH", el, `{"a":1}`, []string{"Content-Type", "application/xml"}, 415, "unsupported_media_type"},
		{"If-Match not quoted", "PUT", el, `{"kind":"character","data":{}}`, []string{"If-Match", "1"}, 400, "bad_precondition"},
		{"If-Match not a number", "PUT", el, `{"kind":"character","data":{}}`, []string{"If-Match", `"abc"`}, 400, "bad_precondition"},
		{"If-Match weak", "PUT", el, `{"kind":"character","data":{}}`, []string{"If-Match", `W/"1"`}, 400, "bad_precondition"},
		{"If-Match zero", "PUT", el, `{"kind":"character","data":{}}`, []string{"If-Match", `"0"`}, 400, "bad_precondition"},
		{"If-Match overflow", "PUT", el, `{"kind":"character","data":{}}`, []string{"If-Match", `"99999999999999999999"`}, 400, "bad_precondition"},
		{"If-None-Match not star", "PUT", el, `{"kind":"character","data":{}}`, []string{"If-None-Match", `"1"`}, 400, "bad_precondition"},
		{"both preconditions", "PUT", el, `{"kind":"character","data":{}}`, []string{"If-Match", `"1"`, "If-None-Match", "*"}, 400, "bad_precondition"},
		{"Op-ID with a tab", "PUT", el, `{"kind":"character","data":{}}`, []string{"Op-ID", "a\tb"}, 400, "bad_op_id"},
		{"Op-ID too long", "PUT", el, `{"kind":"character","data":{}}`, []string{"Op-ID", strings.Repeat("a", 129)}, 400, "bad_op_id"},
		{"message reserved name", "POST", ts.URL + "/rooms/w1/messages", `{"event":"element.created","data":1}`, nil, 400, "bad_event"},
		{"message reset name", "POST", ts.URL + "/rooms/w1/messages", `{"event":"reset","data":1}`, nil, 400, "bad_event"},
		{"message name with newline", "POST", ts.URL + "/rooms/w1/messages", `{"event":"a\nb","data":1}`, nil, 400, "bad_event"},
		{"message without name", "POST", ts.URL + "/rooms/w1/messages", `{"data":1}`, nil, 400, "bad_event"},
		{"message data too large", "POST", ts.URL + "/rooms/w1/messages", `{"event":"big","data":"` + strings.Repeat("x", 3000) + `"}`, nil, 413, "data_too_large"},
		{"create with bad kind", "POST", ts.URL + "/rooms/w1/elements", `{"kind":"","data":{}}`, nil, 400, "bad_kind"},
		{"method not allowed", "POST", el, `{}`, nil, 405, "method_not_allowed"},
		{"unknown API route", "GET", ts.URL + "/rooms/w1/nothing", ``, nil, 404, "not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, tt.method, tt.url, tt.body, tt.headers...)
			if r.Status != tt.status {
				t.Fatalf("got status %d, want %d (%s)", r.Status, tt.status, r.Body)
			}
			if got := r.errorCode(t); got != tt.code {
				t.Errorf("got code %q, want %q", got, tt.code)
			}
			if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("got Content-Type %q, want application/json", ct)
			}
			assertUnchanged(t, ts, "w1", 1)
		})
	}
}

func apiConfigSmall() api.Config {
	return api.Config{MaxBodyBytes: 8192, MaxDataBytes: 2048}
}
