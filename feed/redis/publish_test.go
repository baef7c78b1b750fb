package redis

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/internal/testenv"
)

// committedLog returns a test node's log and the events committed to its
// history: commit[room] of them per room.
func committedLog(t *testing.T, commit map[string]int) (*Log, map[string][]roomfeed.Event) {
	t.Helper()
	client, opts, hist := setup(t)
	l := newTestNode(t, client, hist, opts, 16).log
	evs := map[string][]roomfeed.Event{}
	for room, n := range commit {
		evs[room] = hist.commitN(room, n)
	}
	return l, evs
}

// TestPublishPipelined sends crafted batches through appendPipelined,
// as concurrent Publishes would: each request gets its own outcome, and the
// streams hold every event once, in order, never above a hole.
func TestPublishPipelined(t *testing.T) {
	t.Parallel()
	type pub struct {
		room string
		seq  int64
	}
	tests := []struct {
		name    string
		commit  map[string]int // events committed per room
		before  []pub          // published alone first
		batch   []pub
		wantOK  []bool  // per request of batch
		wantTop []int64 // per request of batch
		streams map[string]int64
	}{
		{
			name:    "rooms in order",
			commit:  map[string]int{"a": 3, "b": 2},
			batch:   []pub{{"a", 1}, {"b", 1}, {"a", 2}, {"b", 2}, {"a", 3}},
			wantOK:  []bool{true, true, true, true, true},
			wantTop: []int64{3, 2, 3, 2, 3},
			streams: map[string]int64{"a": 3, "b": 2},
		},
		{
			name:    "out of order within a room",
			commit:  map[string]int{"a": 3},
			batch:   []pub{{"a", 3}, {"a", 1}, {"a", 2}},
			wantOK:  []bool{true, true, true},
			wantTop: []int64{3, 3, 3},
			streams: map[string]int64{"a": 3},
		},
		{
			name:    "a hole: the run above it is refused",
			commit:  map[string]int{"a": 4, "b": 1},
			batch:   []pub{{"a", 1}, {"a", 3}, {"b", 1}, {"a", 4}},
			wantOK:  []bool{true, false, true, false},
			wantTop: []int64{1, 1, 1, 1},
			streams: map[string]int64{"a": 1, "b": 1},
		},
		{
			name:    "above the stream's top",
			commit:  map[string]int{"a": 5},
			before:  []pub{{"a", 1}, {"a", 2}},
			batch:   []pub{{"a", 4}, {"a", 3}, {"a", 5}},
			wantOK:  []bool{true, true, true},
			wantTop: []int64{5, 5, 5},
			streams: map[string]int64{"a": 5},
		},
		{
			name:    "already published and duplicates",
			commit:  map[string]int{"a": 3},
			before:  []pub{{"a", 1}, {"a", 2}, {"a", 3}},
			batch:   []pub{{"a", 2}, {"a", 2}, {"a", 3}},
			wantOK:  []bool{true, true, true},
			wantTop: []int64{3, 3, 3},
			streams: map[string]int64{"a": 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, evs := committedLog(t, tt.commit)
			for _, p := range tt.before {
				if err := l.Publish(t.Context(), evs[p.room][p.seq-1]); err != nil {
					t.Fatalf("Publish %s/%d: %v", p.room, p.seq, err)
				}
			}
			batch := make([]*publishReq, len(tt.batch))
			for i, p := range tt.batch {
				batch[i] = &publishReq{ev: evs[p.room][p.seq-1]}
			}
			l.appendPipelined(t.Context(), batch)
			for i, r := range batch {
				if r.err != nil || r.ok != tt.wantOK[i] || r.top != tt.wantTop[i] {
					t.Errorf("request %d (%s/%d): got ok=%v top=%d err=%v, want ok=%v top=%d",
						i, r.ev.Room, r.ev.Seq, r.ok, r.top, r.err, tt.wantOK[i], tt.wantTop[i])
				}
			}
			for room, top := range tt.streams {
				checkRun(t, "stream "+room, streamSeqs(t, l, room), 1, top)
			}
		})
	}
}

// TestPublishOutOfOrder: many Publishes at once over several rooms, each
// room's in a random order (as several nodes' would arrive); every stream
// ends complete.
func TestPublishOutOfOrder(t *testing.T) {
	t.Parallel()
	client, opts, hist := setup(t)
	l := newTestNode(t, client, hist, opts, 16).log
	const rooms, perRoom, workers = 20, 60, 32
	var evs []roomfeed.Event
	for i := range rooms {
		evs = append(evs, hist.commitN(fmt.Sprint("room", i), perRoom)...)
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(evs); i += workers {
				// Workers start at different rooms and seqs, so events
				// arrive out of order and fill holes.
				ev := evs[(i*7919)%len(evs)]
				if err := l.Publish(t.Context(), ev); err != nil {
					t.Errorf("Publish %s/%d: %v", ev.Room, ev.Seq, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i := range rooms {
		room := fmt.Sprint("room", i)
		checkRun(t, "stream "+room, streamSeqs(t, l, room), 1, perRoom)
	}
}

// TestPublishPipelinedAfterScriptFlush: when Redis lost its script
// cache (a throwaway server, flushed), a pipeline over several rooms falls
// back to sending the script, run by run, in order.
func TestPublishPipelinedAfterScriptFlush(t *testing.T) {
	t.Parallel()
	client := testenv.RedisServer(t)
	hist := newTestHistory()
	l := newTestNode(t, client, hist, Options{Prefix: "rf:"}, 16).log
	var batch []*publishReq
	for _, room := range []string{"a", "b", "c"} {
		for _, ev := range hist.commitN(room, 3) {
			batch = append(batch, &publishReq{ev: ev})
		}
	}
	if err := client.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	l.appendPipelined(t.Context(), batch)
	for _, r := range batch {
		if r.err != nil || !r.ok || r.top != 3 {
			t.Errorf("%s/%d: got ok=%v top=%d err=%v, want ok=true top=3", r.ev.Room, r.ev.Seq, r.ok, r.top, r.err)
		}
	}
	for _, room := range []string{"a", "b", "c"} {
		checkRun(t, "stream "+room, streamSeqs(t, l, room), 1, 3)
	}

	// The fallback sent the script: the next pipeline finds it.
	noscript := func() string {
		info, err := client.Info(t.Context(), "errorstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\n") {
			if strings.HasPrefix(line, "errorstat_NOSCRIPT:") {
				return strings.TrimSpace(line)
			}
		}
		return "none"
	}
	before := noscript()
	batch = batch[:0]
	for _, room := range []string{"a", "b", "c"} {
		batch = append(batch, &publishReq{ev: hist.commit(room)})
	}
	l.appendPipelined(t.Context(), batch)
	for _, r := range batch {
		if r.err != nil || !r.ok || r.top != 4 {
			t.Errorf("%s/%d: got ok=%v top=%d err=%v, want ok=true top=4", r.ev.Room, r.ev.Seq, r.ok, r.top, r.err)
		}
	}
	if after := noscript(); after != before {
		t.Errorf("NOSCRIPT errors: got %q after the second pipeline, want %q as before it", after, before)
	}
}

// TestPublishPipelinedUnreachable: every Publish of a pipeline that
// cannot reach Redis gets the error.
func TestPublishPipelinedUnreachable(t *testing.T) {
	t.Parallel()
	addr := testenv.FreeAddr(t)
	client := goredis.NewClient(&goredis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { client.Close() })
	hist := newTestHistory()
	l := newTestNode(t, client, hist, Options{Prefix: "rf:"}, 16).log
	var batch []*publishReq
	for _, room := range []string{"a", "b"} {
		for _, ev := range hist.commitN(room, 2) {
			batch = append(batch, &publishReq{ev: ev})
		}
	}
	l.appendPipelined(t.Context(), batch)
	for _, r := range batch {
		if r.err == nil || r.ok {
			t.Errorf("%s/%d: got ok=%v err=%v, want an error", r.ev.Room, r.ev.Seq, r.ok, r.err)
		}
	}
}

// TestPublishAll: batches of committed events, as a store's committer
// announces them, reach the streams whole, in order and once; a batch above
// a hole (another node's events not published yet) fills it from the
// history; a batch of more than one pipeline goes in order.
func TestPublishAll(t *testing.T) {
	t.Parallel()
	type run struct {
		room     string
		from, to int64
	}
	tests := []struct {
		name    string
		commit  map[string]int
		before  []run   // published with Publish first
		batches [][]run // each a PublishAll, in order
		streams map[string]int64
	}{
		{
			name:    "batches in order",
			commit:  map[string]int{"a": 6, "b": 3},
			batches: [][]run{{{"a", 1, 2}, {"b", 1, 1}, {"a", 3, 3}}, {{"b", 2, 3}, {"a", 4, 6}}},
			streams: map[string]int64{"a": 6, "b": 3},
		},
		{
			name:    "above another node's hole",
			commit:  map[string]int{"a": 8, "b": 2},
			before:  []run{{"a", 1, 2}},
			batches: [][]run{{{"b", 1, 2}, {"a", 5, 6}}, {{"a", 7, 8}}},
			streams: map[string]int64{"a": 8, "b": 2},
		},
		{
			name:    "already published",
			commit:  map[string]int{"a": 4},
			before:  []run{{"a", 1, 4}},
			batches: [][]run{{{"a", 3, 4}}},
			streams: map[string]int64{"a": 4},
		},
		{
			name:    "more than a pipeline",
			commit:  map[string]int{"a": 2*pipelineEvents + 7, "b": 40},
			batches: [][]run{{{"b", 1, 20}, {"a", 1, 2*pipelineEvents + 7}, {"b", 21, 40}}},
			streams: map[string]int64{"a": 2*pipelineEvents + 7, "b": 40},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, evs := committedLog(t, tt.commit)
			for _, r := range tt.before {
				for seq := r.from; seq <= r.to; seq++ {
					if err := l.Publish(t.Context(), evs[r.room][seq-1]); err != nil {
						t.Fatalf("Publish %s/%d: %v", r.room, seq, err)
					}
				}
			}
			for i, b := range tt.batches {
				var batch []roomfeed.Event
				for _, r := range b {
					batch = append(batch, evs[r.room][r.from-1:r.to]...)
				}
				if err := l.PublishAll(t.Context(), batch); err != nil {
					t.Fatalf("PublishAll %d: %v", i, err)
				}
			}
			for room, top := range tt.streams {
				checkRun(t, "stream "+room, streamSeqs(t, l, room), 1, top)
			}
		})
	}
}

// TestPublishAllUnreachable: with Redis gone, PublishAll fails with
// ErrUnavailable and leaves the events to the relay.
func TestPublishAllUnreachable(t *testing.T) {
	t.Parallel()
	client := goredis.NewClient(&goredis.Options{Addr: testenv.FreeAddr(t), MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { client.Close() })
	hist := newTestHistory()
	l := newTestNode(t, client, hist, Options{Prefix: "rf:"}, 16).log
	evs := append(hist.commitN("a", 2), hist.commitN("b", 2)...)
	if err := l.PublishAll(t.Context(), evs); !errors.Is(err, feed.ErrUnavailable) {
		t.Fatalf("PublishAll to an unreachable Redis: got %v, want ErrUnavailable", err)
	}
	if err := l.PublishAll(t.Context(), evs); !errors.Is(err, feed.ErrUnavailable) || !strings.Contains(err.Error(), "relay") {
		t.Fatalf("PublishAll while paused: got %v, want ErrUnavailable left to the relay", err)
	}
}
