package faults

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/testenv"
)

// TestBadLink puts a bad network between subscribers and a node: every
// chunk held 20–60 ms, 64 KB/s per direction, and each connection reset
// (RST) after about 1.5 s on average, while writers write to three rooms
// straight to the node. Subscribers of the Go client package, one room each
// and all three on one connection, must still receive every event exactly
// once, in order, resuming with Last-Event-ID after each reset.
func TestBadLink(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	b := newBackend(t)
	n := startNode(t, "A", b.args()...)
	link := startProxy(t, hostOf(t, n.URL()))
	link.SetBadLink(testenv.BadLink{Latency: 20 * time.Millisecond, Jitter: 40 * time.Millisecond,
		BytesPerSec: 64 << 10, ResetEvery: 1500 * time.Millisecond})
	rooms := []string{testenv.UniqueName("bad"), testenv.UniqueName("bad"), testenv.UniqueName("bad")}
	via := "http://" + link.Addr()
	subs := []*timedSub{startTimedSub(t, "all@link", via, rooms)}
	for _, r := range rooms {
		subs = append(subs, startTimedSub(t, r+"@link", via, []string{r}))
	}

	hc := newClient(t, 10*time.Second)
	l := newLedger()
	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for i, r := range rooms {
		wg.Go(func() {
			writer(ctx, hc, l, "w"+string(rune('a'+i)), r, func(int) *node { return n }, 15*time.Millisecond)
		})
	}
	time.Sleep(8 * time.Second)
	stop()
	wg.Wait()
	acks, _, _ := l.snapshot()
	t.Logf("%d writes acknowledged; the link reset %d connections", len(acks), link.Resets())
	if link.Resets() == 0 {
		t.Fatal("the bad link reset no connection: the test proves nothing")
	}
	for _, r := range rooms {
		hist := sqlHistory(t, b.pgURL, r)
		for _, s := range subs {
			if slices.Contains(s.rooms, r) {
				eventually(t, 60*time.Second, s.name+" caught up in "+r, func() error {
					if got := s.count(r); got < len(hist) {
						return errNotYet
					}
					return nil
				})
				s.check(t, r, hist)
			}
		}
	}
	for _, s := range subs {
		t.Logf("%s: %d reconnects", s.name, s.reconnectCount())
	}
}
