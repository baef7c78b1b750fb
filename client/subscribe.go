package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/sse"
)

// Cursor is a subscription's position: per room, the seq of the last event
// delivered or the position to start after. A room missing from it starts
// live.
type Cursor map[string]int64

// Message is what Subscription.Next returns: an Event, a Reset, a Start, a
// Progress or a Reconnect.
type Message interface{ message() }

// Event is an event of a room: a recorded change or message (Seq > 0),
// delivered once and in order, or an ephemeral event such as presence
// (Seq 0), which moves no cursor.
type Event struct {
	Room string
	Seq  int64
	Type string          // element.created, chat, presence.joined, ...
	Data json.RawMessage // the event's JSON object, as sent
}

// Reset reports that Room's history after the cursor was trimmed: its state
// is to be reloaded from a snapshot. The subscription's cursor of Room has
// moved to Cursor; after loading a snapshot at a later seq, call Advance.
type Reset struct {
	Room   string
	Cursor int64
	Reason string // "history_trimmed"
}

// Start reports where the server started the rooms the subscription had no
// cursor for (the stream's first comment). Their cursors moved there, so a
// reconnection before their first event misses nothing.
type Start struct{ Cursor Cursor }

// Progress reports that a filtered subscription's cursor moved past events
// its filter left out, without an event (the server's bare id): Cursor
// holds the rooms that moved, at their new position. Nothing needs doing;
// it is there for a program that stores its cursor.
type Progress struct{ Cursor Cursor }

// Reconnect reports that the stream ended and the subscription reconnects
// after Wait. Err says why: nil for a clean close (a node shutting down), a
// *StreamError when the server sent error or auth_expired, else the failed
// request or connection.
type Reconnect struct {
	Err  error
	Wait time.Duration
}

func (Event) message()     {}
func (Reset) message()     {}
func (Start) message()     {}
func (Progress) message()  {}
func (Reconnect) message() {}

// StreamError is an error or auth_expired event, after which the server
// ends the stream. After auth_expired the next connection asks Token again.
type StreamError struct {
	Type string // "error" or "auth_expired"
	Data string // its JSON data
}

// Error says which event ended the stream, with its data.
func (e *StreamError) Error() string { return "server sent " + e.Type + ": " + e.Data }

// ErrClosed is returned by Next after Close.
var ErrClosed = errors.New("client: subscription closed")

// idleError ends a connection on which nothing arrived for d.
type idleError struct{ d time.Duration }

func (e idleError) Error() string { return fmt.Sprintf("nothing received for %v", e.d) }

// errStarted stops the decoder when a comment moved the cursor, errMoved
// when a bare id did.
var (
	errStarted = errors.New("start position")
	errMoved   = errors.New("cursor moved")
)

// defaultRetry is the wait before reconnecting until the server sends a
// retry: hint.
const defaultRetry = time.Second

// Subscription follows rooms from a cursor; Next delivers what happens in
// them. It is not safe for concurrent use.
type Subscription struct {
	c      *Client
	rooms  []string
	filter Filter
	cursor Cursor
	ctx    context.Context // ended by Close
	cancel context.CancelFunc

	retry    time.Duration // the server's latest retry: hint
	failures int           // failed attempts since the last accepted stream
	wait     time.Duration // before the next connection
	err      error         // final
	started  Cursor        // the cursors a comment just adopted
	moved    Cursor        // the cursors a bare id, or another room's event id, just moved

	st      *Stream // the open connection, or nil
	connCtx context.Context
	drop    context.CancelCauseFunc // ends st
	idle    *time.Timer             // ends st when nothing arrives
}

// Subscribe follows rooms from cursor (nil: live): one room on
// /rooms/{room}/events, several on /events?room=a&room=b. No request is
// made before the first Next.
func (c *Client) Subscribe(cursor Cursor, rooms ...string) *Subscription {
	return c.SubscribeFiltered(cursor, Filter{}, rooms...)
}

// Filter selects the events of a subscription or a page by type, element
// kind and element id; see sse.Filter for the rules. The zero Filter
// selects every event.
type Filter = sse.Filter

// SubscribeFiltered is Subscribe for the events that pass f only. Their
// Seq is still the room's seq, and the events left out move the cursor
// (Progress), so a reconnection neither repeats nor misses an event.
func (c *Client) SubscribeFiltered(cursor Cursor, f Filter, rooms ...string) *Subscription {
	ctx, cancel := context.WithCancel(context.Background())
	s := &Subscription{c: c, filter: f, cursor: Cursor{}, ctx: ctx, cancel: cancel, retry: defaultRetry}
	for _, r := range rooms {
		if !slices.Contains(s.rooms, r) {
			s.rooms = append(s.rooms, r)
		}
		if seq, ok := cursor[r]; ok {
			s.cursor[r] = seq
		}
	}
	return s
}

// Cursor returns the subscription's position.
func (s *Subscription) Cursor() Cursor { return maps.Clone(s.cursor) }

// Advance moves room's cursor forward to seq, never back: the events at or
// below seq are skipped and a reconnection resumes after it. Call it after
// loading room's snapshot at seq.
func (s *Subscription) Advance(room string, seq int64) {
	if cur, ok := s.cursor[room]; slices.Contains(s.rooms, room) && (!ok || seq > cur) {
		s.cursor[room] = seq
	}
}

// Close ends the subscription and its connection. It must not run while
// Next does: cancel Next's context to interrupt it.
func (s *Subscription) Close() error {
	s.cancel()
	s.disconnect()
	return nil
}

// Next returns the next message, connecting and reconnecting as needed:
// after a dropped connection, a clean close, an error event or IdleTimeout
// without a byte, it waits the server's retry: hint, doubled after each
// failed attempt up to MaxBackoff, ±25 %, and at least a 503 or 429's
// Retry-After. Events at or below the cursor are skipped. Next returns an
// error only when ctx is done (a later Next goes on), after Close
// (ErrClosed), or when the server refuses the request (an *Error with 400,
// 401, 403 or 404: final, as is an answer that is not an event stream).
func (s *Subscription) Next(ctx context.Context) (Message, error) {
	for {
		switch {
		case s.err != nil:
			return nil, s.err
		case s.ctx.Err() != nil:
			return nil, ErrClosed
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case s.moved != nil:
			m := Progress{Cursor: s.moved}
			s.moved = nil
			return m, nil
		}
		var m Message
		var err error
		if s.st == nil {
			m, err = s.connect(ctx)
		} else {
			m, err = s.read(ctx)
		}
		if m != nil || err != nil {
			return m, err
		}
	}
}

// connect waits as told, then opens a stream from the cursor. It returns a
// Reconnect when that fails and nothing once connected.
func (s *Subscription) connect(ctx context.Context) (Message, error) {
	if err := s.sleep(ctx); err != nil {
		return nil, err
	}
	u, err := s.url()
	if err != nil {
		s.err = err
		return nil, err
	}
	connCtx, drop := context.WithCancelCause(s.ctx)
	if d := s.c.idleTimeout(); d > 0 {
		s.idle = time.AfterFunc(d, func() { drop(idleError{d}) })
	}
	stop := context.AfterFunc(ctx, func() { drop(context.Cause(ctx)) })
	st, err := s.c.dial(connCtx, u, s.lastEventID(), s.kick)
	s.st, s.connCtx, s.drop = st, connCtx, drop
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		why, nextErr := s.end(ctx, err)
		switch {
		case nextErr != nil:
			return nil, nextErr
		case final(why):
			s.err = why
			return nil, why
		}
		return s.reconnect(why, retryAfterOf(why)), nil
	}
	st.dec.OnComment = s.comment
	st.dec.OnID = s.bareID
	s.failures = 0 // the server accepted the stream
	return nil, nil
}

// read returns the message of the stream's next event, nothing when the
// event is skipped, a Reconnect when the stream ends.
func (s *Subscription) read(ctx context.Context) (Message, error) {
	drop := s.drop
	stop := context.AfterFunc(ctx, func() { drop(context.Cause(ctx)) })
	s.kick()
	ev, err := s.st.Next()
	if s.idle != nil {
		s.idle.Stop()
	}
	if !stop() && err == nil {
		err = ctx.Err() // the event comes again after the reconnection
	}
	if r, ok := s.st.dec.Retry(); ok {
		s.retry = max(r, time.Millisecond)
	}
	if errors.Is(err, errStarted) {
		m := Start{Cursor: s.started}
		s.started = nil
		return m, nil
	}
	if errors.Is(err, errMoved) {
		return nil, nil // Next returns the Progress
	}
	if err == nil {
		var m Message
		if m, err = s.handle(ev); err == nil {
			return m, nil
		}
	}
	why, nextErr := s.end(ctx, err)
	if nextErr != nil {
		return nil, nextErr
	}
	if errors.Is(why, io.EOF) {
		why = nil // a clean close: reconnect after the retry: hint
	}
	return s.reconnect(why, 0), nil
}

// end closes the connection, or the attempt, that failed with err. nextErr
// is what Next returns when Close or ctx ended it; else why says why it
// ended.
func (s *Subscription) end(ctx context.Context, err error) (why, nextErr error) {
	cause, cancelled := context.Cause(s.connCtx), s.connCtx.Err() != nil
	s.disconnect()
	switch {
	case s.ctx.Err() != nil:
		return nil, ErrClosed
	case errors.As(cause, new(idleError)):
		return cause, nil
	case cancelled:
		return nil, ctx.Err()
	}
	return err, nil
}

func (s *Subscription) disconnect() {
	if s.drop != nil {
		s.drop(nil)
		s.drop = nil
	}
	if s.st != nil {
		s.st.Close()
		s.st = nil
	}
	if s.idle != nil {
		s.idle.Stop()
		s.idle = nil
	}
}

// kick restarts the idle timer: bytes arrived.
func (s *Subscription) kick() {
	if s.idle != nil {
		s.idle.Reset(s.c.idleTimeout())
	}
}

// reconnect schedules the next connection: after the retry: hint, doubled
// after each failure in a row up to MaxBackoff, ±25 %, and at least wait.
func (s *Subscription) reconnect(err error, wait time.Duration) Message {
	limit := s.c.maxBackoff()
	d := min(s.retry, limit)
	if err != nil {
		s.failures++
		for i := 1; i < s.failures && d < limit; i++ {
			d *= 2
		}
	}
	s.wait = max(jitter(min(d, limit), limit), wait)
	return Reconnect{Err: err, Wait: s.wait}
}

// jitter moves d by up to a quarter either way, never above limit, so the
// clients of a node that went away do not all come back at once.
func jitter(d, limit time.Duration) time.Duration {
	r := d - d/4 + rand.N(d/2+1)
	if r > limit {
		r = 2*limit - r
	}
	return r
}

func retryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

func (s *Subscription) sleep(ctx context.Context) error {
	if s.wait <= 0 {
		return nil
	}
	t := time.NewTimer(s.wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.ctx.Done():
		return ErrClosed
	case <-t.C:
		s.wait = 0
		return nil
	}
}

func (c *Client) idleTimeout() time.Duration {
	if c.IdleTimeout == 0 {
		return DefaultIdleTimeout
	}
	return c.IdleTimeout
}

func (c *Client) maxBackoff() time.Duration {
	if c.MaxBackoff <= 0 {
		return DefaultMaxBackoff
	}
	return c.MaxBackoff
}

// url is the feed of the subscription's rooms.
func (s *Subscription) url() (string, error) {
	if len(s.rooms) == 0 {
		return "", permanent{errors.New("client: subscribe to at least one room")}
	}
	for _, r := range s.rooms {
		if !roomfeed.ValidName(r) {
			return "", permanent{fmt.Errorf("client: room %q must match %s", r, roomfeed.NamePattern)}
		}
	}
	q := url.Values{}
	elem := []string{"events"}
	if len(s.rooms) == 1 {
		elem = []string{"rooms", s.rooms[0], "events"}
	} else {
		q["room"] = s.rooms
	}
	if s.c.Name != "" {
		q.Set("client", s.c.Name)
	}
	s.filter.AddTo(q)
	u, err := s.c.endpoint(elem...)
	if err != nil {
		return "", err
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// lastEventID is the cursor as the server reads it: a seq for one room, a
// composite cursor of the rooms that have one for several.
func (s *Subscription) lastEventID() string {
	if len(s.rooms) == 1 {
		if seq, ok := s.cursor[s.rooms[0]]; ok {
			return strconv.FormatInt(seq, 10)
		}
		return ""
	}
	var known []string
	for _, r := range s.rooms {
		if _, ok := s.cursor[r]; ok {
			known = append(known, r)
		}
	}
	return sse.FormatComposite(known, s.cursor)
}

// comment adopts the start position the server's first comment names
// ("roomfeed w1 from 42", "roomfeed from a:42,b:7") for the rooms without
// a cursor.
func (s *Subscription) comment(text string) error {
	rest, ok := strings.CutPrefix(text, "roomfeed ")
	if !ok {
		return nil
	}
	var start Cursor
	if len(s.rooms) == 1 {
		if raw, ok := strings.CutPrefix(rest, s.rooms[0]+" from "); ok {
			if seq, err := sse.ParseCursor(raw); err == nil {
				start = Cursor{s.rooms[0]: seq}
			}
		}
	} else if raw, ok := strings.CutPrefix(rest, "from "); ok {
		start, _ = sse.ParseComposite(raw)
	}
	if s.started = s.adopt(start, false); s.started == nil {
		return nil
	}
	return errStarted
}

// bareID adopts the position a bare id names (the server's filter left out
// the events up to it): a seq on a one-room stream, a composite cursor on
// a multiplexed one. Cursors only move forward; a malformed id is ignored.
func (s *Subscription) bareID(id string) error {
	var at Cursor
	if len(s.rooms) == 1 {
		if seq, err := sse.ParseCursor(id); err == nil {
			at = Cursor{s.rooms[0]: seq}
		}
	} else {
		at, _ = sse.ParseComposite(id)
	}
	if s.moved = s.adopt(at, true); s.moved == nil {
		return nil
	}
	return errMoved
}

// adopt moves the cursors of the subscribed rooms of at that have none
// to at's position, and with forward those that are behind it too. It
// returns the cursors it moved, nil for none.
func (s *Subscription) adopt(at Cursor, forward bool) Cursor {
	var moved Cursor
	for r, seq := range at {
		cur, known := s.cursor[r]
		if !slices.Contains(s.rooms, r) || (known && (!forward || seq <= cur)) {
			continue
		}
		s.cursor[r] = seq
		if moved == nil {
			moved = Cursor{}
		}
		moved[r] = seq
	}
	return moved
}

// handle turns an event of the stream into a message: nothing for an event
// at or below the cursor, an error when the stream is to be dropped.
func (s *Subscription) handle(ev sse.Event) (Message, error) {
	switch ev.Type {
	case "error", "auth_expired":
		return nil, &StreamError{Type: ev.Type, Data: ev.Data}
	}
	room := s.rooms[0]
	if len(s.rooms) > 1 {
		var d struct{ Room string }
		_ = json.Unmarshal([]byte(ev.Data), &d)
		room = d.Room
	}
	if !ev.HasID || ev.ID == "" {
		// Ephemeral events (presence) carry no id and move no cursor.
		return Event{Room: room, Type: ev.Type, Data: json.RawMessage(ev.Data)}, nil
	}
	seq, others, err := s.seq(room, ev.ID)
	if err != nil {
		return nil, err
	}
	s.adoptOthers(others)
	if ev.Type == "reset" {
		var d struct{ Cursor, Reason string }
		_ = json.Unmarshal([]byte(ev.Data), &d)
		if n, err := sse.ParseCursor(d.Cursor); err == nil {
			seq = n
		}
		s.cursor[room] = seq
		return Reset{Room: room, Cursor: seq, Reason: d.Reason}, nil
	}
	if last, ok := s.cursor[room]; ok && seq <= last {
		return nil, nil
	}
	s.cursor[room] = seq
	return Event{Room: room, Seq: seq, Type: ev.Type, Data: json.RawMessage(ev.Data)}, nil
}

// adoptOthers moves the cursors of the other rooms of a multiplexed event
// id, the whole cursor of the stream, forward to it: the events of another
// room that a filter left out just before this one are counted there and
// in no bare id of their own. The moves come as a Progress next.
func (s *Subscription) adoptOthers(others Cursor) {
	moved := s.adopt(others, true)
	if s.moved == nil {
		s.moved = moved
	} else {
		maps.Copy(s.moved, moved)
	}
}

// seq reads room's seq from an event id: the seq itself on a one-room
// stream, the room's part of the composite cursor on a multiplexed one,
// whose other rooms' positions it returns too (nil on a one-room stream).
func (s *Subscription) seq(room, id string) (int64, Cursor, error) {
	if len(s.rooms) == 1 {
		seq, err := sse.ParseCursor(id)
		if err != nil {
			return 0, nil, fmt.Errorf("event id %q: %w", id, err)
		}
		return seq, nil, nil
	}
	cur, err := sse.ParseComposite(id)
	seq, ok := cur[room]
	if err != nil || !ok || !slices.Contains(s.rooms, room) {
		return 0, nil, fmt.Errorf("event id %q of room %q: %w", id, room, sse.ErrBadCursor)
	}
	delete(cur, room)
	return seq, cur, nil
}
