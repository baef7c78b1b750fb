package redis

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed"
)

const relayTick = 50 * time.Millisecond

// streamHas waits until the stream of room is exactly from..to.
func streamHas(tb testing.TB, l *Log, room string, from, to int64) {
	tb.Helper()
	eventually(tb, 10*time.Second, "stream "+room+" caught up", func() bool {
		seqs := streamSeqs(tb, l, room)
		return len(seqs) > 0 && seqs[len(seqs)-1] >= to
	})
	checkRun(tb, "stream "+room, streamSeqs(tb, l, room), from, to)
}

// TestRelayFillsGaps: committed events that never reached Redis (a
// crash between commit and publish) are republished, at start and later.
func TestRelayFillsGaps(t *testing.T) {
	t.Parallel()
	client, opts, hist := setup(t)
	node := newTestNode(t, client, hist, opts, 16)
	l := node.log
	for _, ev := range hist.commitN("r1", 50)[:20] { // stream 1..20, history 1..50
		if err := l.Publish(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	hist.commitN("r2", 30) // never published
	for _, ev := range hist.commitN("r3", 10) {
		if err := l.Publish(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	startLoop(t, "Relay", func(ctx context.Context) error { return l.Relay(ctx, hist, relayTick) })
	streamHas(t, l, "r1", 1, 50)
	streamHas(t, l, "r2", 1, 30)
	streamHas(t, l, "r3", 1, 10)

	// r1 lacked 30, r2 all 30: the relay counts what it published late.
	waitRelayed(t, l, 60)

	hist.commitN("r1", 10) // committed later, publish lost
	streamHas(t, l, "r1", 1, 60)
	waitRelayed(t, l, 70)
}

// waitRelayed waits for the relay's count to reach want (it is counted just
// after the stream is filled) and checks it does not go past it.
func waitRelayed(t *testing.T, l *Log, want uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.Relayed() < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := l.Relayed(); got != want {
		t.Errorf("relayed: got %d, want %d", got, want)
	}
}

// TestRelayEpoch: a stream lost while the epoch key stays is not seen by
// the incremental passes (its head did not change); losing the epoch key
// (Redis lost its data) makes the relay check every room again, and it
// republishes only the window.
func TestRelayEpoch(t *testing.T) {
	t.Parallel()
	client, opts, hist := setup(t)
	opts.MaxLen = 100
	node := newTestNode(t, client, hist, opts, 16)
	l := node.log
	hist.commitN("r1", 300)
	hist.commitN("r2", 50)
	startLoop(t, "Relay", func(ctx context.Context) error { return l.Relay(ctx, hist, relayTick) })
	streamHas(t, l, "r1", 201, 300)
	streamHas(t, l, "r2", 1, 50)

	hist.age(time.Now().Add(-time.Hour))
	if err := client.Del(t.Context(), l.streamKey("r1")).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * relayTick)
	if got := streamSeqs(t, l, "r1"); len(got) != 0 {
		t.Fatalf("stream r1 after incremental passes: got %s, want empty (heads unchanged)", summary(got))
	}

	// Redis "restarts empty": every key of the prefix is gone.
	keys := []string{l.streamKey("r1"), l.streamKey("r2"), l.opts.Prefix + "epoch"}
	if err := client.Del(t.Context(), keys...).Err(); err != nil {
		t.Fatal(err)
	}
	streamHas(t, l, "r1", 201, 300)
	streamHas(t, l, "r2", 1, 50)

	// Another value (another Redis, or a failover that lost writes) too.
	if err := client.Del(t.Context(), l.streamKey("r2")).Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.Set(t.Context(), l.opts.Prefix+"epoch", "other", 0).Err(); err != nil {
		t.Fatal(err)
	}
	streamHas(t, l, "r2", 1, 50)
}

// TestRelayRetries: a failing pass is retried at the next tick.
func TestRelayRetries(t *testing.T) {
	t.Parallel()
	client, opts, hist := setup(t)
	node := newTestNode(t, client, hist, opts, 16)
	hist.commitN("r1", 40)
	heads := &flakyHeads{History: hist}
	heads.failures.Store(3)
	startLoop(t, "Relay", func(ctx context.Context) error { return node.log.Relay(ctx, heads, relayTick) })
	streamHas(t, node.log, "r1", 1, 40)
	if got := heads.calls.Load(); got < 4 {
		t.Errorf("RoomHeads calls: got %d, want at least 4 (3 failures, then success)", got)
	}
}

type flakyHeads struct {
	roomfeed.History
	failures atomic.Int64
	calls    atomic.Int64
}

func (h *flakyHeads) RoomHeads(ctx context.Context, since time.Time) ([]roomfeed.RoomHead, error) {
	h.calls.Add(1)
	if h.failures.Add(-1) >= 0 {
		return nil, errors.New("db down")
	}
	return h.History.RoomHeads(ctx, since)
}

// TestRelayManyRooms covers the batched top checks (more than one
// pipeline of 500 rooms).
func TestRelayManyRooms(t *testing.T) {
	t.Parallel()
	client, opts, hist := setup(t)
	node := newTestNode(t, client, hist, opts, 16)
	rooms := make([]roomfeed.RoomHead, 1100)
	for i := range rooms {
		rooms[i] = roomfeed.RoomHead{Room: fmt.Sprintf("room%04d", i), Seq: int64(1 + i%3)}
		hist.commitN(rooms[i].Room, int(rooms[i].Seq))
		if i%2 == 0 { // half of them are already published
			for _, ev := range hist.events[rooms[i].Room] {
				if err := node.log.Publish(t.Context(), ev); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := node.log.relayHeads(t.Context(), slices.Clone(rooms)); err != nil {
		t.Fatalf("relayHeads: %v", err)
	}
	for _, h := range rooms {
		checkRun(t, h.Room, streamSeqs(t, node.log, h.Room), 1, h.Seq)
	}
}
