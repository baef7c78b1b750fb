package faults

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/testenv"
)

// TestKillNodeMidWriteStream kills a node with SIGKILL while writers stream
// writes through it. Before the kill its Redis connection is cut (through a
// proxy), so it holds committed events it never published: only the relays
// of the other nodes can deliver them. Three subscribers on the two other
// nodes must receive every acknowledged write exactly once, in one order,
// byte for byte as committed, before and after the node comes back.
func TestKillNodeMidWriteStream(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	b := newBackend(t)
	room := testenv.UniqueName("crash")
	redisProxy := startProxy(t, hostOf(t, b.redisURL))
	a := startNode(t, "A", "--database-url", b.pgURL, "--redis-url", "redis://"+redisProxy.Addr()+"/0",
		"--redis-prefix", b.prefix, "--relay-interval", "200ms")
	nb := startNode(t, "B", b.args()...)
	nc := startNode(t, "C", b.args()...)

	subs := []*subscriber{
		startSubscriber(t, "sub1@B", room, func(int) *node { return nb }),
		startSubscriber(t, "sub2@C", room, func(int) *node { return nc }),
		startSubscriber(t, "sub3@B|C", room, func(i int) *node { return []*node{nb, nc}[i%2] }),
	}
	hc := newClient(t, 10*time.Second)
	l := newLedger()
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var wg sync.WaitGroup
	for _, name := range []string{"wa1", "wa2"} {
		wg.Go(func() { writer(ctx, hc, l, name, room, func(int) *node { return a }, 0) })
	}

	time.Sleep(1500 * time.Millisecond)
	redisProxy.SetCut(true) // A commits but cannot publish
	// Kill A only once it holds committed events it failed to publish: its
	// Redis client retries with backoff before a publish fails, which can
	// take longer than any fixed wait on a loaded machine.
	eventually(t, 20*time.Second, "A failing to publish", func() error {
		if !strings.Contains(a.stderr(), "publish failed") {
			return errNotYet
		}
		return nil
	})
	a.kill()
	acksAtKill, _, _ := l.snapshot()
	t.Logf("killed A after %d acknowledged writes", len(acksAtKill))

	// Only the relays of B and C can deliver what A committed: the writers
	// now hit a dead node.
	head := int64(len(sqlHistory(t, b.pgURL, room)))
	waitCaughtUp(t, subs, head, 20*time.Second)

	redisProxy.SetCut(false)
	a.start()
	wg.Go(func() { writer(ctx, hc, l, "wb", room, func(int) *node { return nb }, 0) })
	time.Sleep(1500 * time.Millisecond)
	stop()
	wg.Wait()

	rep := checkFeed(t, b.pgURL, room, l, subs, 30*time.Second)
	t.Logf("acknowledged %d, unacknowledged %d, committed %d, events checked %d (3 subscribers), head before restart %d",
		rep.Acked, rep.Failed, rep.Committed, rep.Checked, head)
	if n := strings.Count(a.stderr(), "publish failed"); n == 0 {
		t.Errorf("A logged no failed publish: the test did not leave committed events unpublished")
	} else {
		t.Logf("A failed to publish %d committed events before it was killed", n)
	}
	if len(acksAtKill) < 20 || rep.Acked <= len(acksAtKill) {
		t.Errorf("too few writes to mean anything: %d before the kill, %d in all", len(acksAtKill), rep.Acked)
	}
}

// hostOf returns the host:port of a URL.
func hostOf(tb testing.TB, raw string) string {
	tb.Helper()
	u, err := parseURL(raw)
	if err != nil {
		tb.Fatal(err)
	}
	return u.Host
}
