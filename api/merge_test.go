package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/ssetest"
)

// httpMergeCases are stale writes through the API: version 1 of an element
// is base (kind thing), version 2 theirs (a PUT), then mine is a PUT or
// PATCH with If-Match "1". want is the merged data as answered (theirs'
// member order, then mine's new members), conflicts the exact conflicts
// of the 409 (a side absent at a path is left out).
var httpMergeCases = []struct {
	name, base, theirs, method, mine string
	theirsKind, mineKind             string // "" = thing
	status                           int
	want, conflicts                  string
}{
	{name: "disjoint members, PATCH", base: `{"name":"a","hp":1}`, theirs: `{"name":"b","hp":1}`, method: "PATCH", mine: `{"hp":2}`,
		status: 200, want: `{"name":"b","hp":2}`},
	{name: "disjoint members, PUT", base: `{"name":"a","hp":1}`, theirs: `{"name":"b","hp":1}`, method: "PUT", mine: `{"name":"a","hp":2,"mp":5}`,
		status: 200, want: `{"name":"b","hp":2,"mp":5}`},
	{name: "the same change on both sides", base: `{"name":"a"}`, theirs: `{"name":"b"}`, method: "PATCH", mine: `{"name":"b","x":1}`,
		status: 200, want: `{"name":"b","x":1}`},
	{name: "nested, disjoint", base: `{"s":{"hp":1,"mp":1},"n":1}`, theirs: `{"s":{"hp":2,"mp":1},"n":1}`, method: "PATCH", mine: `{"s":{"mp":3}}`,
		status: 200, want: `{"s":{"hp":2,"mp":3},"n":1}`},
	{name: "nested, the same member", base: `{"s":{"hp":1,"mp":1}}`, theirs: `{"s":{"hp":2,"mp":1}}`, method: "PATCH", mine: `{"s":{"hp":3}}`,
		status: 409, conflicts: `[{"path":"/s/hp","base":1,"theirs":2,"mine":3}]`},
	{name: "null removes a member theirs left alone", base: `{"a":1,"b":1}`, theirs: `{"a":1,"b":2}`, method: "PATCH", mine: `{"a":null}`,
		status: 200, want: `{"b":2}`},
	{name: "null removes a member theirs changed", base: `{"a":1,"b":1}`, theirs: `{"a":1,"b":2}`, method: "PATCH", mine: `{"b":null}`,
		status: 409, conflicts: `[{"path":"/b","base":1,"theirs":2}]`},
	{name: "theirs removed a member mine changed", base: `{"a":1,"b":1}`, theirs: `{"a":1}`, method: "PATCH", mine: `{"b":5}`,
		status: 409, conflicts: `[{"path":"/b","base":1,"mine":5}]`},
	{name: "both removed a member", base: `{"a":1,"b":1}`, theirs: `{"a":2}`, method: "PUT", mine: `{"a":1}`,
		status: 200, want: `{"a":2}`},
	{name: "both added a member differently", base: `{}`, theirs: `{"n":1}`, method: "PATCH", mine: `{"n":2}`,
		status: 409, conflicts: `[{"path":"/n","theirs":1,"mine":2}]`},
	{name: "both added an object: merged member by member", base: `{}`, theirs: `{"o":{"a":1}}`, method: "PATCH", mine: `{"o":{"b":2}}`,
		status: 200, want: `{"o":{"a":1,"b":2}}`},
	{name: "arrays are leaves", base: `{"tags":["a"]}`, theirs: `{"tags":["a","b"]}`, method: "PATCH", mine: `{"tags":["a","c"]}`,
		status: 409, conflicts: `[{"path":"/tags","base":["a"],"theirs":["a","b"],"mine":["a","c"]}]`},
	{name: "an array changed on one side", base: `{"tags":["a"],"n":1}`, theirs: `{"tags":["a"],"n":2}`, method: "PATCH", mine: `{"tags":["x"]}`,
		status: 200, want: `{"tags":["x"],"n":2}`},
	{name: "an object against a leaf", base: `{"o":{"a":1}}`, theirs: `{"o":{"a":2}}`, method: "PUT", mine: `{"o":"flat"}`,
		status: 409, conflicts: `[{"path":"/o","base":{"a":1},"theirs":{"a":2},"mine":"flat"}]`},
	{name: "member names escaped in the pointer", base: `{"a/b":1,"m~n":1,"k":1}`, theirs: `{"a/b":2,"m~n":2,"k":1}`, method: "PATCH", mine: `{"a/b":3,"m~n":3,"k":3}`,
		status: 409, conflicts: `[{"path":"/a~1b","base":1,"theirs":2,"mine":3},{"path":"/m~0n","base":1,"theirs":2,"mine":3}]`},
	{name: "the kind changed by mine", base: `{"a":1}`, theirs: `{"a":2}`, method: "PUT", mineKind: "other", mine: `{"a":1,"b":1}`,
		status: 200, want: `{"a":2,"b":1}`},
	{name: "the kind changed on both sides differently", base: `{"a":1}`, theirsKind: "other", theirs: `{"a":1}`, method: "PUT", mineKind: "third", mine: `{"a":3}`,
		status: 412},
}

// TestMergeTable sends httpMergeCases through the API on every backend: a
// merge answers 200 with Merged-From: "1", ETag "3" and the merged
// element, and is one event on the feed with the write's op_id; a conflict
// answers 409 conflict with the exact conflicts and theirs as current; a
// kind changed both ways is 412 version_mismatch; refused writes write
// nothing.
func TestMergeTable(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{})
		base := ts.URL + "/rooms/w1"
		feed := ssetest.Open(t, base+"/events", "0")
		merged := map[string]string{} // op id -> the data its event must carry
		for i, c := range httpMergeCases {
			el := fmt.Sprintf("%s/elements/e%d", base, i)
			mustStatus(t, do(t, "PUT", el, `{"kind":"thing","data":`+c.base+`}`), http.StatusCreated)
			theirs := do(t, "PUT", el, `{"kind":"`+or(c.theirsKind, "thing")+`","data":`+c.theirs+`}`, "If-Match", `"1"`)
			mustStatus(t, theirs, http.StatusOK)
			head, err := ts.Store.Head(t.Context(), "w1")
			if err != nil {
				t.Fatal(err)
			}
			op := fmt.Sprintf("mine-%d", i)
			var r response
			if c.method == "PUT" {
				r = do(t, "PUT", el, `{"kind":"`+or(c.mineKind, "thing")+`","data":`+c.mine+`}`, "If-Match", `"1"`, "Op-ID", op)
			} else {
				r = do(t, "PATCH", el, c.mine, "If-Match", `"1"`, "Op-ID", op, "Content-Type", "application/merge-patch+json")
			}
			if r.Status != c.status {
				t.Errorf("%s: got %d %s, want %d", c.name, r.Status, r.Body, c.status)
				continue
			}
			switch c.status {
			case http.StatusOK:
				checkMergedAnswer(t, c.name, r, c.want)
				merged[op] = c.want
				continue
			case http.StatusConflict:
				checkConflictBody(t, c.name, r, c.conflicts, theirs.Body)
			default:
				if code := r.errorCode(t); code != "version_mismatch" {
					t.Errorf("%s: code %s, want version_mismatch", c.name, code)
				}
			}
			if got, err := ts.Store.Head(t.Context(), "w1"); err != nil || got != head {
				t.Errorf("%s: head %d (%v), want %d: a refused write wrote", c.name, got, err, head)
			}
		}
		// The feed: every merge is one element.updated with its data.
		head, err := ts.Store.Head(t.Context(), "w1")
		if err != nil {
			t.Fatal(err)
		}
		for seq := int64(1); seq <= head; seq++ {
			ev := feed.MustNext(t, 5*time.Second)
			var p struct {
				OpID    string `json:"op_id"`
				Element struct {
					Version int64           `json:"version"`
					Data    json.RawMessage `json:"data"`
				} `json:"element"`
			}
			if err := json.Unmarshal([]byte(ev.Data), &p); err != nil {
				t.Fatalf("event %s: %v", ev.ID, err)
			}
			want, ok := merged[p.OpID]
			if !ok {
				continue
			}
			delete(merged, p.OpID)
			if ev.Type != "element.updated" || p.Element.Version != 3 || string(p.Element.Data) != want {
				t.Errorf("event of %s: got %s %s, want element.updated version 3 with %s", p.OpID, ev.Type, ev.Data, want)
			}
		}
		if len(merged) > 0 {
			t.Errorf("merges without an event on the feed: %v", merged)
		}
	})
}

// checkMergedAnswer checks a merge's 200: Merged-From "1", ETag "3" and
// the element version 3 with data want.
func checkMergedAnswer(t *testing.T, name string, r response, want string) {
	t.Helper()
	if r.Header.Get("Merged-From") != `"1"` || r.Header.Get("ETag") != `"3"` {
		t.Errorf("%s: Merged-From %q ETag %q, want \"1\" and \"3\"", name, r.Header.Get("Merged-From"), r.Header.Get("ETag"))
	}
	var el struct {
		Version int64           `json:"version"`
		Data    json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(r.Body, &el); err != nil || el.Version != 3 || string(el.Data) != want {
		t.Errorf("%s: got %s (%v), want version 3 with data %s", name, r.Body, err, want)
	}
}

// checkConflictBody checks a 409: code conflict, exactly the conflicts
// want, and the current element, theirs (the answer to their PUT).
func checkConflictBody(t *testing.T, name string, r response, want string, theirs []byte) {
	t.Helper()
	var body struct {
		Error struct {
			Code      string          `json:"code"`
			Message   string          `json:"message"`
			Conflicts json.RawMessage `json:"conflicts"`
			Current   json.RawMessage `json:"current"`
		} `json:"error"`
	}
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatalf("%s: %s: %v", name, r.Body, err)
	}
	e := body.Error
	if e.Code != "conflict" || e.Message == "" || string(e.Conflicts) != want {
		t.Errorf("%s: got %s, want code conflict with conflicts %s", name, r.Body, want)
	}
	if string(e.Current) != string(theirs) {
		t.Errorf("%s: current %s, want theirs %s", name, e.Current, theirs)
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
