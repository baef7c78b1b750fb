package sse

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roomfeed/roomfeed"
)

var (
	// ErrClosed reports use of a hub that has been closed (the node is
	// shutting down).
	ErrClosed = errors.New("feed closed")
	// ErrSlowConsumer reports a subscriber dropped because its buffer was full.
	ErrSlowConsumer = errors.New("slow consumer")
)

// Message is an event with its SSE encoding, made once and shared by every
// subscriber it is delivered to.
type Message struct {
	roomfeed.Event
	Frame  []byte
	Queued time.Time // when the hub received it, for delivery-lag metrics

	el atomic.Pointer[elementRef] // the element it records, once a filter asked (filter.go)
}

// NewMessage encodes ev once.
func NewMessage(ev roomfeed.Event) *Message {
	return &Message{Event: ev, Frame: Frame(ev), Queued: time.Now()}
}

// Hub fans events out to the subscribers of each room on this node. Deliver
// never blocks: each subscriber has a queue of at most buffer messages, and
// a subscriber whose queue is full is dropped (its Done channel closes with
// ErrSlowConsumer); it resumes from its cursor. A queue is grown as events
// arrive and given back after a burst, so an idle subscriber costs a few
// hundred bytes, not buffer slots.
type Hub struct {
	buffer int

	mu      sync.Mutex
	rooms   map[string]map[*Subscription]struct{}
	closed  bool
	changed chan struct{}

	dropped atomic.Uint64
}

// DefaultBuffer is the number of messages a subscriber may have queued
// before it is dropped as slow.
const DefaultBuffer = 1024

// NewHub returns a hub that queues at most buffer messages per subscriber.
func NewHub(buffer int) *Hub {
	if buffer < 1 {
		buffer = 1
	}
	return &Hub{
		buffer:  buffer,
		rooms:   make(map[string]map[*Subscription]struct{}),
		changed: make(chan struct{}, 1),
	}
}

// Subscribe registers a live subscription to room. The caller must Close it.
func (h *Hub) Subscribe(room string) (*Subscription, error) {
	s := &Subscription{
		hub:  h,
		room: room,
		done: make(chan struct{}),
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	set, ok := h.rooms[room]
	if !ok {
		set = make(map[*Subscription]struct{})
		h.rooms[room] = set
		h.signal()
	}
	set[s] = struct{}{}
	return s, nil
}

// HasRoom reports whether room has subscribers on this node.
func (h *Hub) HasRoom(room string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.rooms[room]
	return ok
}

// Deliver queues ev, encoded once, for every subscriber of its room on
// this node, dropping those whose queue is full. An event of Seq 0 is
// ephemeral (presence, signals): it is framed without an id.
func (h *Hub) Deliver(ev roomfeed.Event) {
	m := NewMessage(ev)
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.rooms[m.Room] {
		if !s.push(m, h.buffer) {
			h.dropped.Add(1)
			h.removeLocked(s, ErrSlowConsumer)
		}
	}
}

// Rooms returns the rooms that have subscribers on this node, sorted.
func (h *Hub) Rooms() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	rooms := make([]string, 0, len(h.rooms))
	for r := range h.rooms {
		rooms = append(rooms, r)
	}
	slices.Sort(rooms)
	return rooms
}

// RoomsChanged receives a value (coalesced) whenever the set of rooms with
// subscribers changes.
func (h *Hub) RoomsChanged() <-chan struct{} { return h.changed }

// Subscribers returns the number of subscriptions on this node.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, set := range h.rooms {
		n += len(set)
	}
	return n
}

// Dropped returns how many subscribers were dropped for being slow.
func (h *Hub) Dropped() uint64 { return h.dropped.Load() }

// Close ends every subscription with ErrClosed and refuses new ones.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, set := range h.rooms {
		for s := range set {
			h.removeLocked(s, ErrClosed)
		}
	}
}

func (h *Hub) removeLocked(s *Subscription, err error) {
	set, ok := h.rooms[s.room]
	if !ok {
		return
	}
	if _, ok := set[s]; !ok {
		return
	}
	delete(set, s)
	if len(set) == 0 {
		delete(h.rooms, s.room)
		h.signal()
	}
	s.err = err
	close(s.done)
	s.mu.Lock()
	fn := s.notify
	s.mu.Unlock()
	if fn != nil {
		fn()
	}
}

func (h *Hub) signal() {
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

// Subscription is one subscriber's live view of a room. The hub appends
// to its queue; the subscriber takes everything queued with Drain when its
// Notify callback tells it there is something.
type Subscription struct {
	hub  *Hub
	room string
	done chan struct{}
	err  error // set before done is closed

	mu     sync.Mutex
	queue  []*Message
	notify func()
}

// queueKeep is the capacity a drained queue keeps; a larger one (after a
// burst) is given back.
const queueKeep = 64

// push queues m unless limit messages are already queued.
func (s *Subscription) push(m *Message, limit int) bool {
	s.mu.Lock()
	if len(s.queue) >= limit {
		s.mu.Unlock()
		return false
	}
	s.queue = append(s.queue, m)
	first := len(s.queue) == 1
	fn := s.notify
	s.mu.Unlock()
	if first && fn != nil {
		fn()
	}
	return true
}

// Notify sets the callback that tells the consumer to drain: it is called
// when messages are queued on an empty queue and when the subscription
// ends. It is called from the delivering goroutine with the hub's lock held,
// so it must not block or call into the hub (a consumer typically signals a
// channel of capacity 1 or schedules itself). If messages are already queued
// or the subscription has ended, fn is called at once.
func (s *Subscription) Notify(fn func()) {
	s.mu.Lock()
	s.notify = fn
	pending := len(s.queue) > 0
	s.mu.Unlock()
	select {
	case <-s.done:
		pending = true
	default:
	}
	if pending && fn != nil {
		fn()
	}
}

// Drain appends the queued messages to dst, in order, and empties the queue.
func (s *Subscription) Drain(dst []*Message) []*Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	dst = append(dst, s.queue...)
	clear(s.queue)
	if cap(s.queue) > queueKeep {
		s.queue = nil
	} else {
		s.queue = s.queue[:0]
	}
	return dst
}

// Done is closed when the hub ends the subscription (slow consumer or
// shutdown); Err then says why. Messages already queued stay drainable.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err returns why the subscription ended, or nil while it is active or after
// the subscriber closed it itself.
func (s *Subscription) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Close removes the subscription from the hub. It is safe to call more than
// once and after the hub dropped it.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.removeLocked(s, nil)
}
