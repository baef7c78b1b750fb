package redis

import (
	"context"
	"errors"
	"fmt"

	"github.com/roomfeed/roomfeed"
)

// fill appends the committed events of room in (top, head] to its stream,
// reading them from the history. Only the newest MaxLen of them are appended
// (a deliberate gap above top) when the stream is further behind, as after
// Redis lost its data; when the history is trimmed, from the oldest event it
// still has. ev, when not nil, is the event of seq head, used if the history
// does not show it yet. When the stream loses entries meanwhile (its top
// falls below what was appended), fill starts again from its top.
func (l *Log) fill(ctx context.Context, room string, top, head int64, ev *roomfeed.Event) error {
	for attempt := 0; top < head; attempt++ {
		if attempt == fillRetries {
			return fmt.Errorf("stream top keeps moving below %d (at %d)", head, top)
		}
		f := &filler{l: l, room: room, cur: max(top, head-l.opts.MaxLen)}
		f.gapOK = f.cur > top
		err := f.fill(ctx, head, ev)
		if !errors.Is(err, errRefused) {
			return err
		}
		top = f.top
	}
	return nil
}

// filler is one attempt of fill.
type filler struct {
	l     *Log
	room  string
	cur   int64 // the stream holds the room's events up to cur
	gapOK bool  // the next append may leave a hole above the stream's top
	top   int64 // the stream's top, after errRefused
}

var (
	// errRefused: the stream refused an append above a hole, having lost
	// entries since; filler.top is its top.
	errRefused = errors.New("append refused above a hole")
	// errAhead: the stream's top is above what was appended; the fill goes
	// on from there.
	errAhead = errors.New("stream ahead of the fill")
)

// fill appends the events of the history in (f.cur, head], and ev when the
// history ends before it.
func (f *filler) fill(ctx context.Context, head int64, ev *roomfeed.Event) error {
	add := func(page []roomfeed.Event) error { return f.add(ctx, page) }
	for f.cur < head {
		err := roomfeed.Pages(ctx, f.l.hist, f.room, f.cur, head, fillPage, add)
		if err == nil && f.cur < head {
			if ev == nil || ev.Seq != f.cur+1 {
				return fmt.Errorf("history of %s ends at %d, before %d", f.room, f.cur, head)
			}
			err = add([]roomfeed.Event{*ev})
		}
		switch {
		case errors.Is(err, roomfeed.ErrTrimmed):
			// The history does not reach back to cur: start at the oldest
			// event it still has.
			if f.cur, err = f.l.oldestRetained(ctx, f.room, f.cur, head); err != nil {
				return err
			}
			f.gapOK = true
		case err != nil && !errors.Is(err, errAhead):
			return err
		}
	}
	return nil
}

// add appends page, events of the history above f.cur in order, and moves
// f.cur up to the stream's new top.
func (f *filler) add(ctx context.Context, page []roomfeed.Event) error {
	if page[0].Seq > f.cur+1 {
		f.gapOK = true // a hole in the history itself: nothing can fill it
	}
	ok, top, err := f.l.appendBatch(ctx, f.room, page, f.gapOK)
	if err != nil {
		return err
	}
	if !ok {
		f.top = top
		return errRefused
	}
	last := page[len(page)-1].Seq
	f.cur, f.gapOK = max(top, last), false
	if top > last {
		return errAhead
	}
	return nil
}

// oldestRetained returns the smallest cursor in (trimmed, head) from which
// the history still answers, by bisection. It fails with roomfeed.ErrTrimmed when even
// the event of seq head is gone.
func (l *Log) oldestRetained(ctx context.Context, room string, trimmed, head int64) (int64, error) {
	lo, hi := trimmed, head-1 // EventsAfter(lo) is trimmed; find the first good one in (lo, hi]
	if _, err := l.hist.EventsAfter(ctx, room, hi, 1); err != nil {
		return 0, err
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		_, err := l.hist.EventsAfter(ctx, room, mid, 1)
		switch {
		case errors.Is(err, roomfeed.ErrTrimmed):
			lo = mid
		case err != nil:
			return 0, err
		default:
			hi = mid
		}
	}
	return hi, nil
}
