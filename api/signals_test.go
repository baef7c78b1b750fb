package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/feed/redis"
	"github.com/roomfeed/roomfeed/internal/ssetest"
	"github.com/roomfeed/roomfeed/internal/testenv"
	"github.com/roomfeed/roomfeed/repo"
	"github.com/roomfeed/roomfeed/sse"
)

// signal posts a signal to room and returns the answer.
func signal(t *testing.T, base, room, body string, headers ...string) response {
	t.Helper()
	return do(t, http.MethodPost, base+"/rooms/"+room+"/signals", body, headers...)
}

// signalAnswer checks a 202 answer to a signal: the signal's JSON, with its
// room, type, data and person, and no Event-ID (it has no place in history).
func signalAnswer(t *testing.T, r response, room, typ, data, person string) {
	t.Helper()
	mustStatus(t, r, http.StatusAccepted)
	if id := r.Header.Get("Event-ID"); id != "" {
		t.Errorf("got Event-ID %q, want none", id)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("got Content-Type %q, want JSON", ct)
	}
	var got struct {
		Room, Type, Person, At string
		Data                   json.RawMessage
	}
	if err := json.Unmarshal(r.Body, &got); err != nil {
		t.Fatalf("answer %s: %v", r.Body, err)
	}
	if got.Room != room || got.Type != typ || string(got.Data) != data || got.Person != person {
		t.Errorf("got %s, want room %s, type %s, data %s, person %q", r.Body, room, typ, data, person)
	}
	if _, err := time.Parse(time.RFC3339Nano, got.At); err != nil {
		t.Errorf("at %q: %v", got.At, err)
	}
}

// nextSignal reads the next event of s and checks it is the signal whose
// JSON is answer, without an id.
func nextSignal(t *testing.T, s *ssetest.Stream, typ string, answer []byte) {
	t.Helper()
	ev := s.MustNext(t, 5*time.Second)
	if ev.ID != "" || ev.Type != typ || ev.Data != string(answer) {
		t.Fatalf("got id %q event %s data %s; want no id, event %s, data %s", ev.ID, ev.Type, ev.Data, typ, answer)
	}
}

// nextEvent reads the next event of s and checks its id and type.
func nextEvent(t *testing.T, s *ssetest.Stream, id, typ string) {
	t.Helper()
	if ev := s.MustNext(t, 5*time.Second); ev.ID != id || ev.Type != typ {
		t.Fatalf("got id %q event %s (%s), want id %s event %s", ev.ID, ev.Type, ev.Data, id, typ)
	}
}

// TestSignals: a signal reaches the room's subscribers on single and
// multiplexed feeds at once, framed without an id line, and takes no seq:
// the ids around it follow each other, and it is in no replay.
func TestSignals(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{})
		raw := openRawBody(t, ts.URL+"/rooms/s1/events")
		single := ssetest.Open(t, ts.URL+"/rooms/s1/events", "")
		multi := ssetest.Open(t, ts.URL+"/events?room=s1&room=s2", "")
		// A signal is not ordered with the room's events (it does not wait
		// for a write's publish): each step waits for the previous one.
		chat := func(id string) {
			t.Helper()
			mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/s1/messages", `{"event":"chat","data":"hi"}`), http.StatusCreated)
			nextEvent(t, single, id, "chat")
			nextEvent(t, multi, "s1:"+id+",s2:0", "chat")
		}

		chat("1")
		raw.until(t, "id: 1") // raw has chat 1, from its replay or live
		rawLines := func(n int) []string {
			var lines []string
			for len(lines) < n {
				if l := raw.line(t); !strings.HasPrefix(l, ":") { // pings
					lines = append(lines, l)
				}
			}
			return lines
		}
		rawLines(3) // chat 1: event, data, end
		r := signal(t, ts.URL, "s1", `{"event":"cursor","data":{ "x": 1 }}`)
		signalAnswer(t, r, "s1", "cursor", `{"x":1}`, "")
		nextSignal(t, single, "cursor", r.Body)
		nextSignal(t, multi, "cursor", r.Body)
		chat("2")

		// On the wire: the signal's block has no id line, so a client's
		// last event id stays 1 until the next message, which is 2.
		got := rawLines(4)
		if want := []string{"event: cursor", "data: " + string(r.Body), "", "id: 2"}; !slices.Equal(got, want) {
			t.Fatalf("raw stream after id 1: got %q, want %q", got, want)
		}

		// The person is ?client= in open mode.
		r = do(t, http.MethodPost, ts.URL+"/rooms/s1/signals?client=carol", `{"event":"typing"}`)
		signalAnswer(t, r, "s1", "typing", "null", "carol")
		nextSignal(t, single, "typing", r.Body)
		r = do(t, http.MethodPost, ts.URL+"/rooms/s1/signals?client=bad%20name", `{"event":"typing"}`)
		mustStatus(t, r, http.StatusBadRequest)
		if code := r.errorCode(t); code != "bad_client" {
			t.Errorf("got code %q, want bad_client", code)
		}

		// Replays, from the header or the query, hold the messages only.
		for _, replay := range []struct {
			s   *ssetest.Stream
			ids []string
		}{
			{ssetest.Open(t, ts.URL+"/rooms/s1/events", "0"), []string{"1", "2"}},
			{ssetest.Open(t, ts.URL+"/rooms/s1/events?last_event_id=1", ""), []string{"2"}},
			{ssetest.Open(t, ts.URL+"/events?room=s1&room=s2", "s1:0,s2:0"), []string{"s1:1,s2:0", "s1:2,s2:0"}},
		} {
			for _, id := range replay.ids {
				nextEvent(t, replay.s, id, "chat")
			}
			noEvent(t, replay.s, 200*time.Millisecond)
		}
		if head, err := ts.Store.Head(t.Context(), "s1"); err != nil || head != 2 {
			t.Errorf("head of s1: got %d (%v), want 2: signals are never recorded", head, err)
		}
	})
}

// openRawBody GETs a feed through an http.Client and returns its body as
// sent, after transfer decoding (chunked over TLS), past the opening
// comment. Reads fail once the test's 20 s are up.
func openRawBody(t *testing.T, url string) *rawStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got %d, want 200", url, resp.StatusCode)
	}
	rs := &rawStream{br: bufio.NewReader(resp.Body)}
	rs.until(t, ": roomfeed ")
	return rs
}

// TestSignalInput: a signal's body follows a message's rules, with data of
// at most 4 KiB; nothing refused reaches a subscriber.
func TestSignalInput(t *testing.T) {
	ts := newServer(t, backends[0], serverOpts{})
	sub := ssetest.Open(t, ts.URL+"/rooms/s1/events", "")
	str := func(n int) string { return `"` + strings.Repeat("x", n-2) + `"` }
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"upper-case name", `{"event":"Cursor","data":1}`, 400, "bad_event"},
		{"reserved name", `{"event":"reset","data":1}`, 400, "bad_event"},
		{"presence name", `{"event":"presence.joined","data":1}`, 400, "bad_event"},
		{"no name", `{"data":1}`, 400, "bad_event"},
		{"truncated JSON", `{"event":"cursor","data":`, 400, "bad_json"},
		{"unknown field", `{"event":"cursor","data":1,"id":"9"}`, 400, "bad_json"},
		{"escaped NUL", `{"event":"cursor","data":"\u0000"}`, 400, "bad_data"},
		{"huge number", `{"event":"cursor","data":1e400}`, 400, "bad_data"},
		{"data of 4 KiB + 1", `{"event":"cursor","data":` + str(4<<10+1) + `}`, 413, "data_too_large"},
	} {
		r := signal(t, ts.URL, "s1", tc.body)
		if r.Status != tc.status {
			t.Errorf("%s: got %d %s, want %d", tc.name, r.Status, r.Body, tc.status)
		} else if code := r.errorCode(t); code != tc.code {
			t.Errorf("%s: got code %q, want %q", tc.name, code, tc.code)
		}
	}
	r := do(t, http.MethodPost, ts.URL+"/rooms/s1/signals", `{"event":"cursor"}`, "Content-Type", "text/plain")
	mustStatus(t, r, http.StatusUnsupportedMediaType)
	r = do(t, http.MethodPost, ts.URL+"/rooms/s1/signals", `{"event":"cursor"}`, "Idempotency-Key", strings.Repeat("k", 129))
	if r.Status != http.StatusBadRequest || r.errorCode(t) != "bad_idempotency_key" {
		t.Errorf("a signal with a 129-character key: got %d %s, want 400 bad_idempotency_key", r.Status, r.Body)
	}

	r = signal(t, ts.URL, "s1", `{"event":"draft","data":`+str(4<<10)+`}`)
	signalAnswer(t, r, "s1", "draft", str(4<<10), "")
	nextSignal(t, sub, "draft", r.Body)
	noEvent(t, sub, 200*time.Millisecond)
}

// TestSignalAuthAndRate: a signal needs a write grant, names the token's
// subject, and has its own token bucket per token, apart from the writes'.
func TestSignalAuthAndRate(t *testing.T) {
	// A token every 20 s: no bucket refills while the test runs.
	ts, _ := newAuthServer(t, backends[0], api.Config{Limits: api.Limits{WriteRate: 0.05, WriteBurst: 2, SignalRate: 0.05, SignalBurst: 3}})
	alice := hs256(t, grant("alice", nil, []string{"w1"}))
	reader := hs256(t, grant("rita", []string{"w1"}, nil))
	body := `{"event":"cursor","data":{"x":1}}`

	r := signal(t, ts.URL, "w1", body)
	mustStatus(t, r, http.StatusUnauthorized)
	if r.Header.Get("WWW-Authenticate") == "" || r.errorCode(t) != "unauthorized" {
		t.Errorf("got %s %v, want unauthorized with WWW-Authenticate", r.Body, r.Header)
	}
	r = signal(t, ts.URL, "w1", body, bearer(reader)...)
	mustStatus(t, r, http.StatusForbidden)
	if code := r.errorCode(t); code != "forbidden" {
		t.Errorf("read grant only: got code %q, want forbidden", code)
	}
	mustStatus(t, signal(t, ts.URL, "w2", body, bearer(alice)...), http.StatusForbidden)

	sub := ssetest.Open(t, ts.URL+"/rooms/w1/events?access_token="+reader, "")
	r = do(t, http.MethodPost, ts.URL+"/rooms/w1/signals?client=mallory", body, bearer(alice)...)
	signalAnswer(t, r, "w1", "cursor", `{"x":1}`, "alice") // the token's subject, whatever ?client= says
	nextSignal(t, sub, "cursor", r.Body)

	for range 2 {
		mustStatus(t, signal(t, ts.URL, "w1", body, bearer(alice)...), http.StatusAccepted)
	}
	r = signal(t, ts.URL, "w1", body, bearer(alice)...)
	mustStatus(t, r, http.StatusTooManyRequests)
	if code := r.errorCode(t); code != "rate_limited" {
		t.Errorf("got code %q, want rate_limited", code)
	}
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 2 || ra > 20 {
		t.Errorf("got Retry-After %q, want the seconds until the next token (at most 20)", r.Header.Get("Retry-After"))
	}
	// The writes' bucket is untouched by signals, and takes none of them.
	both := hs256(t, grant("alice", []string{"w1"}, []string{"w1"}))
	for range 2 {
		mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/w1/messages", `{"event":"chat","data":1}`, bearer(both)...), http.StatusCreated)
	}
	mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/w1/messages", `{"event":"chat","data":1}`, bearer(both)...), http.StatusTooManyRequests)
	mustStatus(t, signal(t, ts.URL, "w1", body, bearer(both)...), http.StatusAccepted)
}

// TestSignalRateOpenMode: without tokens, signals are limited per address
// (writes are not limited at all).
func TestSignalRateOpenMode(t *testing.T) {
	ts := newServer(t, backends[0], serverOpts{cfg: api.Config{Limits: api.Limits{WriteRate: 1, WriteBurst: 1, SignalRate: 0.05, SignalBurst: 2}}})
	for range 2 {
		mustStatus(t, signal(t, ts.URL, "w1", `{"event":"cursor"}`), http.StatusAccepted)
	}
	r := signal(t, ts.URL, "w1", `{"event":"cursor"}`)
	mustStatus(t, r, http.StatusTooManyRequests)
	if r.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	for range 3 {
		mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/w1/messages", `{"event":"chat","data":1}`), http.StatusCreated)
	}
}

// TestSignalLogDown: a signal the log cannot carry is 503 feed_unavailable
// with Retry-After, and lost.
func TestSignalLogDown(t *testing.T) {
	addr := testenv.FreeAddr(t)
	down := backend{name: "sqlite, redis down", open: func(t *testing.T, hub *sse.Hub, _ int64) (*repo.Store, eventLog) {
		store, _ := openSQLite(t, hub, 0)
		client := goredis.NewClient(&goredis.Options{Addr: addr})
		t.Cleanup(func() { client.Close() })
		return store, redis.New(client, hub, store, redis.Options{})
	}}
	ts := newServer(t, down, serverOpts{})
	r := signal(t, ts.URL, "w1", `{"event":"cursor"}`)
	mustStatus(t, r, http.StatusServiceUnavailable)
	if code := r.errorCode(t); code != "feed_unavailable" || r.Header.Get("Retry-After") == "" {
		t.Errorf("got code %q, Retry-After %q; want feed_unavailable with Retry-After", code, r.Header.Get("Retry-After"))
	}
}

// TestSignalsAcrossNodes runs two servers over one PostgreSQL and one
// Redis: a signal sent through either reaches the room's subscribers on
// both, on single and multiplexed feeds, without an id.
func TestSignalsAcrossNodes(t *testing.T) {
	shared, _, _ := sharedRedis(t)
	a := newServer(t, shared, serverOpts{})
	b := newServer(t, shared, serverOpts{})
	streams := []*ssetest.Stream{
		ssetest.Open(t, a.URL+"/rooms/x1/events", ""),
		ssetest.Open(t, b.URL+"/rooms/x1/events", ""),
		ssetest.Open(t, b.URL+"/events?room=x2&room=x1", ""),
	}
	for _, via := range []*testServer{a, b} {
		r := do(t, http.MethodPost, via.URL+"/rooms/x1/signals?client=ann", `{"event":"draft","data":{"text":"hel"}}`)
		signalAnswer(t, r, "x1", "draft", `{"text":"hel"}`, "ann")
		for _, s := range streams {
			nextSignal(t, s, "draft", r.Body)
		}
	}
	for _, s := range streams {
		noEvent(t, s, 200*time.Millisecond)
	}
}
