package redis

import (
	"context"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed/internal/testenv"
)

// TestKilledConnections publishes and follows a room while this test's
// Redis connections (and only those: they are found by name) are killed at
// random. Publishes are retried by the writers, as the relay would; every
// follower must still see a contiguous sequence.
func TestKilledConnections(t *testing.T) {
	t.Parallel()
	admin, opts, hist := setup(t)
	ro, err := goredis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatal(err)
	}
	name := testenv.UniqueName("rftest-kill-")
	ro.ClientName = name
	client := goredis.NewClient(ro)
	t.Cleanup(func() { client.Close() })
	opts.MaxLen = 500 // small, so a reader set back by the kills may fall behind the window
	const total, subscribers = 3000, 20
	a := newTestNode(t, client, hist, opts, 16)
	b := newTestNode(t, client, hist, opts, total)
	startLoop(t, "B.Run", b.log.Run)
	startLoop(t, "killer", func(ctx context.Context) error {
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Duration(5+rand.IntN(30)) * time.Millisecond):
			}
			list, err := admin.ClientList(ctx).Result()
			if err != nil {
				continue
			}
			for line := range strings.Lines(list) {
				if (!strings.Contains(line, " name="+name+" ") && !strings.Contains(line, " name="+xreaderOf(b.log).name+" ")) || rand.IntN(3) != 0 {
					continue
				}
				for f := range strings.FieldsSeq(line) {
					if id, ok := strings.CutPrefix(f, "id="); ok {
						admin.Do(ctx, "CLIENT", "KILL", "ID", id)
					}
				}
			}
		}
	})

	var writers sync.WaitGroup
	for w := range 2 {
		writers.Go(func() {
			l := []*Log{a.log, b.log}[w]
			for {
				ev, ok := hist.commitUpTo("r1", total)
				if !ok {
					return
				}
				for l.Publish(t.Context(), ev) != nil && t.Context().Err() == nil {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	var readers sync.WaitGroup
	var jumps, retries int
	var jmu sync.Mutex
	for i := range subscribers {
		readers.Go(func() {
			time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
			cursor := max(0, hist.head("r1")-int64(rand.IntN(800)))
			for try := 0; ; try++ {
				n, err := followFrom(t.Context(), b.log, "r1", cursor, total)
				jmu.Lock()
				jumps += n
				jmu.Unlock()
				if err == nil || try == 50 || !connError(err) {
					if err != nil {
						t.Errorf("subscriber %d from %d: %v", i, cursor, err)
					}
					return
				}
				jmu.Lock()
				retries++
				jmu.Unlock()
			}
		})
	}
	writers.Wait()
	readers.Wait()
	t.Logf("followers filled %d jumps, retried %d times after a killed connection", jumps, retries)
}

// connError reports an error of a killed connection, after which the
// follower starts again from its cursor, as an SSE client reconnects.
func connError(err error) bool {
	s := err.Error()
	return strings.Contains(s, "EOF") || strings.Contains(s, "reset") || strings.Contains(s, "broken pipe") || strings.Contains(s, "closed")
}
