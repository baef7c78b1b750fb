package faults

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/testenv"
)

// TestStuckSubscriberBeside100Healthy opens a feed that never reads next
// to 100 healthy subscribers on the same node (10 in the stuck client's room,
// 90 in another) and writes 32 KiB events into the stuck client's room until
// the kernel buffers are full: the node must disconnect the stuck client
// (its buffer fills or a write deadline passes), the healthy ones must keep
// receiving promptly, and the stuck client, once it reads again and
// reconnects with Last-Event-ID, must get every event exactly once.
func TestStuckSubscriberBeside100Healthy(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	b := newBackend(t)
	heavy, light := testenv.UniqueName("heavy"), testenv.UniqueName("light")
	a := startNode(t, "A", b.args("--subscriber-buffer", "64", "--stream-write-timeout", "1s")...)
	var heavySubs, lightSubs []*subscriber
	for i := range 100 {
		room, list := light, &lightSubs
		if i < 10 {
			room, list = heavy, &heavySubs
		}
		*list = append(*list, startSubscriber(t, room+"#"+itoa(i), room, func(int) *node { return a }))
	}
	eventually(t, 20*time.Second, "100 healthy subscribers connected", func() error {
		for _, s := range append(heavySubs, lightSubs...) {
			if _, c, _ := s.stats(); c == 0 {
				return errNotYet
			}
		}
		return nil
	})

	// The stuck client: nobody reads the body.
	stuck := newSubscriber("stuck", heavy, func(int) *node { return a })
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, a.URL()+"/rooms/"+heavy+"/events", nil)
	req.Header.Set("Last-Event-ID", "0")
	resp, err := stuck.hc.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("stuck client: %v %v", resp, err)
	}
	defer resp.Body.Close()
	stuckEnded := func() bool {
		for _, line := range strings.Split(a.stderr(), "\n") {
			if strings.Contains(line, `msg="stream ended"`) && strings.Contains(line, "path=/rooms/"+heavy+"/events ") {
				return true // the only heavy-room stream that ends is the stuck one
			}
		}
		return false
	}

	hc := newClient(t, 10*time.Second)
	l := newLedger()
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	lightDone := make(chan time.Duration)
	go func() { // the light room: small writes, delivery latency sampled
		var worst time.Duration
		for i := 0; ctx.Err() == nil; i++ {
			op := "light-" + itoa(i)
			r := putElement(ctx, hc, a.URL(), light, "e"+itoa(i%10), op, `{}`)
			if ctx.Err() != nil {
				break
			}
			l.record(light, op, r)
			if r.acked() && i%20 == 0 {
				start := time.Now()
				waitCaughtUp(t, lightSubs, r.Seq, 10*time.Second)
				worst = max(worst, time.Since(start))
			}
			time.Sleep(5 * time.Millisecond)
		}
		lightDone <- worst
	}()
	pad := `{"pad":"` + strings.Repeat("x", 32<<10-16) + `"}`
	writes := 0
	for ; writes < 800 && !stuckEnded(); writes++ {
		op := "heavy-" + itoa(writes)
		r := putElement(t.Context(), hc, a.URL(), heavy, "e"+itoa(writes%10), op, pad)
		l.record(heavy, op, r)
		if !r.acked() {
			t.Fatalf("write %d: %d %s %v", writes, r.Status, r.Body, r.Err)
		}
	}
	eventually(t, 10*time.Second, "the stuck client disconnected", func() error {
		if !stuckEnded() {
			return fmt.Errorf("still connected after %d writes of 32 KiB", writes)
		}
		return nil
	})
	stop()
	worst := <-lightDone
	t.Logf("stuck client disconnected after %d writes of 32 KiB; worst delivery to the 90 light-room subscribers: %v",
		writes, worst.Round(time.Millisecond))
	if worst > 2*time.Second {
		t.Errorf("healthy subscribers lagged %v behind a write, want well under 2s", worst)
	}

	// The stuck client reads what it was sent, sees the end, and resumes.
	ended := make(chan struct{})
	go func() {
		stuck.read(resp.Body, func() {})
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Fatalf("the stuck client's stream did not end (it has %d events)", stuck.lastSeq())
	}
	t.Logf("stuck client had %d of %d events on its first stream; resuming", stuck.lastSeq(), writes)
	stuck.start(t)
	for _, c := range []struct {
		room string
		subs []*subscriber
	}{{heavy, append(heavySubs, stuck)}, {light, lightSubs}} {
		rep := checkFeed(t, b.pgURL, c.room, l, c.subs, 30*time.Second)
		t.Logf("room %s: acknowledged %d, events checked %d", c.room, rep.Acked, rep.Checked)
	}
}
