package api

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/repo"
)

// HistoryStore is the part of the SQL store that holds the event history.
type HistoryStore interface {
	EventsAfter(ctx context.Context, room string, after int64, limit int) ([]repo.Event, error)
	RoomHeads(ctx context.Context, since time.Time) ([]repo.RoomHead, error)
}

// History adapts the SQL event history to what the feed needs for replay,
// gap filling and the relay.
type History struct{ Store HistoryStore }

// EventsAfter implements feed.History.
func (h History) EventsAfter(ctx context.Context, room string, after int64, limit int) ([]feed.Event, error) {
	evs, err := h.Store.EventsAfter(ctx, room, after, limit)
	if errors.Is(err, repo.ErrTrimmed) {
		return nil, fmt.Errorf("%w: %w", feed.ErrTrimmed, err)
	}
	if err != nil {
		return nil, err
	}
	out := make([]feed.Event, len(evs))
	for i, ev := range evs {
		out[i] = feedEvent(ev)
	}
	return out, nil
}

// RoomHeads lists the rooms changed since a time with their latest seq.
func (h History) RoomHeads(ctx context.Context, since time.Time) ([]feed.RoomHead, error) {
	heads, err := h.Store.RoomHeads(ctx, since)
	if err != nil {
		return nil, err
	}
	out := make([]feed.RoomHead, len(heads))
	for i, rh := range heads {
		out[i] = feed.RoomHead{Room: rh.Room, Seq: rh.Seq}
	}
	return out, nil
}
