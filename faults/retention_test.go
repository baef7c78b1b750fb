package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/ssetest"
	"github.com/roomfeed/roomfeed/internal/testenv"
)

// TestRetentionNeverTrimsUnpublished runs node B with a SQL retention of 20
// events per room (every 200ms) beside node A, whose Redis connection the
// test cuts: what A then commits is not published, and B's retention must
// leave it in SQL however far beyond the count it is, until A's relay has
// published it; then B trims to the newest 20. A follower that was live the
// whole time receives every event; a client resuming from a trimmed cursor
// gets a reset.
func TestRetentionNeverTrimsUnpublished(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	b := newBackend(t)
	room := testenv.UniqueName("keep")
	rp := startProxy(t, hostOf(t, b.redisURL))
	a := startNode(t, "A", "--database-url", b.pgURL, "--redis-url", "redis://"+rp.Addr()+"/0",
		"--redis-prefix", b.prefix, "--relay-interval", "200ms")
	nb := startNode(t, "B", "--database-url", b.pgURL, "--redis-url", b.redisURL, "--redis-prefix", b.prefix,
		"--relay-interval", "1h", // B's relay runs once at start: only A can publish what A commits
		"--history-keep", "20", "--retention-interval", "200ms")
	follower := startSubscriber(t, "follower@B", room, func(int) *node { return nb })
	hc := newClient(t, 10*time.Second)
	ctx := t.Context()
	l := newLedger()
	writeN := func(n int, prefix string) {
		for i := range n {
			op := prefix + itoa(i)
			r := putElement(ctx, hc, a.URL(), room, "e"+itoa(i%7), op, `{}`)
			l.record(room, op, r)
			if !r.acked() {
				t.Fatalf("write %s: %d %s %v", op, r.Status, r.Body, r.Err)
			}
		}
	}
	oldest := func() (int64, int) {
		h := sqlHistory(t, b.pgURL, room)
		if len(h) == 0 {
			return 0, 0
		}
		return h[0].Seq, len(h)
	}

	writeN(100, "p")
	eventually(t, 10*time.Second, "history trimmed to the newest 20", func() error {
		if first, n := oldest(); first != 81 || n != 20 {
			return fmt.Errorf("history holds %d events from %d, want 20 from 81", n, first)
		}
		return nil
	})

	rp.SetCut(true) // A commits 101..150 but cannot publish them
	writeN(50, "u")
	time.Sleep(1500 * time.Millisecond) // several retention passes on B
	if first, n := oldest(); first > 101 || first+int64(n)-1 != 150 {
		t.Fatalf("with 101..150 unpublished the history holds %d events from %d, want every event from 101 at least", n, first)
	}
	rp.SetCut(false) // A's relay publishes 101..150, then B trims
	eventually(t, 15*time.Second, "history trimmed to the newest 20 once published", func() error {
		if first, n := oldest(); first != 131 || n != 20 {
			return fmt.Errorf("history holds %d events from %d, want 20 from 131", n, first)
		}
		return nil
	})
	waitCaughtUp(t, []*subscriber{follower}, 150, 20*time.Second)
	follower.mu.Lock()
	evs, viol := append([]feedEvent(nil), follower.events...), follower.violations
	follower.mu.Unlock()
	if len(evs) != 150 || len(viol) > 0 {
		t.Fatalf("live follower: %d events, violations %v; want 150 in order", len(evs), viol)
	}
	acks, _, _ := l.snapshot()
	for _, a := range acks {
		if got := opID(evs[a.Seq-1].Data); got != a.Op {
			t.Errorf("acknowledged %s as %d, follower got op %q there", a.Op, a.Seq, got)
		}
	}
	t.Logf("acknowledged %d, follower checked %d, SQL history now 20 events (131..150)", len(acks), len(evs))

	// A client resuming from a cursor older than the SQL history is served
	// from the Redis window, which still holds it (MAXLEN 10000).
	s, err := ssetest.Dial(context.Background(), nb.URL()+"/rooms/"+room+"/events", "5")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if ev, err := s.Next(10 * time.Second); err != nil || ev.ID != "6" {
		t.Errorf("resume from 5: got %+v, %v; want event 6 from the Redis window", ev, err)
	}
}
