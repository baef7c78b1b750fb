package redis

import (
	"context"
	"errors"
	"log/slog"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/internal/streak"
)

// Backoff of the reader after a failed read.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
)

// reader is how Run reads the streams of the followed rooms in one mode, New
// choosing it from the client: xreader, one blocking XREAD over every room
// (a single Redis), or clusterReader, announcements and pipelined XRANGEs (a
// Redis Cluster, which refuses one XREAD across hash slots). Both hand what
// they read to Log.deliver.
type reader interface {
	// step waits for new entries of the followed rooms, about Block at the
	// most, and delivers them. An error is a failed read: Run backs off and
	// steps again. Once ctx is done it returns ctx.Err().
	step(ctx context.Context) error
	// stop ends a Run, releasing what its steps held.
	stop(ctx context.Context)
	// followed is called by Follow once it registered room, so that a
	// running reader reads the room soon.
	followed(ctx context.Context, room string)
	// appended is called once appends moved the streams of rooms up to
	// tops; on a Cluster the rooms share a shard.
	appended(ctx context.Context, tops []roomfeed.RoomHead)
}

// cursor is the reader's position in one room's stream. A room that is
// dropped and followed again gets a new cursor, so a read that was in
// flight with the old one is ignored.
type cursor struct {
	last string // id of the last entry delivered (or of the top when followed)
	seq  int64  // its seq
}

// Run is the reader: one goroutine, and whatever the number of rooms one
// connection on a single Redis, one pub/sub connection and at most one
// connection per shard on a Cluster. It delivers to the sink the new entries
// of every followed room with local subscribers, in order. Failed reads are
// logged once per failure streak and retried with capped backoff. Run
// returns nil once ctx is done, within about Block.
func (l *Log) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("redis reader already running")
	}
	defer l.running.Store(false)
	defer l.reader.stop(ctx)
	failures := streak.New(l.log, "redis reader")
	backoff := minBackoff
	for ctx.Err() == nil {
		if err := l.reader.step(ctx); err != nil {
			if ctx.Err() != nil {
				break
			}
			failures.Fail(ctx, err)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		failures.OK(ctx)
		backoff = minBackoff
	}
	return nil
}

// deliver hands the entries msgs of room's stream, read after the entry id
// from, to the sink in order, and advances c; l.mu is held. Nothing is
// delivered when c is no longer the room's cursor or moved since the read
// (the room was dropped or followed again meanwhile). Each event is
// delivered once: entries not above c.seq are skipped. A jump in seq is
// logged: Redis lost its data and only the window was republished, or the
// reader fell further behind than the stream keeps; subscribers fill it
// from EventsAfter.
func (l *Log) deliver(room string, c *cursor, from string, msgs []goredis.XMessage) {
	if l.rooms[room] != c || c.last != from {
		return
	}
	for _, m := range msgs {
		c.last = m.ID
		ev, ok := parseEntry(room, m)
		if !ok {
			l.log.LogAttrs(context.Background(), slog.LevelWarn, "redis stream entry with a foreign id skipped",
				slog.String("room", room), slog.String("id", m.ID))
			continue
		}
		if ev.Seq <= c.seq {
			continue
		}
		if ev.Seq > c.seq+1 {
			l.log.LogAttrs(context.Background(), slog.LevelWarn, "redis reader: seq jump",
				slog.String("room", room), slog.Int64("after", c.seq), slog.Int64("seq", ev.Seq))
		}
		c.seq = ev.Seq
		l.sink.Deliver(ev)
	}
}

// dropUnsubscribedLocked stops following the rooms without local
// subscribers; l.mu is held. HasRoom is checked under l.mu: a Follow that
// raced with the drop finds the room unfollowed afterwards and registers it
// again.
func (l *Log) dropUnsubscribedLocked() {
	for room := range l.rooms {
		if !l.sink.HasRoom(room) {
			delete(l.rooms, room)
		}
	}
}
