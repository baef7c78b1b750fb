package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestSubscriberReadsTheStream: a subscriber takes its start from the
// opening comment and records every event with an id, whatever the line
// endings and the framing (chunked, or identity until close as roomfeed's
// hijacked streams write), and counts "error" events.
func TestSubscriberReadsTheStream(t *testing.T) {
	const stream = "retry: 1000\n\n: roomfeed w1 from 4\n\n" +
		"id: 5\nevent: element.updated\ndata: {\"a\":1}\n\n" +
		": ping\n\n" +
		"id: 6\r\nevent: message.created\r\ndata: {}\r\n\r\n" +
		"event: presence\ndata: {}\n\n" +
		"event: error\ndata: {\"error\":\"internal\"}\n\n"
	serve := map[string]http.HandlerFunc{
		"chunked": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, stream)
			w.(http.Flusher).Flush()
		},
		"identity": func(w http.ResponseWriter, r *http.Request) {
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			rw.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + stream)
			rw.Flush()
		},
	}
	for name, h := range serve {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			t.Cleanup(srv.Close)
			s, err := subscribe(t.Context(), hostport(srv.URL), "w1", -1)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.close)
			select {
			case <-s.endedCh():
			case <-time.After(10 * time.Second):
				t.Fatal("the stream did not end")
			}
			dups, disorder := s.counters()
			if s.from != 4 || s.last.Load() != 6 || s.count.Load() != 2 || s.errEvents.Load() != 1 || dups != 0 || disorder != 0 {
				t.Errorf("got from %d, last %d, %d events, %d error events, %d dups, %d out of order; want 4, 6, 2, 1, 0, 0",
					s.from, s.last.Load(), s.count.Load(), s.errEvents.Load(), dups, disorder)
			}
			if s.received(5) == 0 || s.received(6) == 0 || s.received(7) != 0 {
				t.Errorf("receipts of 5, 6, 7: %d, %d, %d; want the first two only", s.received(5), s.received(6), s.received(7))
			}
		})
	}
}

// TestOpenStreamRefusesAStrangeOpening: a stream whose opening comment does
// not say where it starts is not roomfeed's.
func TestOpenStreamRefusesAStrangeOpening(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, ": roomfeed w1 since 4\n\n")
	}))
	t.Cleanup(srv.Close)
	if _, err := openStream(t.Context(), hostport(srv.URL), "w1", -1); !errors.Is(err, errNotSSE) {
		t.Fatalf("got %v, want errNotSSE", err)
	}
}
