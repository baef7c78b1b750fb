package redis

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/internal/testenv"
	"github.com/roomfeed/roomfeed/sse"
)

// testHistory is an in-memory roomfeed.History standing in for the SQL
// events table: commit assigns the room's next seq, trim applies retention.
type testHistory struct {
	mu      sync.Mutex
	events  map[string][]roomfeed.Event // events[room][i].Seq == i+1
	trimmed map[string]int64            // events up to this seq are gone
	changed map[string]time.Time
	calls   atomic.Int64 // EventsAfter calls
}

func newTestHistory() *testHistory {
	return &testHistory{
		events:  make(map[string][]roomfeed.Event),
		trimmed: make(map[string]int64),
		changed: make(map[string]time.Time),
	}
}

// commit records the next event of room and returns it.
func (h *testHistory) commit(room string) roomfeed.Event {
	ev, _ := h.commitUpTo(room, math.MaxInt64)
	return ev
}

// commitUpTo records the next event of room and returns it, unless room
// holds total events already. Concurrent writers that commit with it, then
// publish, order their commits as the room row lock does.
func (h *testHistory) commitUpTo(room string, total int64) (roomfeed.Event, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	seq := int64(len(h.events[room])) + 1
	if seq > total {
		return roomfeed.Event{}, false
	}
	ev := roomfeed.Event{
		Room: room,
		Seq:  seq,
		Type: "element.updated",
		Data: fmt.Appendf(nil, `{"room":%q,"seq":%d}`, room, seq),
	}
	h.events[room] = append(h.events[room], ev)
	h.changed[room] = time.Now()
	return ev, true
}

// commitN commits n events of room and returns them.
func (h *testHistory) commitN(room string, n int) []roomfeed.Event {
	evs := make([]roomfeed.Event, n)
	for i := range evs {
		evs[i] = h.commit(room)
	}
	return evs
}

// trim makes the events of room up to seq unavailable.
func (h *testHistory) trim(room string, seq int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.trimmed[room] = seq
}

// age pretends every room's head last changed at t.
func (h *testHistory) age(t time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for room := range h.changed {
		h.changed[room] = t
	}
}

func (h *testHistory) head(room string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return int64(len(h.events[room]))
}

func (h *testHistory) Head(_ context.Context, room string) (int64, error) { return h.head(room), nil }

func (h *testHistory) EventsAfter(_ context.Context, room string, after int64, limit int) ([]roomfeed.Event, error) {
	h.calls.Add(1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if after < h.trimmed[room] {
		return nil, fmt.Errorf("events of %s after %d: %w", room, after, roomfeed.ErrTrimmed)
	}
	evs := h.events[room]
	if after >= int64(len(evs)) {
		return nil, nil
	}
	evs = evs[after:]
	if len(evs) > limit {
		evs = evs[:limit]
	}
	return append([]roomfeed.Event(nil), evs...), nil
}

func (h *testHistory) RoomHeads(_ context.Context, since time.Time) ([]roomfeed.RoomHead, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var hs []roomfeed.RoomHead
	for room, evs := range h.events {
		if !since.IsZero() && h.changed[room].Before(since) {
			continue
		}
		hs = append(hs, roomfeed.RoomHead{Room: room, Seq: int64(len(evs))})
	}
	return hs, nil
}

// testNode is one node under test: a hub and a Log over a shared
// prefix and history.
type testNode struct {
	hub *sse.Hub
	log *Log
}

func newTestNode(tb testing.TB, client goredis.UniversalClient, hist *testHistory, opts Options, buffer int) *testNode {
	tb.Helper()
	hub := sse.NewHub(buffer)
	tb.Cleanup(hub.Close)
	return &testNode{hub: hub, log: New(client, hub, hist, opts)}
}

// follow subscribes to room on the log's hub and has the log follow it,
// as the delivery engine does.
func follow(ctx context.Context, l *Log, room string) (*sse.Subscription, error) {
	sub, err := l.sink.(*sse.Hub).Subscribe(room)
	if err != nil {
		return nil, err
	}
	if err := l.Follow(ctx, room); err != nil {
		sub.Close()
		return nil, err
	}
	return sub, nil
}

// startLoop runs fn in a goroutine owned by the test: its context is
// cancelled and its return awaited at cleanup, and it must return nil.
func startLoop(tb testing.TB, name string, fn func(ctx context.Context) error) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("%s returned %v, want nil", name, err)
				}
			case <-time.After(10 * time.Second):
				tb.Errorf("%s did not return 10s after cancel", name)
			}
		})
	}
	tb.Cleanup(stop)
	return stop
}

// streamSeqs returns the seqs in the stream of room, checking each
// entry's fields.
func streamSeqs(tb testing.TB, l *Log, room string) []int64 {
	tb.Helper()
	msgs, err := l.client.XRange(tb.Context(), l.streamKey(room), "-", "+").Result()
	if err != nil {
		tb.Fatalf("XRANGE %s: %v", room, err)
	}
	seqs := make([]int64, 0, len(msgs))
	for _, m := range msgs {
		ev, ok := parseEntry(room, m)
		if !ok {
			tb.Fatalf("stream %s: entry id %q is not <seq>-0", room, m.ID)
		}
		if want := fmt.Sprintf(`{"room":%q,"seq":%d}`, room, ev.Seq); string(ev.Data) != want || ev.Type != "element.updated" {
			tb.Fatalf("stream %s entry %s: got t=%q d=%s, want t=element.updated d=%s", room, m.ID, ev.Type, ev.Data, want)
		}
		seqs = append(seqs, ev.Seq)
	}
	return seqs
}

// checkRun reports whether seqs is exactly from, from+1, ..., to.
func checkRun(tb testing.TB, what string, seqs []int64, from, to int64) {
	tb.Helper()
	if int64(len(seqs)) != to-from+1 {
		tb.Fatalf("%s: got %d events %s, want %d..%d", what, len(seqs), summary(seqs), from, to)
	}
	for i, s := range seqs {
		if s != from+int64(i) {
			tb.Fatalf("%s: event %d has seq %d, want %d (got %s)", what, i, s, from+int64(i), summary(seqs))
		}
	}
}

func summary(seqs []int64) string {
	if len(seqs) <= 12 {
		return fmt.Sprint(seqs)
	}
	return fmt.Sprintf("%v ... %v", seqs[:6], seqs[len(seqs)-6:])
}

// eventually polls cond until it holds or timeout passes.
func eventually(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not true after %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// receive reads at least n messages from sub, failing on a timeout or
// an ended subscription; it returns every message queued by then, so an
// extra event shows.
func receive(tb testing.TB, sub *sse.Subscription, n int, timeout time.Duration) []int64 {
	tb.Helper()
	t := time.NewTimer(timeout)
	defer t.Stop()
	seqs := make([]int64, 0, n)
	ready := readyChan(sub)
	for {
		for _, m := range sub.Drain(nil) {
			seqs = append(seqs, m.Seq)
		}
		if len(seqs) >= n {
			return seqs
		}
		select {
		case <-ready:
		case <-sub.Done():
			tb.Fatalf("subscription ended (%v) after %d of %d events", sub.Err(), len(seqs), n)
		case <-t.C:
			tb.Fatalf("subscription: got %d events %s in %v, want %d", len(seqs), summary(seqs), timeout, n)
		}
	}
}

// readyChan is a test consumer's wake-up: it receives (coalesced) when s
// has something to drain or has ended.
func readyChan(s *sse.Subscription) <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.Notify(func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	})
	return ch
}

// drainWithin waits up to d for s to queue something and returns all it
// queued; nil when nothing came.
func drainWithin(s *sse.Subscription, d time.Duration) []*sse.Message {
	t := time.NewTimer(d)
	defer t.Stop()
	ready := readyChan(s)
	for {
		if msgs := s.Drain(nil); len(msgs) > 0 {
			return msgs
		}
		select {
		case <-ready:
		case <-s.Done():
			return s.Drain(nil)
		case <-t.C:
			return nil
		}
	}
}

// setup returns a test client, an options value with its prefix, and a
// fresh history.
func setup(tb testing.TB) (*goredis.Client, Options, *testHistory) {
	tb.Helper()
	client, prefix := testenv.Redis(tb)
	return client, Options{Prefix: prefix, Block: 200 * time.Millisecond}, newTestHistory()
}

// writeWhileFollowing has two writers, one per node, commit and
// publish room r1 up to total while subscribers join b at random times
// (within joinWindow), each from a cursor up to maxLag behind the head (every
// fromZero-th from 0), catch up with Range and go live: each must see a
// contiguous sequence, without gap or duplicate.
func writeWhileFollowing(t *testing.T, a, b *testNode, hist *testHistory, total int64, subscribers, maxLag, fromZero int, joinWindow time.Duration) {
	t.Helper()
	var writers sync.WaitGroup
	for w := range 2 {
		writers.Go(func() {
			for {
				ev, ok := hist.commitUpTo("r1", total)
				if !ok {
					return
				}
				if err := []*Log{a.log, b.log}[w].Publish(context.Background(), ev); err != nil {
					t.Errorf("Publish(%d): %v", ev.Seq, err)
					return
				}
				if ev.Seq%64 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	var readers sync.WaitGroup
	for i := range subscribers {
		readers.Go(func() {
			time.Sleep(time.Duration(rand.Int64N(int64(joinWindow))))
			cursor := max(0, hist.head("r1")-int64(rand.IntN(maxLag)))
			if i%fromZero == 0 {
				cursor = 0
			}
			if _, err := followFrom(t.Context(), b.log, "r1", cursor, total); err != nil {
				t.Errorf("subscriber %d from %d: %v", i, cursor, err)
			}
		})
	}
	writers.Wait()
	readers.Wait()
}

// xreaderOf returns the reader of l, a log over a single Redis.
func xreaderOf(l *Log) *xreader { return l.reader.(*xreader) }
