package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/internal/streak"
)

const (
	clusterBatch = 500                    // rooms per pipelined read
	clusterDrain = 4096                   // announcements taken at most before a read
	readWait     = 500 * time.Millisecond // a read's deadline
	notifyWait   = 100 * time.Millisecond // an announcement's deadline
)

// clusterReader reads a Redis Cluster, which refuses one XREAD over keys of
// different hash slots (CROSSSLOT), and where one blocking XREAD per slot or
// per room would take a connection each:
//
//   - every append to a room's stream (Publish, the relay) is announced as
//     "<top> <room>" on the channel Prefix + "notify"; a Cluster delivers a
//     PUBLISH to the subscribers of every node;
//   - the reader holds one pub/sub connection on that channel and reads the
//     followed rooms named in announcements from their cursors with
//     non-blocking XRANGEs, pipelined: go-redis groups a ClusterClient
//     pipeline per node, so a read takes at most one connection per shard
//     whatever the number of rooms;
//   - pub/sub is at-most-once (an announcement sent while the reader
//     reconnects is lost), so every Block, after every (re)subscription and
//     after a failed read, the reader also reads every followed room. A room
//     Follow registers is read at once;
//   - a shard that fails (its master died and a replica is being promoted,
//     or it is unreachable) fails the reads of its own rooms only: they stay
//     to be read at the next poll while the other rooms are delivered, the
//     client reloads its slot map, and a read waits at most readWait (a
//     room not read by then is read at the next step).
type clusterReader struct {
	l           *Log
	partial     *streak.Logger // reads where some rooms failed
	notifyPause atomic.Int64   // unix nanoseconds: no announcements until then

	// State of a Run; ps is nil between Runs.
	ps    *goredis.PubSub
	msgs  <-chan any
	poll  *time.Ticker
	dirty map[string]struct{} // rooms to read
	known map[string]*cursor  // cursors seen by the reader
	all   bool                // the next read covers every followed room
}

func newClusterReader(l *Log) *clusterReader {
	return &clusterReader{l: l, dirty: make(map[string]struct{}), known: make(map[string]*cursor),
		partial: streak.New(l.log, "redis cluster reader (some shards)")}
}

// notifyChannel is the channel that announces appends.
func (r *clusterReader) notifyChannel() string { return r.l.opts.Prefix + "notify" }

// step waits for an announcement, a change of the followed rooms or the
// poll (unless every room is to be read already), then reads the rooms
// that may have grown. The first step of a Run subscribes.
func (r *clusterReader) step(ctx context.Context) error {
	if r.ps == nil {
		r.ps = r.l.client.Subscribe(ctx, r.notifyChannel())
		r.msgs = r.ps.ChannelWithSubscriptions()
		r.poll = time.NewTicker(r.l.opts.Block)
		r.all = true
	}
	if !r.all {
		r.wait(ctx)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if !r.all && len(r.dirty) == 0 {
		return nil
	}
	read, failed, err := r.read(ctx)
	switch {
	case err == nil:
		r.partial.OK(ctx)
		return nil
	case read > failed:
		// Some shards answered: their rooms were delivered, the others stay
		// dirty for the next poll. No back-off, which would pause every room.
		r.l.reloadSlots(ctx)
		r.partial.Fail(ctx, err)
		return nil
	default:
		r.l.reloadSlots(ctx)
		r.all = true // announcements may have been lost meanwhile
		return err
	}
}

// wait waits for one event and takes note of what it tells.
func (r *clusterReader) wait(ctx context.Context) {
	select {
	case <-ctx.Done():
	case m, ok := <-r.msgs:
		if !ok {
			r.msgs = nil // closed: only after ps.Close; the poll goes on
			return
		}
		r.take(m)
		for range clusterDrain {
			select {
			case m, ok := <-r.msgs:
				if !ok {
					r.msgs = nil
					return
				}
				r.take(m)
			default:
				return
			}
		}
	case <-r.l.sink.RoomsChanged():
		r.sync()
	case <-r.l.wake:
		r.sync()
	case <-r.poll.C:
		r.all = true
	}
}

// take handles one message of the pub/sub connection.
func (r *clusterReader) take(m any) {
	switch m := m.(type) {
	case *goredis.Subscription:
		r.all = true // (re)subscribed: what was announced meanwhile is lost
	case *goredis.Message:
		top, room, ok := parseNotification(m.Payload)
		if !ok {
			return
		}
		r.l.mu.Lock()
		c := r.l.rooms[room]
		if c != nil && top > c.seq {
			r.dirty[room] = struct{}{}
		}
		r.l.mu.Unlock()
	}
}

// sync drops the rooms without local subscribers and marks the rooms
// followed since the last sync to be read.
func (r *clusterReader) sync() {
	l := r.l
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropUnsubscribedLocked()
	for room, c := range l.rooms {
		if r.known[room] != c {
			r.known[room] = c
			r.dirty[room] = struct{}{}
		}
	}
	for room := range r.known {
		if _, ok := l.rooms[room]; !ok {
			delete(r.known, room)
			delete(r.dirty, room)
		}
	}
}

// clusterItem is one room of a read, with the cursor it read from.
type clusterItem struct {
	room string
	c    *cursor
	last string
}

// read reads the streams of the dirty rooms (every followed room when
// r.all) from their cursors, pipelined, and delivers what it finds. Rooms
// that failed or returned a full page stay dirty. It returns how many rooms
// it read and how many of them failed, with their errors.
func (r *clusterReader) read(ctx context.Context) (int, int, error) {
	items := r.items()
	ctx, cancel := context.WithTimeout(ctx, readWait)
	defer cancel()
	rooms := make([]string, len(items))
	for i, it := range items {
		rooms[i] = it.room
	}
	var (
		mu     sync.Mutex
		errs   []error
		failed int
	)
	r.l.perShard(ctx, rooms, func(idx []int) {
		for batch := range slices.Chunk(idx, clusterBatch) {
			if n, err := r.readBatch(ctx, items, batch); err != nil {
				mu.Lock()
				errs, failed = append(errs, err), failed+n
				mu.Unlock()
			}
		}
	})
	if len(errs) > 0 {
		return len(items), failed, fmt.Errorf("redis cluster read: %w", errors.Join(errs...))
	}
	return len(items), 0, nil
}

// readBatch reads the rooms items[i] for i in batch in one pipeline and
// delivers what it finds, under l.mu. It returns how many rooms failed,
// and why.
func (r *clusterReader) readBatch(ctx context.Context, items []clusterItem, batch []int) (int, error) {
	if ctx.Err() != nil {
		return len(batch), ctx.Err()
	}
	cmds := make([]*goredis.XMessageSliceCmd, len(batch))
	_, _ = r.l.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for k, i := range batch {
			cmds[k] = p.XRangeN(ctx, r.l.streamKey(items[i].room), "("+items[i].last, "+", readCount)
		}
		return nil
	}) // each command carries its own error
	var errs []error
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	for k, i := range batch {
		it := items[i]
		msgs, err := cmds[k].Result()
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", it.room, err))
			continue
		}
		if len(msgs) < readCount {
			delete(r.dirty, it.room) // caught up; a full page means more to read
		}
		r.l.deliver(it.room, it.c, it.last, msgs)
	}
	return len(errs), errors.Join(errs...)
}

// items returns the rooms to read with their cursors, sorted so that each
// batch's keys are spread as the slots are.
func (r *clusterReader) items() []clusterItem {
	l := r.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.all {
		for room := range l.rooms {
			r.dirty[room] = struct{}{}
		}
		r.all = false
	}
	items := make([]clusterItem, 0, len(r.dirty))
	for room := range r.dirty {
		c := l.rooms[room]
		if c == nil {
			delete(r.dirty, room)
			continue
		}
		items = append(items, clusterItem{room: room, c: c, last: c.last})
	}
	slices.SortFunc(items, func(a, b clusterItem) int { return strings.Compare(a.room, b.room) })
	return items
}

// stop closes the pub/sub connection and forgets the Run's state.
func (r *clusterReader) stop(context.Context) {
	if r.ps != nil {
		r.ps.Close()
		r.poll.Stop()
		r.ps, r.msgs, r.poll = nil, nil, nil
	}
	clear(r.dirty)
	clear(r.known)
}

// followed has nothing to do: Follow's signal on l.wake makes the reader
// sync and read the new room.
func (r *clusterReader) followed(context.Context, string) {}

// appended announces the new tops on the notify channel, in one pipeline.
// A failure only delays the readers until their next poll. It runs in the
// Publish that appended, so it waits at most notifyWait, and after a failure
// (the shard of the channel is down) the announcements stop for
// publishPause: a dead shard must not slow the publishes to the others.
func (r *clusterReader) appended(ctx context.Context, tops []roomfeed.RoomHead) {
	if until := r.notifyPause.Load(); until != 0 && time.Now().UnixNano() < until {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, notifyWait)
	defer cancel()
	_, err := r.l.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, t := range tops {
			p.Publish(ctx, r.notifyChannel(), notification(t.Room, t.Seq))
		}
		return nil
	})
	if err != nil {
		r.notifyPause.Store(time.Now().Add(publishPause).UnixNano())
		r.l.reloadSlots(ctx)
		r.l.log.LogAttrs(ctx, slog.LevelDebug, "redis notify failed, readers catch up at their next poll",
			slog.Int("rooms", len(tops)), slog.String("error", err.Error()))
		return
	}
	r.notifyPause.Store(0)
}

// notification is the payload announcing that room's stream reaches top.
func notification(room string, top int64) string {
	return strconv.FormatInt(top, 10) + " " + room
}

// parseNotification splits a notification payload into top and room.
func parseNotification(payload string) (int64, string, bool) {
	s, room, ok := strings.Cut(payload, " ")
	if !ok || room == "" {
		return 0, "", false
	}
	top, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, "", false
	}
	return top, room, true
}
