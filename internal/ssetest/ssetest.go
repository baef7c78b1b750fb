// Package ssetest is a small Server-Sent Events reader for tests: it opens a
// feed over real HTTP and parses it per the WHATWG rules, so tests see what a
// browser's EventSource would.
package ssetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Event is one dispatched SSE event. Comments are collected separately.
type Event struct {
	ID    string
	Type  string
	Data  string
	Retry string
}

// Stream is an open feed.
type Stream struct {
	Resp   *http.Response
	events chan Event
	errc   chan error
	cancel context.CancelFunc
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

// Dial opens a feed without a test; an answer other than 200 is an error
// carrying the status and body.
func Dial(ctx context.Context, url, lastEventID string) (*Stream, error) {
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set("Accept", "text/event-stream")
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		return nil, &StatusError{Status: resp.StatusCode, Body: string(body)}
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("content type %q, want text/event-stream", ct)
	}
	s := &Stream{Resp: resp, events: make(chan Event, 1<<16), errc: make(chan error, 1), cancel: cancel, done: make(chan struct{})}
	go s.read()
	return s, nil
}

// StatusError is a non-200 answer to Dial.
type StatusError struct {
	Status int
	Body   string
}

func (e *StatusError) Error() string { return fmt.Sprintf("status %d: %s", e.Status, e.Body) }

func (s *Stream) read() {
	defer close(s.done)
	defer close(s.events)
	br := bufio.NewReaderSize(s.Resp.Body, 1<<16)
	var d decoder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.EOF
			}
			s.errc <- err
			return
		}
		if ev, ok := d.line(strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")); ok {
			s.events <- ev
		}
	}
}

// Parse returns the events of a whole event stream (an example, a
// recorded response).
func Parse(stream string) []Event {
	var d decoder
	var out []Event
	for _, line := range strings.Split(strings.ReplaceAll(stream, "\r\n", "\n"), "\n") {
		if ev, ok := d.line(line); ok {
			out = append(out, ev)
		}
	}
	if ev, ok := d.line(""); ok { // a last event without its blank line
		out = append(out, ev)
	}
	return out
}

// decoder applies the WHATWG event-stream rules one line at a time.
type decoder struct {
	ev      Event
	data    []string
	hasData bool
}

// line takes one line without its ending and returns the event a blank
// line dispatches.
func (d *decoder) line(line string) (Event, bool) {
	if line == "" {
		ev, ok := d.ev, d.hasData || d.ev.Type != ""
		ev.Data = strings.Join(d.data, "\n")
		*d = decoder{}
		return ev, ok
	}
	if strings.HasPrefix(line, ":") {
		return Event{}, false
	}
	field, value, _ := strings.Cut(line, ":")
	value = strings.TrimPrefix(value, " ")
	switch field {
	case "id":
		d.ev.ID = value
	case "event":
		d.ev.Type = value
	case "data":
		d.data = append(d.data, value)
		d.hasData = true
	case "retry":
		d.ev.Retry = value
	}
	return Event{}, false
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
	s.cancel()
	s.Resp.Body.Close()
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
