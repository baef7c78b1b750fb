package redis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/internal/testenv"
	"github.com/roomfeed/roomfeed/sse"
)

func TestPublish(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		commit  int     // events committed to the history
		trim    int64   // history retention: events up to trim are gone
		maxLen  int64   // 0: default
		publish []int64 // seqs published, in this order
		wipe    int     // DEL the stream after this many publishes (0: never)
		from    int64   // stream must hold from..to
		to      int64
	}{
		{name: "in order", commit: 5, publish: []int64{1, 2, 3, 4, 5}, from: 1, to: 5},
		{name: "duplicates", commit: 3, publish: []int64{1, 2, 2, 3, 1, 3, 3}, from: 1, to: 3},
		{name: "6 before 5", commit: 6, publish: []int64{1, 2, 3, 4, 6, 5}, from: 1, to: 6},
		{name: "first publish above a hole", commit: 7, publish: []int64{7, 3, 5}, from: 1, to: 7},
		{name: "more than a page missing", commit: 1234, publish: []int64{1234}, maxLen: 5000, from: 1, to: 1234},
		{name: "redis wiped: window only", commit: 1000, maxLen: 100, publish: []int64{1, 2, 1000}, wipe: 2, from: 901, to: 1000},
		{name: "redis wiped: window then in order", commit: 1001, maxLen: 100, publish: []int64{1, 1000, 1001}, wipe: 1, from: 901, to: 1001},
		{name: "history trimmed inside the window", commit: 50, trim: 30, maxLen: 100, publish: []int64{50}, from: 31, to: 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client, opts, hist := setup(t)
			opts.MaxLen = tt.maxLen
			node := newTestNode(t, client, hist, opts, 16)
			evs := hist.commitN("r1", tt.commit)
			hist.trim("r1", tt.trim)
			for i, seq := range tt.publish {
				if tt.wipe > 0 && i == tt.wipe {
					if err := client.Del(t.Context(), node.log.streamKey("r1")).Err(); err != nil {
						t.Fatal(err)
					}
				}
				if err := node.log.Publish(t.Context(), evs[seq-1]); err != nil {
					t.Fatalf("Publish(%d): %v", seq, err)
				}
			}
			checkRun(t, "stream", streamSeqs(t, node.log, "r1"), tt.from, tt.to)
		})
	}
}

func TestPublishInvalid(t *testing.T) {
	t.Parallel()
	client, opts, hist := setup(t)
	node := newTestNode(t, client, hist, opts, 16)
	for _, ev := range []roomfeed.Event{{Room: "", Seq: 1}, {Room: "r1", Seq: 0}} {
		if err := node.log.Publish(t.Context(), ev); err == nil {
			t.Errorf("Publish(%q/%d): got nil error, want one", ev.Room, ev.Seq)
		}
	}
}

func TestPublishHistoryFails(t *testing.T) {
	t.Parallel()
	client, opts, _ := setup(t)
	hist := failingHistory{err: errors.New("db down")}
	l := New(client, sse.NewHub(1), hist, opts)
	err := l.Publish(t.Context(), roomfeed.Event{Room: "r1", Seq: 3, Type: "x", Data: []byte("{}")})
	if !errors.Is(err, hist.err) {
		t.Fatalf("Publish above a hole with a failing history: got %v, want %v", err, hist.err)
	}
	if n, _ := client.Exists(t.Context(), l.streamKey("r1")).Result(); n != 0 {
		t.Fatalf("stream exists after a failed fill, want nothing written")
	}
}

type failingHistory struct{ err error }

func (h failingHistory) EventsAfter(context.Context, string, int64, int) ([]roomfeed.Event, error) {
	return nil, h.err
}

func (h failingHistory) Head(context.Context, string) (int64, error) { return 0, h.err }

func (h failingHistory) RoomHeads(context.Context, time.Time) ([]roomfeed.RoomHead, error) {
	return nil, h.err
}

func TestPublishConcurrent(t *testing.T) {
	t.Parallel()
	client, opts, hist := setup(t)
	const n, workers = 2000, 20
	evs := hist.commitN("r1", n)
	perm := rand.Perm(n)
	nodes := make([]*testNode, 4) // several "nodes" over the same prefix
	for i := range nodes {
		nodes[i] = newTestNode(t, client, hist, opts, 16)
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			l := nodes[w%len(nodes)].log
			for i := w; i < n; i += workers {
				if err := l.Publish(t.Context(), evs[perm[i]]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Publish: %v", err)
	}
	checkRun(t, "stream", streamSeqs(t, nodes[0].log, "r1"), 1, n)
}

func TestRange(t *testing.T) {
	t.Parallel()
	client, opts, hist := setup(t)
	opts.MaxLen = 100
	node := newTestNode(t, client, hist, opts, 16)
	l := node.log
	// r1: history 1..300, stream exactly 201..300 (Redis lost its data and
	// got the window back), history trimmed up to 50.
	evs := hist.commitN("r1", 300)
	if err := l.Publish(t.Context(), evs[299]); err != nil {
		t.Fatal(err)
	}
	checkRun(t, "r1 stream", streamSeqs(t, l, "r1"), 201, 300)
	hist.trim("r1", 50)
	// r2: stream 1..20 then 41..50 (a window republished above an old top).
	r2 := hist.commitN("r2", 50)
	for _, ev := range r2[:20] {
		if err := l.Publish(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _, err := l.appendBatch(t.Context(), "r2", r2[40:], true); err != nil || !ok {
		t.Fatalf("appendBatch: got %v, %v, want true, nil", ok, err)
	}

	tests := []struct {
		room      string
		after     int64
		limit     int
		from, to  int64 // want from..to (to < from: none)
		fromRedis bool
		err       error
	}{
		{room: "r1", after: 250, limit: 10, from: 251, to: 260, fromRedis: true},
		{room: "r1", after: 200, limit: 1000, from: 201, to: 300, fromRedis: true},
		{room: "r1", after: 299, limit: 10, from: 300, to: 300, fromRedis: true},
		{room: "r1", after: 300, limit: 10, from: 1, to: 0},
		{room: "r1", after: 195, limit: 10, from: 196, to: 205},
		{room: "r1", after: 100, limit: 10, from: 101, to: 110},
		{room: "r1", after: 50, limit: 10, from: 51, to: 60},
		{room: "r1", after: 10, limit: 10, err: roomfeed.ErrTrimmed},
		{room: "r1", after: 0, limit: 10, err: roomfeed.ErrTrimmed},
		{room: "r2", after: 0, limit: 100, from: 1, to: 20, fromRedis: true},
		{room: "r2", after: 15, limit: 100, from: 16, to: 20, fromRedis: true},
		{room: "r2", after: 20, limit: 5, from: 21, to: 25},
		{room: "r2", after: 40, limit: 100, from: 41, to: 50, fromRedis: true},
		{room: "nope", after: 0, limit: 10, from: 1, to: 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s after %d limit %d", tt.room, tt.after, tt.limit), func(t *testing.T) {
			before := hist.calls.Load()
			got, err := l.EventsAfter(t.Context(), tt.room, tt.after, tt.limit)
			if !errors.Is(err, tt.err) {
				t.Fatalf("got error %v, want %v", err, tt.err)
			}
			if tt.err != nil {
				return
			}
			seqs := make([]int64, len(got))
			for i, ev := range got {
				seqs[i] = ev.Seq
				if ev.Room != tt.room || ev.Type != "element.updated" || !strings.Contains(string(ev.Data), fmt.Sprintf(`"seq":%d}`, ev.Seq)) {
					t.Fatalf("event %d: got %+v, want room %s seq %d", i, ev, tt.room, ev.Seq)
				}
			}
			checkRun(t, "range", seqs, tt.from, tt.to)
			if fromHist := hist.calls.Load() > before; fromHist == tt.fromRedis {
				t.Errorf("read the history: got %v, want %v", fromHist, !tt.fromRedis)
			}
		})
	}
}

func TestRangePaging(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		maxLen int64 // the stream holds the last maxLen events, the rest comes from the history
	}{
		{name: "all in redis", maxLen: 30000},
		{name: "history then redis", maxLen: 5000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			const n, page = 20000, 1000
			client, opts, hist := setup(t)
			opts.MaxLen = tt.maxLen
			node := newTestNode(t, client, hist, opts, 16)
			evs := hist.commitN("r1", n)
			if err := node.log.Publish(t.Context(), evs[n-1]); err != nil {
				t.Fatal(err)
			}
			var seqs []int64
			var after int64
			for {
				got, err := node.log.EventsAfter(t.Context(), "r1", after, page)
				if err != nil {
					t.Fatalf("Range(%d): %v", after, err)
				}
				if len(got) > page {
					t.Fatalf("Range(%d, %d): got %d events, want at most %d", after, page, len(got), page)
				}
				if len(got) == 0 {
					break
				}
				for _, ev := range got {
					seqs = append(seqs, ev.Seq)
				}
				after = got[len(got)-1].Seq
			}
			checkRun(t, "paged range", seqs, 1, n)
		})
	}
}

// TestReaderAcrossNodes publishes on node A and receives on node B (and
// on A itself), in order and exactly once.
func TestReaderAcrossNodes(t *testing.T) {
	t.Parallel()
	client, opts, hist := setup(t)
	a := newTestNode(t, client, hist, opts, 1000)
	b := newTestNode(t, client, hist, opts, 1000)
	startLoop(t, "A.Run", a.log.Run)
	startLoop(t, "B.Run", b.log.Run)
	subB, err := follow(t.Context(), b.log, "r1")
	if err != nil {
		t.Fatal(err)
	}
	defer subB.Close()
	subA, err := follow(t.Context(), a.log, "r1")
	if err != nil {
		t.Fatal(err)
	}
	defer subA.Close()
	const n = 300
	for _, ev := range hist.commitN("r1", n) {
		if err := a.log.Publish(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	checkRun(t, "node B", receive(t, subB, n, 10*time.Second), 1, n)
	checkRun(t, "node A", receive(t, subA, n, 10*time.Second), 1, n)
	if msgs := drainWithin(subB, 2*opts.Block); len(msgs) > 0 {
		t.Fatalf("node B: got extra event %d, want none", msgs[0].Seq)
	}
}

// TestReaderManyRooms subscribes to 200 rooms on one node, whose reader
// must serve them all over one connection.
func TestReaderManyRooms(t *testing.T) {
	t.Parallel()
	client, opts, hist := setup(t)
	bOpts, err := goredis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	bClient := goredis.NewClient(bOpts) // node B has its own client and pool
	t.Cleanup(func() { bClient.Close() })
	a := newTestNode(t, client, hist, opts, 16)
	b := newTestNode(t, bClient, hist, opts, 16)
	stop := startLoop(t, "B.Run", b.log.Run)

	const rooms, perRoom = 200, 5
	subs := make([]*sse.Subscription, rooms)
	for i := range subs {
		sub, err := follow(t.Context(), b.log, fmt.Sprintf("room%03d", i))
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		subs[i] = sub
	}
	for range perRoom {
		for i := range rooms {
			if err := a.log.Publish(t.Context(), hist.commit(fmt.Sprintf("room%03d", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, sub := range subs {
		checkRun(t, fmt.Sprintf("room%03d", i), receive(t, sub, perRoom, 10*time.Second), 1, perRoom)
	}

	if id, _ := readerConn(t, client, b.log); id == "" {
		t.Errorf("no connection named %s, want exactly one", xreaderOf(b.log).name)
	}
	if got := bClient.PoolStats().TotalConns; got > 3 {
		t.Errorf("node B's pool: got %d connections for %d rooms, want at most 3", got, rooms)
	}
	stop()
	if n, _ := client.Exists(t.Context(), xreaderOf(b.log).wakeKey).Result(); n != 0 {
		t.Errorf("wake stream %s exists after Run returned, want it deleted", xreaderOf(b.log).wakeKey)
	}
}

// TestSubscribeThenRange has writers publish continuously while
// subscribers join at random times, catch up with Range and go live: each
// must see a contiguous sequence, without gap or duplicate.
func TestSubscribeThenRange(t *testing.T) {
	t.Parallel()
	client, opts, hist := setup(t)
	opts.MaxLen = 500 // so catching up also crosses from the history to Redis
	const total, subscribers = 3000, 30
	a := newTestNode(t, client, hist, opts, 16)
	b := newTestNode(t, client, hist, opts, total)
	startLoop(t, "B.Run", b.log.Run)

	writeWhileFollowing(t, a, b, hist, total, subscribers, 800, 5, 150*time.Millisecond)
}

// followFrom does what the SSE handler does: subscribe, page the backlog
// after cursor with Range, then go live skipping what was already sent and
// filling a jump in seq (the reader fell behind the stream's window, or a
// window republished after Redis lost its data) with Range. It checks that
// seqs cursor+1..total arrive contiguously and returns how many jumps it
// filled.
func followFrom(ctx context.Context, l *Log, room string, cursor, total int64) (jumps int, err error) {
	sub, err := follow(ctx, l, room)
	if err != nil {
		return 0, err
	}
	defer sub.Close()
	last := cursor
	// catchUp pages with Range until last >= upTo (or the end when upTo < 0).
	catchUp := func(upTo int64) error {
		for upTo < 0 || last < upTo {
			evs, err := l.EventsAfter(ctx, room, last, 100)
			if err != nil {
				return err
			}
			if len(evs) == 0 {
				if upTo < 0 {
					return nil
				}
				return fmt.Errorf("range after %d: empty, want events up to %d", last, upTo)
			}
			for _, ev := range evs {
				if ev.Seq != last+1 {
					return fmt.Errorf("replay: got seq %d after %d, want %d", ev.Seq, last, last+1)
				}
				last = ev.Seq
			}
		}
		return nil
	}
	if err := catchUp(-1); err != nil {
		return 0, err
	}
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	ready := readyChan(sub)
	var queued []*sse.Message
	for last < total {
		if len(queued) == 0 {
			queued = sub.Drain(queued)
		}
		if len(queued) == 0 {
			select {
			case <-ready:
				continue
			case <-sub.Done():
				return jumps, fmt.Errorf("subscription ended at %d: %w", last, sub.Err())
			case <-timeout.C:
				return jumps, fmt.Errorf("live: stuck at %d of %d", last, total)
			}
		}
		m := queued[0]
		queued = queued[1:]
		if m.Seq <= last {
			continue
		}
		if m.Seq > last+1 {
			jumps++
			if err := catchUp(m.Seq - 1); err != nil {
				return jumps, err
			}
			if m.Seq <= last {
				continue
			}
		}
		last = m.Seq
	}
	return jumps, nil
}

// TestReaderJump: a reader further behind than the stream keeps
// delivers what the stream has, in order, from its first entry on; the
// subscriber fills the jump from Range (the history).
func TestReaderJump(t *testing.T) {
	t.Parallel()
	client, opts, hist := setup(t)
	opts.MaxLen = 100
	node := newTestNode(t, client, hist, opts, 1000)
	sub, err := follow(t.Context(), node.log, "r1") // registered at 0, reader not running yet
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for _, ev := range hist.commitN("r1", 300) {
		if err := node.log.Publish(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	first := streamSeqs(t, node.log, "r1")[0]
	if first == 1 {
		t.Fatalf("stream starts at 1, want it trimmed to about the last %d", opts.MaxLen)
	}
	startLoop(t, "Run", node.log.Run)
	checkRun(t, "delivered", receive(t, sub, int(300-first+1), 5*time.Second), first, 300)
	got, err := node.log.EventsAfter(t.Context(), "r1", 0, int(first-1))
	if err != nil {
		t.Fatal(err)
	}
	seqs := make([]int64, len(got))
	for i, ev := range got {
		seqs[i] = ev.Seq
	}
	checkRun(t, "Range filling the jump", seqs, 1, first-1)
}

func TestRunStopsPromptly(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		subscribe bool // a tracked room: Run is blocked in XREAD
	}{
		{name: "blocked in XREAD", subscribe: true},
		{name: "idle", subscribe: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			client, opts, hist := setup(t)
			opts.Block = time.Second
			node := newTestNode(t, client, hist, opts, 16)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- node.log.Run(ctx) }()
			if tt.subscribe {
				sub, err := follow(t.Context(), node.log, "r1")
				if err != nil {
					t.Fatal(err)
				}
				defer sub.Close()
				eventually(t, 5*time.Second, "reader blocked on XREAD", func() bool {
					_, cmd := readerConn(t, client, node.log)
					return cmd == "xread"
				})
			}
			time.Sleep(100 * time.Millisecond)
			cancel()
			start := time.Now()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run: got %v, want nil", err)
				}
			case <-time.After(opts.Block + 2*time.Second):
				t.Fatalf("Run did not return %v after cancel", opts.Block+2*time.Second)
			}
			if d := time.Since(start); d > opts.Block+500*time.Millisecond {
				t.Errorf("Run returned %v after cancel, want at most Block (%v) + 500ms", d, opts.Block)
			}
		})
	}
}

func TestRunTwice(t *testing.T) {
	t.Parallel()
	client, opts, hist := setup(t)
	node := newTestNode(t, client, hist, opts, 16)
	startLoop(t, "Run", node.log.Run)
	eventually(t, 5*time.Second, "Run started", node.log.running.Load)
	if err := node.log.Run(t.Context()); err == nil {
		t.Fatal("second concurrent Run: got nil, want an error")
	}
}

// TestSlowSubscriber: a subscriber that does not read is dropped while
// another one on the same room gets every event.
func TestSlowSubscriber(t *testing.T) {
	t.Parallel()
	client, opts, hist := setup(t)
	node := newTestNode(t, client, hist, opts, 32)
	startLoop(t, "Run", node.log.Run)
	slow, err := follow(t.Context(), node.log, "r1")
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast, err := follow(t.Context(), node.log, "r1")
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	const rounds, perRound = 10, 10
	var got []int64
	for range rounds {
		for _, ev := range hist.commitN("r1", perRound) {
			if err := node.log.Publish(t.Context(), ev); err != nil {
				t.Fatal(err)
			}
		}
		got = append(got, receive(t, fast, perRound, 5*time.Second)...)
	}
	checkRun(t, "fast subscriber", got, 1, rounds*perRound)
	select {
	case <-slow.Done():
		if !errors.Is(slow.Err(), sse.ErrSlowConsumer) {
			t.Errorf("slow subscriber: got %v, want %v", slow.Err(), sse.ErrSlowConsumer)
		}
	default:
		t.Fatal("slow subscriber still subscribed, want dropped")
	}
	if node.hub.Dropped() != 1 {
		t.Errorf("hub dropped %d subscribers, want 1", node.hub.Dropped())
	}
}

// TestReaderResubscribe: a room dropped by the reader (no subscriber
// left) is tracked again from the current top when subscribed again.
func TestReaderResubscribe(t *testing.T) {
	t.Parallel()
	client, opts, hist := setup(t)
	node := newTestNode(t, client, hist, opts, 100)
	startLoop(t, "Run", node.log.Run)
	for round := range 3 {
		sub, err := follow(t.Context(), node.log, "r1")
		if err != nil {
			t.Fatal(err)
		}
		base := hist.head("r1")
		for _, ev := range hist.commitN("r1", 10) {
			if err := node.log.Publish(t.Context(), ev); err != nil {
				t.Fatal(err)
			}
		}
		checkRun(t, fmt.Sprintf("round %d", round), receive(t, sub, 10, 5*time.Second), base+1, base+10)
		sub.Close()
		eventually(t, 5*time.Second, "room dropped by the reader", func() bool {
			node.log.mu.Lock()
			defer node.log.mu.Unlock()
			_, ok := node.log.rooms["r1"]
			return !ok
		})
		// Published while nobody listens: not delivered to the next round.
		for _, ev := range hist.commitN("r1", 3) {
			if err := node.log.Publish(t.Context(), ev); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestReaderRecovers: the reader keeps going after its connection is
// killed.
func TestReaderRecovers(t *testing.T) {
	t.Parallel()
	client, opts, hist := setup(t)
	node := newTestNode(t, client, hist, opts, 100)
	startLoop(t, "Run", node.log.Run)
	sub, err := follow(t.Context(), node.log, "r1")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var id string
	eventually(t, 5*time.Second, "reader connected", func() bool {
		id, _ = readerConn(t, client, node.log)
		return id != ""
	})
	if err := client.Do(t.Context(), "CLIENT", "KILL", "ID", id).Err(); err != nil {
		t.Fatal(err)
	}
	for _, ev := range hist.commitN("r1", 20) {
		if err := node.log.Publish(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	checkRun(t, "after the reader's connection was killed", receive(t, sub, 20, 10*time.Second), 1, 20)
}

func TestPing(t *testing.T) {
	t.Parallel()
	client, opts, hist := setup(t)
	node := newTestNode(t, client, hist, opts, 1)
	if err := node.log.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: got %v, want nil", err)
	}
	closed := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond})
	closed.Close()
	if err := New(closed, sse.NewHub(1), hist, opts).Ping(t.Context()); err == nil {
		t.Fatal("Ping on a closed client: got nil, want an error")
	}
}

// readerConn returns the CLIENT LIST id and current command of l's
// reader connection, "" when there is none. It fails if there are several.
func readerConn(tb testing.TB, client goredis.UniversalClient, l *Log) (id, cmd string) {
	tb.Helper()
	list, err := client.ClientList(tb.Context()).Result()
	if err != nil {
		tb.Fatalf("CLIENT LIST: %v", err)
	}
	n := 0
	for line := range strings.Lines(list) {
		if !strings.Contains(line, " name="+xreaderOf(l).name+" ") {
			continue
		}
		n++
		for f := range strings.FieldsSeq(line) {
			if v, ok := strings.CutPrefix(f, "id="); ok {
				id = v
			}
			if v, ok := strings.CutPrefix(f, "cmd="); ok {
				cmd = v
			}
		}
	}
	if n > 1 {
		tb.Fatalf("connections named %s: got %d, want at most 1", xreaderOf(l).name, n)
	}
	return id, cmd
}
