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
	var ev Event
	var data []string
	hasData := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.EOF
			}
			s.errc <- err
			return
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if hasData || ev.Type != "" {
				ev.Data = strings.Join(data, "\n")
				s.events <- ev
			}
			ev, data, hasData = Event{}, nil, false
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.ID = value
		case "event":
			ev.Type = value
		case "data":
			data = append(data, value)
			hasData = true
		case "retry":
			ev.Retry = value
		}
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
