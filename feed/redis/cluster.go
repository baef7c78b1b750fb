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
	notifyWait   = 500 * time.Millisecond // an announcement's deadline
	echoWait     = 200 * time.Millisecond // an announcement not heard back by then: the subscription is down
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
//     non-blocking XRANGEs, pipelined, one read per shard at a time: a read
//     takes at most one connection per shard whatever the number of rooms;
//   - pub/sub is at-most-once (an announcement sent while the reader
//     reconnects is lost), so every Block and after every (re)subscription
//     the reader also reads every followed room. A room Follow registers is
//     read at once;
//   - the subscription lives on one node, the master of the channel's slot,
//     and hears nothing from that master's failure to its replica's
//     promotion: when an announcement of this node's is not heard back
//     within echoWait, the reader reads every followed room, and again
//     after each announcement that goes unheard, until it hears again;
//   - the reads of the shards are independent: each runs in its own
//     goroutine with a deadline (readWait) while the reader goes on taking
//     announcements and starting the reads of the other shards. A shard that
//     fails (its master died and a replica is being promoted, or it is
//     unreachable) fails the reads of its own rooms only: they stay to be
//     read, the client reloads its slot map, and the shard is read again
//     after shardRetry.
type clusterReader struct {
	l       *Log
	unheard atomic.Int64 // unix nanoseconds of an announcement not heard back yet; 0: none

	// State of a Run; ps is nil between Runs. Only the Run's goroutine uses
	// it, but dirty and marks, which the shard reads update under l.mu.
	ps      *goredis.PubSub
	msgs    <-chan any
	poll    *time.Ticker
	echo    *time.Ticker      // checks unheard
	dirty   map[string]uint64 // rooms to read, with the mark of their last change
	marks   uint64            // the last mark given
	known   map[string]*cursor
	all     bool                      // the next read covers every followed room
	busy    map[string]bool           // shards with a read in flight
	done    chan shardRead            // reads that ended
	reads   sync.WaitGroup            // the reads in flight
	failing map[string]*streak.Logger // failures of each shard's reads
}

// shardRetry is how long the reads of a shard pause after one failed.
const shardRetry = 100 * time.Millisecond

// shardRead is the outcome of the read of one shard.
type shardRead struct {
	shard string
	err   error
}

func newClusterReader(l *Log) *clusterReader {
	return &clusterReader{l: l, dirty: make(map[string]uint64), known: make(map[string]*cursor),
		busy: make(map[string]bool), done: make(chan shardRead), failing: make(map[string]*streak.Logger)}
}

// notifyChannel is the channel that announces appends.
func (r *clusterReader) notifyChannel() string { return r.l.opts.Prefix + "notify" }

// step waits for an announcement, a change of the followed rooms, the end
// of a read or the poll (unless every room is to be read already), then
// starts the reads of the rooms that may have grown. The first step of a
// Run subscribes.
func (r *clusterReader) step(ctx context.Context) error {
	if r.ps == nil {
		r.ps = r.l.client.Subscribe(ctx, r.notifyChannel())
		r.msgs = r.ps.ChannelWithSubscriptions()
		r.poll = time.NewTicker(r.l.opts.Block)
		r.echo = time.NewTicker(echoWait / 2)
		r.all = true
	}
	if !r.all {
		r.wait(ctx)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.startReads(ctx)
	return nil
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
	case res := <-r.done:
		r.ended(ctx, res)
	case <-r.l.sink.RoomsChanged():
		r.sync()
	case <-r.l.wake:
		r.sync()
	case <-r.poll.C:
		r.all = true
	case <-r.echo.C:
		if u := r.unheard.Load(); u != 0 && time.Now().UnixNano()-u > int64(echoWait) {
			r.unheard.Store(0) // again after the next announcement unheard
			r.all = true
		}
	}
}

// take handles one message of the pub/sub connection.
func (r *clusterReader) take(m any) {
	switch m := m.(type) {
	case *goredis.Subscription:
		r.all = true // (re)subscribed: what was announced meanwhile is lost
	case *goredis.Message:
		r.unheard.Store(0) // the subscription works
		top, room, ok := parseNotification(m.Payload)
		if !ok {
			return
		}
		r.l.mu.Lock()
		c := r.l.rooms[room]
		if c != nil && top > c.seq {
			r.markLocked(room)
		}
		r.l.mu.Unlock()
	}
}

// markLocked marks room to be read; l.mu is held.
func (r *clusterReader) markLocked(room string) {
	r.marks++
	r.dirty[room] = r.marks
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
			r.markLocked(room)
		}
	}
	for room := range r.known {
		if _, ok := l.rooms[room]; !ok {
			delete(r.known, room)
			delete(r.dirty, room)
		}
	}
}

// clusterItem is one room of a read, with the cursor it read from and the
// mark it had.
type clusterItem struct {
	room string
	c    *cursor
	last string
	mark uint64
}

// startReads starts, for each shard without a read in flight, the read of
// its dirty rooms (every followed room when r.all). The rooms of the
// other shards stay dirty for the next read.
func (r *clusterReader) startReads(ctx context.Context) {
	groups := make(map[string][]clusterItem)
	for _, it := range r.items() {
		if shard := r.l.shardOf(ctx, it.room); !r.busy[shard] {
			groups[shard] = append(groups[shard], it)
		}
	}
	for shard, items := range groups {
		r.busy[shard] = true
		r.reads.Go(func() {
			err := r.readShard(ctx, items)
			if err != nil {
				r.l.reloadSlots(ctx)
				t := time.NewTimer(shardRetry)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
			}
			select {
			case r.done <- shardRead{shard: shard, err: err}:
			case <-ctx.Done():
			}
		})
	}
}

// ended takes note of the end of a shard's read.
func (r *clusterReader) ended(ctx context.Context, res shardRead) {
	delete(r.busy, res.shard)
	f := r.failing[res.shard]
	if f == nil {
		f = streak.New(r.l.log, "redis cluster reader (shard "+res.shard+")")
		r.failing[res.shard] = f
	}
	if res.err != nil {
		f.Fail(ctx, res.err)
	} else {
		f.OK(ctx)
	}
}

// readShard reads items, rooms of one shard, in pipelines of clusterBatch
// rooms within readWait, and delivers what it finds. Rooms that failed or
// returned a full page stay dirty.
func (r *clusterReader) readShard(ctx context.Context, items []clusterItem) error {
	ctx, cancel := context.WithTimeout(ctx, readWait)
	defer cancel()
	var errs []error
	for batch := range slices.Chunk(items, clusterBatch) {
		if err := r.readBatch(ctx, batch); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("redis cluster read: %w", errors.Join(errs...))
	}
	return nil
}

// readBatch reads the rooms of batch in one pipeline and delivers what it
// finds, under l.mu.
func (r *clusterReader) readBatch(ctx context.Context, batch []clusterItem) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	cmds := make([]*goredis.XMessageSliceCmd, len(batch))
	_, _ = r.l.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for k, it := range batch {
			cmds[k] = p.XRangeN(ctx, r.l.streamKey(it.room), "("+it.last, "+", readCount)
		}
		return nil
	}) // each command carries its own error
	var errs []error
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	for k, it := range batch {
		msgs, err := cmds[k].Result()
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", it.room, err))
			continue
		}
		if len(msgs) < readCount && r.dirty[it.room] == it.mark {
			// Caught up, and not announced again since the read began; a
			// full page means more to read.
			delete(r.dirty, it.room)
		}
		r.l.deliver(it.room, it.c, it.last, msgs)
	}
	return errors.Join(errs...)
}

// items returns the rooms to read with their cursors, sorted so that each
// batch's keys are spread as the slots are.
func (r *clusterReader) items() []clusterItem {
	l := r.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.all {
		for room := range l.rooms {
			r.markLocked(room)
		}
		r.all = false
	}
	items := make([]clusterItem, 0, len(r.dirty))
	for room, mark := range r.dirty {
		c := l.rooms[room]
		if c == nil {
			delete(r.dirty, room)
			continue
		}
		items = append(items, clusterItem{room: room, c: c, last: c.last, mark: mark})
	}
	slices.SortFunc(items, func(a, b clusterItem) int { return strings.Compare(a.room, b.room) })
	return items
}

// stop closes the pub/sub connection, waits for the reads in flight and
// forgets the Run's state.
func (r *clusterReader) stop(context.Context) {
	if r.ps != nil {
		r.ps.Close()
		r.poll.Stop()
		r.echo.Stop()
		r.ps, r.msgs, r.poll, r.echo = nil, nil, nil, nil
	}
	r.reads.Wait() // they end with the Run's context
	r.l.mu.Lock()
	clear(r.dirty)
	r.l.mu.Unlock()
	clear(r.known)
	clear(r.busy)
}

// followed has nothing to do: Follow's signal on l.wake makes the reader
// sync and read the new room.
func (r *clusterReader) followed(context.Context, string) {}

// appended announces the new tops, rooms of one shard, on the notify
// channel, in one pipeline to the master of that shard: it has just taken
// the appends, and a Cluster delivers a PUBLISH to the subscribers of every
// node (the client would send it to any master, the dead one included). A
// failure only delays the readers until their next poll (this node's
// reader, which does not hear it, at once: see unheard). It waits at most
// notifyWait, and holds only the Publishes to the same shard.
func (r *clusterReader) appended(ctx context.Context, tops []roomfeed.RoomHead) {
	r.unheard.CompareAndSwap(0, time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(ctx, notifyWait)
	defer cancel()
	var via goredis.Cmdable = r.l.client
	if cc, ok := r.l.client.(*goredis.ClusterClient); ok {
		if m, err := cc.MasterForKey(ctx, r.l.streamKey(tops[0].Room)); err == nil {
			via = m
		}
	}
	_, err := via.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for _, t := range tops {
			p.Publish(ctx, r.notifyChannel(), notification(t.Room, t.Seq))
		}
		return nil
	})
	if err != nil {
		r.l.reloadSlots(ctx)
		r.l.log.LogAttrs(ctx, slog.LevelDebug, "redis notify failed, readers catch up at their next poll",
			slog.Int("rooms", len(tops)), slog.String("error", err.Error()))
	}
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
