package faults

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/testenv"
)

// TestThreeNodesOneOrder runs three nodes over one PostgreSQL and one Redis,
// with concurrent writers going through every node into three rooms and a
// subscriber of every room on every node: each subscriber must see its
// room's single gap-free order, the order committed in SQL, byte for byte.
func TestThreeNodesOneOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	b := newBackend(t)
	nodes := []*node{
		startNode(t, "A", b.args()...),
		startNode(t, "B", b.args()...),
		startNode(t, "C", b.args()...),
	}
	rooms := []string{testenv.UniqueName("n3a"), testenv.UniqueName("n3b"), testenv.UniqueName("n3c")}
	subs := make(map[string][]*subscriber)
	for _, room := range rooms {
		for _, n := range nodes {
			subs[room] = append(subs[room], startSubscriber(t, room+"@"+n.name, room, func(int) *node { return n }))
		}
	}
	hc := newClient(t, 10*time.Second)
	l := newLedger()
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var wg sync.WaitGroup
	for w := range 6 {
		room := rooms[w%len(rooms)]
		wg.Go(func() {
			writer(ctx, hc, l, "w"+itoa(w), room, func(i int) *node { return nodes[(w+i)%len(nodes)] }, 0)
		})
	}
	// Two more writers hammer one room through every node at once.
	for w := 6; w < 8; w++ {
		wg.Go(func() {
			writer(ctx, hc, l, "w"+itoa(w), rooms[0], func(i int) *node { return nodes[(w+i)%len(nodes)] }, 0)
		})
	}
	waitAcks(t, l, 1500, 60*time.Second)
	stop()
	wg.Wait()
	total := 0
	for _, room := range rooms {
		rep := checkFeed(t, b.pgURL, room, l, subs[room], 30*time.Second)
		t.Logf("room %s: acknowledged %d, unacknowledged %d, committed %d, events checked %d (3 nodes)",
			room, rep.Acked, rep.Failed, rep.Committed, rep.Checked)
		total += rep.Checked
	}
	t.Logf("%d events checked in all", total)
}
