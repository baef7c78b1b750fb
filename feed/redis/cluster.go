package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed/internal/streak"
)

// Redis Cluster support.
//
// A Cluster refuses one XREAD over keys of different hash slots (CROSSSLOT),
// and one blocking XREAD per slot or per room would take a connection each.
// So on a Cluster (the client is a *goredis.ClusterClient):
//
//   - every successful append to a room's stream (Publish, the relay) is
//     followed by PUBLISH Prefix+"notify" "<top> <room>"; a Cluster delivers
//     a PUBLISH to the subscribers of every node;
//   - the reader holds one pub/sub connection on that channel and, for the
//     tracked rooms named in notifications, reads their streams from each
//     room's cursor with non-blocking XRANGEs, pipelined: go-redis groups a
//     ClusterClient pipeline per node, so a read takes at most one connection
//     per shard whatever the number of rooms;
//   - pub/sub is at-most-once (a notification sent while the reader
//     reconnects is lost), so every Block (default 1s), after every
//     (re)subscription and after a failed read, the reader also reads every
//     tracked room. A room registered by Subscribe is read at once.
//
// Delivery is the same as on a single Redis: in order, each entry once, from
// the cursor set at registration.

// clusterBatch is the number of rooms per pipelined read.
const clusterBatch = 500

// clusterDrain bounds the notifications taken before a read.
const clusterDrain = 4096

// notifyChannel is the channel that announces appends on a Cluster.
func (l *Log) notifyChannel() string { return l.opts.Prefix + "notify" }

// notify announces that room's stream reaches top. A failure only delays
// the readers until their next poll.
func (l *Log) notify(ctx context.Context, room string, top int64) {
	err := l.client.Publish(ctx, l.notifyChannel(), notification(room, top)).Err()
	if err != nil {
		l.log.LogAttrs(ctx, slog.LevelDebug, "redis notify failed, readers catch up at their next poll",
			slog.String("room", room), slog.String("error", err.Error()))
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

// clusterReader is the state of one cluster Run.
type clusterReader struct {
	*xreader
	dirty map[string]struct{} // rooms to read
	known map[string]*cursor  // cursors seen by the reader
	all   bool                // the next read covers every tracked room
}

// runCluster is Run on a Redis Cluster: see the comment at the top of this
// file. It returns nil once ctx is done.
func (l *Log) runCluster(ctx context.Context) error {
	ps := l.client.Subscribe(ctx, l.notifyChannel())
	defer ps.Close()
	msgs := ps.ChannelWithSubscriptions()
	r := &clusterReader{
		xreader: &xreader{l: l, backoff: 50 * time.Millisecond, failures: streak.New(l.log, "redis reader")},
		dirty:   make(map[string]struct{}),
		known:   make(map[string]*cursor),
		all:     true,
	}
	poll := time.NewTicker(l.opts.Block)
	defer poll.Stop()
	for ctx.Err() == nil {
		if r.all || len(r.dirty) > 0 {
			if err := r.read(ctx); err != nil {
				if ctx.Err() != nil {
					break
				}
				r.all = true // notifications may have been lost meanwhile
				r.fail(ctx, err)
				continue
			}
			r.ok(ctx)
		}
		select {
		case <-ctx.Done():
		case m, ok := <-msgs:
			if !ok {
				msgs = nil // closed: only after ps.Close; the poll goes on
				continue
			}
			r.take(m)
		drain:
			for range clusterDrain {
				select {
				case m, ok := <-msgs:
					if !ok {
						msgs = nil
						break drain
					}
					r.take(m)
				default:
					break drain
				}
			}
		case <-l.sink.RoomsChanged():
			r.sync()
		case <-l.wake:
			r.sync()
		case <-poll.C:
			r.all = true
		}
	}
	return nil
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
// registered since the last sync to be read.
func (r *clusterReader) sync() {
	l := r.l
	l.mu.Lock()
	defer l.mu.Unlock()
	for room, c := range l.rooms {
		if !l.sink.HasRoom(room) {
			delete(l.rooms, room)
			continue
		}
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

// read reads the streams of the dirty rooms (every tracked room when r.all)
// from their cursors, pipelined, and delivers what it finds. Rooms that
// failed or returned a full page stay dirty.
func (r *clusterReader) read(ctx context.Context) error {
	l := r.l
	l.mu.Lock()
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
	l.mu.Unlock()
	// Sorted so that each batch's keys are spread as the slots are.
	slices.SortFunc(items, func(a, b clusterItem) int { return strings.Compare(a.room, b.room) })
	var errs []error
	for batch := range slices.Chunk(items, clusterBatch) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		cmds, err := l.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
			for _, it := range batch {
				p.XRangeN(ctx, l.streamKey(it.room), "("+it.last, "+", readCount)
			}
			return nil
		})
		if len(cmds) != len(batch) {
			if err == nil {
				err = fmt.Errorf("pipeline answered %d of %d", len(cmds), len(batch))
			}
			errs = append(errs, err)
			continue
		}
		l.mu.Lock()
		for i, it := range batch {
			msgs, err := cmds[i].(*goredis.XMessageSliceCmd).Result()
			if err != nil {
				errs = append(errs, fmt.Errorf("read %s: %w", it.room, err))
				continue
			}
			if len(msgs) < readCount {
				delete(r.dirty, it.room) // caught up; a full page means more to read
			}
			if l.rooms[it.room] != it.c || it.c.last != it.last {
				continue // dropped or registered again while the read was in flight
			}
			l.deliverLocked(it.room, it.c, msgs)
		}
		l.mu.Unlock()
	}
	if len(errs) > 0 {
		return fmt.Errorf("redis cluster read: %w", errors.Join(errs...))
	}
	return nil
}

// deliverLocked delivers the entries msgs of room's stream, read after c,
// and advances c. l.mu is held.
func (l *Log) deliverLocked(room string, c *cursor, msgs []goredis.XMessage) {
	for _, m := range msgs {
		c.last = m.ID
		ev, ok := parseEntry(room, m)
		if !ok {
			l.log.LogAttrs(context.Background(), slog.LevelWarn, "redis stream entry with a foreign id skipped",
				slog.String("room", room), slog.String("id", m.ID))
			continue
		}
		if ev.Seq <= c.seq {
			continue // not above what was delivered (cannot happen with "(" ranges)
		}
		if ev.Seq > c.seq+1 {
			l.log.LogAttrs(context.Background(), slog.LevelWarn, "redis reader: seq jump",
				slog.String("room", room), slog.Int64("after", c.seq), slog.Int64("seq", ev.Seq))
		}
		c.seq = ev.Seq
		l.sink.Deliver(ev)
	}
}
