package api_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/internal/ssetest"
	"github.com/roomfeed/roomfeed/sse"
)

// readUntil reads events from s until one with id `last`, checking that ids
// are contiguous from `from`+1. It returns the number of events read.
func readUntil(t *testing.T, s *ssetest.Stream, from, last int64) int {
	t.Helper()
	want := from + 1
	for want <= last {
		ev, err := s.Next(20 * time.Second)
		if err != nil {
			t.Fatalf("waiting for id %d: %v", want, err)
		}
		seq, err := strconv.ParseInt(ev.ID, 10, 64)
		if err != nil {
			t.Fatalf("event %q has id %q, want a number", ev.Type, ev.ID)
		}
		if seq != want {
			t.Fatalf("got id %d, want %d (gap or duplicate)", seq, want)
		}
		var data map[string]any
		if err := json.Unmarshal([]byte(ev.Data), &data); err != nil {
			t.Fatalf("event %d data %q: %v", seq, ev.Data, err)
		}
		if data["id"] != ev.ID || data["type"] != ev.Type {
			t.Fatalf("event %d: data id %v type %v, want %s %s", seq, data["id"], data["type"], ev.ID, ev.Type)
		}
		want++
	}
	return int(want - from - 1)
}

func TestFeedCurlSession(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{})
		tail := ssetest.Open(t, ts.URL+"/rooms/w1/events", "")
		if ct := tail.Resp.Header.Get("Cache-Control"); ct != "no-cache" {
			t.Errorf("Cache-Control: got %q, want no-cache", ct)
		}
		if got := tail.Resp.Header.Get("X-Accel-Buffering"); got != "no" {
			t.Errorf("X-Accel-Buffering: got %q, want no", got)
		}
		if be.tls && tail.Resp.ProtoMajor != 2 {
			t.Errorf("over TLS: got HTTP/%d, want HTTP/2", tail.Resp.ProtoMajor)
		}
		mustStatus(t, do(t, http.MethodPut, ts.URL+"/rooms/w1/elements/c1", `{"kind":"character","data":{"name":"Aria"}}`, "Op-ID", "op-7"), http.StatusCreated)
		ev := tail.MustNext(t, 5*time.Second)
		if ev.ID != "1" || ev.Type != "element.created" {
			t.Fatalf("got %+v, want id 1 element.created", ev)
		}
		var data struct {
			Room    string           `json:"room"`
			OpID    string           `json:"op_id"`
			Element roomfeed.Element `json:"element"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &data); err != nil {
			t.Fatal(err)
		}
		if data.Room != "w1" || data.OpID != "op-7" || data.Element.ID != "c1" || data.Element.Version != 1 {
			t.Errorf("got %+v, want room w1, op_id op-7, element c1 v1", data)
		}
		mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/w1/messages", `{"event":"chat","data":"line1\nline2\rline3"}`), http.StatusCreated)
		ev = tail.MustNext(t, 5*time.Second)
		if ev.ID != "2" || ev.Type != "chat" || !strings.Contains(ev.Data, `line1\nline2\rline3`) {
			t.Errorf("got %+v, want id 2 chat with escaped line breaks", ev)
		}

		replay := ssetest.Open(t, ts.URL+"/rooms/w1/events", "0")
		if n := readUntil(t, replay, 0, 2); n != 2 {
			t.Errorf("replay: got %d events, want 2", n)
		}
		query := ssetest.Open(t, ts.URL+"/rooms/w1/events?last_event_id=1", "")
		readUntil(t, query, 1, 2)
		header := ssetest.Open(t, ts.URL+"/rooms/w1/events?last_event_id=0", "1-0")
		readUntil(t, header, 1, 2) // the header wins over the query
	})
}

func TestFeedReplayThenLiveNoGap(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{})
		const total = 400
		var wg sync.WaitGroup
		wg.Go(func() { writeMany(t, ts.URL, "busy", total, 4) })
		// Subscribers join at different points while the writes go on, each
		// from a cursor somewhere behind, and must see every later event once.
		var subs sync.WaitGroup
		for i := range 8 {
			time.Sleep(time.Duration(i*15) * time.Millisecond)
			head, err := ts.Store.Head(t.Context(), "busy")
			if err != nil {
				t.Fatal(err)
			}
			from := head / 2
			s := ssetest.Open(t, ts.URL+"/rooms/busy/events", strconv.FormatInt(from, 10))
			subs.Go(func() { readUntil(t, s, from, total) })
		}
		wg.Wait()
		subs.Wait()
	})
}

func TestFeedPagedCatchUp(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{})
		const n = 20000
		messages(t, ts, "long", n)
		start := time.Now()
		s := ssetest.Open(t, ts.URL+"/rooms/long/events", "0")
		if got := readUntil(t, s, 0, n); got != n {
			t.Fatalf("got %d events, want %d", got, n)
		}
		t.Logf("caught up %d events in %v", n, time.Since(start))
		mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/long/messages", `{"event":"after","data":1}`), http.StatusCreated)
		readUntil(t, s, n, n+1)
	})
}

func TestFeedCursors(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{})
		mustStatus(t, do(t, http.MethodPut, ts.URL+"/rooms/w1/elements/c1", `{"kind":"character","data":{}}`), http.StatusCreated)
		tests := []struct {
			name, query, header string
			status              int
			code                string
		}{
			{"malformed header", "", "abc", 400, "bad_cursor"},
			{"negative", "", "-1", 400, "bad_cursor"},
			{"malformed query", "?last_event_id=1x", "", 400, "bad_cursor"},
			{"stream id other than -0", "", "1-5", 400, "bad_cursor"},
			{"ahead of the room", "", "2", 400, "cursor_ahead"},
			{"far ahead", "?last_event_id=999999", "", 400, "cursor_ahead"},
			{"ahead on unknown room", "", "1", 400, "cursor_ahead"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				url := ts.URL + "/rooms/w1/events" + tt.query
				if tt.name == "ahead on unknown room" {
					url = ts.URL + "/rooms/empty/events"
				}
				_, err := ssetest.Dial(t.Context(), url, tt.header)
				var se *ssetest.StatusError
				if !errors.As(err, &se) {
					t.Fatalf("got %v, want status %d", err, tt.status)
				}
				if se.Status != tt.status || !strings.Contains(se.Body, `"code":"`+tt.code+`"`) {
					t.Errorf("got %d %s, want %d with code %s", se.Status, se.Body, tt.status, tt.code)
				}
			})
		}
	})
}

func TestFeedTrimmedCursorGetsReset(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{redisMaxLen: 100})
		messages(t, ts, "old", 1000)
		if _, err := ts.Store.Trim(t.Context(), "old", 100, 0, 1000); err != nil {
			t.Fatalf("trim: %v", err)
		}
		s := ssetest.Open(t, ts.URL+"/rooms/old/events", "5")
		ev := s.MustNext(t, 5*time.Second)
		if ev.Type != "reset" || ev.ID != "1000" {
			t.Fatalf("got %+v, want reset with id 1000", ev)
		}
		var data map[string]string
		if err := json.Unmarshal([]byte(ev.Data), &data); err != nil {
			t.Fatal(err)
		}
		if data["cursor"] != "1000" || data["reason"] != "history_trimmed" {
			t.Errorf("reset data: got %v, want cursor 1000, reason history_trimmed", data)
		}
		mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/old/messages", `{"event":"after","data":1}`), http.StatusCreated)
		readUntil(t, s, 1000, 1001)

		// A cursor inside the retained window replays normally.
		s2 := ssetest.Open(t, ts.URL+"/rooms/old/events", "950")
		readUntil(t, s2, 950, 1001)
	})
}

// TestFeedSlowSubscriberDropped holds a subscriber that never reads while
// another keeps up; the slow one is cut off when its buffer of 16 fills
// (the write deadline is generous, so a loaded machine cannot cut the fast
// one), the fast one sees everything, and the slow one resumes from its last
// id with nothing missing.
func TestFeedSlowSubscriberDropped(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{buffer: 16, feed: sse.Config{WriteTimeout: 3 * time.Second}})
		conn := dialRaw(t, ts.URL, 4096)
		if _, err := io.WriteString(conn, "GET /rooms/slow/events?last_event_id=0 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		fast := ssetest.Open(t, ts.URL+"/rooms/slow/events", "0")
		const n = 600
		payload := strings.Repeat("x", 4000)
		// Each write waits until the fast subscriber has its event: the
		// writes go at the fast reader's pace (however loaded the machine
		// is), while the slow one falls further behind with every write.
		for i := int64(1); i <= n; i++ {
			r := do(t, http.MethodPost, ts.URL+"/rooms/slow/messages", `{"event":"big","data":"`+payload+`"}`)
			if r.Status != http.StatusCreated {
				t.Fatalf("message %d: got %d", i, r.Status)
			}
			readUntil(t, fast, i-1, i)
		}

		// Now read what the slow connection was sent: it must end before n,
		// and its events must be contiguous.
		_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("slow subscriber response: %v", err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		var last int64
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				break
			}
			if id, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "id: "); ok {
				seq, _ := strconv.ParseInt(id, 10, 64)
				if seq != last+1 {
					t.Fatalf("slow subscriber: got id %d after %d", seq, last)
				}
				last = seq
			}
		}
		if last >= n {
			t.Fatalf("slow subscriber got all %d events; want it cut off", n)
		}
		resumed := ssetest.Open(t, ts.URL+"/rooms/slow/events", strconv.FormatInt(last, 10))
		readUntil(t, resumed, last, n)
	})
}
