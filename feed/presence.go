package feed

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/roomfeed/roomfeed"
)

// Presence event types. They are ephemeral: never recorded, sent without an
// id so they never move a client's Last-Event-ID, and never replayed.
const (
	PresenceJoined = "presence.joined"
	PresenceLeft   = "presence.left"
)

// DefaultPresenceGrace is how long a person's last connection may be gone
// before they are announced as left; a reconnect within it emits nothing.
const DefaultPresenceGrace = 5 * time.Second

// presenceData is the JSON of a presence event.
type presenceData struct {
	Room   string `json:"room"`
	Person string `json:"person"`
	Type   string `json:"type"`
	At     string `json:"at"`
}

// PresenceEvent returns the event announcing that person joined or left
// (typ) room: ephemeral (Seq 0), delivered live, never recorded or replayed.
func PresenceEvent(room, person, typ string) roomfeed.Event {
	data, _ := json.Marshal(presenceData{Room: room, Person: person, Type: typ, At: time.Now().UTC().Format(time.RFC3339Nano)})
	return roomfeed.Event{Room: room, Type: typ, Data: data}
}

// ParsePresenceEvent returns the event whose data is data, as made by
// PresenceEvent; false when data is not a presence event's.
func ParsePresenceEvent(data []byte) (roomfeed.Event, bool) {
	return parseEphemeral(data)
}

// PresenceKey names one person in one room.
type PresenceKey struct{ Room, Person string }

// LocalPresence counts a node's connections per person and room, and runs
// the grace timers of people whose last connection closed: the part of
// presence every backend shares. onFirst runs when a person's first
// connection opens and was not within grace; onLast runs when the grace of
// their last connection passes.
type LocalPresence struct {
	grace   time.Duration
	onFirst func(room, person string)
	onLast  func(room, person string)

	mu      sync.Mutex
	conns   map[PresenceKey]int
	leaving map[PresenceKey]*time.Timer
	closed  bool
}

// NewLocalPresence returns local presence with the given grace period
// (DefaultPresenceGrace when not positive).
func NewLocalPresence(grace time.Duration, onFirst, onLast func(room, person string)) *LocalPresence {
	if grace <= 0 {
		grace = DefaultPresenceGrace
	}
	return &LocalPresence{
		grace: grace, onFirst: onFirst, onLast: onLast,
		conns: map[PresenceKey]int{}, leaving: map[PresenceKey]*time.Timer{},
	}
}

// Join counts a connection and returns the function that ends it.
func (p *LocalPresence) Join(room, person string) (leave func()) {
	k := PresenceKey{room, person}
	p.mu.Lock()
	first := false
	if p.conns[k] == 0 {
		if t, ok := p.leaving[k]; ok {
			t.Stop() // back within grace: nothing to announce
			delete(p.leaving, k)
		} else {
			first = true
		}
	}
	p.conns[k]++
	p.mu.Unlock()
	if first {
		p.onFirst(room, person)
	}
	var once sync.Once
	return func() { once.Do(func() { p.leave(k) }) }
}

func (p *LocalPresence) leave(k PresenceKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns[k]--
	if p.conns[k] > 0 {
		return
	}
	delete(p.conns, k)
	if p.closed {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(p.grace, func() {
		p.mu.Lock()
		if p.leaving[k] != t || p.conns[k] > 0 {
			p.mu.Unlock()
			return
		}
		delete(p.leaving, k)
		p.mu.Unlock()
		p.onLast(k.Room, k.Person)
	})
	p.leaving[k] = t
}

// Here lists the people of a room on this node, including those within
// their grace period.
func (p *LocalPresence) Here(room string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for k := range p.conns {
		if k.Room == room {
			out = append(out, k.Person)
		}
	}
	for k := range p.leaving {
		if k.Room == room && !slices.Contains(out, k.Person) {
			out = append(out, k.Person)
		}
	}
	slices.Sort(out)
	return out
}

// Held lists every (room, person) this node holds, those within their
// grace period included.
func (p *LocalPresence) Held() []PresenceKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]PresenceKey, 0, len(p.conns)+len(p.leaving))
	for k := range p.conns {
		out = append(out, k)
	}
	for k := range p.leaving {
		if p.conns[k] == 0 {
			out = append(out, k)
		}
	}
	return out
}

// Close stops every grace timer; nothing more is announced.
func (p *LocalPresence) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for k, t := range p.leaving {
		t.Stop()
		delete(p.leaving, k)
	}
}

// MemPresence is presence for one process (the embedded default).
type MemPresence struct {
	local *LocalPresence
}

// NewMemPresence announces joins and leaves through sink.
func NewMemPresence(sink Sink, grace time.Duration) *MemPresence {
	m := &MemPresence{}
	m.local = NewLocalPresence(grace,
		func(room, person string) { sink.Deliver(PresenceEvent(room, person, PresenceJoined)) },
		func(room, person string) { sink.Deliver(PresenceEvent(room, person, PresenceLeft)) })
	return m
}

// Join records a connection of person to room until leave is called.
func (m *MemPresence) Join(_ context.Context, room, person string) (leave func(), err error) {
	return m.local.Join(room, person), nil
}

// List returns who is in room now.
func (m *MemPresence) List(_ context.Context, room string) ([]string, error) {
	return m.local.Here(room), nil
}

// Close stops the grace timers.
func (m *MemPresence) Close() { m.local.Close() }
