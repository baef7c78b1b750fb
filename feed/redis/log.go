package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/internal/streak"
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
	// at which the reader reads every tracked room (cluster.go).
	Block time.Duration
	// Logger receives the log's operational messages; nil discards them.
	Logger *slog.Logger
}

const (
	defaultBlock = time.Second

	readCount   = 500     // entries per stream per XREAD
	fillPage    = 500     // events per history page when filling a hole
	batchBytes  = 1 << 20 // payload bytes per script call
	rangeLimit  = 1000    // EventsAfter page when the caller passes limit <= 0
	fillRetries = 5       // restarts of a fill whose base moved under it
	maxBackoff  = time.Second

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
//     stream of the reader, deleted when the reader stops.
//
// Publish, Follow, EventsAfter, Head and Ping are safe for concurrent use. Run (one
// per Log) must be running for subscribers to receive events; Relay
// closes the gaps left by failed publishes.
//
// On a single Redis the reader reads every room in one blocking XREAD. Redis
// Cluster refuses that for keys of different hash slots (CROSSSLOT), so when
// the client is a *goredis.ClusterClient every publish also announces the
// room's new top on the channel Prefix + "notify" and the reader works from
// those announcements instead (cluster.go); the wake stream is not
// used there.
type Log struct {
	client goredis.UniversalClient
	sink   feed.Sink
	hist   roomfeed.History
	opts   Options
	log    *slog.Logger

	node    string // random id of this node
	wakeKey string
	wake    chan struct{} // wakes an idle reader when a room is registered
	running atomic.Bool
	cluster bool // client is a *goredis.ClusterClient: see cluster.go

	pub                publishQueue  // Publishes waiting for a pipeline
	publishPausedUntil atomic.Int64  // unix nanoseconds; see publishPause
	relayed            atomic.Uint64 // events the relay found missing and republished

	mu    sync.Mutex
	rooms map[string]*cursor // rooms the reader tracks
}

// cursor is the reader's position in one room's stream. A room that is
// dropped and registered again gets a new cursor, so a read that was in
// flight with the old one is ignored.
type cursor struct {
	last string // id of the last entry delivered (or of the top at registration)
	seq  int64  // its seq
}

// New returns a log over client that delivers to sink and falls back
// to hist for what Redis does not hold.
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
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	node := randomID()
	_, cluster := client.(*goredis.ClusterClient)
	return &Log{
		cluster: cluster,
		client:  client,
		sink:    sink,
		hist:    hist,
		opts:    opts,
		log:     logger,
		node:    node,
		wakeKey: opts.Prefix + "node:" + node + ":wake",
		wake:    make(chan struct{}, 1),
		rooms:   make(map[string]*cursor),
	}
}

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

// appendLua defines append(key, maxlen, gapOK, from, to), which
// appends the events ARGV[from..to] (one triple seq, type, data per event,
// in ascending seq order) to the stream key, atomically. The top of the
// stream is the seq of its last entry (or its last generated id when every
// entry was deleted; 0 without a stream). If the first event leaves a hole
// above the top and gapOK is not "1", nothing is written and it returns 0,
// top. Otherwise every event above the top is added and it returns 1, the
// new top: events already there count as success.
const appendLua = `
local function append(key, maxlen, gapOK, from, to)
  local top = 0
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  if #last > 0 then
    top = tonumber(string.match(last[1][1], '^%d+'))
  elseif redis.call('EXISTS', key) == 1 then
    local info = redis.call('XINFO', 'STREAM', key)
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then
        top = tonumber(string.match(info[i + 1], '^%d+'))
      end
    end
  end
  if top + 1 < tonumber(ARGV[from]) and gapOK ~= '1' then
    return 0, top
  end
  for i = from, to, 3 do
    local seq = tonumber(ARGV[i])
    if seq > top then
      redis.call('XADD', key, 'MAXLEN', '~', maxlen, ARGV[i] .. '-0', 't', ARGV[i + 1], 'd', ARGV[i + 2])
      top = seq
    end
  end
  return 1, top
end
`

// appendScript appends a batch of events to one stream: KEYS[1] is the
// stream; ARGV is maxlen, gapOK ("1" or "0"), then the events. It returns
// {ok, top} (see appendLua).
var appendScript = goredis.NewScript(appendLua + `
local ok, top = append(KEYS[1], ARGV[1], ARGV[2], 3, #ARGV)
return {ok, top}
`)

// appendRoomsScript appends to several streams in one call, each as
// appendScript does without gapOK; a stream may appear more than once and is
// then appended to in order. ARGV is maxlen, then per key its number of
// events and the events. It returns {ok, top} per key, flattened. Not for a
// Redis Cluster, where the keys of one script must share a hash slot.
var appendRoomsScript = goredis.NewScript(appendLua + `
local res = {}
local i = 2
for k = 1, #KEYS do
  local n = tonumber(ARGV[i])
  local ok, top = append(KEYS[k], ARGV[1], '0', i + 1, i + 3 * n)
  res[#res + 1] = ok
  res[#res + 1] = top
  i = i + 1 + 3 * n
end
return res
`)

// appendBatch runs appendScript over evs (ascending seqs of one room), split
// into calls of bounded size. It returns whether the events were appended
// and the stream's top afterwards (or the top that refused them).
func (l *Log) appendBatch(ctx context.Context, room string, evs []roomfeed.Event, gapOK bool) (bool, int64, error) {
	var top int64
	for len(evs) > 0 {
		n := chunk(evs)
		ok, t, err := appendResult(appendScript.Run(ctx, l.client, []string{l.streamKey(room)}, l.appendArgs(evs[:n], gapOK)...))
		if err != nil || !ok {
			return false, t, err
		}
		top = t
		evs = evs[n:]
		gapOK = false
	}
	if l.cluster {
		l.notify(ctx, room, top)
	}
	return true, top, nil
}

// chunk returns how many of evs (at least one) go in one script call.
func chunk(evs []roomfeed.Event) int {
	n, size := 0, 0
	for n < len(evs) && (n == 0 || size+eventSize(evs[n]) <= batchBytes) {
		size += eventSize(evs[n])
		n++
	}
	return n
}

// eventSize is what an event counts against batchBytes.
func eventSize(ev roomfeed.Event) int { return len(ev.Data) + len(ev.Type) }

// appendArgs returns the ARGV of appendScript for evs.
func (l *Log) appendArgs(evs []roomfeed.Event, gapOK bool) []any {
	return appendEventArgs(append(make([]any, 0, 2+3*len(evs)), l.opts.MaxLen, boolArg(gapOK)), evs)
}

// appendEventArgs appends the seq, type, data triple of every event to args.
func appendEventArgs(args []any, evs []roomfeed.Event) []any {
	for _, ev := range evs {
		args = append(args, ev.Seq, ev.Type, []byte(ev.Data))
	}
	return args
}

// appendResult reads the answer of a appendScript call: whether the
// events were appended, and the stream's top.
func appendResult(cmd *goredis.Cmd) (bool, int64, error) {
	res, err := cmd.Int64Slice()
	if err != nil {
		return false, 0, err
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("append script returned %v", res)
	}
	return res[0] == 1, res[1], nil
}

func boolArg(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// Publish makes the room's stream hold every committed event up to ev.Seq,
// in order and each once. It is called after ev is committed; events of the
// room committed before ev that are not in the stream yet (another node's
// Publish still on its way, a crash, an outage) are read from the history and
// added first, so the stream never holds ev above a hole. An event already
// in the stream is a success.
func (l *Log) Publish(ctx context.Context, ev roomfeed.Event) error {
	if ev.Room == "" || ev.Seq < 1 {
		return fmt.Errorf("publish %q/%d: invalid event", ev.Room, ev.Seq)
	}
	if until := l.publishPausedUntil.Load(); until != 0 {
		// Redis failed recently: one Publish per pause probes it, with a
		// short deadline (go-redis would otherwise retry dials for seconds);
		// the others leave their event to the relay.
		now := time.Now()
		if now.UnixNano() < until || !l.publishPausedUntil.CompareAndSwap(until, now.Add(publishPause).UnixNano()) {
			return fmt.Errorf("publish %s/%d: %w (left to the relay)", ev.Room, ev.Seq, feed.ErrUnavailable)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, publishPause/2)
		defer cancel()
	}
	ok, top, err := l.appendCoalesced(ctx, ev)
	if err == nil && !ok {
		err = l.fill(ctx, ev.Room, top, ev.Seq, &ev)
	}
	if err != nil {
		if unreachable(err) || errors.Is(err, context.DeadlineExceeded) {
			l.publishPausedUntil.Store(time.Now().Add(publishPause).UnixNano())
			err = fmt.Errorf("%w: %w", feed.ErrUnavailable, err)
		}
		return fmt.Errorf("publish %s/%d: %w", ev.Room, ev.Seq, err)
	}
	l.publishPausedUntil.Store(0)
	return nil
}

// unreachable reports whether err means Redis could not be reached or
// did not answer (as opposed to an error reply or a failure of the history).
func unreachable(err error) bool {
	if errors.Is(err, goredis.ErrClosed) || errors.Is(err, goredis.ErrPoolTimeout) {
		return true
	}
	var reply goredis.Error
	if errors.As(err, &reply) {
		// An error reply: Redis answered. Only a server still loading its
		// data or a replica without its master counts as down.
		msg := reply.Error()
		return strings.HasPrefix(msg, "LOADING") || strings.HasPrefix(msg, "MASTERDOWN")
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// EventsAfter returns up to limit events of room with Seq > after, in order and
// without holes, from the Redis window when it covers the cursor and from
// the history otherwise (which may answer roomfeed.ErrTrimmed). limit <= 0 means a
// default page of 1000.
func (l *Log) EventsAfter(ctx context.Context, room string, after int64, limit int) ([]roomfeed.Event, error) {
	if limit <= 0 {
		limit = rangeLimit
	}
	msgs, err := l.client.XRangeN(ctx, l.streamKey(room), "("+strconv.FormatInt(after, 10)+"-0", "+", int64(limit)).Result()
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
func (l *Log) Follow(ctx context.Context, room string) error {
	l.mu.Lock()
	_, tracked := l.rooms[room]
	l.mu.Unlock()
	if tracked {
		return nil
	}
	top, err := l.streamTop(ctx, room)
	if err != nil {
		if unreachable(err) {
			err = fmt.Errorf("%w: %w", feed.ErrUnavailable, err)
		}
		return fmt.Errorf("follow %s: %w", room, err)
	}
	seq, _ := entrySeq(top)
	l.mu.Lock()
	_, tracked = l.rooms[room]
	if !tracked {
		l.rooms[room] = &cursor{last: top, seq: seq}
	}
	l.mu.Unlock()
	if tracked {
		return nil
	}
	select {
	case l.wake <- struct{}{}:
	default:
	}
	if l.cluster {
		return nil // the cluster reader has no blocked XREAD to interrupt
	}
	// Interrupt the reader's blocked XREAD so it reads the new room now. If
	// this fails the reader still picks the room up within Block.
	_, err = l.client.Pipelined(ctx, func(p goredis.Pipeliner) error {
		p.XAdd(ctx, &goredis.XAddArgs{Stream: l.wakeKey, MaxLen: 1, Values: []string{"r", room}})
		p.Expire(ctx, l.wakeKey, 24*time.Hour)
		return nil
	})
	if err != nil {
		l.log.LogAttrs(ctx, slog.LevelWarn, "redis reader wake-up failed",
			slog.String("room", room), slog.String("error", err.Error()))
	}
	return nil
}

// Run is the reader: one goroutine and one Redis connection whatever the
// number of rooms. It reads the streams of every room with local subscribers
// in one blocking XREAD (bounded by Block) and delivers their entries to the
// sink, in order. Redis errors are logged once per failure streak and retried
// with capped backoff. Run returns nil once ctx is done, within about Block.
// On a Redis Cluster it reads otherwise, with one pub/sub connection and at
// most one connection per shard (cluster.go).
func (l *Log) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("redis reader already running")
	}
	defer l.running.Store(false)
	if l.cluster {
		return l.runCluster(ctx)
	}
	r := &xreader{l: l, wakeLast: "0-0", backoff: 50 * time.Millisecond, failures: streak.New(l.log, "redis reader")}
	defer r.close(ctx)
	for ctx.Err() == nil {
		keys, rooms, curs := l.snapshot(r.wakeLast)
		if len(curs) == 0 {
			select {
			case <-ctx.Done():
			case <-l.sink.RoomsChanged():
			case <-l.wake:
			}
			continue
		}
		res, err := r.read(ctx, keys)
		if err != nil && !errors.Is(err, goredis.Nil) {
			if ctx.Err() != nil {
				break
			}
			r.fail(ctx, err)
			continue
		}
		r.ok(ctx)
		l.apply(r, keys, rooms, curs, res)
	}
	return nil
}

// snapshot drops the rooms without local subscribers and returns the keys
// and ids of one XREAD (the rooms' streams, then the wake stream) with the
// rooms and cursors used.
func (l *Log) snapshot(wakeLast string) ([]string, []string, []*cursor) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// HasRoom is checked under l.mu: a Subscribe that raced with the drop
	// finds the room untracked afterwards and registers it again.
	for room := range l.rooms {
		if !l.sink.HasRoom(room) {
			delete(l.rooms, room)
		}
	}
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
	keys[n] = l.wakeKey
	keys[2*n+1] = wakeLast
	return keys, rooms, curs
}

// apply delivers the entries of one XREAD, in order, and advances the
// cursors still current.
func (l *Log) apply(r *xreader, keys, rooms []string, curs []*cursor, res []goredis.XStream) {
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
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, st := range res {
		if len(st.Messages) == 0 {
			continue
		}
		if st.Stream == l.wakeKey {
			r.wakeLast = st.Messages[len(st.Messages)-1].ID
			continue
		}
		i := index[st.Stream]
		if i < 0 {
			continue
		}
		room, c := rooms[i], curs[i]
		if l.rooms[room] != c {
			continue // dropped or registered again while the read was in flight
		}
		for _, m := range st.Messages {
			c.last = m.ID
			ev, ok := parseEntry(room, m)
			if !ok {
				l.log.LogAttrs(context.Background(), slog.LevelWarn, "redis stream entry with a foreign id skipped",
					slog.String("room", room), slog.String("id", m.ID))
				continue
			}
			if ev.Seq > c.seq+1 {
				// A window republished after Redis lost its data, or this
				// reader fell further behind than the stream keeps.
				// Subscribers see the jump and fill it from the history.
				l.log.LogAttrs(context.Background(), slog.LevelWarn, "redis reader: seq jump",
					slog.String("room", room), slog.Int64("after", c.seq), slog.Int64("seq", ev.Seq))
			}
			c.seq = ev.Seq
			l.sink.Deliver(ev)
		}
	}
}

// xreader is the state of one Run: its connection, the wake stream's
// position and the failure streak.
type xreader struct {
	l        *Log
	conn     *goredis.Conn // dedicated connection when the client is a *goredis.Client
	wakeLast string
	failures *streak.Logger
	backoff  time.Duration
}

// readerName is the CLIENT SETNAME of the reader's connection.
func (l *Log) readerName() string { return "roomfeed-reader-" + l.node }

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
		if err := r.conn.ClientSetName(ctx, r.l.readerName()).Err(); err != nil {
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

func (r *xreader) fail(ctx context.Context, err error) {
	r.failures.Fail(ctx, err)
	t := time.NewTimer(r.backoff)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	r.backoff = min(2*r.backoff, maxBackoff)
}

func (r *xreader) ok(ctx context.Context) {
	r.failures.OK(ctx)
	r.backoff = 50 * time.Millisecond
}

func (r *xreader) close(ctx context.Context) {
	if r.conn != nil {
		r.conn.Close()
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 500*time.Millisecond)
	defer cancel()
	if err := r.l.client.Del(ctx, r.l.wakeKey).Err(); err != nil {
		r.l.log.LogAttrs(ctx, slog.LevelWarn, "redis reader: deleting wake stream failed",
			slog.String("key", r.l.wakeKey), slog.String("error", err.Error()))
	}
}
