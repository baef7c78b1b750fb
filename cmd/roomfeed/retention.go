package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/internal/streak"
)

// retentionBatch is the number of rooms whose published tops are read at once.
const retentionBatch = 500

const (
	// retentionLookBack is how far before the start of the previous pass a
	// pass looks for written rooms: a write's time is taken before it
	// commits (at most about two --db-timeout later), and nodes' clocks
	// differ a little.
	retentionLookBack = time.Minute
	// retentionSweep is how often a pass visits every room anyway, should
	// a room written too far behind a clock have been missed.
	retentionSweep = time.Hour
)

// retentionStore is the part of the SQL store retention uses.
type retentionStore interface {
	RoomHeads(ctx context.Context, since time.Time) ([]roomfeed.RoomHead, error)
	Trim(ctx context.Context, room string, keep int64, maxAge time.Duration, below int64) (int64, error)
	OldestTime(ctx context.Context, room string) (time.Time, bool, error)
}

// retention applies the SQL history retention: at start and every interval
// it deletes each room's events beyond the newest keep (0: no count limit)
// and those older than maxAge (0: no age limit), but never an event above
// what the log has published, so the relay can always republish what Redis
// lacks. tops returns, per room, the highest seq the log has published (the
// top of the room's Redis stream); nil means every committed event counts as
// published (the in-process log delivers at commit and replays from SQL).
//
// The first pass visits every room; a later one only the rooms written
// since the previous pass began (less lookBack), the rooms a pass left
// events in that a later one must trim (held back by the published top, or
// failed), and, with maxAge, the rooms whose oldest event has aged out
// since; every sweep it visits every room again. So an idle room costs
// nothing, whatever the number of rooms.
type retention struct {
	store    retentionStore
	tops     func(ctx context.Context, rooms []string) ([]int64, error)
	keep     int64
	maxAge   time.Duration
	interval time.Duration
	lookBack time.Duration // 0 = none
	sweep    time.Duration // 0 = never
	logger   *slog.Logger

	// What the passes remember; only Run's goroutine uses them.
	since   time.Time          // look for rooms written from here; zero = every room
	swept   time.Time          // when the last pass over every room began
	pending map[string]int64   // room → seq: to trim again at the next pass
	due     map[string]dueRoom // room → when its oldest event ages out (maxAge > 0)
}

// dueRoom is a room whose oldest event ages out at at; seq is its head
// when it was last visited.
type dueRoom struct {
	at  time.Time
	seq int64
}

// Run trims until ctx is done (see trimmer).
func (r *retention) Run(ctx context.Context) error {
	return trimmer{what: "retention", trimmed: "history trimmed", unit: "events",
		interval: r.interval, logger: r.logger, pass: r.pass}.Run(ctx)
}

// keyStore is the part of the SQL store keyTrim uses.
type keyStore interface {
	TrimIdempotency(ctx context.Context, before time.Time) (int64, error)
}

// keyTrim deletes the idempotency keys older than ttl, at start and every
// interval: a retry after that is applied as a new write.
func keyTrim(store keyStore, ttl, interval time.Duration, logger *slog.Logger) trimmer {
	return trimmer{what: "idempotency key trim", trimmed: "idempotency keys trimmed", unit: "keys",
		interval: interval, logger: logger, pass: func(ctx context.Context) (int64, error) {
			return store.TrimIdempotency(ctx, time.Now().Add(-ttl))
		}}
}

// trimmer runs pass at start and every interval until ctx is done. A
// pass that deleted something is logged as trimmed with its count (unit);
// a failing pass is logged once per failure streak (what) and retried at
// the next tick.
type trimmer struct {
	what, trimmed, unit string
	interval            time.Duration
	logger              *slog.Logger
	pass                func(context.Context) (int64, error)
}

// Run trims until ctx is done, then returns nil.
func (t trimmer) Run(ctx context.Context) error {
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	failures := streak.New(t.logger, t.what)
	for {
		n, err := t.pass(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			failures.Fail(ctx, err)
		case err == nil:
			failures.OK(ctx)
			if n > 0 {
				t.logger.LogAttrs(ctx, slog.LevelInfo, t.trimmed, slog.Int64(t.unit, n))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// pass trims the rooms that may need it (see retention) and returns the
// number of events deleted. It goes on past a failing room and returns
// every failure.
func (r *retention) pass(ctx context.Context) (int64, error) {
	start := time.Now()
	heads, full, err := r.rooms(ctx, start)
	if err != nil {
		return 0, err
	}
	heads = slices.DeleteFunc(heads, func(h roomfeed.RoomHead) bool {
		return r.maxAge <= 0 && h.Seq <= r.keep // nothing beyond the count to trim
	})
	var (
		total int64
		errs  []error
	)
	for batch := range slices.Chunk(heads, retentionBatch) {
		below, err := r.below(ctx, batch)
		if err != nil {
			return total, err
		}
		for i, h := range batch {
			n, err := r.trim(ctx, h, below[i])
			if err != nil {
				errs = append(errs, fmt.Errorf("retention %s: %w", h.Room, err))
			}
			total += n
		}
		if ctx.Err() != nil {
			return total, errors.Join(errs...)
		}
	}
	r.since = start.Add(-r.lookBack)
	if full {
		r.swept = start
	}
	return total, errors.Join(errs...)
}

// rooms returns the rooms the pass visits, sorted, and whether they are
// every room.
func (r *retention) rooms(ctx context.Context, now time.Time) ([]roomfeed.RoomHead, bool, error) {
	full := r.since.IsZero() || (r.sweep > 0 && now.Sub(r.swept) >= r.sweep)
	since := r.since
	if full {
		since = time.Time{}
	}
	heads, err := r.store.RoomHeads(ctx, since)
	if err != nil || full {
		return heads, full, err
	}
	seen := make(map[string]bool, len(heads))
	for _, h := range heads {
		seen[h.Room] = true
	}
	for room, seq := range r.pending {
		if !seen[room] {
			seen[room] = true
			heads = append(heads, roomfeed.RoomHead{Room: room, Seq: seq})
		}
	}
	for room, d := range r.due {
		if !seen[room] && !d.at.After(now) {
			seen[room] = true
			heads = append(heads, roomfeed.RoomHead{Room: room, Seq: d.seq})
		}
	}
	slices.SortFunc(heads, func(a, b roomfeed.RoomHead) int { return strings.Compare(a.Room, b.Room) })
	return heads, false, nil
}

// below returns, per room of batch, the highest seq the pass may trim: its
// head, or the published top when that is lower.
func (r *retention) below(ctx context.Context, batch []roomfeed.RoomHead) ([]int64, error) {
	below := make([]int64, len(batch))
	for i, h := range batch {
		below[i] = h.Seq
	}
	if r.tops == nil {
		return below, nil
	}
	rooms := make([]string, len(batch))
	for i, h := range batch {
		rooms[i] = h.Room
	}
	tops, err := r.tops(ctx, rooms)
	if err != nil {
		return nil, fmt.Errorf("retention: published tops: %w", err)
	}
	for i := range below {
		below[i] = min(below[i], tops[i])
	}
	return below, nil
}

// trim trims one room and remembers whether a later pass must visit it
// although nobody writes to it.
func (r *retention) trim(ctx context.Context, h roomfeed.RoomHead, below int64) (int64, error) {
	if r.pending == nil {
		r.pending, r.due = make(map[string]int64), make(map[string]dueRoom)
	}
	n, err := r.store.Trim(ctx, h.Room, r.keep, r.maxAge, below)
	if err != nil || below < h.Seq {
		r.pending[h.Room] = h.Seq // failed, or held back by the published top
	} else {
		delete(r.pending, h.Room)
	}
	if err != nil || r.maxAge <= 0 {
		return n, err
	}
	at, ok, err := r.store.OldestTime(ctx, h.Room)
	switch {
	case err != nil:
		r.pending[h.Room] = h.Seq
	case ok:
		r.due[h.Room] = dueRoom{at: at.Add(r.maxAge), seq: h.Seq}
	default:
		delete(r.due, h.Room)
	}
	return n, err
}
