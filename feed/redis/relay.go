package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/internal/streak"
)

// DefaultRelayInterval is the interval of Relay's passes when it is given
// none.
const DefaultRelayInterval = 5 * time.Second

// relayBatch is the number of rooms whose tops one pipeline reads.
const relayBatch = 500

// Relay republishes the committed events the streams lack: the event of a
// Publish that failed or never ran (crash between commit and publish, Redis
// outage), or every room's retained window after Redis lost its data. It
// compares every room's head with its stream's top at start, then every
// interval (default DefaultRelayInterval) the rooms whose head changed since
// shortly before the previous pass, and fills the rooms behind the way
// Publish does. Redis data loss is noticed through the epoch key (Prefix +
// "epoch", a random value the relays set when missing): when it disappears
// or changes, the next pass covers every room again. Errors are logged once
// per failure streak and retried at the next tick; Relay returns nil once
// ctx is done.
func (l *Log) Relay(ctx context.Context, heads roomfeed.History, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultRelayInterval
	}
	r := relay{l: l, heads: heads, interval: interval, full: true}
	failures := streak.New(l.log, "redis relay")
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := r.pass(ctx); err != nil && ctx.Err() == nil {
			failures.Fail(ctx, err)
		} else if err == nil {
			failures.OK(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// relay is the state of one Relay loop.
type relay struct {
	l        *Log
	heads    roomfeed.History
	interval time.Duration

	epoch string    // value of the epoch key at the last pass
	full  bool      // the next pass must cover every room
	last  time.Time // start of the last successful pass
}

func (r *relay) pass(ctx context.Context) error {
	start := time.Now()
	epoch, err := r.l.epoch(ctx)
	if err != nil {
		// On a Cluster the epoch key lives on one shard: its failure must not
		// stop the relay of the rooms on the others. Data loss is noticed at
		// the next pass that reads the key.
		r.l.log.LogAttrs(ctx, slog.LevelDebug, "relay: epoch unknown this pass", slog.Any("error", err))
		epoch = r.epoch
	}
	if epoch != r.epoch {
		if r.epoch != "" {
			r.l.log.LogAttrs(ctx, slog.LevelWarn, "redis epoch changed: Redis lost its data, republishing every room")
		}
		r.epoch, r.full = epoch, true
	}
	var since time.Time
	if !r.full {
		since = r.last.Add(-2 * r.interval)
	}
	hs, err := r.heads.RoomHeads(ctx, since)
	if err != nil {
		return fmt.Errorf("relay: room heads: %w", err)
	}
	if err := r.l.relayHeads(ctx, hs); err != nil {
		return err
	}
	r.full, r.last = false, start
	return nil
}

// epoch returns the value of the epoch key, setting a new random one when it
// is missing.
func (l *Log) epoch(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, readWait) // on a Cluster its shard may be the one down
	defer cancel()
	key := l.opts.Prefix + "epoch"
	if err := l.client.SetNX(ctx, key, randomID(), 0).Err(); err != nil {
		return "", fmt.Errorf("relay: set epoch: %w", err)
	}
	v, err := l.client.Get(ctx, key).Result()
	if errors.Is(err, goredis.Nil) {
		return "", nil // deleted between the two calls: the next pass sees a new one
	}
	if err != nil {
		return "", fmt.Errorf("relay: get epoch: %w", err)
	}
	return v, nil
}

// Relayed returns how many events the relay found missing from the streams
// and republished (published late: after a crash between commit and publish,
// or a Redis outage).
func (l *Log) Relayed() uint64 { return l.relayed.Load() }

// relayHeads brings the stream of every room in hs up to its head. It goes
// on past a failing room and returns every failure. The rooms of each
// Cluster shard are relayed on their own, at the same time, and their tops
// read with a deadline (readWait): a dead shard fails its own rooms at once
// and does not hold the relay of the others.
func (l *Log) relayHeads(ctx context.Context, hs []roomfeed.RoomHead) error {
	var (
		mu   sync.Mutex
		errs []error
	)
	for batch := range slices.Chunk(hs, relayBatch) {
		rooms := make([]string, len(batch))
		for i, h := range batch {
			rooms[i] = h.Room
		}
		l.perShard(ctx, rooms, func(idx []int) {
			if err := l.relayShard(ctx, batch, idx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// relayShard brings up to their heads the streams of the rooms hs[i], i in
// idx, which share a shard.
func (l *Log) relayShard(ctx context.Context, hs []roomfeed.RoomHead, idx []int) error {
	rooms := make([]string, len(idx))
	for k, i := range idx {
		rooms[k] = hs[i].Room
	}
	topCtx, cancel := context.WithTimeout(ctx, readWait)
	cmds, _ := l.topCmds(topCtx, rooms) // each command carries its own error
	cancel()
	var errs []error
	for k, i := range idx {
		h := hs[i]
		msgs, err := cmds[k].Result()
		if err != nil {
			errs = append(errs, fmt.Errorf("relay %s: stream top: %w", h.Room, err))
			continue
		}
		var top int64
		if len(msgs) > 0 {
			ev, ok := parseEntry(h.Room, msgs[0])
			if !ok {
				errs = append(errs, fmt.Errorf("relay %s: foreign stream id %s", h.Room, msgs[0].ID))
				continue
			}
			top = ev.Seq
		}
		if top >= h.Seq {
			continue
		}
		if err := l.fill(ctx, h.Room, top, h.Seq, nil); err != nil {
			errs = append(errs, fmt.Errorf("relay %s up to %d: %w", h.Room, h.Seq, err))
			continue
		}
		l.relayed.Add(uint64(min(h.Seq-top, max(l.opts.MaxLen, 1))))
	}
	return errors.Join(errs...)
}
