package main

import (
	"bufio"
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/ssetest"
)

// scrape returns the value of every sample on /metrics, keyed by the sample
// as written ("name{labels}").
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	status, _, body := call(t, http.MethodGet, base+"/metrics", "")
	if status != http.StatusOK {
		t.Fatalf("GET /metrics: got %d, want 200", status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

func TestMetricsMove(t *testing.T) {
	for _, be := range backendsArgs {
		t.Run(be.name, func(t *testing.T) {
			n := startNode(t, be.args(t)...)
			before := scrape(t, n.URL)
			s := ssetest.Open(t, n.URL+"/rooms/m1/events", "")
			for i := range 3 {
				put(t, n.URL, "m1", "c"+strconv.Itoa(i), "x")
			}
			expect(t, s, 0, 3)
			replay := ssetest.Open(t, n.URL+"/rooms/m1/events", "0")
			expect(t, replay, 0, 3)
			if status, _, body := call(t, http.MethodPost, n.URL+"/rooms/m2/signals", `{"event":"cursor"}`); status != http.StatusAccepted {
				t.Fatalf("signal: got %d %s, want 202", status, body)
			}
			if status, _, body := call(t, http.MethodGet, n.URL+"/rooms/m1/events?format=json", ""); status != http.StatusOK {
				t.Fatalf("a page of history: got %d %s", status, body)
			}

			tests := []struct {
				sample string
				min    float64
			}{
				{`roomfeed_events_written_total{kind="element"}`, 3},
				{`roomfeed_events_published_total`, 3},
				{`roomfeed_events_replayed_total`, 3},
				{`roomfeed_subscribers`, 2},
				{`roomfeed_http_requests_total{method="PUT",route="/rooms/:room/elements/:id",status="201"}`, 3},
				{`roomfeed_write_duration_seconds_count{route="/rooms/:room/elements/:id"}`, 3},
				{`roomfeed_signals_total`, 1},
				{`roomfeed_history_pages_total`, 1},
				{`roomfeed_history_events_total`, 3},
			}
			// Some counters move after what the client sees: an event is
			// counted published once the log's publish returns, after the hub
			// had it, and delivered once its write returns, after the client
			// may have read it. Wait until they all moved, or 10 s passed.
			moved := func(after map[string]float64) bool {
				for _, tt := range tests {
					if after[tt.sample]-before[tt.sample] < tt.min {
						return false
					}
				}
				return sent(after)-sent(before) >= 6 && after["roomfeed_delivery_lag_seconds_count"] >= 1
			}
			var after map[string]float64
			deadline := time.Now().Add(10 * time.Second)
			for {
				after = scrape(t, n.URL)
				if moved(after) || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			for _, tt := range tests {
				if got := after[tt.sample] - before[tt.sample]; got < tt.min {
					t.Errorf("%s moved by %v, want at least %v", tt.sample, got, tt.min)
				}
			}
			// An event written while the first stream is still catching up is
			// sent as replay, so only the sum is exact.
			if got := sent(after) - sent(before); got < 6 {
				t.Errorf("events sent (delivered + replayed) moved by %v, want at least 6", got)
			}
			if d, lag := after["roomfeed_events_delivered_total"], after["roomfeed_delivery_lag_seconds_count"]; lag < 1 || lag > d {
				t.Errorf("delivery lag observed %v times for %v deliveries, want once per write (1 to %v)", lag, d, d)
			}
			if _, ok := after["roomfeed_events_relayed_total"]; !ok && be.name != "sqlite" {
				t.Error("roomfeed_events_relayed_total missing with Redis")
			}
			if _, ok := after["roomfeed_stream_steps_paced_total"]; !ok {
				t.Error("roomfeed_stream_steps_paced_total missing")
			}
			if q, ok := after["roomfeed_publish_queue_events"]; !ok || q != 0 {
				t.Errorf("roomfeed_publish_queue_events once the writes were published: got %v (present %v), want 0", q, ok)
			}
			if _, ok := after["process_resident_memory_bytes"]; !ok {
				t.Error("process metrics missing")
			}
		})
	}
}

func sent(m map[string]float64) float64 {
	return m["roomfeed_events_delivered_total"] + m["roomfeed_events_replayed_total"]
}
