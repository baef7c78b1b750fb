package redis

import (
	"bytes"
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/sse"
)

func TestSignalsAcrossNodes(t *testing.T) {
	t.Parallel()
	client, opts, hist := setup(t)
	a := newTestNode(t, client, hist, opts, 16)
	b := newTestNode(t, client, hist, opts, 16)
	signalsAcrossNodes(t, client, a, b)

	numbered := signalOf(t, "s1", "cursor", "1")
	numbered.Seq = 7
	if err := a.log.Signal(t.Context(), numbered); err == nil {
		t.Error("a signal with a seq: got nil, want an error")
	}
}

// signalsAcrossNodes runs both nodes' RunSignals and checks that a signal
// sent through node a reaches the subscribers of its room on both nodes,
// once and without an id; that a room without subscribers on a node gets
// nothing there; that payloads other than signals are ignored; and that
// nothing is stored.
func signalsAcrossNodes(t *testing.T, client goredis.UniversalClient, a, b *testNode) {
	t.Helper()
	ctx := t.Context()
	startLoop(t, "A.RunSignals", a.log.RunSignals)
	startLoop(t, "B.RunSignals", b.log.RunSignals)
	channel := a.log.signalChannel()
	waitSubscribed(t, client, channel, 2)
	subA := subscribe(t, a.hub, "s1")
	subB := subscribe(t, b.hub, "s1")
	elsewhere := subscribe(t, b.hub, "s2")

	for _, foreign := range []string{`{"room":"s1","type":"reset","data":1}`, `{"room":"s1","type":"element.updated"}`, `not json`} {
		if err := client.Publish(ctx, channel, foreign).Err(); err != nil {
			t.Fatal(err)
		}
	}
	ev := signalOf(t, "s1", "cursor", `{"x":1,"y":2}`)
	if err := a.log.Signal(ctx, ev); err != nil {
		t.Fatal(err)
	}
	for name, sub := range map[string]*sse.Subscription{"node A": subA, "node B": subB} {
		msgs := drainWithin(sub, 5*time.Second)
		if len(msgs) != 1 {
			t.Fatalf("%s: got %d messages, want the signal alone", name, len(msgs))
		}
		m := msgs[0]
		if m.Seq != 0 || m.Type != "cursor" || !bytes.Equal(m.Data, ev.Data) {
			t.Errorf("%s: got %d %s %s, want the signal %s", name, m.Seq, m.Type, m.Data, ev.Data)
		}
		if want := "event: cursor\ndata: " + string(ev.Data) + "\n\n"; string(m.Frame) != want {
			t.Errorf("%s: frame %q, want %q (no id)", name, m.Frame, want)
		}
		if more := drainWithin(sub, 200*time.Millisecond); len(more) > 0 {
			t.Errorf("%s: got %s %s after the signal, want nothing", name, more[0].Type, more[0].Data)
		}
	}
	if msgs := drainWithin(elsewhere, 200*time.Millisecond); len(msgs) > 0 {
		t.Errorf("room s2: got %s %s, want nothing", msgs[0].Type, msgs[0].Data)
	}
	if n, err := client.Exists(ctx, a.log.streamKey("s1")).Result(); err != nil || n != 0 {
		t.Errorf("stream of s1: %d keys (%v), want none: signals are never stored", n, err)
	}
}

func signalOf(tb testing.TB, room, name, data string) roomfeed.Event {
	tb.Helper()
	ev, err := feed.SignalEvent(room, name, "alice", json.RawMessage(data), time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return ev
}

// subscribe subscribes to room on hub until the test ends.
func subscribe(tb testing.TB, hub *sse.Hub, room string) *sse.Subscription {
	tb.Helper()
	sub, err := hub.Subscribe(room)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(sub.Close)
	return sub
}

// waitSubscribed waits until n connections subscribe to channel, counted
// over every master of a Redis Cluster.
func waitSubscribed(tb testing.TB, client goredis.UniversalClient, channel string, n int64) {
	tb.Helper()
	eventually(tb, 5*time.Second, "subscribers of "+channel, func() bool {
		var total atomic.Int64
		count := func(ctx context.Context, c *goredis.Client) error {
			subs, err := c.PubSubNumSub(ctx, channel).Result()
			total.Add(subs[channel])
			return err
		}
		var err error
		if cc, ok := client.(*goredis.ClusterClient); ok {
			err = cc.ForEachMaster(tb.Context(), count)
		} else {
			err = count(tb.Context(), client.(*goredis.Client))
		}
		return err == nil && total.Load() >= n
	})
}
