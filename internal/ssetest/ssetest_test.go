package ssetest

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestStream checks the meanings tests rely on: ID is the id the event set
// ("" for presence), the end of the stream is io.EOF, a refusal is a
// *StatusError with the body.
func TestStream(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refused" {
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"error":{"code":"too_many_streams","message":"m"}}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "retry: 2000\n\n: roomfeed w1 from %s\n\nid: 4\nevent: chat\ndata: {}\n\nevent: presence.joined\ndata: a\ndata: b\n\n", r.Header.Get("Last-Event-ID"))
	}))
	t.Cleanup(srv.Close)

	s := Open(t, srv.URL+"/rooms/w1/events", "3")
	want := []Event{{ID: "4", Type: "chat", Data: "{}", Retry: "2000"}, {ID: "", Type: "presence.joined", Data: "a\nb", Retry: "2000"}}
	for i, w := range want {
		if got := s.MustNext(t, 5*time.Second); got != w {
			t.Errorf("event %d: got %+v, want %+v", i, got, w)
		}
	}
	if _, err := s.Next(5 * time.Second); !errors.Is(err, io.EOF) {
		t.Errorf("at the end: got %v, want io.EOF", err)
	}
	if !s.Ended(time.Second) {
		t.Error("Ended: got false after the end")
	}

	_, err := Dial(t.Context(), srv.URL+"/refused", "")
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 429 || !strings.Contains(se.Body, `"code":"too_many_streams"`) || !strings.Contains(err.Error(), "429") {
		t.Errorf("got %v, want a 429 StatusError with the body", err)
	}

	got := Parse("id: 1\ndata: x\n\nevent: e\n\ndata: cut off")
	if want := []Event{{ID: "1", Type: "message", Data: "x"}}; !slices.Equal(got, want) {
		t.Errorf("Parse: got %+v, want %+v", got, want)
	}
}
