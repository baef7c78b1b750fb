package sse

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/internal/testenv"
)

// memSource is a Source over an in-memory history, like the embedded log:
// record adds events to it, and publish also delivers them to the hub.
type memSource struct {
	hub       *Hub
	followErr error
	reads     atomic.Int64 // calls of EventsAfter

	mu      sync.Mutex
	events  map[string][]roomfeed.Event // per room, seq i+1 at index i
	trimmed map[string]int64            // events at or below are no longer retained
}

func newMemSource(hub *Hub) *memSource {
	return &memSource{hub: hub, events: map[string][]roomfeed.Event{}, trimmed: map[string]int64{}}
}

func (s *memSource) Follow(context.Context, string) error { return s.followErr }

func (s *memSource) EventsAfter(_ context.Context, room string, after int64, limit int) ([]roomfeed.Event, error) {
	s.reads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if after < s.trimmed[room] {
		return nil, roomfeed.ErrTrimmed
	}
	evs := s.events[room]
	end := min(int(after)+limit, len(evs))
	if int(after) >= end {
		return nil, nil
	}
	return append([]roomfeed.Event(nil), evs[after:end]...), nil
}

func (s *memSource) Head(_ context.Context, room string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int64(len(s.events[room])), nil
}

// add records one message in room's history, with pad in its data, without
// delivering it.
func (s *memSource) add(room, pad string) roomfeed.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq := int64(len(s.events[room]) + 1)
	data := `{"id":"` + strconv.FormatInt(seq, 10) + `","room":"` + room + `"`
	if pad != "" {
		data += `,"pad":"` + pad + `"`
	}
	ev := roomfeed.Event{Room: room, Seq: seq, Type: "tick", Data: []byte(data + "}")}
	s.events[room] = append(s.events[room], ev)
	return ev
}

// record adds n messages to room's history without delivering them.
func (s *memSource) record(room string, n int) {
	for range n {
		s.add(room, "")
	}
}

// publish records one message and delivers it.
func (s *memSource) publish(room, pad string) roomfeed.Event {
	ev := s.add(room, pad)
	s.hub.Deliver(ev)
	return ev
}

func (s *memSource) trim(room string, upTo int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trimmed[room] = upTo
}

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu        sync.Mutex
	replayed  int
	delivered int
	writes    int // EventsDelivered calls: writes of live events
	ended     []string
	reads     map[string]int // source reads by kind; joined ones as "joined " + kind
	waiting   int            // streams waiting for a read now
	admitted  int            // streams admitted to catch up now
	refused   int
}

func (r *recorder) CatchUpRead(kind string, joined bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reads == nil {
		r.reads = map[string]int{}
	}
	if joined {
		kind = "joined " + kind
	}
	r.reads[kind]++
}

func (r *recorder) CatchUpWaiting(delta int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waiting += delta
}

func (r *recorder) CatchUpAdmitted(delta int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.admitted += delta
}

func (r *recorder) CatchUpRefused() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refused++
}

// catchUp returns what the recorder was told of the catch-up.
func (r *recorder) catchUp() (reads map[string]int, waiting, admitted, refused int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.reads), r.waiting, r.admitted, r.refused
}

func (r *recorder) EventsReplayed(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.replayed += n
}

func (r *recorder) EventsDelivered(n int, _ time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.delivered += n
	r.writes++
}

// liveWrites returns the number of writes of live events so far.
func (r *recorder) liveWrites() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writes
}

func (r *recorder) StreamEnded(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ended = append(r.ended, reason)
}

func (r *recorder) counts() (replayed, delivered int, ended []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.replayed, r.delivered, append([]string(nil), r.ended...)
}

// testEngine is an engine over a memSource, serving GET /{room} with the
// cursor in Last-Event-ID and a token expiry in ?expires_in= on a loopback
// server: plain HTTP/1.1 (the pump takes streams over) or HTTPS with
// HTTP/2 (each stream served by its request's goroutine).
type testEngine struct {
	*Engine
	hub  *Hub
	src  *memSource
	obs  *recorder
	logs *testenv.SyncBuffer
	ts   *httptest.Server
}

// paths are the two ways a stream is served.
var paths = []struct {
	name string
	tls  bool
}{{"pumped", false}, {"solo-h2", true}}

func newTestEngine(t testing.TB, cfg Config, buffer int, tls bool) *testEngine {
	t.Helper()
	hub := NewHub(buffer)
	te := &testEngine{hub: hub, src: newMemSource(hub), obs: &recorder{}, logs: &testenv.SyncBuffer{}}
	te.Engine = New(hub, te.src, cfg, te.obs, slog.New(slog.NewTextHandler(te.logs, nil)))
	te.ts = httptest.NewUnstartedServer(http.HandlerFunc(te.serve))
	if tls {
		te.ts.EnableHTTP2 = true
		te.ts.StartTLS()
	} else {
		te.ts.Start()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		te.Close(ctx)
		if ctx.Err() != nil {
			t.Error("Close did not return within 10s")
		}
		te.ts.Close()
	})
	return te
}

func (te *testEngine) serve(w http.ResponseWriter, r *http.Request) {
	room := strings.TrimPrefix(r.URL.Path, "/")
	req := Request{Rooms: []string{room}, Cursors: map[string]int64{}, Path: r.URL.Path, Remote: r.RemoteAddr}
	if raw := r.Header.Get("Last-Event-ID"); raw != "" {
		cur, err := ParseCursor(raw)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req.Cursors[room] = cur
	}
	if d, err := time.ParseDuration(r.URL.Query().Get("expires_in")); err == nil {
		req.Expires = time.Now().Add(d)
	}
	st, err := te.Open(r.Context(), req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	st.Serve(w, r)
}

// lineStream is a response body read line by line.
type lineStream struct {
	resp  *http.Response
	lines chan string
}

// open GETs the stream of room, from cursor ("" = live).
func (te *testEngine) open(t testing.TB, target, cursor string) *lineStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, te.ts.URL+target, nil)
	if cursor != "" {
		req.Header.Set("Last-Event-ID", cursor)
	}
	resp, err := te.ts.Client().Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		t.Fatalf("GET %s: got status %d, want 200", target, resp.StatusCode)
	}
	ls := &lineStream{resp: resp, lines: make(chan string, 1<<16)}
	go func() {
		defer close(ls.lines)
		br := bufio.NewReader(resp.Body)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			ls.lines <- strings.TrimRight(l, "\n")
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	return ls
}

// next returns the next line; ok is false at the end of the stream.
func (ls *lineStream) next(t testing.TB) (line string, ok bool) {
	t.Helper()
	select {
	case l, ok := <-ls.lines:
		return l, ok
	case <-time.After(10 * time.Second):
		t.Fatal("no line within 10s")
		return "", false
	}
}

// expect reads the next lines and checks they are want.
func (ls *lineStream) expect(t testing.TB, want ...string) {
	t.Helper()
	for _, w := range want {
		if got, ok := ls.next(t); got != w || !ok {
			t.Fatalf("got line %q (open %v), want %q", got, ok, w)
		}
	}
}

// until reads lines until one starting with prefix.
func (ls *lineStream) until(t testing.TB, prefix string) string {
	t.Helper()
	for {
		l, ok := ls.next(t)
		if !ok {
			t.Fatalf("the stream ended before a line starting with %q", prefix)
		}
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
}

// ended reports whether the stream ends (after whatever lines are left).
func (ls *lineStream) ended(t testing.TB) bool {
	t.Helper()
	for {
		if _, ok := ls.next(t); !ok {
			return true
		}
	}
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestEngineReplayThenLive: on both paths, the stream starts with the retry
// hint and the comment saying where it starts, replays what follows the
// cursor, goes live without a gap or a duplicate, and ends at Close with a
// "stream ended" line and the observer told.
func TestEngineReplayThenLive(t *testing.T) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			te := newTestEngine(t, Config{}, 64, p.tls)
			te.src.record("r", 3)
			s := te.open(t, "/r", "1")
			if got, want := s.resp.Close, !p.tls; got != want { // Connection: close
				t.Errorf("Connection: close is %v, want %v", got, want)
			}
			if got, want := s.resp.ProtoMajor, map[bool]int{false: 1, true: 2}[p.tls]; got != want {
				t.Errorf("got HTTP/%d, want HTTP/%d", got, want)
			}
			if ct := s.resp.Header.Get("Content-Type"); ct != "text/event-stream" {
				t.Errorf("Content-Type: got %q, want text/event-stream", ct)
			}
			s.expect(t, "retry: 2000", "", ": roomfeed r from 1", "",
				"id: 2", "event: tick", `data: {"id":"2","room":"r"}`, "",
				"id: 3", "event: tick", `data: {"id":"3","room":"r"}`, "")
			te.src.publish("r", "")
			te.hub.Deliver(roomfeed.Event{Room: "r", Type: "presence.joined", Data: []byte(`{}`)})
			s.expect(t, "id: 4", "event: tick", `data: {"id":"4","room":"r"}`, "",
				"event: presence.joined", "data: {}", "")

			te.Close(t.Context())
			if !s.ended(t) {
				t.Fatal("the stream went on after Close")
			}
			eventually(t, "the stream to end", func() bool { _, _, ended := te.obs.counts(); return len(ended) == 1 })
			replayed, delivered, ended := te.obs.counts()
			if replayed != 2 || delivered != 1 || ended[0] != "shutdown" {
				t.Errorf("observer: got %d replayed, %d delivered, ended %v; want 2, 1, [shutdown]", replayed, delivered, ended)
			}
			if logs := te.logs.String(); !strings.Contains(logs, `msg="stream ended" path=/r reason=shutdown`) {
				t.Errorf("log: got %q, want a stream ended line", logs)
			}
		})
	}
}

// TestEngineHeartbeatAndExpiry: an idle stream gets pings; at the token's
// expiry it gets auth_expired, without an id, and ends.
func TestEngineHeartbeatAndExpiry(t *testing.T) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			te := newTestEngine(t, Config{Heartbeat: 50 * time.Millisecond}, 64, p.tls)
			s := te.open(t, "/r?expires_in=600ms", "")
			s.expect(t, "retry: 2000", "", ": roomfeed r from 0", "")
			s.expect(t, ": ping", "")
			s.expect(t, ": ping", "")
			s.until(t, "event: auth_expired")
			s.expect(t, `data: {"reason":"token_expired","message":"the token expired; fetch a new one and resume from the last event id"}`, "")
			if !s.ended(t) {
				t.Fatal("the stream went on after auth_expired")
			}
			eventually(t, "the stream to end", func() bool { _, _, ended := te.obs.counts(); return len(ended) == 1 })
			if _, _, ended := te.obs.counts(); ended[0] != "auth_expired" {
				t.Errorf("ended: got %v, want [auth_expired]", ended)
			}
		})
	}
}

// TestEngineResetsTrimmedCursor: a cursor older than the history gets a
// reset carrying the head as its id, then live events.
func TestEngineResetsTrimmedCursor(t *testing.T) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			te := newTestEngine(t, Config{}, 64, p.tls)
			te.src.record("r", 10)
			te.src.trim("r", 8)
			s := te.open(t, "/r", "3")
			s.expect(t, "retry: 2000", "", ": roomfeed r from 3", "",
				"id: 10", "event: reset", `data: {"room":"r","cursor":"10","reason":"history_trimmed"}`, "")
			te.src.publish("r", "")
			s.expect(t, "id: 11")
		})
	}
}

// TestEngineFillsHoles: a live event above a hole is sent after the
// missing events, read from the source; a hole the source cannot fill ends
// the stream with an error event.
func TestEngineFillsHoles(t *testing.T) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			te := newTestEngine(t, Config{ReplayPage: 2}, 64, p.tls)
			s := te.open(t, "/r", "")
			s.until(t, ": roomfeed r from 0")
			// Nothing to replay: what comes is live.
			te.src.record("r", 4)
			te.src.publish("r", "")
			for seq := 1; seq <= 5; seq++ {
				if got, want := s.until(t, "id: "), "id: "+strconv.Itoa(seq); got != want {
					t.Fatalf("got %q, want %q", got, want)
				}
			}
			// The observer hears of a live batch after its write returns,
			// so the client may read it first.
			eventually(t, "the live event counted", func() bool { _, delivered, _ := te.obs.counts(); return delivered > 0 })
			if replayed, delivered, _ := te.obs.counts(); replayed != 4 || delivered != 1 {
				t.Errorf("got %d replayed, %d delivered; want 4, 1", replayed, delivered)
			}

			te.hub.Deliver(roomfeed.Event{Room: "r", Seq: 9, Type: "tick", Data: []byte(`{}`)})
			s.until(t, "event: error")
			if !s.ended(t) {
				t.Fatal("the stream went on after the error event")
			}
			eventually(t, "the stream to end", func() bool { _, _, ended := te.obs.counts(); return len(ended) == 1 })
			if _, _, ended := te.obs.counts(); ended[0] != "error" {
				t.Errorf("ended: got %v, want [error]", ended)
			}
			if logs := te.logs.String(); !strings.Contains(logs, "events 6..8 missing from the log") {
				t.Errorf("log: got %q, want the stream failed line", logs)
			}
		})
	}
}

// TestEngineOpenErrors: what Open refuses, before any response.
func TestEngineOpenErrors(t *testing.T) {
	te := newTestEngine(t, Config{}, 64, false)
	te.src.record("r", 2)
	_, err := te.Open(t.Context(), Request{Rooms: []string{"r"}, Cursors: map[string]int64{"r": 3}})
	var ahead *CursorAheadError
	if !errors.As(err, &ahead) || ahead.Room != "r" || ahead.Cursor != 3 || ahead.Head != 2 {
		t.Errorf("cursor ahead: got %v, want a CursorAheadError for r, 3 > 2", err)
	}
	te.src.followErr = errors.New("log down")
	if _, err := te.Open(t.Context(), Request{Rooms: []string{"r"}}); !errors.Is(err, te.src.followErr) {
		t.Errorf("follow failed: got %v, want the source's error", err)
	}
	if n := te.hub.Subscribers(); n != 0 {
		t.Errorf("got %d subscribers after refused opens, want 0", n)
	}
	te.src.followErr = nil
	st, err := te.Open(t.Context(), Request{Rooms: []string{"r"}})
	if err != nil {
		t.Fatal(err)
	}
	released := false
	st.OnEnd(func() { released = true })
	st.Close()
	if !released || te.hub.Subscribers() != 0 {
		t.Errorf("Close: got released %v, %d subscribers; want true, 0", released, te.hub.Subscribers())
	}
	te.Close(t.Context())
	if _, err := te.Open(t.Context(), Request{Rooms: []string{"r"}}); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: got %v, want ErrClosed", err)
	}
}
