package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/client"
	"github.com/roomfeed/roomfeed/internal/testenv"
)

// mixedWriter writes to room until ctx is done, through the node pick
// returns, recording every outcome: in turn a character, a place, a chat
// message and the deletion of that character, each with an Op-ID.
func mixedWriter(ctx context.Context, c *http.Client, l *ledger, name, room string, pick func(i int) *node) {
	for i := 0; ctx.Err() == nil; i++ {
		base := pick(i).URL() + "/rooms/" + room
		op := name + "-" + strconv.Itoa(i)
		character := name + "-c" + strconv.Itoa(i/4%3)
		var r writeResult
		switch i % 4 {
		case 0:
			r = do(ctx, c, http.MethodPut, base+"/elements/"+character, op, "application/json", `{"kind":"character","data":{"i":`+strconv.Itoa(i)+`}}`)
		case 1:
			r = do(ctx, c, http.MethodPut, base+"/elements/"+name+"-p"+strconv.Itoa(i%3), op, "application/json", `{"kind":"place","data":{"i":`+strconv.Itoa(i)+`}}`)
		case 2:
			r = do(ctx, c, http.MethodPost, base+"/messages", op, "application/json", `{"event":"chat","data":{"i":`+strconv.Itoa(i)+`}}`)
		case 3:
			r = do(ctx, c, http.MethodDelete, base+"/elements/"+character, op, "", "")
		}
		if ctx.Err() != nil && !r.acked() {
			return // cancelled by the test: not a failure of the service
		}
		l.record(room, op, r)
		if !r.acked() {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// matcher is the checker's own reading of a filter query: whether a
// committed event (its payload) passes it, by the README's rules.
func matcher(query string) func(payload string) bool {
	q, _ := url.ParseQuery(query)
	in := func(param, v string) bool { return len(q[param]) == 0 || slices.Contains(q[param], v) }
	return func(payload string) bool {
		var p struct {
			Type    string
			Element *struct{ ID, Kind string }
		}
		_ = json.Unmarshal([]byte(payload), &p)
		if !in("type", p.Type) {
			return false
		}
		if len(q["kind"]) == 0 && len(q["element"]) == 0 {
			return true
		}
		return p.Element != nil && in("kind", p.Element.Kind) && in("element", p.Element.ID)
	}
}

// rotating sends each request to the next of nodes, as a client behind a
// load balancer reconnecting elsewhere does.
type rotating struct {
	nodes []*node
	n     atomic.Int64
}

func (r *rotating) RoundTrip(req *http.Request) (*http.Response, error) {
	u, _ := url.Parse(r.nodes[int(r.n.Add(1))%len(r.nodes)].URL())
	req = req.Clone(req.Context())
	req.URL.Scheme, req.URL.Host, req.Host = u.Scheme, u.Host, u.Host
	return http.DefaultTransport.RoundTrip(req)
}

// clientSub follows rooms with the Go client's filtered subscription and
// keeps what it delivers, per room, and where each room's cursor is.
type clientSub struct {
	name, query string
	mu          sync.Mutex
	events      map[string][]feedEvent
	cursor      client.Cursor
	violations  []string
}

func startClientSub(tb testing.TB, name, query string, nodes []*node, rooms ...string) *clientSub {
	q, _ := url.ParseQuery(query)
	cs := &clientSub{name: name, query: query, events: map[string][]feedEvent{}, cursor: client.Cursor{}}
	c := &client.Client{Server: "http://roomfeed.invalid", HTTPClient: &http.Client{Transport: &rotating{nodes: nodes}},
		MaxBackoff: 300 * time.Millisecond, IdleTimeout: 5 * time.Second}
	follow(tb, c, client.Filter{Types: q["type"], Kinds: q["kind"], Elements: q["element"]}, rooms, cs.take)
	return cs
}

// follow subscribes c to rooms from seq 0 with filter f and hands every
// message to take, from a goroutine that ends with the test.
func follow(tb testing.TB, c *client.Client, f client.Filter, rooms []string, take func(client.Message)) {
	start := client.Cursor{}
	for _, r := range rooms {
		start[r] = 0
	}
	sub := c.SubscribeFiltered(start, f, rooms...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := sub.Next(ctx)
			if err != nil {
				return
			}
			take(m)
		}
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
		sub.Close()
	})
}

func (cs *clientSub) take(m client.Message) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	switch m := m.(type) {
	case client.Event:
		if m.Seq <= cs.cursor[m.Room] {
			cs.violations = append(cs.violations, fmt.Sprintf("room %s: event %d after %d", m.Room, m.Seq, cs.cursor[m.Room]))
		}
		cs.cursor[m.Room] = m.Seq
		cs.events[m.Room] = append(cs.events[m.Room], feedEvent{Seq: m.Seq, Type: m.Type, Data: string(m.Data)})
	case client.Progress:
		for r, seq := range m.Cursor {
			cs.cursor[r] = seq
		}
	case client.Reset:
		cs.violations = append(cs.violations, fmt.Sprintf("reset of %s", m.Room))
	}
}

// check waits until every room's cursor reaches its head in SQL, then
// compares what was delivered with the filtered history.
func (cs *clientSub) check(tb testing.TB, pgURL string, rooms []string, timeout time.Duration) int {
	tb.Helper()
	checked := 0
	want := matcher(cs.query)
	for _, r := range rooms {
		hist := sqlHistory(tb, pgURL, r)
		eventually(tb, timeout, cs.name+" caught up in "+r, func() error {
			cs.mu.Lock()
			defer cs.mu.Unlock()
			if at := cs.cursor[r]; at < int64(len(hist)) {
				return fmt.Errorf("at %d of %d", at, len(hist))
			}
			return nil
		})
		cs.mu.Lock()
		got := slices.Clone(cs.events[r])
		cs.mu.Unlock()
		var exp []sqlEvent
		for _, e := range hist {
			if want(e.Payload) {
				exp = append(exp, e)
			}
		}
		if len(got) != len(exp) {
			tb.Errorf("%s: room %s: got %d events, want %d", cs.name, r, len(got), len(exp))
		}
		for i := range min(len(got), len(exp)) {
			if got[i].Seq != exp[i].Seq || got[i].Data != exp[i].Payload {
				tb.Errorf("%s: room %s: event %d is %d %s, want %d %s", cs.name, r, i, got[i].Seq, got[i].Data, exp[i].Seq, exp[i].Payload)
				break
			}
			checked++
		}
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, v := range cs.violations {
		tb.Errorf("%s: %s", cs.name, v)
	}
	return checked
}

// pager reads room's history in JSON pages through the node pick returns,
// retrying failed requests, until stop is closed and it has read up to the
// head, and returns the events' data.
func pager(ctx context.Context, hc *http.Client, room, query string, pick func(i int) *node, stop <-chan struct{}) ([]string, error) {
	var out []string
	after, head, failures := int64(0), int64(-1), 0
	for i := 0; ; i++ {
		if head == after {
			select {
			case <-stop:
				return out, nil
			case <-time.After(20 * time.Millisecond):
			}
		}
		var p struct {
			Events     []json.RawMessage
			Next, Head string
		}
		u := pick(i).URL() + "/rooms/" + room + "/events?format=json&limit=50&after=" + strconv.FormatInt(after, 10) + query
		status, err := getJSON(ctx, hc, u, &p)
		if err != nil || status != http.StatusOK {
			if failures++; failures > 200 || ctx.Err() != nil {
				return out, fmt.Errorf("page after %d: %d %v", after, status, err)
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		next, _ := strconv.ParseInt(p.Next, 10, 64)
		head, _ = strconv.ParseInt(p.Head, 10, 64)
		if next < after || next > head {
			return out, fmt.Errorf("page after %d: next %s, head %s", after, p.Next, p.Head)
		}
		for _, ev := range p.Events {
			out = append(out, string(ev))
		}
		after = next
	}
}

// settled waits until room's SQL history stops growing.
func settled(tb testing.TB, pgURL, room string) {
	n := len(sqlHistory(tb, pgURL, room))
	for range 50 {
		time.Sleep(200 * time.Millisecond)
		m := len(sqlHistory(tb, pgURL, room))
		if m == n {
			return
		}
		n = m
	}
}

// TestFilteredFeedsAcrossNodeKill: filtered subscribers, single-room over
// raw SSE and multiplexed through the Go client, follow rooms through two
// nodes while writers go on through a third; the node several of them are
// on is killed with SIGKILL, and they reconnect to the other with their
// last id (or bare id). Each must receive exactly the committed events its
// filter passes, once, in order, byte for byte; JSON pagers reading through
// the same nodes must read exactly the events table.
func TestFilteredFeedsAcrossNodeKill(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	b := newBackend(t)
	room, other := testenv.UniqueName("filt"), testenv.UniqueName("filt2")
	a := startNode(t, "A", b.args()...)
	nb := startNode(t, "B", b.args()...)
	nc := startNode(t, "C", b.args()...)
	bc := func(i int) *node { return []*node{nb, nc}[i%2] }

	queries := []string{"kind=character", "type=chat&type=element.deleted", "element=wa-c0&element=wb-p1&type=element.updated&type=element.created"}
	var subs []*subscriber
	for i, q := range queries {
		s := newSubscriber(fmt.Sprintf("sub%d@B|C ?%s", i+1, q), room, bc)
		s.query, s.want = q, matcher(q)
		s.start(t)
		subs = append(subs, s)
	}
	multi := startClientSub(t, "client@B|C ?kind=place", "kind=place", []*node{nb, nc}, room, other)

	hc := newClient(t, 10*time.Second)
	l := newLedger()
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var writers, pagers sync.WaitGroup
	for _, name := range []string{"wa", "wb"} {
		writers.Go(func() { mixedWriter(ctx, hc, l, name, room, func(int) *node { return a }) })
	}
	writers.Go(func() { mixedWriter(ctx, hc, l, "wo", other, func(int) *node { return a }) })
	stopPaging := make(chan struct{})
	pages := make([][]string, 2)
	pageErrs := make([]error, 2)
	for i, q := range []string{"", "&kind=character"} {
		pagers.Go(func() { pages[i], pageErrs[i] = pager(t.Context(), hc, room, q, bc, stopPaging) })
	}

	time.Sleep(1500 * time.Millisecond)
	nb.kill() // every subscriber on B reconnects to C with its last id
	acksAtKill, _, _ := l.snapshot()
	time.Sleep(1500 * time.Millisecond)
	nb.start()
	time.Sleep(1000 * time.Millisecond)
	nc.kill() // and now those on C go back to B
	time.Sleep(1000 * time.Millisecond)
	nc.start()
	time.Sleep(500 * time.Millisecond)
	stop()
	writers.Wait()
	settled(t, b.pgURL, room) // a write its client gave up on may still commit
	close(stopPaging)         // the pagers read up to the final head, then stop
	pagers.Wait()

	rep := checkFeed(t, b.pgURL, room, l, subs, 30*time.Second)
	checked := multi.check(t, b.pgURL, []string{room, other}, 30*time.Second)
	hist := sqlHistory(t, b.pgURL, room)
	for i, q := range []string{"", "kind=character"} {
		want := matcher(q)
		var exp []string
		for _, e := range hist {
			if want(e.Payload) {
				exp = append(exp, e.Payload)
			}
		}
		if pageErrs[i] != nil || !slices.Equal(pages[i], exp) {
			t.Errorf("pager ?%s: got %d events (%v), want the %d of the events table", q, len(pages[i]), pageErrs[i], len(exp))
		}
	}
	for _, s := range subs {
		if _, connects, _ := s.stats(); connects < 2 {
			t.Errorf("%s connected %d times, want a reconnection at least", s.name, connects)
		}
	}
	t.Logf("acknowledged %d (%d at the kill), committed %d; filtered events checked: %d over %d SSE subscribers, %d through the client; pages: %d and %d events",
		rep.Acked, len(acksAtKill), rep.Committed, rep.Checked, len(subs), checked, len(pages[0]), len(pages[1]))
	if rep.Checked < 50 || checked < 20 {
		t.Errorf("too few events checked to mean anything")
	}
}
