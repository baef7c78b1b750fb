package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed/internal/ssetest"
	"github.com/roomfeed/roomfeed/internal/testenv"
)

// TestRedisClientSelection: REDIS_URL picks a single client or a cluster
// client, and bad cluster URLs are refused at configuration time.
func TestRedisClientSelection(t *testing.T) {
	for _, tc := range []struct {
		url     string
		cluster bool
		err     string
	}{
		{url: "redis://127.0.0.1:6379/0"},
		{url: "rediss://u:p@redis.example:6380/2"},
		{url: "redis://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002", cluster: true},
		{url: "redis://u:p@h1:7000,h2:7001/0?dial_timeout=2s", cluster: true},
		{url: "redis-cluster://h1:7000", cluster: true},
		{url: "rediss-cluster://h1:7000?addr=h2:7001", cluster: true},
		{url: "redis://h1:7000,h2:7001/3", err: "only database 0"},
		{url: "redis://,h1:7000", err: "empty host"},
		{url: "redis://h1:7000,", err: "invalid port"},
		{url: "redis-cluster://h1:7000?nonsense=1", err: "unexpected option"},
		{url: "http://h1:7000", err: "must start with"},
	} {
		c, err := newRedisClient(tc.url, true)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: got error %v, want one containing %q", tc.url, err, tc.err)
			}
			if _, err := parseConfig([]string{"--redis-url", tc.url}, func(string) string { return "" }, &strings.Builder{}); err == nil {
				t.Errorf("parseConfig --redis-url %s: got nil, want an error", tc.url)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		_, isCluster := c.(*redis.ClusterClient)
		if isCluster != tc.cluster {
			t.Errorf("%s: got %T, want cluster=%v", tc.url, c, tc.cluster)
		}
		c.Close()
	}
}

// TestRedisClientTimeouts: both clients honour their calls' context
// deadlines, and a Cluster client dials and reads within 1 s unless
// REDIS_URL says otherwise.
func TestRedisClientTimeouts(t *testing.T) {
	single, err := newRedisClient("redis://127.0.0.1:6379/0", true)
	if err != nil {
		t.Fatal(err)
	}
	defer single.Close()
	if !single.(*redis.Client).Options().ContextTimeoutEnabled {
		t.Errorf("single Redis: got ContextTimeoutEnabled false, want true")
	}
	for _, tc := range []struct {
		url        string
		dial, read time.Duration
		retries    int
	}{
		{url: "redis-cluster://h1:7000", dial: time.Second, read: time.Second, retries: 2},
		{url: "redis-cluster://h1:7000?dial_timeout=3s&read_timeout=4s&dialer_retries=5", dial: 3 * time.Second, read: 4 * time.Second, retries: 5},
	} {
		c, err := newRedisClient(tc.url, true)
		if err != nil {
			t.Fatalf("%s: %v", tc.url, err)
		}
		o := c.(*redis.ClusterClient).Options()
		if !o.ContextTimeoutEnabled || o.DialTimeout != tc.dial || o.ReadTimeout != tc.read || o.DialerRetries != tc.retries {
			t.Errorf("%s: got ContextTimeoutEnabled %v, DialTimeout %v, ReadTimeout %v, DialerRetries %d; want true, %v, %v, %d",
				tc.url, o.ContextTimeoutEnabled, o.DialTimeout, o.ReadTimeout, o.DialerRetries, tc.dial, tc.read, tc.retries)
		}
		c.Close()
	}
}

// TestClusterTwoNodes runs two nodes on PostgreSQL and a three-master Redis
// Cluster named by REDIS_URL: writes through node A reach subscribers on
// node B, in order and exactly once, presence and signals cross the nodes,
// and the rooms' streams are spread over every shard.
func TestClusterTwoNodes(t *testing.T) {
	addrs := testenv.RedisCluster(t, 3)
	prefix := testenv.UniqueName("rftest:") + ":"
	args := []string{"--database-url", testenv.PostgresURL(t), "--redis-url", testenv.RedisClusterURL(addrs),
		"--redis-prefix", prefix, "--relay-interval", "200ms", "--max-streams-per-ip", "1000"}
	a := startNode(t, args...)
	b := startNode(t, args...)

	const rooms, perRoom, writers = 200, 2, 20
	room := func(i int) string { return fmt.Sprintf("c%03d", i) }
	subs := make([]*ssetest.Stream, rooms)
	for i := range subs {
		subs[i] = ssetest.Open(t, b.URL+"/rooms/"+room(i)+"/events", "0")
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := w; i < rooms; i += writers {
				for j := range perRoom {
					put(t, a.URL, room(i), fmt.Sprintf("e%d", j), "from A")
				}
			}
		})
	}
	wg.Wait()
	for i, s := range subs {
		for _, ev := range expect(t, s, 0, perRoom) {
			if !strings.Contains(ev.Data, "from A") {
				t.Fatalf("room %s: got %q, want the write made on node A", room(i), ev.Data)
			}
		}
	}
	// And the other way round, live.
	subA := ssetest.Open(t, a.URL+"/rooms/"+room(0)+"/events", "")
	seq := put(t, b.URL, room(0), "back", "from B")
	expect(t, subA, seq-1, seq)
	expect(t, subs[0], seq-1, seq)

	// Presence (single-key scripts and PUBLISH) works across the nodes.
	alice := ssetest.Open(t, a.URL+"/rooms/pres/events?client=alice", "")
	nextPresence(t, alice, "alice")
	ssetest.Open(t, b.URL+"/rooms/pres/events?client=bob", "")
	nextPresence(t, alice, "bob")
	// So do signals (PUBLISH reaches the subscribers of every shard).
	sendSignal(t, b.URL, "pres", "cursor", alice)

	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer c.Close()
	var mu sync.Mutex
	shards := 0
	err := c.ForEachMaster(t.Context(), func(ctx context.Context, m *redis.Client) error {
		keys, _, err := m.Scan(ctx, 0, prefix+"{c*", 1000).Result()
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return fmt.Errorf("master %s holds no room stream", m.Options().Addr)
		}
		mu.Lock()
		shards++
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if shards != 3 {
		t.Fatalf("checked %d masters, want 3", shards)
	}
}

// nextPresence reads s until a presence.joined event and checks it names who.
func nextPresence(t *testing.T, s *ssetest.Stream, who string) {
	t.Helper()
	for {
		ev := s.MustNext(t, 5*time.Second)
		if ev.Type != "presence.joined" {
			continue
		}
		if !strings.Contains(ev.Data, `"`+who+`"`) {
			t.Fatalf("got %s %s, want %s joined", ev.Type, ev.Data, who)
		}
		return
	}
}
