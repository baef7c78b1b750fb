package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/client"
)

func TestSnapshot(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/rooms/w1/elements":
			if r.Header.Get("Authorization") != "Bearer s3cret" {
				t.Errorf("Authorization: got %q, want the token", r.Header.Get("Authorization"))
			}
			fmt.Fprint(w, `{"room":"w1","cursor":"7","elements":[{"id":"c1","kind":"character","version":2,"data":{"name":"Aria"},"updated_at":"2026-11-25T11:40:59.123456Z"}]}`)
		default:
			w.Header().Set("Retry-After", "3")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error":{"code":"database_unavailable","message":"down"}}`)
		}
	}))
	t.Cleanup(srv.Close)
	c := &client.Client{Server: srv.URL, Token: func(context.Context) (string, error) { return "s3cret", nil }}
	snap, err := c.Snapshot(t.Context(), "w1")
	if err != nil {
		t.Fatal(err)
	}
	if snap.Room != "w1" || snap.Cursor != 7 || len(snap.Elements) != 1 || snap.Elements[0].ID != "c1" ||
		snap.Elements[0].Version != 2 || string(snap.Elements[0].Data) != `{"name":"Aria"}` {
		t.Errorf("got %+v, want w1 at 7 with element c1 v2", snap)
	}
	_, err = c.Snapshot(t.Context(), "w2")
	var e *client.Error
	if !errors.As(err, &e) || e.Status != 503 || e.Code != "database_unavailable" || e.RetryAfter.Seconds() != 3 {
		t.Errorf("got %v, want a 503 *Error with Retry-After 3s", err)
	}
}

func TestDial(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("X-Accel-Buffering", "no")
		fmt.Fprintf(w, "retry: 2000\n\n: roomfeed w1 from %s\n\nid: 5\nevent: chat\ndata: {}\n\nevent: presence.joined\ndata: {}\n\n", r.Header.Get("Last-Event-ID"))
	}))
	t.Cleanup(srv.Close)
	st, err := (&client.Client{}).Dial(t.Context(), srv.URL+"/rooms/w1/events", "4")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got := st.Response.Header.Get("X-Accel-Buffering"); got != "no" {
		t.Errorf("X-Accel-Buffering: got %q, want the answer's headers", got)
	}
	for _, want := range []string{"5 true chat", "5 false presence.joined"} {
		ev, err := st.Next()
		if got := fmt.Sprint(ev.ID, " ", ev.HasID, " ", ev.Type); err != nil || got != want {
			t.Fatalf("got %q, %v; want %q", got, err, want)
		}
	}
	if _, err := st.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("at the end: got %v, want io.EOF", err)
	}
}

func TestPage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch q := r.URL.Query(); q.Get("after") {
		case "4200":
			if want := "after=4200&format=json&kind=character&limit=2&type=element.updated"; r.URL.RawQuery != want || r.Header.Get("Accept") != "application/json" {
				t.Errorf("query %q, Accept %q; want %q, application/json", r.URL.RawQuery, r.Header.Get("Accept"), want)
			}
			fmt.Fprint(w, `{"room":"w1","events":[{"id":"4201","room":"w1","type":"element.updated","element":{"id":"c1"}},`+
				`{"id":"4203","type":"element.updated"}],"next":"4250","head":"9000"}`)
		case "7":
			w.WriteHeader(http.StatusGone)
			fmt.Fprint(w, `{"error":{"code":"history_trimmed","message":"gone","oldest":"4001"}}`)
		default:
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":{"code":"cursor_ahead","message":"ahead"}}`)
		}
	}))
	t.Cleanup(srv.Close)
	c := &client.Client{Server: srv.URL}
	p, err := c.Page(t.Context(), "w1", 4200, 2, client.Filter{Types: []string{"element.updated"}, Kinds: []string{"character"}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Room != "w1" || p.Next != 4250 || p.Head != 9000 || len(p.Events) != 2 ||
		p.Events[0].Seq != 4201 || p.Events[1].Seq != 4203 || p.Events[1].Type != "element.updated" ||
		string(p.Events[1].Data) != `{"id":"4203","type":"element.updated"}` {
		t.Errorf("got %+v, want events 4201 and 4203, next 4250, head 9000", p)
	}
	_, err = c.Page(t.Context(), "w1", 7, 0, client.Filter{})
	var trimmed *client.TrimmedError
	if !errors.As(err, &trimmed) || trimmed.Oldest != 4001 || trimmed.Room != "w1" || !errors.Is(err, roomfeed.ErrTrimmed) {
		t.Errorf("got %v, want a TrimmedError at 4001 that is roomfeed.ErrTrimmed", err)
	}
	_, err = c.Page(t.Context(), "w1", 99999, 0, client.Filter{})
	var e *client.Error
	if !errors.As(err, &e) || e.Code != "cursor_ahead" {
		t.Errorf("got %v, want the 400 *Error", err)
	}
	if _, err := c.Page(t.Context(), "bad/room", 0, 0, client.Filter{}); err == nil {
		t.Error("a bad room: got no error")
	}
}

// TestRevertName: a write carries the client's Name as ?client=, the actor
// of a write without a token.
func TestRevertName(t *testing.T) {
	srv, seen := historyServer(t)
	c := &client.Client{Server: srv.URL, Name: "ana"}
	if _, err := c.Revert(t.Context(), "w1", "c1", 2, client.RevertOptions{}); err != nil {
		t.Fatal(err)
	}
	if want := `POST /rooms/w1/elements/c1/revert client=ana If-Match= Key= {"to_version":2}`; (*seen)[0] != want {
		t.Errorf("request: got %q, want %q", (*seen)[0], want)
	}
}
