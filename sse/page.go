package sse

import (
	"context"
	"errors"

	"github.com/roomfeed/roomfeed"
)

// Limits of a page of history (Engine.Page).
const (
	DefaultPageLimit = 500  // events per page when the client names no limit
	MaxPageLimit     = 5000 // the most events a page holds, and a filtered page reads
)

// Page is one page of a room's history, for programs that read it in pages
// instead of following a stream.
type Page struct {
	Events []roomfeed.Event // the events of (after, Next] that pass the filter, in order
	Next   int64            // the seq of the last event read, passed or not: the next page's cursor
	Head   int64            // the room's head when the page was read; Next == Head: caught up
}

// errPageFull ends the read of a page that holds its limit.
var errPageFull = errors.New("page full")

// Page reads the events of room after the cursor, from the source as a
// replay does, up to the room's head at the time of the call. It holds at
// most limit events (0: DefaultPageLimit). Without a filter it reads limit
// events; with one it reads on, up to MaxPageLimit events, until limit of
// them pass, so a page may hold fewer events than it read, even none: Next
// still moves, and paging until Next == Head neither repeats nor misses an
// event. A cursor beyond the head is a *CursorAheadError; one older than
// the retained history roomfeed.ErrTrimmed, as the source answers it.
func (e *Engine) Page(ctx context.Context, room string, after int64, limit int, f Filter) (Page, error) {
	if limit <= 0 {
		limit = DefaultPageLimit
	}
	limit = min(limit, MaxPageLimit)
	head, err := e.env.src.Head(ctx, room)
	if err != nil {
		return Page{}, err
	}
	if after > head {
		return Page{}, &CursorAheadError{Room: room, Cursor: after, Head: head}
	}
	p := Page{Events: []roomfeed.Event{}, Next: after, Head: head}
	budget, size := int64(limit), limit
	if !f.IsZero() {
		budget, size = MaxPageLimit, max(limit, e.env.cfg.ReplayPage)
	}
	err = roomfeed.Pages(ctx, e.env.src, room, after, min(head, after+budget), size, func(evs []roomfeed.Event) error {
		for _, ev := range evs {
			p.Next = ev.Seq
			if f.Match(ev) {
				p.Events = append(p.Events, ev)
				if len(p.Events) == limit {
					return errPageFull
				}
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errPageFull) {
		return Page{}, err
	}
	return p, nil
}
