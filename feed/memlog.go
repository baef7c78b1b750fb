package feed

import (
	"context"
	"fmt"
	"sync"

	"github.com/roomfeed/roomfeed"
)

// MemLog is the log of the embedded default: one process, no Redis. Events
// are fanned out through the hub in seq order per room, and replay reads the
// durable history.
type MemLog struct {
	hub  *Hub
	hist roomfeed.History

	mu   sync.Mutex
	tops map[string]int64 // highest seq delivered per room since start
}

// NewMemLog returns an in-process log delivering through hub and replaying
// from hist.
func NewMemLog(hub *Hub, hist roomfeed.History) *MemLog {
	return &MemLog{hub: hub, hist: hist, tops: make(map[string]int64)}
}

// Publish delivers a committed event to the room's local subscribers. Events
// reach subscribers in seq order: an event below the room's top is already
// delivered, and a hole before ev (a concurrent commit whose Publish has not
// run yet) is filled from the history first.
func (l *MemLog) Publish(ctx context.Context, ev roomfeed.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	top, known := l.tops[ev.Room]
	switch {
	case !known || ev.Seq == top+1:
		// The first event seen for a room since start is taken as is:
		// subscribers fill any hole themselves from the history.
	case ev.Seq <= top:
		return nil
	default:
		for top < ev.Seq-1 {
			page, err := l.hist.EventsAfter(ctx, ev.Room, top, int(min(ev.Seq-1-top, 500)))
			if err != nil {
				return fmt.Errorf("fill %s after %d: %w", ev.Room, top, err)
			}
			if len(page) == 0 {
				break
			}
			for _, e := range page {
				if e.Seq >= ev.Seq {
					break
				}
				l.hub.Deliver(e)
				top = e.Seq
			}
		}
	}
	l.hub.Deliver(ev)
	l.tops[ev.Room] = ev.Seq
	return nil
}

// Subscribe registers a live subscription with the hub.
func (l *MemLog) Subscribe(_ context.Context, room string) (*Subscription, error) {
	return l.hub.Subscribe(room)
}

// Range returns up to limit events of room after the cursor, from the history.
func (l *MemLog) Range(ctx context.Context, room string, after int64, limit int) ([]roomfeed.Event, error) {
	return l.hist.EventsAfter(ctx, room, after, limit)
}
