package faults

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/testenv"
)

// TestRedisDownAndBack runs two nodes over a redis-server of the test's own,
// reached through a proxy, while writers write through both and four
// subscribers follow the room. Redis is first made unreachable with its data
// kept (proxy cut), then killed and restarted empty. During each outage,
// writes must still be acknowledged (SQL is the outbox), /readyz must be red,
// and open streams must keep heartbeating; after it, every subscriber must
// receive every committed event exactly once, in order.
func TestRedisDownAndBack(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	b := newBackend(t)
	rs := startRedis(t)
	rp := startProxy(t, rs.addr)
	room := testenv.UniqueName("redis")
	args := []string{"--database-url", b.pgURL, "--redis-url", "redis://" + rp.Addr() + "/0",
		"--redis-prefix", "rf:", "--relay-interval", "200ms"}
	a := startNode(t, "A", args...)
	nb := startNode(t, "B", args...)
	nodes := []*node{a, nb}
	subs := []*subscriber{
		startSubscriber(t, "sub1@A", room, func(int) *node { return a }),
		startSubscriber(t, "sub2@A", room, func(int) *node { return a }),
		startSubscriber(t, "sub3@B", room, func(int) *node { return nb }),
		startSubscriber(t, "sub4@A|B", room, func(i int) *node { return nodes[i%2] }),
	}
	hc := newClient(t, 10*time.Second)
	l := newLedger()
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var wg sync.WaitGroup
	for i, name := range []string{"w1", "w2", "w3"} {
		wg.Go(func() {
			writer(ctx, hc, l, name, room, func(j int) *node { return nodes[(i+j)%2] }, 5*time.Millisecond)
		})
	}
	waitAcks(t, l, 50, 10*time.Second)

	outage := func(what string, down, up func()) {
		t.Helper()
		beforeAcks, _, _ := l.snapshot()
		conns := make([]int, len(subs))
		for i, s := range subs {
			_, conns[i], _ = s.stats()
		}
		down()
		start := time.Now()
		for _, n := range nodes {
			eventually(t, 10*time.Second, what+": "+n.name+" /readyz red", func() error {
				var body struct {
					Checks map[string]string `json:"checks"`
				}
				status, err := getJSON(ctx, hc, n.URL()+"/readyz", &body)
				if err != nil {
					return err
				}
				if status != http.StatusServiceUnavailable || body.Checks["redis"] != "unavailable" || body.Checks["database"] != "ok" {
					return fmt.Errorf("got %d %v, want 503 with redis unavailable and database ok", status, body.Checks)
				}
				return nil
			})
		}
		t.Logf("%s: readyz red after %v", what, time.Since(start).Round(time.Millisecond))
		// A new subscriber of a room this node already follows is served
		// (replay from SQL, then live); one of a room it does not follow
		// cannot be registered with the reader: 503, retried by the client.
		var refused struct {
			Error struct{ Code string } `json:"error"`
		}
		if status, err := getJSON(ctx, hc, a.URL()+"/rooms/"+testenv.UniqueName("other")+"/events", &refused); err != nil ||
			status != http.StatusServiceUnavailable || refused.Error.Code != "feed_unavailable" {
			t.Errorf("%s: new feed of an unfollowed room: got %d %+v (%v), want 503 feed_unavailable", what, status, refused, err)
		}
		extra := startSubscriber(t, "late@A", room, func(int) *node { return a })
		eventually(t, 10*time.Second, what+": a new subscriber of a followed room replays", func() error {
			if extra.lastSeq() < int64(len(beforeAcks)) {
				return errNotYet
			}
			return nil
		})
		defer func() { subs = append(subs, extra) }()      // checked from now on
		waitAcks(t, l, len(beforeAcks)+50, 15*time.Second) // writes go on committing
		t.Logf("%s: 50 writes acknowledged after %v", what, time.Since(start).Round(time.Millisecond))
		time.Sleep(time.Until(start.Add(2 * time.Second)))
		for i, s := range subs {
			pings, c, lastPing := s.stats()
			if c != conns[i] {
				t.Errorf("%s: %s reconnected during the outage (%d connections, had %d)", what, s.name, c, conns[i])
			}
			if time.Since(lastPing) > 1500*time.Millisecond {
				t.Errorf("%s: %s got no ping for %v during the outage (%d in all)", what, s.name, time.Since(lastPing), pings)
			}
		}
		t.Logf("%s: down phase took %v", what, time.Since(start).Round(time.Millisecond))
		up()
		upAt := time.Now()
		for _, n := range nodes {
			eventually(t, 15*time.Second, what+": "+n.name+" /readyz green again", func() error {
				status, err := getJSON(ctx, hc, n.URL()+"/readyz", nil)
				if err != nil || status != http.StatusOK {
					return fmt.Errorf("got %d, %v", status, err)
				}
				return nil
			})
		}
		t.Logf("%s: ready %v after Redis returned", what, time.Since(upAt).Round(time.Millisecond))
		// Every event committed so far reaches every subscriber.
		waitCaughtUp(t, subs, int64(len(sqlHistory(t, b.pgURL, room))), 30*time.Second)
		t.Logf("%s: subscribers caught up %v after Redis returned", what, time.Since(upAt).Round(time.Millisecond))
		after, _, _ := l.snapshot()
		t.Logf("%s: %d writes acknowledged during %v", what, len(after)-len(beforeAcks), time.Since(start).Round(time.Millisecond))
	}
	outage("Redis unreachable", func() { rp.SetCut(true) }, func() { rp.SetCut(false) })
	outage("Redis restarted empty", rs.stop, rs.start)
	waitAcks(t, l, 0, 0)
	time.Sleep(500 * time.Millisecond)
	stop()
	wg.Wait()

	rep := checkFeed(t, b.pgURL, room, l, subs, 30*time.Second)
	_, _, failures := l.snapshot()
	t.Logf("acknowledged %d, unacknowledged %d %v, committed %d, events checked %d (%d subscribers)",
		rep.Acked, rep.Failed, failures, rep.Committed, rep.Checked, len(subs))
	if rep.Failed > 0 {
		t.Errorf("%d writes were not acknowledged (%v), want every write committed while Redis is down", rep.Failed, failures)
	}
}

// waitAcks waits until the ledger holds at least n acknowledged writes.
func waitAcks(tb testing.TB, l *ledger, n int, timeout time.Duration) {
	tb.Helper()
	eventually(tb, timeout, fmt.Sprintf("%d acknowledged writes", n), func() error {
		acks, failed, st := l.snapshot()
		if len(acks) < n {
			return fmt.Errorf("%d acknowledged, %d failed %v", len(acks), failed, st)
		}
		return nil
	})
}
