// Package ssetest opens feeds over real HTTP for tests and reads them as a
// browser's EventSource would: client.Dial opens the stream and the sse
// decoder reads it, so tests see what every roomfeed client sees.
package ssetest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/client"
	"github.com/roomfeed/roomfeed/sse"
)

// Event is one dispatched SSE event. Comments are not kept.
type Event struct {
	ID    string // the id this event set; "" for an event without one (presence)
	Type  string // "message" when the stream gave no event: line
	Data  string
	Retry string // the stream's latest retry: hint in milliseconds, "" before one
}

// event is ev as tests see it.
func event(ev sse.Event, retry time.Duration, hasRetry bool) Event {
	out := Event{Type: ev.Type, Data: ev.Data}
	if ev.HasID {
		out.ID = ev.ID
	}
	if hasRetry {
		out.Retry = strconv.FormatInt(retry.Milliseconds(), 10)
	}
	return out
}

// Stream is an open feed, read ahead into a buffer so that a test that
// does not read at once is never a slow consumer.
type Stream struct {
	Resp   *http.Response
	st     *client.Stream
	events chan Event
	errc   chan error
	done   chan struct{}
}

// Open GETs url with the given Last-Event-ID header (none when empty) and
// fails the test unless the answer is a 200 event stream. The stream is
// closed when the test ends.
func Open(tb testing.TB, url, lastEventID string) *Stream {
	tb.Helper()
	s, err := Dial(context.Background(), url, lastEventID)
	if err != nil {
		tb.Fatalf("open %s: %v", url, err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Dial opens a feed without a test; an answer other than 200 is a
// *StatusError carrying the status and body.
func Dial(ctx context.Context, url, lastEventID string) (*Stream, error) {
	st, err := (&client.Client{}).Dial(ctx, url, lastEventID)
	var refused *client.Error
	if errors.As(err, &refused) {
		return nil, &StatusError{Status: refused.Status, Body: refused.Body}
	}
	if err != nil {
		return nil, err
	}
	s := &Stream{Resp: st.Response, st: st, events: make(chan Event, 1<<16), errc: make(chan error, 1), done: make(chan struct{})}
	go s.read()
	return s, nil
}

// StatusError is a non-200 answer to Dial.
type StatusError struct {
	Status int
	Body   string
}

// Error says the status and the body.
func (e *StatusError) Error() string { return fmt.Sprintf("status %d: %s", e.Status, e.Body) }

func (s *Stream) read() {
	defer close(s.done)
	defer close(s.events)
	for {
		ev, err := s.st.Next()
		if err != nil {
			s.errc <- err
			return
		}
		retry, ok := s.st.Retry()
		s.events <- event(ev, retry, ok)
	}
}

// Parse returns the events of a whole event stream (an example, a
// recorded response); an event cut off by the end is not one.
func Parse(stream string) []Event {
	d := sse.NewDecoder(strings.NewReader(stream))
	var out []Event
	for {
		ev, err := d.Next()
		if err != nil {
			return out
		}
		retry, ok := d.Retry()
		out = append(out, event(ev, retry, ok))
	}
}

// ErrTimeout is returned by Next when no event arrives in time.
var ErrTimeout = errors.New("no event in time")

// Next returns the next event, io.EOF when the server ended the stream, or
// ErrTimeout.
func (s *Stream) Next(timeout time.Duration) (Event, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case ev, ok := <-s.events:
		if !ok {
			return Event{}, <-s.errc
		}
		return ev, nil
	case <-t.C:
		return Event{}, ErrTimeout
	}
}

// MustNext returns the next event or fails the test.
func (s *Stream) MustNext(tb testing.TB, timeout time.Duration) Event {
	tb.Helper()
	ev, err := s.Next(timeout)
	if err != nil {
		tb.Fatalf("next event: %v", err)
	}
	return ev
}

// Close ends the stream and waits for its reader.
func (s *Stream) Close() {
	s.st.Close()
	<-s.done
}

// Ended reports whether the server closed the stream within timeout.
func (s *Stream) Ended(timeout time.Duration) bool {
	deadline := time.After(timeout)
	for {
		select {
		case _, ok := <-s.events:
			if !ok {
				return true
			}
		case <-deadline:
			return false
		}
	}
}
