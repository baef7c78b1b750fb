package client

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// script serves scripted feeds: the nth connection gets conns[n]; later
// ones are held open and silent. It records what each request asked.
type script struct {
	conns []http.HandlerFunc

	mu   sync.Mutex
	reqs []request
}

// request is what one connection asked for.
type request struct {
	URL, LastEventID, Authorization string
	At                              time.Time
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	n := len(s.reqs)
	s.reqs = append(s.reqs, request{r.URL.String(), r.Header.Get("Last-Event-ID"), r.Header.Get("Authorization"), time.Now()})
	s.mu.Unlock()
	if n >= len(s.conns) {
		feed("", "hold")(w, r)
		return
	}
	s.conns[n](w, r)
}

func (s *script) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

// feed answers an event stream of frames, then ends as told: "close" (a
// clean end), "drop" (the connection cut mid-response) or "hold" (open and
// silent until the client leaves).
func feed(frames, end string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, frames)
		w.(http.Flusher).Flush()
		switch end {
		case "drop":
			panic(http.ErrAbortHandler)
		case "hold":
			<-r.Context().Done()
		}
	}
}

// refuse answers status with a roomfeed error body and, when retryAfter is
// set, a Retry-After header.
func refuse(status int, code, retryAfter string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":{"code":%q,"message":"scripted"}}`, code)
	}
}

// summary is a message in a few words, for comparing with a want list.
func summary(m Message) string {
	switch m := m.(type) {
	case Event:
		return fmt.Sprintf("%s %d %s %s", m.Room, m.Seq, m.Type, m.Data)
	case Reset:
		return fmt.Sprintf("reset %s %d %s", m.Room, m.Cursor, m.Reason)
	case Start:
		return "start " + cursorText(m.Cursor)
	case Progress:
		return "progress " + cursorText(m.Cursor)
	case Reconnect:
		var se *StreamError
		var e *Error
		switch {
		case m.Err == nil:
			return "reconnect"
		case errors.As(m.Err, &se):
			return "reconnect: " + se.Type
		case errors.As(m.Err, &e):
			return fmt.Sprintf("reconnect: %d %s", e.Status, e.Code)
		case errors.As(m.Err, new(idleError)):
			return "reconnect: idle"
		}
		return "reconnect: dropped"
	}
	return fmt.Sprintf("%T", m)
}

func cursorText(c Cursor) string {
	var parts []string
	for _, r := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, fmt.Sprintf("%s:%d", r, c[r]))
	}
	return strings.Join(parts, ",")
}

// memTransport serves requests with a handler in memory, without a
// network, so that a synctest bubble's clock can run while the client
// waits on a stream.
type memTransport struct{ h http.Handler }

func (t memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	pr, pw := io.Pipe()
	w := &memWriter{header: http.Header{}, body: pw, ready: make(chan struct{})}
	go func() {
		defer pw.Close()
		defer func() {
			if p := recover(); p != nil && p != http.ErrAbortHandler {
				panic(p)
			} else if p != nil {
				pw.CloseWithError(io.ErrUnexpectedEOF)
			}
		}()
		t.h.ServeHTTP(w, req)
		w.WriteHeader(http.StatusOK)
	}()
	select {
	case <-w.ready:
		return &http.Response{StatusCode: w.status, Header: w.header, Body: pr, Request: req}, nil
	case <-req.Context().Done():
		pr.Close()
		return nil, req.Context().Err()
	}
}

// memWriter is the handler's side of a memTransport response.
type memWriter struct {
	header http.Header
	status int
	body   *io.PipeWriter
	ready  chan struct{}
}

func (w *memWriter) Header() http.Header { return w.header }

func (w *memWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
		close(w.ready)
	}
}

func (w *memWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

func (w *memWriter) Flush() {}
