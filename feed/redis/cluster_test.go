package redis

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed/internal/testenv"
	"github.com/roomfeed/roomfeed/sse"
)

// TestCluster runs the log on a throwaway three-master Redis Cluster
// (started once, shared by the subtests, which use their own key prefixes).
func TestCluster(t *testing.T) {
	addrs := testenv.RedisCluster(t, 3)
	newClient := func(t *testing.T, name string) *goredis.ClusterClient {
		c := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs, ClientName: name})
		t.Cleanup(func() { c.Close() })
		return c
	}
	setup := func(t *testing.T) (*goredis.ClusterClient, Options, *testHistory) {
		c := newClient(t, testenv.UniqueName("rfa-"))
		opts := Options{Prefix: testenv.UniqueName("rftest:") + ":", Block: 200 * time.Millisecond}
		t.Cleanup(func() {
			_ = c.ForEachMaster(context.Background(), func(ctx context.Context, m *goredis.Client) error {
				testenv.CleanRedis(t, m, opts.Prefix)
				return nil
			})
		})
		return c, opts, newTestHistory()
	}

	t.Run("ManyRoomsAcrossNodes", func(t *testing.T) {
		client, opts, hist := setup(t)
		bName := testenv.UniqueName("rfb-")
		bClient := newClient(t, bName) // node B has its own client, named on every connection
		a := newTestNode(t, client, hist, opts, 16)
		b := newTestNode(t, bClient, hist, opts, 16)
		startLoop(t, "A.Run", a.log.Run)
		startLoop(t, "B.Run", b.log.Run)

		const rooms, perRoom = 200, 5
		room := func(i int) string { return fmt.Sprintf("room%03d", i) }
		subs := subscribeRooms(t, b.log, rooms, room)
		start := time.Now()
		for range perRoom {
			for i := range rooms {
				if err := a.log.Publish(t.Context(), hist.commit(room(i))); err != nil {
					t.Fatal(err)
				}
			}
		}
		for i, sub := range subs {
			checkRun(t, room(i), receive(t, sub, perRoom, 10*time.Second), 1, perRoom)
		}
		t.Logf("%d events over %d rooms delivered across nodes in %v", rooms*perRoom, rooms, time.Since(start))
		time.Sleep(3 * opts.Block) // a few polls: nothing more may arrive
		for i, sub := range subs {
			if msgs := sub.Drain(nil); len(msgs) > 0 {
				t.Fatalf("%s: got extra event %d, want none", room(i), msgs[0].Seq)
			}
		}

		// The streams are spread over every shard, and node B holds a
		// bounded number of connections on each, whatever the rooms.
		var mu sync.Mutex // ForEachMaster calls fn concurrently
		masters := 0
		err := client.ForEachMaster(t.Context(), func(ctx context.Context, m *goredis.Client) error {
			keys, _, err := m.Scan(ctx, 0, opts.Prefix+"{room*", 1000).Result()
			if err != nil {
				return err
			}
			list, err := m.ClientList(ctx).Result()
			if err != nil {
				return err
			}
			conns := strings.Count(list, " name="+bName+" ")
			t.Logf("master %s: %d room streams, %d connections of node B", m.Options().Addr, len(keys), conns)
			if len(keys) == 0 {
				return fmt.Errorf("master %s holds no room stream", m.Options().Addr)
			}
			if conns > 4 {
				return fmt.Errorf("master %s: node B holds %d connections for %d rooms, want at most 4", m.Options().Addr, conns, rooms)
			}
			mu.Lock()
			masters++
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if masters != 3 {
			t.Fatalf("checked %d masters, want 3", masters)
		}
	})

	t.Run("PipelinedAfterScriptFlush", func(t *testing.T) {
		// Publishes made at once share a pipeline that spans the shards;
		// with the script cache flushed (a throwaway cluster), every call
		// falls back to sending the script, and node B is notified.
		client, opts, hist := setup(t)
		a := newTestNode(t, client, hist, opts, 16)
		b := newTestNode(t, newClient(t, "rfb"), hist, opts, 16)
		startLoop(t, "B.Run", b.log.Run)
		const rooms, perRoom = 30, 3
		room := func(i int) string { return fmt.Sprintf("pipe%02d", i) }
		subs := subscribeRooms(t, b.log, rooms, room)
		var batch []*publishReq
		for i := range subs {
			for _, ev := range hist.commitN(room(i), perRoom) {
				batch = append(batch, &publishReq{ev: ev})
			}
		}
		err := client.ForEachMaster(t.Context(), func(ctx context.Context, m *goredis.Client) error {
			return m.ScriptFlush(ctx).Err()
		})
		if err != nil {
			t.Fatal(err)
		}
		a.log.appendPipelined(t.Context(), batch)
		for _, r := range batch {
			if r.err != nil || !r.ok || r.top != perRoom {
				t.Fatalf("%s/%d: got ok=%v top=%d err=%v, want ok=true top=%d", r.ev.Room, r.ev.Seq, r.ok, r.top, r.err, perRoom)
			}
		}
		for i, sub := range subs {
			checkRun(t, room(i), receive(t, sub, perRoom, 10*time.Second), 1, perRoom)
		}
		// With the script loaded again: one pipeline, then one pipeline of
		// notifications.
		batch = batch[:0]
		for i := range rooms {
			batch = append(batch, &publishReq{ev: hist.commit(room(i))})
		}
		a.log.appendPipelined(t.Context(), batch)
		for _, r := range batch {
			if r.err != nil || !r.ok || r.top != perRoom+1 {
				t.Fatalf("%s/%d: got ok=%v top=%d err=%v, want ok=true top=%d", r.ev.Room, r.ev.Seq, r.ok, r.top, r.err, perRoom+1)
			}
		}
		for i, sub := range subs {
			checkRun(t, room(i), receive(t, sub, 1, 10*time.Second), perRoom+1, perRoom+1)
		}
	})

	t.Run("SubscribeThenRange", func(t *testing.T) {
		client, opts, hist := setup(t)
		opts.MaxLen = 200 // so catching up also crosses from the history to Redis
		const total, subscribers = 1500, 12
		a := newTestNode(t, client, hist, opts, 16)
		b := newTestNode(t, newClient(t, "rfb"), hist, opts, total)
		startLoop(t, "B.Run", b.log.Run)
		writeWhileFollowing(t, a, b, hist, total, subscribers, 400, 4, 300*time.Millisecond)
	})

	t.Run("LostNotificationsArePolled", func(t *testing.T) {
		client, opts, hist := setup(t)
		b := newTestNode(t, client, hist, opts, 16)
		startLoop(t, "B.Run", b.log.Run)
		sub, err := follow(t.Context(), b.log, "quiet")
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		time.Sleep(3 * opts.Block) // the reader has read the room and waits
		// Entries added behind the log's back: no notification.
		for _, ev := range hist.commitN("quiet", 3) {
			err := client.XAdd(t.Context(), &goredis.XAddArgs{Stream: b.log.streamKey("quiet"), ID: fmt.Sprintf("%d-0", ev.Seq),
				Values: []string{"t", ev.Type, "d", string(ev.Data)}}).Err()
			if err != nil {
				t.Fatal(err)
			}
		}
		checkRun(t, "polled", receive(t, sub, 3, 10*opts.Block), 1, 3)
	})

	t.Run("RelayAfterStreamLost", func(t *testing.T) {
		client, opts, hist := setup(t)
		a := newTestNode(t, client, hist, opts, 16)
		b := newTestNode(t, newClient(t, "rfb"), hist, opts, 100)
		startLoop(t, "B.Run", b.log.Run)
		sub, err := follow(t.Context(), b.log, "lost")
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		for _, ev := range hist.commitN("lost", 20) {
			if err := a.log.Publish(t.Context(), ev); err != nil {
				t.Fatal(err)
			}
		}
		checkRun(t, "before", receive(t, sub, 20, 5*time.Second), 1, 20)
		if err := client.Del(t.Context(), a.log.streamKey("lost")).Err(); err != nil {
			t.Fatal(err)
		}
		hist.commitN("lost", 10) // committed, publish lost
		startLoop(t, "A.Relay", func(ctx context.Context) error { return a.log.Relay(ctx, hist, relayTick) })
		streamHas(t, a.log, "lost", 1, 30)
		checkRun(t, "after", receive(t, sub, 10, 5*time.Second), 21, 30)
		if v, err := client.Get(t.Context(), opts.Prefix+"epoch").Result(); err != nil || v == "" {
			t.Errorf("epoch key: got %q, %v; want a value", v, err)
		}
	})

	t.Run("SignalsAcrossNodes", func(t *testing.T) {
		client, opts, hist := setup(t)
		a := newTestNode(t, client, hist, opts, 16)
		b := newTestNode(t, newClient(t, "rfb"), hist, opts, 16)
		signalsAcrossNodes(t, client, a, b)
	})

	t.Run("RunStopsPromptly", func(t *testing.T) {
		client, opts, hist := setup(t)
		b := newTestNode(t, client, hist, opts, 16)
		stop := startLoop(t, "Run", b.log.Run)
		sub, err := follow(t.Context(), b.log, "r1")
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Close()
		time.Sleep(100 * time.Millisecond)
		start := time.Now()
		stop()
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Run returned %v after cancel, want promptly", d)
		}
	})
}

// subscribeRooms subscribes to the rooms room(0), ..., room(n-1); the
// subscriptions close when the test ends.
func subscribeRooms(t *testing.T, l *Log, n int, room func(int) string) []*sse.Subscription {
	t.Helper()
	subs := make([]*sse.Subscription, n)
	for i := range subs {
		sub, err := follow(t.Context(), l, room(i))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sub.Close)
		subs[i] = sub
	}
	return subs
}

func TestParseNotification(t *testing.T) {
	for _, tc := range []struct {
		in   string
		top  int64
		room string
		ok   bool
	}{
		{"12 w1", 12, "w1", true},
		{"3 a room with spaces", 3, "a room with spaces", true},
		{"12", 0, "", false},
		{"x w1", 0, "", false},
		{"12 ", 0, "", false},
	} {
		top, room, ok := parseNotification(tc.in)
		if top != tc.top || room != tc.room || ok != tc.ok {
			t.Errorf("parseNotification(%q) = %d, %q, %v; want %d, %q, %v", tc.in, top, room, ok, tc.top, tc.room, tc.ok)
		}
	}
}
