package repo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/roomfeed/roomfeed"
)

// Head returns the room's current sequence number, 0 for an unknown room.
func (s *Store) Head(ctx context.Context, room string) (int64, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	seq, err := s.head(ctx, room)
	if err != nil {
		return 0, fmt.Errorf("room head: %w", classifyBounded(ctx, err))
	}
	return seq, nil
}

func (s *Store) head(ctx context.Context, room string) (int64, error) {
	var seq int64
	err := s.read.QueryRowContext(ctx, s.q(`SELECT seq FROM rooms WHERE room = ?`), room).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return seq, err
}

// EventsAfter returns the room's events with seq > after in seq order, at
// most limit of them (limit <= 0 means DefaultPageSize). When retention
// removed event after+1 it returns roomfeed.ErrTrimmed.
func (s *Store) EventsAfter(ctx context.Context, room string, after int64, limit int) ([]roomfeed.Event, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	evs, err := s.eventsAfter(ctx, room, max(after, 0), limit)
	if err != nil {
		return nil, fmt.Errorf("events after %d: %w", after, classifyBounded(ctx, err))
	}
	return evs, nil
}

func (s *Store) eventsAfter(ctx context.Context, room string, after int64, limit int) ([]roomfeed.Event, error) {
	if limit <= 0 {
		limit = DefaultPageSize
	}
	// The head is read first: every event up to it was committed before the
	// events query starts, and retention only ever deletes, so finding none
	// of them below means they were trimmed.
	head, err := s.head(ctx, room)
	if err != nil {
		return nil, err
	}
	if head <= after {
		return []roomfeed.Event{}, nil
	}
	rows, err := s.read.QueryContext(ctx,
		s.q(`SELECT seq, type, payload, at FROM events WHERE room = ? AND seq > ? ORDER BY seq LIMIT ?`),
		room, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	evs := make([]roomfeed.Event, 0, min(limit, 64))
	for rows.Next() {
		var (
			ev      = roomfeed.Event{Room: room}
			payload []byte
			at      dbTime
		)
		if err := rows.Scan(&ev.Seq, &ev.Type, &payload, &at); err != nil {
			return nil, err
		}
		ev.Data = payload
		ev.At = at.t
		evs = append(evs, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Sequence numbers are gap-free, so a first event above after+1 means
	// the ones before it were removed.
	if len(evs) == 0 || evs[0].Seq != after+1 {
		return nil, roomfeed.ErrTrimmed
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
	heads, err := s.roomHeads(ctx, since)
	if err != nil {
		return nil, fmt.Errorf("room heads: %w", classify(err))
	}
	return heads, nil
}

func (s *Store) roomHeads(ctx context.Context, since time.Time) ([]roomfeed.RoomHead, error) {
	query, args := `SELECT room, seq FROM rooms ORDER BY room`, []any(nil)
	if !since.IsZero() {
		query, args = `SELECT room, seq FROM rooms WHERE updated_at >= ? ORDER BY room`, []any{s.timeArg(since)}
	}
	rows, err := s.read.QueryContext(ctx, s.q(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	heads := []roomfeed.RoomHead{}
	for rows.Next() {
		var h roomfeed.RoomHead
		if err := rows.Scan(&h.Room, &h.Seq); err != nil {
			return nil, err
		}
		heads = append(heads, h)
	}
	return heads, rows.Err()
}

// Trim applies retention to the room's history: it deletes the events older
// than the newest keep (keep <= 0: no count limit) or older than maxAge (0:
// no age limit), but never an event with seq > below (not yet confirmed
// published). It returns the number of events deleted.
func (s *Store) Trim(ctx context.Context, room string, keep int64, maxAge time.Duration, below int64) (int64, error) {
	var conds []string
	args := []any{room, below}
	if keep > 0 {
		conds = append(conds, `seq <= (SELECT seq FROM rooms WHERE room = ?) - ?`)
		args = append(args, room, keep)
	}
	if maxAge > 0 {
		conds = append(conds, `at < ?`)
		args = append(args, s.timeArg(now().Add(-maxAge)))
	}
	if len(conds) == 0 || below <= 0 {
		return 0, nil
	}
	query := `DELETE FROM events WHERE room = ? AND seq <= ? AND (` + conds[0]
	if len(conds) == 2 {
		query += ` OR ` + conds[1]
	}
	query += `)`
	res, err := s.write.ExecContext(ctx, s.q(query), args...)
	if err != nil {
		return 0, fmt.Errorf("trim events: %w", classify(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("trim events: %w", classify(err))
	}
	return n, nil
}
