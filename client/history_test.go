package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/roomfeed/roomfeed/client"
)

// historyServer answers the history routes of element c1 in room w1 as
// the server does, and records each request.
func historyServer(t *testing.T) (*httptest.Server, *[]string) {
	t.Helper()
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		seen = append(seen, fmt.Sprintf("%s %s %s If-Match=%s Key=%s %s", r.Method, r.URL.Path, r.URL.RawQuery,
			r.Header.Get("If-Match"), r.Header.Get("Idempotency-Key"), body))
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/rooms/w1/elements/c1/history" && r.URL.Query().Get("before") == "2":
			w.WriteHeader(http.StatusGone)
			fmt.Fprint(w, `{"error":{"code":"versions_trimmed","message":"trimmed","oldest":"2"}}`)
		case r.URL.Path == "/rooms/w1/elements/c1/history":
			fmt.Fprint(w, `{"room":"w1","id":"c1","versions":[`+
				`{"version":3,"seq":"7","at":"2026-11-25T11:41:05Z","actor":"bram","op_id":"","type":"deleted","kind":"character","data":null},`+
				`{"version":2,"seq":"4","at":"2026-11-25T11:41:02Z","actor":"aria","op_id":"k1","type":"updated","kind":"character","data":{"name":"Aria"}}],"next":2}`)
		case r.URL.Path == "/rooms/w1/elements" && r.URL.Query().Get("at") == "1":
			w.WriteHeader(http.StatusGone)
			fmt.Fprint(w, `{"error":{"code":"history_trimmed","message":"trimmed","oldest":"3"}}`)
		case r.URL.Path == "/rooms/w1/elements":
			w.Header().Set("Event-ID", "4")
			fmt.Fprint(w, `{"room":"w1","cursor":"4","elements":[{"id":"c1","kind":"character","version":2,"data":{"name":"Aria"},"updated_at":"2026-11-25T11:41:02Z"}]}`)
		case r.URL.Path == "/rooms/w1/elements/c1/revert" && r.Header.Get("If-Match") == `"9"`:
			w.WriteHeader(http.StatusPreconditionFailed)
			fmt.Fprint(w, `{"error":{"code":"version_mismatch","message":"stale"}}`)
		case r.URL.Path == "/rooms/w1/elements/c1/revert":
			w.Header().Set("Event-ID", "8")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprint(w, `{"id":"c1","kind":"character","version":4,"data":{"name":"Aria"},"updated_at":"2026-11-25T11:42:00Z"}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":{"code":"not_found","message":"no such route"}}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &seen
}

func TestHistory(t *testing.T) {
	srv, seen := historyServer(t)
	c := &client.Client{Server: srv.URL}
	h, err := c.History(t.Context(), "w1", "c1", 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if h.Room != "w1" || h.ID != "c1" || h.Next != 2 || len(h.Versions) != 2 {
		t.Fatalf("got %+v, want two versions of w1/c1 and next 2", h)
	}
	if v := h.Versions[0]; v.Version != 3 || v.Seq != 7 || v.Type != "deleted" || v.Data != nil || v.Actor != "bram" {
		t.Errorf("the deletion: got %+v, want version 3 at seq 7 by bram with no data", v)
	}
	if v := h.Versions[1]; v.OpID != "k1" || string(v.Data) != `{"name":"Aria"}` || v.At.Second() != 2 {
		t.Errorf("version 2: got %+v", v)
	}
	_, err = c.History(t.Context(), "w1", "c1", 2, 0)
	var vt *client.VersionsTrimmedError
	if !errors.As(err, &vt) || vt.Oldest != 2 {
		t.Errorf("before 2: got %v, want a *VersionsTrimmedError naming 2", err)
	}
	if _, err := c.History(t.Context(), "w1", "bad id", 0, 0); err == nil {
		t.Error("a bad id: got nil error, want one")
	}
	if want := []string{"GET /rooms/w1/elements/c1/history limit=2 If-Match= Key= ", "GET /rooms/w1/elements/c1/history before=2 If-Match= Key= "}; fmt.Sprint(*seen) != fmt.Sprint(want) {
		t.Errorf("requests: got %q, want %q", *seen, want)
	}
}

func TestSnapshotAt(t *testing.T) {
	srv, _ := historyServer(t)
	c := &client.Client{Server: srv.URL}
	snap, err := c.SnapshotAt(t.Context(), "w1", 4)
	if err != nil || snap.Cursor != 4 || len(snap.Elements) != 1 {
		t.Fatalf("got %+v, %v, want w1 at 4 with one element", snap, err)
	}
	_, err = c.SnapshotAt(t.Context(), "w1", 1)
	var te *client.TrimmedError
	if !errors.As(err, &te) || te.Oldest != 3 {
		t.Errorf("at 1: got %v, want a *TrimmedError naming 3", err)
	}
}

func TestRevert(t *testing.T) {
	srv, seen := historyServer(t)
	c := &client.Client{Server: srv.URL}
	r, err := c.Revert(t.Context(), "w1", "c1", 2, client.RevertOptions{IfMatch: 3, IdempotencyKey: "undo-1"})
	if err != nil || !r.Created || r.Seq != 8 || r.Element.Version != 4 {
		t.Fatalf("got %+v, %v, want c1 re-created at version 4 by event 8", r, err)
	}
	if want := `POST /rooms/w1/elements/c1/revert  If-Match="3" Key=undo-1 {"to_version":2}`; (*seen)[0] != want {
		t.Errorf("request: got %q, want %q", (*seen)[0], want)
	}
	_, err = c.Revert(t.Context(), "w1", "c1", 2, client.RevertOptions{IfMatch: 9})
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 412 || e.Code != "version_mismatch" {
		t.Errorf("stale If-Match: got %v, want a 412 *Error", err)
	}
}

func ExampleClient_History() {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"room":"w1","id":"c1","versions":[`+
			`{"version":2,"seq":"4","at":"2026-11-25T11:41:02Z","actor":"aria","op_id":"","type":"updated","kind":"character","data":{"name":"Aria B"}},`+
			`{"version":1,"seq":"1","at":"2026-11-25T11:40:59Z","actor":"aria","op_id":"","type":"created","kind":"character","data":{"name":"Aria"}}],"next":null}`)
	}))
	defer srv.Close()

	c := &client.Client{Server: srv.URL}
	ctx := context.Background()
	for before := int64(0); ; {
		h, err := c.History(ctx, "w1", "c1", before, 100)
		if err != nil {
			fmt.Println(err) // a *client.VersionsTrimmedError beyond the kept versions
			return
		}
		for _, v := range h.Versions {
			fmt.Println(v.Version, v.Type, v.Actor, string(v.Data))
		}
		if h.Next == 0 {
			break
		}
		before = h.Next
	}
	// Undo: c.Revert(ctx, "w1", "c1", 1, client.RevertOptions{IfMatch: 2})

	// Output:
	// 2 updated aria {"name":"Aria B"}
	// 1 created aria {"name":"Aria"}
}
