package api_test

import (
	"bufio"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/sse"
)

// rawStream is an SSE request on a bare TCP connection: no goroutine of the
// test process reads it until the test does. Without conn, br reads a
// response body (openRawBody).
type rawStream struct {
	conn net.Conn
	br   *bufio.Reader
}

// openRaw sends GET path and reads the response head and the opening
// comment of the stream.
func openRaw(t *testing.T, base, path string) *rawStream {
	t.Helper()
	conn := dialRaw(t, base, 0)
	if _, err := conn.Write([]byte("GET " + path + " HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	rs := &rawStream{conn: conn, br: bufio.NewReader(conn)}
	status := rs.line(t)
	if !strings.HasPrefix(status, "HTTP/1.1 200") {
		t.Fatalf("got status line %q, want 200", status)
	}
	for rs.line(t) != "" {
	}
	rs.until(t, ": roomfeed ")
	return rs
}

// line reads one line (without its line break) within 10 s (from a body:
// within its request's deadline).
func (rs *rawStream) line(t *testing.T) string {
	t.Helper()
	if rs.conn != nil {
		_ = rs.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	}
	l, err := rs.br.ReadString('\n')
	if err != nil {
		t.Fatalf("read: got %v after %q", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// until reads lines until one starting with prefix.
func (rs *rawStream) until(t *testing.T, prefix string) string {
	t.Helper()
	for {
		if l := rs.line(t); strings.HasPrefix(l, prefix) {
			return l
		}
	}
}

// TestPumpedStreamsHoldNoGoroutine: an idle pumped stream costs no
// goroutine (one served by its request's goroutine, over TLS, costs two),
// every stream still gets each event, and clients that close their
// connection are noticed without any write to them: their subscriptions and
// presence go at once.
func TestPumpedStreamsHoldNoGoroutine(t *testing.T) {
	for _, be := range backends[:2] {
		t.Run(be.name, func(t *testing.T) {
			ts := newServer(t, be, serverOpts{presence: func(hub *sse.Hub) api.Presence { return feed.NewMemPresence(hub, time.Millisecond) }})
			first := openRaw(t, ts.URL, "/rooms/g/events") // starts the pump
			before := runtime.NumGoroutine()
			const n = 40
			streams := make([]*rawStream, n)
			for i := range streams {
				streams[i] = openRaw(t, ts.URL, "/rooms/g/events?client=p"+strconv.Itoa(i))
			}
			grew := runtime.NumGoroutine() - before
			switch {
			case !be.tls && grew > 4:
				t.Errorf("got %d more goroutines for %d idle pumped streams, want none per stream", grew, n)
			case be.tls && grew < n:
				t.Errorf("got %d more goroutines for %d streams served by their requests, want at least one each", grew, n)
			}

			mustStatus(t, do(t, http.MethodPut, ts.URL+"/rooms/g/elements/c1", `{"kind":"character","data":{}}`), http.StatusCreated)
			for i, rs := range append(streams, first) {
				if got := rs.until(t, "id: "); got != "id: 1" {
					t.Fatalf("stream %d: got %q, want id: 1", i, got)
				}
			}
			if got := len(presenceOf(t, ts, "g")); got != n {
				t.Fatalf("got %d people present, want %d", got, n)
			}

			for _, rs := range streams {
				rs.conn.Close()
			}
			eventually(t, "the subscriptions of the closed streams to end", func() bool { return ts.Hub.Subscribers() == 1 })
			eventually(t, "presence to empty after every named client left", func() bool { return len(presenceOf(t, ts, "g")) == 0 })
			mustStatus(t, do(t, http.MethodPut, ts.URL+"/rooms/g/elements/c1", `{"kind":"character","data":{}}`), http.StatusOK)
			if got := first.until(t, "id: "); got != "id: 2" {
				t.Errorf("remaining stream: got %q, want id: 2", got)
			}
		})
	}
}

func presenceOf(t *testing.T, ts *testServer, room string) []any {
	t.Helper()
	r := do(t, http.MethodGet, ts.URL+"/rooms/"+room+"/presence", "")
	mustStatus(t, r, http.StatusOK)
	people, _ := r.json(t)["people"].([]any)
	return people
}
