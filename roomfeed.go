// Package roomfeed is the shared vocabulary of the service: a room's Event
// and Element, the event types, the names a client may use, and the
// durable History every other package reads. It depends on nothing else
// of roomfeed; repo (SQL), feed (the logs between nodes) and sse (delivery
// to subscribers) all speak it.
package roomfeed

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Event types recorded for element changes. Custom messages use their own
// names (see MessageName).
const (
	TypeCreated = "element.created"
	TypeUpdated = "element.updated"
	TypeDeleted = "element.deleted"
)

// Event is one recorded change or message of a room, or (Seq 0) an
// ephemeral event such as presence that is delivered live and never
// recorded. Seq is the room's gap-free sequence number and the SSE id; Data
// is the event's JSON object, byte for byte as stored, sent as the SSE data.
type Event struct {
	Room string
	Seq  int64
	Type string
	Data json.RawMessage
	At   time.Time // commit time; zero where the carrier does not keep it
}

// ID returns the SSE id of the event: its decimal sequence number.
func (e Event) ID() string { return strconv.FormatInt(e.Seq, 10) }

// IsElement reports whether the event records an element change.
func (e Event) IsElement() bool {
	return e.Type == TypeCreated || e.Type == TypeUpdated || e.Type == TypeDeleted
}

// Element is one element of a room. Data is a JSON object.
type Element struct {
	ID        string          `json:"id"`
	Kind      string          `json:"kind"`
	Version   int64           `json:"version"`
	Data      json.RawMessage `json:"data,omitempty"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// RoomHead is a room's highest committed sequence number.
type RoomHead struct {
	Room string
	Seq  int64
}

// ErrTrimmed reports that the events after a cursor are no longer retained.
var ErrTrimmed = errors.New("history trimmed")

// Pager reads a room's events after a cursor: the SQL history, or a log
// that answers from its own window before falling back to the history.
type Pager interface {
	// EventsAfter returns at most limit events of room with Seq > after, in
	// order. It returns ErrTrimmed when events after `after` were removed.
	EventsAfter(ctx context.Context, room string, after int64, limit int) ([]Event, error)
}

// History is the durable event history: the SQL events table, the outbox
// every log republishes from and every replay falls back to.
type History interface {
	Pager
	// Head returns the room's highest committed seq, 0 for a room never
	// written.
	Head(ctx context.Context, room string) (int64, error)
	// RoomHeads returns the head of every room whose head changed at or
	// after since; the zero time means every room.
	RoomHeads(ctx context.Context, since time.Time) ([]RoomHead, error)
}

// Pages reads the events of room in (after, until] from p, at most size at
// a time, and calls fn with each page, in order, until fn fails, the events
// end or until is reached; until < 0 reads to the end. An error of p (such
// as ErrTrimmed) or of fn is returned as is.
func Pages(ctx context.Context, p Pager, room string, after, until int64, size int, fn func([]Event) error) error {
	for until < 0 || after < until {
		limit := size
		if until >= 0 {
			limit = int(min(int64(size), until-after))
		}
		page, err := p.EventsAfter(ctx, room, after, limit)
		if err != nil {
			return err
		}
		full := len(page) >= limit
		page = clip(page, after, until)
		if len(page) == 0 {
			return nil
		}
		if err := fn(page); err != nil {
			return err
		}
		after = page[len(page)-1].Seq
		if !full {
			return nil
		}
	}
	return nil
}

// clip keeps the events of page in (after, until], in order; until < 0 is
// no upper bound.
func clip(page []Event, after, until int64) []Event {
	i := 0
	for i < len(page) && page[i].Seq <= after {
		i++
	}
	page = page[i:]
	for j, e := range page {
		if until >= 0 && e.Seq > until {
			return page[:j]
		}
	}
	return page
}

// Patterns of the names clients choose.
var (
	// NamePattern: room names, element ids and presence names.
	NamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)
	// KindPattern: element kinds.
	KindPattern = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)
	// MessagePattern: custom message (and signal) names; see MessageName.
	MessagePattern = regexp.MustCompile(`^[a-z][a-z0-9_.:-]{0,63}$`)
)

// ValidName reports whether s may name a room, an element or a person.
func ValidName(s string) bool { return NamePattern.MatchString(s) }

// MessageName reports whether name may be a custom event's type: it matches
// MessagePattern and cannot be mistaken for one of the feed's own types
// (reset, error, auth_expired, element.*, presence.*).
func MessageName(name string) bool {
	switch name {
	case "reset", "auth_expired", "error":
		return false
	}
	return MessagePattern.MatchString(name) &&
		!strings.HasPrefix(name, "element.") && !strings.HasPrefix(name, "presence.")
}
