package redis

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed/internal/testenv"
)

// xrangeCounter is a go-redis hook that counts the XRANGE commands sent per
// key, in pipelines too.
type xrangeCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

func (x *xrangeCounter) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (x *xrangeCounter) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		x.count(cmd)
		return next(ctx, cmd)
	}
}

func (x *xrangeCounter) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		for _, cmd := range cmds {
			x.count(cmd)
		}
		return next(ctx, cmds)
	}
}

func (x *xrangeCounter) count(cmd goredis.Cmder) {
	if args := cmd.Args(); len(args) > 1 && strings.EqualFold(cmd.Name(), "xrange") {
		x.mu.Lock()
		x.counts[args[1].(string)]++
		x.mu.Unlock()
	}
}

func (x *xrangeCounter) get(key string) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.counts[key]
}

// TestClusterPollsOnlySubscribedRooms checks that the Cluster reader's poll
// reads the rooms that have subscribers on the node, and stops reading a
// room once its last subscriber left.
func TestClusterPollsOnlySubscribedRooms(t *testing.T) {
	addrs := testenv.RedisCluster(t, 3)
	c := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { c.Close() })
	counter := &xrangeCounter{counts: map[string]int{}}
	c.OnNewNode(func(n *goredis.Client) { n.AddHook(counter) })
	c.AddHook(counter)
	opts := Options{Prefix: testenv.UniqueName("rftest:") + ":", Block: 100 * time.Millisecond}
	t.Cleanup(func() {
		_ = c.ForEachMaster(context.Background(), func(ctx context.Context, m *goredis.Client) error {
			testenv.CleanRedis(t, m, opts.Prefix)
			return nil
		})
	})
	n := newTestNode(t, c, newTestHistory(), opts, 16)
	startLoop(t, "Run", n.log.Run)

	kept, left := "kept", "left"
	subKept, err := follow(t.Context(), n.log, kept)
	if err != nil {
		t.Fatal(err)
	}
	defer subKept.Close()
	subLeft, err := follow(t.Context(), n.log, left)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "both rooms polled", func() bool {
		return counter.get(n.log.streamKey(kept)) >= 3 && counter.get(n.log.streamKey(left)) >= 3
	})
	subLeft.Close()
	time.Sleep(3 * opts.Block) // the reader notices the room has no subscriber left
	before, keptBefore := counter.get(n.log.streamKey(left)), counter.get(n.log.streamKey(kept))
	time.Sleep(10 * opts.Block)
	if got := counter.get(n.log.streamKey(left)); got != before {
		t.Errorf("the room without subscribers was read %d more times, want 0", got-before)
	}
	if got := counter.get(n.log.streamKey(kept)); got < keptBefore+3 {
		t.Errorf("the room with a subscriber was read %d more times in 10 polls, want at least 3", got-keptBefore)
	}
}
