package api_test

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/sse"
)

func TestCORS(t *testing.T) {
	ts := newServer(t, backends[0], serverOpts{cfg: api.Config{CORSOrigins: []string{"https://app.example"}}})
	el := ts.URL + "/rooms/w1/elements/c1"
	tests := []struct {
		name, method, origin string
		headers              []string
		wantStatus           int
		wantAllow            string
		wantExpose           bool
	}{
		{"preflight from allowed origin", http.MethodOptions, "https://app.example",
			[]string{"Access-Control-Request-Method", "PUT", "Access-Control-Request-Headers", "if-match,content-type"}, 204, "https://app.example", true},
		{"preflight from other origin", http.MethodOptions, "https://evil.example",
			[]string{"Access-Control-Request-Method", "PUT"}, 204, "", false},
		{"write from allowed origin", http.MethodPut, "https://app.example", nil, 201, "https://app.example", true},
		{"write from other origin", http.MethodPut, "https://evil.example", nil, 200, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := ""
			if tt.method == http.MethodPut {
				body = `{"kind":"item","data":{}}`
			}
			r := do(t, tt.method, el, body, append([]string{"Origin", tt.origin}, tt.headers...)...)
			if r.Status != tt.wantStatus {
				t.Fatalf("got status %d, want %d (%s)", r.Status, tt.wantStatus, r.Body)
			}
			if got := r.Header.Get("Access-Control-Allow-Origin"); got != tt.wantAllow {
				t.Errorf("Allow-Origin: got %q, want %q", got, tt.wantAllow)
			}
			if tt.wantAllow != "" && r.Header.Get("Access-Control-Allow-Origin") == "*" {
				t.Error("Allow-Origin is *, never allowed with credentials")
			}
			expose := r.Header.Get("Access-Control-Expose-Headers")
			exposed := true
			for _, h := range []string{"ETag", "Event-ID", "Merged-From", "Idempotent-Replayed"} {
				exposed = exposed && strings.Contains(expose, h)
			}
			if exposed != tt.wantExpose {
				t.Errorf("Expose-Headers %q: got ETag, Event-ID, Merged-From, Idempotent-Replayed %v, want %v", expose, exposed, tt.wantExpose)
			}
			if tt.method == http.MethodOptions && tt.wantAllow != "" {
				if h := r.Header.Get("Access-Control-Allow-Headers"); !strings.Contains(h, "If-Match") || !strings.Contains(h, "Op-ID") || !strings.Contains(h, "Idempotency-Key") {
					t.Errorf("Allow-Headers: got %q, want If-Match, Op-ID and Idempotency-Key", h)
				}
			}
		})
	}
}

// TestFeedHeartbeat reads the raw stream: the retry hint and first comment
// arrive at once, then ": ping" comments while the room is idle, from the
// pump and from a stream served by its request's goroutine (TLS).
func TestFeedHeartbeat(t *testing.T) {
	for _, be := range backends[:2] {
		t.Run(be.name, func(t *testing.T) { testFeedHeartbeat(t, be) })
	}
}

func testFeedHeartbeat(t *testing.T, be backend) {
	ts := newServer(t, be, serverOpts{feed: sse.Config{Heartbeat: 100 * time.Millisecond, Retry: 1500 * time.Millisecond}})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, ts.URL+"/rooms/idle/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	var lines []string
	pings := 0
	deadline := time.Now().Add(5 * time.Second)
	for pings < 3 && time.Now().Before(deadline) {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		lines = append(lines, strings.TrimRight(line, "\n"))
		if line == ": ping\n" {
			pings++
		}
	}
	if pings < 3 {
		t.Fatalf("got %d pings in 5s, want 3 at a 100ms interval: %q", pings, lines)
	}
	if lines[0] != "retry: 1500" {
		t.Errorf("first line: got %q, want retry: 1500", lines[0])
	}
	if !strings.HasPrefix(lines[2], ": roomfeed idle") {
		t.Errorf("third line: got %q, want the opening comment", lines[2])
	}
}
