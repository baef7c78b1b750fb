package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/feed"
)

// Defaults of Options.
const (
	DefaultPrefix = "roomfeed:"
	DefaultMaxLen = 10000
)

// Options configures a Log. The zero value gives the defaults.
type Options struct {
	// Prefix starts every key, default DefaultPrefix.
	Prefix string
	// MaxLen is the approximate number of events kept per room stream
	// (XADD MAXLEN ~), the replay window held in Redis; default
	// DefaultMaxLen. After Redis lost its data, only this many events per
	// room are republished.
	MaxLen int64
	// Block bounds each blocking XREAD of the reader, default 1s. It is never
	// 0 (forever in go-redis), because cancelling the context does not
	// interrupt a blocked read (go-redis #2556): Run returns within about
	// Block after its context is done. On a Redis Cluster it is the interval
	// at which the reader reads every followed room.
	Block time.Duration
	// Logger receives the log's operational messages; nil discards them.
	Logger *slog.Logger
}

const (
	defaultBlock = time.Second
	readCount    = 500     // entries per stream per read
	fillPage     = 500     // events per history page when filling a hole
	batchBytes   = 1 << 20 // payload bytes per script call
	rangeLimit   = 1000    // EventsAfter page when the caller passes limit <= 0
	fillRetries  = 5       // restarts of a fill whose base moved under it

	// publishPause is how long Publish leaves Redis alone after it
	// failed to reach it: writes during an outage stay as fast as the SQL
	// commit, and the relay (or the first Publish after the pause) brings the
	// streams up to date once Redis answers again.
	publishPause = time.Second
)

// Log carries committed events between nodes through Redis Streams,
// holds the hot replay window, and delivers every event of the rooms that have
// local subscribers to this node's sink (the delivery engine's hub).
//
// Redis layout, stable for other programs consuming the feed:
//
//   - The stream of room r is Prefix + "{" + r + "}", for example
//     "roomfeed:{w1}" (the braces are a Redis Cluster hash tag).
//   - Entry ids are "<seq>-0", seq being the room's sequence number. Each
//     entry has two fields: "t", the event type (for example
//     "element.updated"), and "d", the event data, a JSON document (the SSE
//     data of the event).
//   - Entries are the room's committed events in seq order, each once; the
//     stream is trimmed with XADD MAXLEN ~ MaxLen. After Redis lost its data
//     only the newest MaxLen events of a room are republished, so a consumer
//     may see seq jump; the missing events come from the HTTP API.
//   - Prefix + "epoch" is a random string set by the relays to notice that
//     Redis lost its data. Prefix + "node:<id>:wake" is a per-node wake-up
//     stream of the reader, deleted when the reader stops (single Redis).
//   - On a Redis Cluster every append is also announced as "<top> <room>" on
//     the channel Prefix + "notify".
//   - Signals are published on the channel Prefix + "signals", each as its
//     event data (the JSON of feed.SignalEvent); nothing of them is stored.
//
// Publish, Signal, Follow, EventsAfter, Head, Ping and StreamTops are safe
// for concurrent use. Run (one per Log) must be running for subscribers to
// receive events, and RunSignals for them to receive signals; Relay closes
// the gaps left by failed publishes.
type Log struct {
	client goredis.UniversalClient
	sink   feed.Sink
	hist   roomfeed.History
	opts   Options
	log    *slog.Logger

	reader    reader // of the mode, chosen by New
	spanRooms bool   // one script call may append to several rooms (not on a Cluster)

	running atomic.Bool
	wake    chan struct{} // signalled when Follow registers a room

	pauses  []pause       // per hash slot on a Cluster, one on a single Redis; see publishPause
	relayed atomic.Uint64 // events the relay found missing and republished

	mu    sync.Mutex
	rooms map[string]*cursor // the followed rooms
}

// New returns a log over client that delivers to sink and falls back to
// hist for what Redis does not hold. A *goredis.ClusterClient is read as a
// Redis Cluster, any other client as a single Redis.
func New(client goredis.UniversalClient, sink feed.Sink, hist roomfeed.History, opts Options) *Log {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.MaxLen <= 0 {
		opts.MaxLen = DefaultMaxLen
	}
	if opts.Block <= 0 {
		opts.Block = defaultBlock
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{
		client: client,
		sink:   sink,
		hist:   hist,
		opts:   opts,
		log:    opts.Logger,
		wake:   make(chan struct{}, 1),
		rooms:  make(map[string]*cursor),
	}
	if _, ok := client.(*goredis.ClusterClient); ok {
		l.reader, l.pauses = newClusterReader(l), make([]pause, clusterSlots)
	} else {
		l.reader, l.spanRooms, l.pauses = newXReader(l, randomID()), true, make([]pause, 1)
	}
	return l
}

// randomID returns a random id for a node.
func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// streamKey returns the stream key of room.
func (l *Log) streamKey(room string) string { return l.opts.Prefix + "{" + room + "}" }

// Ping reports whether Redis answers.
func (l *Log) Ping(ctx context.Context) error {
	if err := l.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}

// EventsAfter returns up to limit events of room with Seq > after, in order and
// without holes, from the Redis window when it covers the cursor and from
// the history otherwise (which may answer roomfeed.ErrTrimmed), as when
// Redis does not answer within readWait (the room's shard is down). limit
// <= 0 means a default page of 1000.
func (l *Log) EventsAfter(ctx context.Context, room string, after int64, limit int) ([]roomfeed.Event, error) {
	if limit <= 0 {
		limit = rangeLimit
	}
	rctx, cancel := context.WithTimeout(ctx, readWait)
	defer cancel()
	msgs, err := l.client.XRangeN(rctx, l.streamKey(room), "("+strconv.FormatInt(after, 10)+"-0", "+", int64(limit)).Result()
	if err != nil {
		l.log.LogAttrs(ctx, slog.LevelDebug, "redis range failed, reading history",
			slog.String("room", room), slog.String("error", err.Error()))
	}
	evs := make([]roomfeed.Event, 0, len(msgs))
	for _, m := range msgs {
		ev, ok := parseEntry(room, m)
		if !ok || ev.Seq != after+int64(len(evs))+1 {
			break // a hole: what follows comes with the next call
		}
		evs = append(evs, ev)
	}
	if len(evs) > 0 {
		return evs, nil
	}
	return l.hist.EventsAfter(ctx, room, after, limit)
}

// parseEntry turns a stream entry of room into an event.
func parseEntry(room string, m goredis.XMessage) (roomfeed.Event, bool) {
	seq, ok := entrySeq(m.ID)
	if !ok {
		return roomfeed.Event{}, false
	}
	t, _ := m.Values["t"].(string)
	d, _ := m.Values["d"].(string)
	return roomfeed.Event{Room: room, Seq: seq, Type: t, Data: []byte(d)}, true
}

// Head returns the room's highest committed seq, from the history.
func (l *Log) Head(ctx context.Context, room string) (int64, error) {
	return l.hist.Head(ctx, room)
}

// entrySeq returns the seq of a stream entry id "<seq>-0".
func entrySeq(id string) (int64, bool) {
	s, _, _ := strings.Cut(id, "-")
	seq, err := strconv.ParseInt(s, 10, 64)
	return seq, err == nil
}

// streamTop returns the id of the last entry of room's stream, "0-0" when
// there is none.
func (l *Log) streamTop(ctx context.Context, room string) (string, error) {
	msgs, err := l.client.XRevRangeN(ctx, l.streamKey(room), "+", "-", 1).Result()
	if err != nil {
		return "", err
	}
	if len(msgs) == 0 {
		return "0-0", nil
	}
	return msgs[0].ID, nil
}

// followFrom returns the entry id a new follower of room starts after: the
// stream's top or, on a Cluster whose shard of room does not answer, the
// room's head in the history (see Follow).
func (l *Log) followFrom(ctx context.Context, room string) (string, error) {
	rctx, cancel := context.WithTimeout(ctx, readWait)
	defer cancel()
	top, err := l.streamTop(rctx, room)
	_, cluster := l.client.(*goredis.ClusterClient)
	down := err != nil && (unreachable(err) || errors.Is(err, context.DeadlineExceeded))
	if !cluster || !down || ctx.Err() != nil {
		return top, err
	}
	head, herr := l.hist.Head(ctx, room)
	if herr != nil {
		return "", errors.Join(err, herr)
	}
	return strconv.FormatInt(head, 10) + "-0", nil
}

// StreamTops returns, for each room, the seq of the last entry of its stream
// (0 when there is none): every committed event of the room up to it has
// been published. Retention never trims the SQL history above it.
func (l *Log) StreamTops(ctx context.Context, rooms []string) ([]int64, error) {
	cmds, err := l.topCmds(ctx, rooms)
	if err != nil {
		return nil, fmt.Errorf("stream tops: %w", err)
	}
	tops := make([]int64, len(rooms))
	for i, cmd := range cmds {
		if msgs := cmd.Val(); len(msgs) > 0 {
			if ev, ok := parseEntry(rooms[i], msgs[0]); ok {
				tops[i] = ev.Seq
			}
		}
	}
	return tops, nil
}

// topCmds reads the last entry of each room's stream in one pipeline. It
// returns the commands, one per room, each with its own result or error,
// and the first error.
func (l *Log) topCmds(ctx context.Context, rooms []string) ([]*goredis.XMessageSliceCmd, error) {
	cmds := make([]*goredis.XMessageSliceCmd, len(rooms))
	_, err := l.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, room := range rooms {
			cmds[i] = p.XRevRangeN(ctx, l.streamKey(room), "+", "-", 1)
		}
		return nil
	})
	return cmds, err
}

// Follow makes sure the reader delivers to the sink every event of room
// above the stream's top at the moment it returns: a caller that then pages
// with EventsAfter until caught up and goes on with what the sink delivers
// misses nothing (it skips what it already has). Call it once the room has
// a subscriber on the sink: the reader stops following rooms without one.
// Deliveries may show a jump in seq, never a reordering: after Redis lost
// its data (only the window is republished) or when the reader fell further
// behind than the stream keeps; the subscriber fills it with EventsAfter.
//
// On a Redis Cluster, when the room's shard does not answer within
// readWait (its master died and a replica is being promoted), Follow starts
// from the room's head in the history instead of the stream's top, so that
// a feed of several rooms opens while one of their shards is down: what
// the stream holds up to that head the caller reads with EventsAfter (the
// history answers it), what comes above it the reader delivers once the
// shard is back.
func (l *Log) Follow(ctx context.Context, room string) error {
	l.mu.Lock()
	_, followed := l.rooms[room]
	l.mu.Unlock()
	if followed {
		return nil
	}
	top, err := l.followFrom(ctx, room)
	if err != nil {
		if unreachable(err) {
			err = fmt.Errorf("%w: %w", feed.ErrUnavailable, err)
		}
		return fmt.Errorf("follow %s: %w", room, err)
	}
	seq, _ := entrySeq(top)
	l.mu.Lock()
	_, followed = l.rooms[room]
	if !followed {
		l.rooms[room] = &cursor{last: top, seq: seq}
	}
	l.mu.Unlock()
	if followed {
		return nil
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
	l.reader.followed(ctx, room)
	return nil
}
