package redis

import (
	"context"
	"errors"
	"log/slog"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed"
)

// xreader reads a single Redis: one blocking XREAD, bounded by Block, over
// the streams of every followed room and this node's wake stream, on one
// dedicated connection. Follow adds an entry to the wake stream so that a
// blocked XREAD returns and the next one reads the new room.
type xreader struct {
	l       *Log
	name    string // CLIENT SETNAME of the reader's connection
	wakeKey string // Prefix + "node:<id>:wake"

	// State of a Run.
	conn     *goredis.Conn // dedicated connection when the client is a *goredis.Client
	wakeLast string        // id of the last wake entry read
}

func newXReader(l *Log, node string) *xreader {
	return &xreader{
		l:        l,
		name:     "roomfeed-reader-" + node,
		wakeKey:  l.opts.Prefix + "node:" + node + ":wake",
		wakeLast: "0-0",
	}
}

func (r *xreader) step(ctx context.Context) error {
	keys, rooms, curs := r.snapshot()
	for len(curs) == 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.l.sink.RoomsChanged():
		case <-r.l.wake:
		}
		keys, rooms, curs = r.snapshot()
	}
	res, err := r.read(ctx, keys)
	if err != nil && !errors.Is(err, goredis.Nil) {
		return err
	}
	r.apply(keys, rooms, curs, res)
	return nil
}

// snapshot drops the rooms without local subscribers and returns the keys
// and ids of one XREAD (the rooms' streams, then the wake stream) with the
// rooms and cursors used.
func (r *xreader) snapshot() ([]string, []string, []*cursor) {
	l := r.l
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dropUnsubscribedLocked()
	n := len(l.rooms)
	if n == 0 {
		return nil, nil, nil
	}
	keys := make([]string, 2*(n+1))
	rooms := make([]string, 0, n)
	curs := make([]*cursor, 0, n)
	for room, c := range l.rooms {
		keys[len(rooms)] = l.streamKey(room)
		keys[n+1+len(rooms)] = c.last
		rooms = append(rooms, room)
		curs = append(curs, c)
	}
	keys[n] = r.wakeKey
	keys[2*n+1] = r.wakeLast
	return keys, rooms, curs
}

// read runs one XREAD of keys.
func (r *xreader) read(ctx context.Context, keys []string) ([]goredis.XStream, error) {
	args := &goredis.XReadArgs{Streams: keys, Count: readCount, Block: r.l.opts.Block}
	c, ok := r.l.client.(*goredis.Client)
	if !ok {
		// Other clients use their pool: one goroutine still holds at most
		// one connection at a time.
		return r.l.client.XRead(ctx, args).Result()
	}
	if r.conn == nil {
		r.conn = c.EphemeralConn()
		if err := r.conn.ClientSetName(ctx, r.name).Err(); err != nil {
			r.conn.Close()
			r.conn = nil
			return nil, err
		}
	}
	res, err := r.conn.XRead(ctx, args).Result()
	if err != nil && !errors.Is(err, goredis.Nil) {
		r.conn.Close() // a connection that failed mid-read is not reused
		r.conn = nil
	}
	return res, err
}

// apply delivers the entries of one XREAD of keys and moves the wake
// stream's position.
func (r *xreader) apply(keys, rooms []string, curs []*cursor, res []goredis.XStream) {
	if len(res) == 0 {
		return
	}
	n := len(curs)
	index := make(map[string]int, len(res))
	for _, st := range res {
		index[st.Stream] = -1
	}
	for i, k := range keys[:n] {
		if _, ok := index[k]; ok {
			index[k] = i
		}
	}
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	for _, st := range res {
		if st.Stream == r.wakeKey && len(st.Messages) > 0 {
			r.wakeLast = st.Messages[len(st.Messages)-1].ID
			continue
		}
		if i := index[st.Stream]; i >= 0 {
			r.l.deliver(rooms[i], curs[i], keys[n+1+i], st.Messages)
		}
	}
}

// stop closes the connection and deletes the wake stream.
func (r *xreader) stop(ctx context.Context) {
	if r.conn != nil {
		r.conn.Close()
		r.conn = nil
	}
	r.wakeLast = "0-0"
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 500*time.Millisecond)
	defer cancel()
	if err := r.l.client.Del(ctx, r.wakeKey).Err(); err != nil {
		r.l.log.LogAttrs(ctx, slog.LevelWarn, "redis reader: deleting wake stream failed",
			slog.String("key", r.wakeKey), slog.String("error", err.Error()))
	}
}

// followed interrupts a blocked XREAD so that the reader reads room now. If
// this fails the reader still picks the room up within Block.
func (r *xreader) followed(ctx context.Context, room string) {
	_, err := r.l.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		p.XAdd(ctx, &goredis.XAddArgs{Stream: r.wakeKey, MaxLen: 1, Values: []string{"r", room}})
		p.Expire(ctx, r.wakeKey, 24*time.Hour)
		return nil
	})
	if err != nil {
		r.l.log.LogAttrs(ctx, slog.LevelWarn, "redis reader wake-up failed",
			slog.String("room", room), slog.String("error", err.Error()))
	}
}

// appended has nothing to do: a blocked XREAD returns by itself when a
// stream it reads grows.
func (r *xreader) appended(context.Context, []roomfeed.RoomHead) {}
