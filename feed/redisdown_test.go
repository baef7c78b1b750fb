package feed

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRedisPublishPausesWhileUnreachable: a Publish that cannot reach Redis
// fails with ErrUnavailable, and for redisPublishPause the following ones
// fail at once instead of each waiting on dial retries (the relay republishes
// them); a Subscribe that cannot reach Redis fails with ErrUnavailable.
func TestRedisPublishPausesWhileUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	hist := newRedisHist()
	n := newRedisNode(t, client, hist, RedisOptions{Prefix: "rfdown:"}, 16)

	ev := hist.commit("r")
	if err := n.log.Publish(t.Context(), ev); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("first publish: got %v, want ErrUnavailable", err)
	}
	start := time.Now()
	for range 20 {
		if err := n.log.Publish(t.Context(), hist.commit("r")); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("publish while paused: got %v, want ErrUnavailable", err)
		}
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("20 publishes while paused took %v, want them to fail at once", d)
	}
	// After the pause one Publish probes Redis, within half the pause.
	time.Sleep(redisPublishPause)
	start = time.Now()
	if err := n.log.Publish(t.Context(), hist.commit("r")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("probing publish: got %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > redisPublishPause {
		t.Errorf("the probing publish took %v, want at most about %v", d, redisPublishPause/2)
	}
	if _, err := follow(t.Context(), n.log, "r"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("subscribe: got %v, want ErrUnavailable", err)
	}
}

func TestRedisUnreachableClassification(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{redis.ErrClosed, true},
		{redis.ErrPoolTimeout, true},
		{errors.New("history failed"), false},
	} {
		if got := redisUnreachable(tt.err); got != tt.want {
			t.Errorf("redisUnreachable(%v): got %v, want %v", tt.err, got, tt.want)
		}
	}
}
