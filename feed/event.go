package feed

import (
	"context"
	"errors"
	"strconv"
	"strings"
)

// Event is one recorded change of a room. Seq is the room's gap-free sequence
// number and the SSE id; Data is the JSON object sent as the SSE data.
type Event struct {
	Room string
	Seq  int64
	Type string
	Data []byte
}

// ID returns the SSE id of the event: its decimal sequence number.
func (e Event) ID() string { return strconv.FormatInt(e.Seq, 10) }

var (
	// ErrTrimmed reports that the events after a cursor are no longer retained.
	ErrTrimmed = errors.New("history trimmed")
	// ErrBadCursor reports a cursor that is not a sequence number.
	ErrBadCursor = errors.New("malformed cursor")
	// ErrClosed reports use of a hub or log that has been closed.
	ErrClosed = errors.New("feed closed")
	// ErrSlowConsumer reports a subscriber dropped because its buffer was full.
	ErrSlowConsumer = errors.New("slow consumer")
	// ErrUnavailable reports that the log's backing service (Redis) could
	// not be reached; the caller may retry.
	ErrUnavailable = errors.New("feed unavailable")
)

// ParseCursor parses a Last-Event-ID: a decimal sequence number ("42"), or a
// Redis stream id of the form "42-0". Empty input is an error; the caller
// decides what a missing cursor means.
func ParseCursor(s string) (int64, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(s, "-0")
	if s == "" || len(s) > 19 {
		return 0, ErrBadCursor
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, ErrBadCursor
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, ErrBadCursor
	}
	return n, nil
}

// History is the durable event history (the SQL events table), used to replay
// what a faster log no longer holds and to fill gaps.
type History interface {
	// EventsAfter returns at most limit events of room with Seq > after, in
	// order. It returns ErrTrimmed when events after `after` were removed by
	// retention.
	EventsAfter(ctx context.Context, room string, after int64, limit int) ([]Event, error)
}
