package faults

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/ssetest"
	"github.com/roomfeed/roomfeed/internal/testenv"
)

// TestSIGTERMShutdown sends SIGTERM to a node serving open streams and a
// steady stream of writes: its streams must end promptly (clients reconnect
// elsewhere), every write it accepted must finish with an answer, every
// acknowledged write must reach subscribers on another node, and the
// process must exit with status 0 well within its shutdown timeout.
func TestSIGTERMShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	b := newBackend(t)
	room := testenv.UniqueName("term")
	a := startNode(t, "A", b.args()...)
	nb := startNode(t, "B", b.args()...)

	var streams []*ssetest.Stream
	for range 5 {
		s, err := ssetest.Dial(t.Context(), a.URL()+"/rooms/"+room+"/events", "0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		streams = append(streams, s)
	}
	// Followers on B; one of them starts on A and moves to B when A closes
	// its stream.
	subs := []*subscriber{
		startSubscriber(t, "sub1@B", room, func(int) *node { return nb }),
		startSubscriber(t, "sub2@A->B", room, func(i int) *node { return []*node{a, nb}[min(i, 1)] }),
	}
	tr := &http.Transport{DisableKeepAlives: true} // no idle-connection races: every write is its own connection
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	l := newLedger()
	var (
		mu        sync.Mutex
		otherErrs []error
	)
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var wg sync.WaitGroup
	for _, name := range []string{"w1", "w2", "w3"} {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				op := name + "-" + itoa(i)
				r := putElement(ctx, hc, a.URL(), room, name, op, `{"i":`+itoa(i)+`}`)
				if r.Err != nil && errors.Is(r.Err, syscall.ECONNREFUSED) {
					return // A no longer listens
				}
				if r.Err != nil && ctx.Err() == nil {
					mu.Lock()
					otherErrs = append(otherErrs, r.Err)
					mu.Unlock()
				}
				l.record(room, op, r)
			}
		})
	}
	waitAcks(t, l, 100, 10*time.Second)

	start := time.Now()
	exited := make(chan error, 1)
	var took time.Duration
	go func() {
		var err error
		took, err = a.term(15 * time.Second)
		exited <- err
	}()
	for i, s := range streams {
		if !s.Ended(2 * time.Second) {
			t.Errorf("stream %d on A still open 2s after SIGTERM", i)
		}
	}
	t.Logf("A's streams closed within %v of SIGTERM", time.Since(start).Round(time.Millisecond))
	if err := <-exited; err != nil {
		t.Errorf("A after SIGTERM: %v, want exit status 0", err)
	}
	if took > 5*time.Second {
		t.Errorf("A took %v to exit after SIGTERM, want well under its 5s shutdown timeout", took)
	}
	t.Logf("A exited %v after SIGTERM", took.Round(time.Millisecond))
	wg.Wait()
	stop()
	// A connection the kernel had accepted but the server had not when the
	// listener closed is reset: that request was never processed. A write
	// the server did process must have been answered.
	for _, err := range otherErrs {
		t.Logf("a write to A got no answer: %v", err)
	}
	committed := make(map[string]bool)
	for _, e := range sqlHistory(t, b.pgURL, room) {
		committed[opID(e.Payload)] = true
	}
	l.mu.Lock()
	for _, op := range l.lost {
		if committed[op] {
			t.Errorf("write %s was committed but its client got no answer: an in-flight write was cut", op)
		}
	}
	l.mu.Unlock()
	_, _, statuses := l.snapshot()
	for k, n := range statuses {
		if k != "503" && k != "error" {
			t.Errorf("%d writes answered %s during shutdown, want 2xx or 503", n, k)
		}
	}
	rep := checkFeed(t, b.pgURL, room, l, subs, 30*time.Second)
	t.Logf("acknowledged %d, unacknowledged %d %v, committed %d, events checked %d", rep.Acked, rep.Failed, statuses, rep.Committed, rep.Checked)
	if s := a.stderr(); !contains(s, "msg=stopped") {
		t.Errorf("A did not log its orderly stop")
	}
}
