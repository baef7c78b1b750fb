package feed

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/roomfeed/roomfeed"
)

// fillPage is the page size of the history reads that fill a hole.
const fillPage = 500

// MemLog is the log of the embedded default: one process, no Redis. Events
// are delivered to the sink in seq order per room, signals at once, and
// replay reads the durable history.
type MemLog struct {
	sink Sink
	hist roomfeed.History

	mu   sync.Mutex
	tops map[string]int64 // highest seq delivered per room since start
}

// NewMemLog returns an in-process log delivering to sink and replaying
// from hist.
func NewMemLog(sink Sink, hist roomfeed.History) *MemLog {
	return &MemLog{sink: sink, hist: hist, tops: make(map[string]int64)}
}

// PublishAll delivers committed events, in seq order per room, to the
// rooms' local subscribers. Events reach subscribers in seq order: an event
// below the room's top is already delivered, and a hole before one (an
// event whose publish was lost) is filled from the history first. An
// event that fails does not stop the others.
func (l *MemLog) PublishAll(ctx context.Context, evs []roomfeed.Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for _, ev := range evs {
		if err := l.publish(ctx, ev); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// publish delivers ev, with l.mu held.
func (l *MemLog) publish(ctx context.Context, ev roomfeed.Event) error {
	top, known := l.tops[ev.Room]
	switch {
	case !known || ev.Seq == top+1:
		// The first event seen for a room since start is taken as is:
		// subscribers fill any hole themselves from the history.
	case ev.Seq <= top:
		return nil
	default:
		err := roomfeed.Pages(ctx, l.hist, ev.Room, top, ev.Seq-1, fillPage, func(page []roomfeed.Event) error {
			for _, e := range page {
				l.sink.Deliver(e)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("fill %s after %d: %w", ev.Room, top, err)
		}
	}
	l.sink.Deliver(ev)
	l.tops[ev.Room] = ev.Seq
	return nil
}

// Signal delivers ev, an ephemeral event (Seq 0) such as SignalEvent
// makes, to the room's subscribers in this process, if it has any. It is
// never recorded: a subscriber that connects later never sees it.
func (l *MemLog) Signal(_ context.Context, ev roomfeed.Event) error {
	if ev.Room == "" || ev.Seq != 0 {
		return fmt.Errorf("signal %q/%d: not an ephemeral event", ev.Room, ev.Seq)
	}
	if l.sink.HasRoom(ev.Room) {
		l.sink.Deliver(ev)
	}
	return nil
}

// Follow has nothing to do: every event published on this node reaches
// the sink.
func (l *MemLog) Follow(context.Context, string) error { return nil }

// EventsAfter returns up to limit events of room after the cursor, from the
// history.
func (l *MemLog) EventsAfter(ctx context.Context, room string, after int64, limit int) ([]roomfeed.Event, error) {
	return l.hist.EventsAfter(ctx, room, after, limit)
}

// Head returns the room's highest committed seq.
func (l *MemLog) Head(ctx context.Context, room string) (int64, error) {
	return l.hist.Head(ctx, room)
}
