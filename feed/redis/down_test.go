package redis

import (
	"errors"
	"net"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/internal/testenv"
)

// TestPublishPausesWhileUnreachable: a Publish that cannot reach Redis
// fails with feed.ErrUnavailable, and for publishPause the following ones
// fail at once instead of each waiting on dial retries (the relay republishes
// them); a Subscribe or a Signal that cannot reach Redis fails with
// feed.ErrUnavailable, and so does a presence list.
func TestPublishPausesWhileUnreachable(t *testing.T) {
	addr := testenv.FreeAddr(t)
	client := goredis.NewClient(&goredis.Options{Addr: addr})
	defer client.Close()
	hist := newTestHistory()
	n := newTestNode(t, client, hist, Options{Prefix: "rfdown:"}, 16)

	ev := hist.commit("r")
	if err := n.log.Publish(t.Context(), ev); !errors.Is(err, feed.ErrUnavailable) {
		t.Fatalf("first publish: got %v, want feed.ErrUnavailable", err)
	}
	start := time.Now()
	for range 20 {
		if err := n.log.Publish(t.Context(), hist.commit("r")); !errors.Is(err, feed.ErrUnavailable) {
			t.Fatalf("publish while paused: got %v, want feed.ErrUnavailable", err)
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("20 publishes while paused took %v, want them to fail at once", d)
	}
	// After the pause one Publish probes Redis, within half the pause.
	time.Sleep(publishPause)
	start = time.Now()
	if err := n.log.Publish(t.Context(), hist.commit("r")); !errors.Is(err, feed.ErrUnavailable) {
		t.Fatalf("probing publish: got %v, want feed.ErrUnavailable", err)
	}
	if d := time.Since(start); d > publishPause {
		t.Errorf("the probing publish took %v, want at most about %v", d, publishPause/2)
	}
	if _, err := follow(t.Context(), n.log, "r"); !errors.Is(err, feed.ErrUnavailable) {
		t.Errorf("subscribe: got %v, want feed.ErrUnavailable", err)
	}
	if err := n.log.Signal(t.Context(), signalOf(t, "r", "cursor", "1")); !errors.Is(err, feed.ErrUnavailable) {
		t.Errorf("signal: got %v, want feed.ErrUnavailable", err)
	}
	// The soak found this one answered 500: who is in a room, Redis down.
	if _, err := NewPresence(client, n.hub, PresenceOptions{Prefix: "rfdown:"}).List(t.Context(), "r"); !errors.Is(err, feed.ErrUnavailable) {
		t.Errorf("presence list: got %v, want feed.ErrUnavailable", err)
	}
}

func TestUnreachableClassification(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{goredis.ErrClosed, true},
		{goredis.ErrPoolTimeout, true},
		{errors.New("history failed"), false},
	} {
		if got := unreachable(tt.err); got != tt.want {
			t.Errorf("unreachable(%v): got %v, want %v", tt.err, got, tt.want)
		}
	}
}
