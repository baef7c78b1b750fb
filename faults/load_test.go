package faults

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"
)

// load is two nodes under two writers, each alternating between the
// nodes, and three subscribers: one on each node and one alternating.
type load struct {
	nodes []*node
	subs  []*subscriber
	hc    *http.Client
	l     *ledger
	ctx   context.Context // the writers' context; done once stop is called
	stop  func()          // stops the writers and waits for them
}

// startLoad starts nodes A and B with args, the subscribers of room and
// the writers, and waits until n writes are acknowledged.
func startLoad(t *testing.T, room string, n int, args ...string) *load {
	t.Helper()
	a, b := startNode(t, "A", args...), startNode(t, "B", args...)
	ld := &load{nodes: []*node{a, b}, hc: newClient(t, 10*time.Second), l: newLedger()}
	ld.subs = []*subscriber{
		startSubscriber(t, "sub1@A", room, func(int) *node { return a }),
		startSubscriber(t, "sub2@B", room, func(int) *node { return b }),
		startSubscriber(t, "sub3@A|B", room, func(i int) *node { return ld.nodes[i%2] }),
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for i, name := range []string{"w1", "w2"} {
		wg.Go(func() {
			writer(ctx, ld.hc, ld.l, name, room, func(j int) *node { return ld.nodes[(i+j)%2] }, 5*time.Millisecond)
		})
	}
	ld.ctx = ctx
	ld.stop = func() {
		cancel()
		wg.Wait()
	}
	t.Cleanup(ld.stop)
	waitAcks(t, ld.l, n, 20*time.Second)
	return ld
}
