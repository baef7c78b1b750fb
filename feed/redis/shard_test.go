package redis

import (
	"errors"
	"fmt"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/internal/testenv"
	"github.com/roomfeed/roomfeed/sse"
)

// TestClusterShardDown kills the master that serves the slot of the notify
// channel (and one room) in a Cluster without replicas, so that it stays
// down, and checks that the rooms of the other shards go on: their
// Publishes succeed while the dead shard's are in flight, and the node
// delivers them though its subscription lived on the dead master and its
// poll is a minute away (its own announcements, unheard, make it read). A
// room of the dead shard can still be followed and replayed (from the
// history), so a feed of several rooms opens.
func TestClusterShardDown(t *testing.T) {
	cl := testenv.StartRedisCluster(t, 3, 0, time.Second, "--cluster-require-full-coverage", "no")
	addrs := make([]string, len(cl.Nodes))
	for i, n := range cl.Nodes {
		addrs[i] = n.Addr
	}
	client := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { client.Close() })
	opts := Options{Prefix: testenv.UniqueName("rftest:") + ":", Block: time.Minute}
	hist := newTestHistory()
	b := newTestNode(t, client, hist, opts, 64)
	startLoop(t, "B.Run", b.log.Run)

	ctx := t.Context()
	victim, _, err := cl.MasterOf(ctx, addrs[0], keySlot(opts.Prefix+"notify"))
	if err != nil {
		t.Fatal(err)
	}
	var dead, deadLater string // deadLater is followed after the kill
	live := map[*testenv.RedisNode]string{}
	for i := 0; dead == "" || deadLater == "" || len(live) < 2; i++ {
		room := fmt.Sprint("r", i)
		m, _, err := cl.MasterOf(ctx, addrs[0], keySlot(b.log.streamKey(room)))
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case m == victim && dead == "":
			dead = room
		case m == victim && deadLater == "":
			deadLater = room
		case m != victim && live[m] == "":
			live[m] = room
		}
	}
	rooms := []string{dead}
	for _, room := range live {
		rooms = append(rooms, room)
	}
	subs := map[string]*sse.Subscription{}
	for _, room := range rooms {
		sub, err := follow(ctx, b.log, room)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sub.Close)
		subs[room] = sub
		if err := b.log.Publish(ctx, hist.commit(room)); err != nil {
			t.Fatal(err)
		}
		checkRun(t, room+" before", receive(t, sub, 1, 10*time.Second), 1, 1)
	}

	victim.Kill()
	deadErr := make(chan error, 1)
	go func() { deadErr <- b.log.Publish(ctx, hist.commit(dead)) }()
	for _, room := range live {
		for range 3 {
			if err := b.log.Publish(ctx, hist.commit(room)); err != nil {
				t.Fatalf("Publish to %s, on a live shard: %v", room, err)
			}
		}
	}
	for _, room := range live {
		checkRun(t, room+" after", receive(t, subs[room], 3, 10*time.Second), 2, 4)
	}
	if err := <-deadErr; !errors.Is(err, feed.ErrUnavailable) {
		t.Errorf("Publish to %s, on the dead shard: got %v, want feed.ErrUnavailable", dead, err)
	}

	hist.commitN(deadLater, 2)
	sub, err := follow(ctx, b.log, deadLater)
	if err != nil {
		t.Fatalf("follow %s, on the dead shard: %v", deadLater, err)
	}
	t.Cleanup(sub.Close)
	evs, err := b.log.EventsAfter(ctx, dead, 0, 0)
	if err != nil {
		t.Fatalf("EventsAfter on the dead shard: %v", err)
	}
	seqs := make([]int64, len(evs))
	for i, ev := range evs {
		seqs[i] = ev.Seq
	}
	checkRun(t, "EventsAfter on the dead shard", seqs, 1, 2)
}
