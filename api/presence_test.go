package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/feed/redis"
	"github.com/roomfeed/roomfeed/internal/ssetest"
	"github.com/roomfeed/roomfeed/sse"
)

// nextPresence returns the next presence event on s, failing on anything
// else, and checks it carries no id.
func nextPresence(t *testing.T, s *ssetest.Stream, timeout time.Duration) (typ, who string) {
	t.Helper()
	ev, err := s.Next(timeout)
	if err != nil {
		t.Fatalf("waiting for a presence event: %v", err)
	}
	if !strings.HasPrefix(ev.Type, "presence.") {
		t.Fatalf("got %+v, want a presence event", ev)
	}
	if ev.ID != "" {
		t.Fatalf("presence event with id %q: it would move the client's cursor", ev.ID)
	}
	var d struct{ Room, Person, Type string }
	if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
		t.Fatal(err)
	}
	return ev.Type, d.Person
}

func noEvent(t *testing.T, s *ssetest.Stream, wait time.Duration) {
	t.Helper()
	if ev, err := s.Next(wait); !errors.Is(err, ssetest.ErrTimeout) {
		t.Fatalf("got %+v, %v; want no event", ev, err)
	}
}

func people(t *testing.T, base, room string) []string {
	t.Helper()
	r := do(t, http.MethodGet, base+"/rooms/"+room+"/presence", "")
	mustStatus(t, r, http.StatusOK)
	var body struct{ People []string }
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	return body.People
}

func TestPresenceInProcess(t *testing.T) {
	// bob's quick reconnect below must reach the server within the grace
	// of his closed tab's leave: a dial can take a few hundred ms on a
	// loaded machine.
	const grace = time.Second
	ts := newServer(t, backends[0], serverOpts{presence: func(hub *sse.Hub) api.Presence {
		p := feed.NewMemPresence(hub, grace)
		t.Cleanup(p.Close)
		return p
	}})
	feedURL := ts.URL + "/rooms/p1/events"
	alice := ssetest.Open(t, feedURL+"?client=alice", "")
	if typ, who := nextPresence(t, alice, 2*time.Second); typ != feed.PresenceJoined || who != "alice" {
		t.Fatalf("got %s %s, want alice's own join", typ, who)
	}
	bob1 := ssetest.Open(t, feedURL+"?client=bob", "")
	if typ, who := nextPresence(t, alice, 2*time.Second); typ != feed.PresenceJoined || who != "bob" {
		t.Fatalf("got %s %s, want bob joined", typ, who)
	}
	bob2 := ssetest.Open(t, feedURL+"?client=bob", "") // a second tab: one presence
	noEvent(t, alice, 2*grace)
	if got, want := people(t, ts.URL, "p1"), []string{"alice", "bob"}; !slices.Equal(got, want) {
		t.Errorf("presence: got %v, want %v", got, want)
	}

	// A write in between: presence never moves ids.
	mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/p1/messages", `{"event":"chat","data":"hi"}`), http.StatusCreated)
	if ev := alice.MustNext(t, 2*time.Second); ev.ID != "1" || ev.Type != "chat" {
		t.Fatalf("got %+v, want the chat message with id 1", ev)
	}

	bob1.Close()
	noEvent(t, alice, 2*grace) // bob still has a tab open
	bob2.Close()
	bob3 := ssetest.Open(t, feedURL+"?client=bob", "") // quick reconnect within grace
	noEvent(t, alice, 2*grace)
	bob3.Close()
	if typ, who := nextPresence(t, alice, 5*time.Second); typ != feed.PresenceLeft || who != "bob" {
		t.Fatalf("got %s %s, want bob left", typ, who)
	}
	if got, want := people(t, ts.URL, "p1"), []string{"alice"}; !slices.Equal(got, want) {
		t.Errorf("presence: got %v, want %v", got, want)
	}

	replay := ssetest.Open(t, feedURL, "0")
	if ev := replay.MustNext(t, 2*time.Second); ev.ID != "1" || ev.Type != "chat" {
		t.Fatalf("replay: got %+v, want only the chat message", ev)
	}
	noEvent(t, replay, 200*time.Millisecond)

	r := do(t, http.MethodGet, feedURL+"?client=bad%20name", "")
	mustStatus(t, r, http.StatusBadRequest)
}

// TestPresenceAcrossNodes runs two servers over one Redis: people on either
// node see each other join and leave, and the people of a node that stops
// heartbeating (as a crashed node would) leave within the TTL.
func TestPresenceAcrossNodes(t *testing.T) {
	shared, client, prefix := sharedRedis(t)
	const ttl = 900 * time.Millisecond
	type node struct {
		ts   *testServer
		stop context.CancelFunc
	}
	start := func() node {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		ts := newServer(t, shared, serverOpts{presence: func(hub *sse.Hub) api.Presence {
			p := redis.NewPresence(client, hub, redis.PresenceOptions{Prefix: prefix, Grace: 200 * time.Millisecond, TTL: ttl})
			go func() { _ = p.Run(ctx); close(done) }()
			t.Cleanup(func() { cancel(); <-done })
			return p
		}})
		return node{ts, cancel}
	}
	a, b := start(), start()
	// A node relays only what is published once it listens: bob's join on
	// B reaches alice on A only if A's relay has subscribed.
	channel := prefix + "presence"
	eventually(t, "both nodes listen for presence", func() bool {
		n, err := client.PubSubNumSub(t.Context(), channel).Result()
		if err != nil {
			t.Fatalf("PUBSUB NUMSUB: %v", err)
		}
		return n[channel] == 2
	})

	alice := ssetest.Open(t, a.ts.URL+"/rooms/p2/events?client=alice", "")
	if typ, who := nextPresence(t, alice, 3*time.Second); typ != feed.PresenceJoined || who != "alice" {
		t.Fatalf("got %s %s, want alice's join", typ, who)
	}
	bob := ssetest.Open(t, b.ts.URL+"/rooms/p2/events?client=bob", "")
	if typ, who := nextPresence(t, alice, 3*time.Second); typ != feed.PresenceJoined || who != "bob" {
		t.Fatalf("node A: got %s %s, want bob (on node B) joined", typ, who)
	}
	if typ, who := nextPresence(t, bob, 3*time.Second); typ != feed.PresenceJoined || who != "bob" {
		t.Fatalf("node B: got %s %s, want bob's own join", typ, who)
	}
	if got, want := people(t, b.ts.URL, "p2"), []string{"alice", "bob"}; !slices.Equal(got, want) {
		t.Errorf("presence on B: got %v, want %v", got, want)
	}

	// Node B stops heartbeating with bob connected: bob leaves within the TTL
	// and a heartbeat of node A.
	b.stop()
	start2 := time.Now()
	if typ, who := nextPresence(t, alice, 10*ttl); typ != feed.PresenceLeft || who != "bob" {
		t.Fatalf("got %s %s, want bob left", typ, who)
	}
	t.Logf("a stopped node's person left after %v (TTL %v)", time.Since(start2), ttl)
	if got, want := people(t, a.ts.URL, "p2"), []string{"alice"}; !slices.Equal(got, want) {
		t.Errorf("presence on A: got %v, want %v", got, want)
	}
}
