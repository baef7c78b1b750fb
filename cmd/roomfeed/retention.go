package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/internal/streak"
)

// retentionBatch is the number of rooms whose published tops are read at once.
const retentionBatch = 500

// retentionStore is the part of the SQL store retention uses.
type retentionStore interface {
	RoomHeads(ctx context.Context, since time.Time) ([]roomfeed.RoomHead, error)
	Trim(ctx context.Context, room string, keep int64, maxAge time.Duration, below int64) (int64, error)
}

// retention applies the SQL history retention: at start and every interval
// it deletes each room's events beyond the newest keep (0: no count limit)
// and those older than maxAge (0: no age limit), but never an event above
// what the log has published, so the relay can always republish what Redis
// lacks. tops returns, per room, the highest seq the log has published (the
// top of the room's Redis stream); nil means every committed event counts as
// published (the in-process log delivers at commit and replays from SQL).
type retention struct {
	store    retentionStore
	tops     func(ctx context.Context, rooms []string) ([]int64, error)
	keep     int64
	maxAge   time.Duration
	interval time.Duration
	logger   *slog.Logger
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

// pass trims every room once and returns the number of events deleted. It
// goes on past a failing room and returns every failure.
func (r *retention) pass(ctx context.Context) (int64, error) {
	heads, err := r.store.RoomHeads(ctx, time.Time{})
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
		below := make([]int64, len(batch))
		for i, h := range batch {
			below[i] = h.Seq
		}
		if r.tops != nil {
			rooms := make([]string, len(batch))
			for i, h := range batch {
				rooms[i] = h.Room
			}
			tops, err := r.tops(ctx, rooms)
			if err != nil {
				return total, fmt.Errorf("retention: published tops: %w", err)
			}
			for i := range below {
				below[i] = min(below[i], tops[i])
			}
		}
		for i, h := range batch {
			n, err := r.store.Trim(ctx, h.Room, r.keep, r.maxAge, below[i])
			if err != nil {
				errs = append(errs, fmt.Errorf("retention %s: %w", h.Room, err))
				continue
			}
			total += n
		}
		if ctx.Err() != nil {
			break
		}
	}
	return total, errors.Join(errs...)
}
