package faults

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/testenv"
)

// Leak bounds of the soak: where node B's figures must be, after the faults
// and the catch-up, against where they were after the warm-up (the same
// subscribers connected both times).
const (
	soakGoroutines = 40       // more goroutines
	soakFDs        = 20       // more open file descriptors
	soakHeap       = 32 << 20 // more heap in use, bytes
	soakRSS        = 64 << 20 // more resident memory, bytes
)

// soakDuration is how long the faults go on: ROOMFEED_SOAK (a Go duration;
// `make soak` sets 10m), else 30s.
func soakDuration(tb testing.TB) time.Duration {
	tb.Helper()
	v := os.Getenv("ROOMFEED_SOAK")
	if v == "" {
		return 30 * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		tb.Fatalf("ROOMFEED_SOAK=%q: want a positive Go duration such as 10m", v)
	}
	return d
}

// TestSoak is a day of churn in minutes: two nodes over PostgreSQL and
// Redis (both through proxies), writers on four rooms through both nodes,
// subscribers that say who they are (presence) and resume with
// Last-Event-ID, some of them through a proxy in front of node B, and a
// random fault every 2–4 s: node A SIGKILLed and restarted, Redis cut,
// PostgreSQL cut, or the link to B made bad (latency, 64 KB/s, resets).
// Afterwards every subscriber holds every room's history exactly once, in
// order, and node B (never killed) ends within the soak bounds of its
// goroutines, file descriptors, heap and RSS: no leak.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	dur := soakDuration(t)
	b := newBackend(t)
	pgURL, pgProxy := proxiedPostgres(t, b.pgURL)
	redisProxy := startProxy(t, hostOf(t, b.redisURL))
	args := []string{"--database-url", pgURL, "--redis-url", "redis://" + redisProxy.Addr() + "/0",
		"--redis-prefix", b.prefix, "--relay-interval", "200ms", "--presence-grace", "300ms"}
	a := startNode(t, "A", args...)
	nb := startNode(t, "B", args...)
	link := startProxy(t, hostOf(t, nb.URL()))
	linked := &node{tb: t, name: "B~link"}
	linkURL := "http://" + link.Addr()
	linked.url.Store(&linkURL)

	nodes := []*node{a, nb}
	rooms := make([]string, 4)
	var subs []*subscriber
	for i := range rooms {
		rooms[i] = testenv.UniqueName("soak")
		for j, pick := range []func(int) *node{
			func(k int) *node { return nodes[k%2] },
			func(int) *node { return nb },
			func(int) *node { return linked },
		} {
			s := newSubscriber(fmt.Sprintf("s%d.%d", i, j), rooms[i], pick)
			s.query = "client=p" + strconv.Itoa(j)
			s.start(t)
			subs = append(subs, s)
		}
	}
	hc := newClient(t, 10*time.Second)
	l := newLedger()
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var wg sync.WaitGroup
	for i, room := range rooms {
		wg.Go(func() {
			writer(ctx, hc, l, "w"+strconv.Itoa(i), room, func(j int) *node { return nodes[(i+j)%2] }, 10*time.Millisecond)
		})
	}
	wg.Go(func() { pollPresence(ctx, hc, nb, rooms) })

	time.Sleep(5 * time.Second) // warm-up: connections, pools, buffers
	start := nodeFigures(t, hc, nb)
	t.Logf("B after the warm-up: %v", start)

	faults := map[string]int{}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for end := time.Now().Add(dur); time.Now().Before(end); {
		name, undo := soakFault(rng, a, pgProxy, redisProxy, link)
		faults[name]++
		time.Sleep(time.Duration(1000+rng.IntN(1000)) * time.Millisecond)
		undo()
		time.Sleep(time.Duration(1000+rng.IntN(1000)) * time.Millisecond)
	}
	stop()
	wg.Wait()
	t.Logf("faults: %v", faults)

	checked := 0
	for _, room := range rooms {
		var roomSubs []*subscriber
		for _, s := range subs {
			if s.room == room {
				roomSubs = append(roomSubs, s)
			}
		}
		checked += checkFeed(t, b.pgURL, room, l, roomSubs, 60*time.Second).Checked
	}
	acks, failed, statuses := l.snapshot()
	t.Logf("acknowledged %d, unacknowledged %d %v; events checked %d", len(acks), failed, statuses, checked)

	var end figures
	eventually(t, 30*time.Second, "node B back within the leak bounds", func() error {
		end = nodeFigures(t, hc, nb)
		return end.within(start)
	})
	t.Logf("B at the end: %v", end)
}

// soakFault starts one fault at random and returns its name and the
// function that ends it.
func soakFault(rng *rand.Rand, a *node, pg, redis, link *testenv.Proxy) (string, func()) {
	switch rng.IntN(4) {
	case 0:
		a.kill()
		return "kill A", a.start
	case 1:
		redis.SetCut(true)
		return "cut Redis", func() { redis.SetCut(false) }
	case 2:
		pg.SetCut(true)
		return "cut PostgreSQL", func() { pg.SetCut(false) }
	default:
		link.SetBadLink(testenv.BadLink{Latency: 30 * time.Millisecond, Jitter: 30 * time.Millisecond,
			BytesPerSec: 64 << 10, ResetEvery: time.Second})
		return "bad link to B", func() { link.SetBadLink(testenv.BadLink{}) }
	}
}

// pollPresence asks B who is in the rooms until ctx is done.
func pollPresence(ctx context.Context, hc *http.Client, n *node, rooms []string) {
	for i := 0; ctx.Err() == nil; i++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.URL()+"/rooms/"+rooms[i%len(rooms)]+"/presence", nil)
		if err != nil {
			return
		}
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// figures are what a node's /metrics says of its resources.
type figures struct {
	goroutines, fds, heap, rss float64
}

func (f figures) String() string {
	return fmt.Sprintf("%.0f goroutines, %.0f fds, heap %.1f MiB, RSS %.1f MiB", f.goroutines, f.fds, f.heap/(1<<20), f.rss/(1<<20))
}

// within reports whether f is within the soak bounds of start.
func (f figures) within(start figures) error {
	var over []string
	if f.goroutines > start.goroutines+soakGoroutines {
		over = append(over, fmt.Sprintf("goroutines %.0f > %.0f+%d", f.goroutines, start.goroutines, soakGoroutines))
	}
	if f.fds > start.fds+soakFDs {
		over = append(over, fmt.Sprintf("fds %.0f > %.0f+%d", f.fds, start.fds, soakFDs))
	}
	if f.heap > start.heap+soakHeap {
		over = append(over, fmt.Sprintf("heap %.0f > %.0f+%d", f.heap, start.heap, soakHeap))
	}
	if f.rss > start.rss+soakRSS {
		over = append(over, fmt.Sprintf("RSS %.0f > %.0f+%d", f.rss, start.rss, soakRSS))
	}
	if over != nil {
		return fmt.Errorf("%s", strings.Join(over, "; "))
	}
	return nil
}

// nodeFigures reads n's goroutines, open fds, heap in use and RSS from its
// /metrics.
func nodeFigures(tb testing.TB, hc *http.Client, n *node) figures {
	tb.Helper()
	resp, err := hc.Get(n.URL() + "/metrics")
	if err != nil {
		tb.Fatalf("metrics of %s: %v", n.name, err)
	}
	defer resp.Body.Close()
	want := map[string]*float64{}
	var f figures
	want["go_goroutines"], want["process_open_fds"] = &f.goroutines, &f.fds
	want["go_memstats_heap_inuse_bytes"], want["process_resident_memory_bytes"] = &f.heap, &f.rss
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	found := 0
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if p := want[name]; ok && p != nil {
			if *p, err = strconv.ParseFloat(value, 64); err != nil {
				tb.Fatalf("metrics of %s: %s: %v", n.name, sc.Text(), err)
			}
			found++
		}
	}
	if found != len(want) {
		tb.Fatalf("metrics of %s: found %d of %d figures", n.name, found, len(want))
	}
	return f
}
