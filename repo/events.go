package repo

import (
	"context"
	"fmt"
	"time"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
)

// Head returns the room's current sequence number, 0 for an unknown room.
func (s *Store) Head(ctx context.Context, room string) (int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	seq, err := s.db.Head(ctx, room)
	if err != nil {
		return 0, fmt.Errorf("room head: %w", sqlstore.ClassifyBounded(ctx, err))
	}
	return seq, nil
}

// Oldest returns the seq of the room's oldest event still in the history
// (retention trims the older ones), 0 when it has none: a reader may page
// the history from the cursor Oldest-1.
func (s *Store) Oldest(ctx context.Context, room string) (int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	seq, err := s.db.Oldest(ctx, room)
	if err != nil {
		return 0, fmt.Errorf("oldest event: %w", sqlstore.ClassifyBounded(ctx, err))
	}
	return seq, nil
}

// OldestTime returns the time of the room's oldest event still in the
// history; ok is false when it has none. Retention uses it to know when
// the room has events to age out.
func (s *Store) OldestTime(ctx context.Context, room string) (at time.Time, ok bool, err error) {
	at, ok, err = s.db.OldestTime(ctx, room)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("oldest event time: %w", sqlstore.Classify(err))
	}
	return at, ok, nil
}

// EventsAfter returns the room's events with seq > after in seq order, at
// most limit of them (limit <= 0 means DefaultPageSize). When retention
// removed event after+1 it returns roomfeed.ErrTrimmed.
func (s *Store) EventsAfter(ctx context.Context, room string, after int64, limit int) ([]roomfeed.Event, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if limit <= 0 {
		limit = DefaultPageSize
	}
	evs, err := s.db.EventsAfter(ctx, room, max(after, 0), limit)
	if err != nil {
		return nil, fmt.Errorf("events after %d: %w", after, sqlstore.ClassifyBounded(ctx, err))
	}
	return evs, nil
}

// RoomHeads returns the rooms written at or after since (the zero time means
// all rooms) with their sequence numbers, sorted by room. updated_at is the
// write's time, taken when it asks for the room lock (but never below the
// room's previous write) and before it commits, so a poller should look
// back by a margin longer than a write transaction and its wait for the
// lock.
func (s *Store) RoomHeads(ctx context.Context, since time.Time) ([]roomfeed.RoomHead, error) {
	heads, err := s.db.RoomHeads(ctx, since)
	if err != nil {
		return nil, fmt.Errorf("room heads: %w", sqlstore.Classify(err))
	}
	return heads, nil
}

// Trim applies retention to the room's history: it deletes the events older
// than the newest keep (keep <= 0: no count limit) or older than maxAge (0:
// no age limit), but never an event with seq > below (not yet confirmed
// published). It returns the number of events deleted.
func (s *Store) Trim(ctx context.Context, room string, keep int64, maxAge time.Duration, below int64) (int64, error) {
	n, err := s.db.Trim(ctx, room, keep, maxAge, below)
	if err != nil {
		return 0, fmt.Errorf("trim events: %w", sqlstore.Classify(err))
	}
	return n, nil
}
