package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

const (
	ev1 = "id: 1\nevent: element.created\ndata: {\"id\":\"1\"}\n\n"
	ev2 = "id: 2\nevent: chat\ndata: {\"id\":\"2\"}\n\n"
	ev3 = "id: 3\nevent: element.updated\ndata: {\"id\":\"3\"}\n\n"
)

// TestSubscribe drives a subscription with scripted streams and checks
// what it delivers and what each reconnection asks for.
func TestSubscribe(t *testing.T) {
	tests := []struct {
		name    string
		from    Cursor
		rooms   []string
		client  Client
		conns   []http.HandlerFunc
		want    []string // the messages, summarised
		wantErr string   // the final error, if any
		wantIDs []string // Last-Event-ID of each request
	}{{
		name:    "drop, then duplicates after the reconnection are skipped",
		from:    Cursor{"w1": 0},
		conns:   []http.HandlerFunc{feed("retry: 1\n\n"+ev1+ev2+"id: 3\ndata: cut", "drop"), feed(ev1+ev2+ev3, "hold")},
		want:    []string{`w1 1 element.created {"id":"1"}`, `w1 2 chat {"id":"2"}`, "reconnect: dropped", `w1 3 element.updated {"id":"3"}`},
		wantIDs: []string{"0", "2"},
	}, {
		name:    "clean close, CR and CRLF endings",
		from:    Cursor{"w1": 1},
		conns:   []http.HandlerFunc{feed("retry: 1\r\r"+strings.ReplaceAll(ev2, "\n", "\r\n"), "close"), feed(strings.ReplaceAll(ev3, "\n", "\r"), "hold")},
		want:    []string{`w1 2 chat {"id":"2"}`, "reconnect", `w1 3 element.updated {"id":"3"}`},
		wantIDs: []string{"1", "2"},
	}, {
		name:    "error event",
		from:    Cursor{"w1": 1},
		conns:   []http.HandlerFunc{feed("retry: 1\n\n"+ev2+"event: error\ndata: {\"code\":\"unavailable\"}\n\n", "hold"), feed(ev3, "hold")},
		want:    []string{`w1 2 chat {"id":"2"}`, "reconnect: error", `w1 3 element.updated {"id":"3"}`},
		wantIDs: []string{"1", "2"},
	}, {
		name:    "503 and 429 are retried",
		from:    Cursor{"w1": 2},
		client:  Client{MaxBackoff: 20 * time.Millisecond},
		conns:   []http.HandlerFunc{refuse(503, "shutting_down", ""), refuse(429, "too_many_streams", "0"), feed(ev3, "hold")},
		want:    []string{"reconnect: 503 shutting_down", "reconnect: 429 too_many_streams", `w1 3 element.updated {"id":"3"}`},
		wantIDs: []string{"2", "2", "2"},
	}, {
		name:    "400 is final",
		from:    Cursor{"w1": 9},
		conns:   []http.HandlerFunc{refuse(400, "cursor_ahead", "")},
		wantErr: "server answered 400 Bad Request: cursor_ahead: scripted",
		wantIDs: []string{"9"},
	}, {
		name:    "401 is final",
		conns:   []http.HandlerFunc{refuse(401, "unauthorized", "")},
		wantErr: "401 Unauthorized: unauthorized",
		wantIDs: []string{""},
	}, {
		name:    "404 is final",
		conns:   []http.HandlerFunc{refuse(404, "not_found", "")},
		wantErr: "404 Not Found: not_found",
		wantIDs: []string{""},
	}, {
		name: "not an event stream is final",
		conns: []http.HandlerFunc{func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
		}},
		wantErr: `Content-Type "text/html", not an event stream`,
		wantIDs: []string{""},
	}, {
		name: "reset moves the cursor",
		from: Cursor{"w1": 1},
		conns: []http.HandlerFunc{feed("retry: 1\n\nid: 5\nevent: reset\ndata: {\"room\":\"w1\",\"cursor\":\"5\",\"reason\":\"history_trimmed\"}\n\n"+
			"id: 6\nevent: chat\ndata: {}\n\n", "close"), feed("id: 6\nevent: chat\ndata: {}\n\n", "hold")},
		want:    []string{"reset w1 5 history_trimmed", "w1 6 chat {}", "reconnect"},
		wantIDs: []string{"1", "6"},
	}, {
		name: "presence without an id moves no cursor",
		from: Cursor{"w1": 1},
		conns: []http.HandlerFunc{feed("retry: 1\n\n"+ev2+"event: presence.joined\ndata: {\"person\":\"bram\"}\n\n", "close"),
			feed(ev2+"event: presence.left\ndata: {}\n\n", "hold")},
		want:    []string{`w1 2 chat {"id":"2"}`, `w1 0 presence.joined {"person":"bram"}`, "reconnect", "w1 0 presence.left {}"},
		wantIDs: []string{"1", "2"},
	}, {
		name:    "live start adopted from the first comment",
		conns:   []http.HandlerFunc{feed("retry: 1\n\n: roomfeed w1 from 3\n\n: ping\n\n", "close"), feed(": roomfeed w1 from 3\n\n", "hold")},
		want:    []string{"start w1:3", "reconnect"},
		wantIDs: []string{"", "3"},
	}, {
		name:    "idle timeout",
		from:    Cursor{"w1": 4},
		client:  Client{IdleTimeout: 100 * time.Millisecond},
		conns:   []http.HandlerFunc{feed("retry: 1\n\n", "hold"), feed(": ping\n\n", "hold")},
		want:    []string{"reconnect: idle", "reconnect: idle"},
		wantIDs: []string{"4", "4", "4"},
	}, {
		name:  "composite cursors per room",
		from:  Cursor{"a": 1},
		rooms: []string{"a", "b"},
		conns: []http.HandlerFunc{feed("retry: 1\n\n: roomfeed from a:1,b:7\n\n"+
			"id: a:2,b:7\nevent: chat\ndata: {\"room\":\"a\"}\n\n"+
			"id: a:2,b:8\nevent: chat\ndata: {\"room\":\"b\"}\n\n"+
			"event: presence.joined\ndata: {\"room\":\"b\"}\n\n", "drop"),
			feed("id: a:2,b:8\nevent: chat\ndata: {\"room\":\"b\"}\n\n"+
				"id: a:3,b:8\nevent: chat\ndata: {\"room\":\"a\"}\n\n"+
				"id: a:3,b:20\nevent: reset\ndata: {\"room\":\"b\",\"cursor\":\"20\",\"reason\":\"history_trimmed\"}\n\n", "close"),
			feed("", "hold")},
		want: []string{"start b:7", `a 2 chat {"room":"a"}`, `b 8 chat {"room":"b"}`, `b 0 presence.joined {"room":"b"}`,
			"reconnect: dropped", `a 3 chat {"room":"a"}`, "reset b 20 history_trimmed", "reconnect"},
		wantIDs: []string{"a:1", "a:2,b:8", "a:3,b:20"},
	}, {
		name: "a bare id moves the cursor, forward only",
		from: Cursor{"w1": 1},
		conns: []http.HandlerFunc{feed("retry: 1\n\n"+ev2+"id: 5\n\nid: 4\n\nid: x\n\n", "drop"),
			feed("id: 6\nevent: chat\ndata: {}\n\n", "hold")},
		want:    []string{`w1 2 chat {"id":"2"}`, "progress w1:5", "reconnect: dropped", "w1 6 chat {}"},
		wantIDs: []string{"1", "5"},
	}, {
		name:  "a bare composite id moves the rooms it names",
		from:  Cursor{"a": 1, "b": 1},
		rooms: []string{"a", "b"},
		conns: []http.HandlerFunc{feed("retry: 1\n\nid: a:3,b:1\n\n"+
			"id: a:3,b:2\nevent: chat\ndata: {\"room\":\"b\"}\n\nid: a:4,b:9\n\n", "close")},
		want:    []string{"progress a:3", `b 2 chat {"room":"b"}`, "progress a:4,b:9", "reconnect"},
		wantIDs: []string{"a:1,b:1", "a:4,b:9"},
	}, {
		// A filter left out b's events 2 to 5 just before a's event 2: no
		// bare id came for them, a's event id counts them.
		name:  "an event's composite id moves the other rooms",
		from:  Cursor{"a": 1, "b": 1},
		rooms: []string{"a", "b"},
		conns: []http.HandlerFunc{feed("retry: 1\n\nid: a:2,b:5\nevent: chat\ndata: {\"room\":\"a\"}\n\n"+
			"id: a:3,b:4\nevent: chat\ndata: {\"room\":\"a\"}\n\n", "close")},
		want:    []string{`a 2 chat {"room":"a"}`, "progress b:5", `a 3 chat {"room":"a"}`, "reconnect"},
		wantIDs: []string{"a:1,b:1", "a:3,b:5"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sc := &script{conns: tt.conns}
			srv := httptest.NewServer(sc)
			t.Cleanup(srv.Close)
			c := tt.client
			c.Server = srv.URL
			rooms := tt.rooms
			if rooms == nil {
				rooms = []string{"w1"}
			}
			sub := c.Subscribe(tt.from, rooms...)
			defer sub.Close()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			var got []string
			for range tt.want {
				m, err := sub.Next(ctx)
				if err != nil {
					t.Fatalf("after %q: got error %v, want %d messages %q", got, err, len(tt.want), tt.want)
				}
				got = append(got, summary(m))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got messages\n%q\nwant\n%q", got, tt.want)
			}
			if tt.wantErr != "" {
				_, err := sub.Next(ctx)
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one saying %q", err, tt.wantErr)
				}
				if _, again := sub.Next(ctx); again != err {
					t.Errorf("Next after a final error: got %v, want the same error", again)
				}
			}
			if len(sc.requests()) < len(tt.wantIDs) && tt.wantErr == "" {
				// The last reconnection happens in the next Next: run it
				// until the server has the request (a loaded machine can take
				// longer than any fixed wait to dial).
				ctx, cancel := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() {
					defer close(done)
					_, _ = sub.Next(ctx)
				}()
				for len(sc.requests()) < len(tt.wantIDs) && ctx.Err() == nil {
					time.Sleep(5 * time.Millisecond)
				}
				cancel()
				<-done
			}
			var ids []string
			for _, r := range sc.requests() {
				ids = append(ids, r.LastEventID)
			}
			if !slices.Equal(ids, tt.wantIDs) {
				t.Errorf("Last-Event-IDs: got %q, want %q", ids, tt.wantIDs)
			}
		})
	}
}

// TestSubscribeRequest checks what a subscription sends: its URL, ?client=,
// the token (asked again after auth_expired), and the typed refusal.
func TestSubscribeRequest(t *testing.T) {
	sc := &script{conns: []http.HandlerFunc{
		feed("retry: 1\n\nevent: auth_expired\ndata: {\"reason\":\"token_expired\"}\n\n", "hold"),
		refuse(403, "forbidden", ""),
	}}
	srv := httptest.NewServer(sc)
	t.Cleanup(srv.Close)
	var tokens atomic.Int32
	c := &Client{Server: srv.URL + "/", Name: "bram", Token: func(context.Context) (string, error) {
		return "t" + string(rune('0'+tokens.Add(1))), nil
	}}
	sub := c.Subscribe(nil, "a", "b", "a")
	defer sub.Close()
	if m, err := sub.Next(t.Context()); err != nil || summary(m) != "reconnect: auth_expired" {
		t.Fatalf("got %v, %v; want a reconnection after auth_expired", m, err)
	}
	_, err := sub.Next(t.Context())
	var e *Error
	if !errors.As(err, &e) || e.Status != 403 || e.Code != "forbidden" || e.Message != "scripted" || !strings.Contains(e.Body, `"forbidden"`) {
		t.Fatalf("got %#v, want a 403 *Error with the server's code and message", err)
	}
	reqs := sc.requests()
	if len(reqs) != 2 {
		t.Fatalf("got %d requests, want 2", len(reqs))
	}
	if want := "/events?client=bram&room=a&room=b"; reqs[0].URL != want {
		t.Errorf("URL: got %q, want %q", reqs[0].URL, want)
	}
	if reqs[0].Authorization != "Bearer t1" || reqs[1].Authorization != "Bearer t2" {
		t.Errorf("Authorization: got %q then %q, want a fresh token each time", reqs[0].Authorization, reqs[1].Authorization)
	}

	one := (&Client{Server: srv.URL}).SubscribeFiltered(nil, Filter{Types: []string{"chat"}, Kinds: []string{"character"}, Elements: []string{"c1", "c2"}}, "w1")
	defer one.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := one.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on a silent stream: got %v, want the context's error", err)
	}
	if got, want := sc.requests()[2].URL, "/rooms/w1/events?element=c1&element=c2&kind=character&type=chat"; got != want {
		t.Errorf("one room, filtered: got %q, want %q", got, want)
	}
	one.Close()
	if _, err := one.Next(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Next after Close: got %v, want ErrClosed", err)
	}
	for _, bad := range [][]string{nil, {"bad/room"}} {
		if _, err := (&Client{Server: srv.URL}).Subscribe(nil, bad...).Next(t.Context()); err == nil {
			t.Errorf("Subscribe(%q): got no error", bad)
		}
	}
	if _, err := (&Client{Server: "ftp://x"}).Subscribe(nil, "w1").Next(t.Context()); err == nil || !strings.Contains(err.Error(), "want http") {
		t.Errorf("bad server: got %v, want an error naming the form", err)
	}
}

// TestSubscribeTimers checks the waits with a fake clock: the retry: hint,
// doubling after each failure up to MaxBackoff with ±25 % jitter, a 503's
// Retry-After, the default idle timeout, and pings that keep a stream.
func TestSubscribeTimers(t *testing.T) {
	between := func(t *testing.T, what string, got, lo, hi time.Duration) {
		t.Helper()
		if got < lo || got > hi {
			t.Errorf("%s: got %v, want between %v and %v", what, got, lo, hi)
		}
	}
	run := func(t *testing.T, c Client, conns []http.HandlerFunc, n int) ([]Message, []request) {
		sc := &script{conns: conns}
		c.Server = "http://feed.test"
		c.HTTPClient = &http.Client{Transport: memTransport{sc}}
		sub := c.Subscribe(Cursor{"w1": 0}, "w1")
		defer sub.Close()
		var got []Message
		for range n {
			m, err := sub.Next(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, m)
		}
		return got, sc.requests()
	}
	t.Run("backoff", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			e500 := refuse(500, "internal", "")
			got, reqs := run(t, Client{MaxBackoff: 5 * time.Second},
				[]http.HandlerFunc{feed("retry: 1000\n\n", "close"), e500, e500, e500, e500, feed(ev1, "close"), e500, e500}, 9)
			// A clean close waits the hint; failures double it up to the
			// limit; an accepted stream starts again from the hint.
			wants := [][2]time.Duration{{750, 1250}, {750, 1250}, {1500, 2500}, {3000, 5000}, {3750, 5000}, {}, {750, 1250}, {750, 1250}, {1500, 2500}}
			k := 0 // the reconnections so far
			for i, w := range wants {
				if w[1] == 0 {
					if _, ok := got[i].(Event); !ok {
						t.Fatalf("message %d: got %s, want the event", i, summary(got[i]))
					}
					continue
				}
				wait := got[i].(Reconnect).Wait
				between(t, fmt.Sprint("wait ", i), wait, w[0]*time.Millisecond, w[1]*time.Millisecond)
				if k+1 < len(reqs) {
					between(t, fmt.Sprint("reconnection ", k), reqs[k+1].At.Sub(reqs[k].At), wait, wait)
				}
				k++
			}
		})
	})
	t.Run("Retry-After", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			got, reqs := run(t, Client{}, []http.HandlerFunc{refuse(503, "database_unavailable", "10"), feed(ev1, "hold")}, 2)
			between(t, "wait", got[0].(Reconnect).Wait, 10*time.Second, 10*time.Second)
			between(t, "reconnected after", reqs[1].At.Sub(reqs[0].At), 10*time.Second, 10*time.Second)
		})
	})
	t.Run("idle", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			pings := func(w http.ResponseWriter, r *http.Request) {
				feed("retry: 2000\n\n", "")(w, r)
				for range 20 {
					time.Sleep(15 * time.Second)
					w.Write([]byte(": ping\n\n"))
				}
				<-r.Context().Done()
			}
			start := time.Now()
			got, reqs := run(t, Client{}, []http.HandlerFunc{pings}, 1)
			if summary(got[0]) != "reconnect: idle" {
				t.Fatalf("got %s, want an idle reconnection", summary(got[0]))
			}
			if len(reqs) != 1 {
				t.Errorf("got %d requests, want 1", len(reqs))
			}
			want := 20*15*time.Second + DefaultIdleTimeout // the last ping, then silence
			between(t, "idle after", time.Since(start), want, want)
		})
	})
}

// TestSubscribeInterrupted: a Next whose context ends leaves the
// subscription usable; the next one reconnects from the cursor, which
// Advance moves forward only.
func TestSubscribeInterrupted(t *testing.T) {
	sc := &script{conns: []http.HandlerFunc{feed("retry: 1\n\n"+ev1, "hold"), feed(ev2+ev3, "hold")}}
	srv := httptest.NewServer(sc)
	t.Cleanup(srv.Close)
	sub := (&Client{Server: srv.URL}).Subscribe(Cursor{"w1": 0}, "w1")
	defer sub.Close()
	if m, err := sub.Next(t.Context()); err != nil || summary(m) != `w1 1 element.created {"id":"1"}` {
		t.Fatalf("got %v, %v; want event 1", m, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := sub.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's error", err)
	}
	sub.Advance("w1", 2) // as after loading a snapshot at 2
	sub.Advance("w1", 1)
	sub.Advance("other", 9)
	if m, err := sub.Next(t.Context()); err != nil || summary(m) != `w1 3 element.updated {"id":"3"}` {
		t.Fatalf("got %v, %v; want event 3 (2 is in the snapshot)", m, err)
	}
	if got := sub.Cursor(); len(got) != 1 || got["w1"] != 3 {
		t.Errorf("cursor: got %v, want w1 at 3", got)
	}
	var ids []string
	for _, r := range sc.requests() {
		ids = append(ids, r.LastEventID)
	}
	if want := []string{"0", "2"}; !slices.Equal(ids, want) {
		t.Errorf("Last-Event-IDs: got %q, want %q", ids, want)
	}
}
