package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestSplitSubscribers(t *testing.T) {
	tests := []struct{ total, parts int }{
		{100000, 6}, {3000, 3}, {19000, 1}, {7, 3}, {250, 2}, {99, 1}, {100, 2},
	}
	for _, tt := range tests {
		shares, err := splitSubscribers(tt.total, tt.parts)
		if err != nil {
			t.Fatalf("splitSubscribers(%d, %d): %v", tt.total, tt.parts, err)
		}
		if len(shares) != tt.parts {
			t.Fatalf("splitSubscribers(%d, %d): got %d shares, want %d", tt.total, tt.parts, len(shares), tt.parts)
		}
		next, lo, hi := 0, tt.total/tt.parts, (tt.total+tt.parts-1)/tt.parts
		owner := map[string]int{} // source address -> share
		for k, sh := range shares {
			if sh.First != next || sh.Count < lo || sh.Count > hi {
				t.Errorf("%d over %d, share %d: got first %d count %d, want first %d count %d to %d", tt.total, tt.parts, k, sh.First, sh.Count, next, lo, hi)
			}
			next += sh.Count
			for ip, n := range sourcesOf(t, sh) {
				if o, ok := owner[ip]; ok {
					t.Errorf("%d over %d: address %s used by shares %d and %d", tt.total, tt.parts, ip, o, k)
				}
				owner[ip] = k
				if n > subsPerSource {
					t.Errorf("%d over %d: address %s holds %d connections, want at most %d", tt.total, tt.parts, ip, n, subsPerSource)
				}
			}
		}
		if next != tt.total {
			t.Errorf("%d over %d: shares hold %d subscribers", tt.total, tt.parts, next)
		}
	}
}

// sourcesOf runs sourceAddr as the load generator of sh does and counts the
// connections per source address.
func sourcesOf(t *testing.T, sh subsShare) map[string]int {
	t.Helper()
	saved := sourceSeq.Load()
	t.Cleanup(func() { sourceSeq.Store(saved) })
	sourceSeq.Store(sh.SourceFirst)
	out := map[string]int{}
	for range sh.Count {
		a, ok := sourceAddr("127.0.0.1:8080").(*net.TCPAddr)
		if !ok {
			t.Fatal("sourceAddr of a loopback target: got no TCP address")
		}
		out[a.IP.String()]++
	}
	return out
}

func TestSplitSubscribersRefuses(t *testing.T) {
	for _, tt := range []struct{ total, parts int }{{2, 3}, {10, 0}, {7_000_000, 6}} {
		if _, err := splitSubscribers(tt.total, tt.parts); err == nil {
			t.Errorf("splitSubscribers(%d, %d): got no error, want one", tt.total, tt.parts)
		}
	}
}

func TestLatBucket(t *testing.T) {
	tests := []struct{ ns, want int64 }{
		{0, 0}, {999, 0}, {1000, 1}, {999_999, 999}, {1_000_000, 1000}, {1_234_567, 1230},
		{98_765_432, 98700}, {-1500, -1}, {-2_345_678, -2340},
	}
	for _, tt := range tests {
		if got := latBucket(tt.ns); got != tt.want {
			t.Errorf("latBucket(%d): got %d, want %d", tt.ns, got, tt.want)
		}
	}
}

func TestLatHistMergesAsOne(t *testing.T) {
	// Whole microseconds below 1 ms are their own buckets, so the
	// histogram's percentiles equal the samples' (nearest rank).
	var all, a, b []int64
	for i := int64(1); i <= 997; i++ {
		v := (i*7919%1000 - 20) * 1000 // -20 µs to 979 µs, shuffled
		all = append(all, v)
		if i%3 == 0 {
			a = append(a, v)
		} else {
			b = append(b, v)
		}
	}
	m := newLatHist(a)
	m.merge(newLatHist(b))
	m.merge(latHist{})
	one := newLatHist(all)
	if !reflect.DeepEqual(m, one) {
		t.Fatalf("merged histogram: got %+v, want %+v", m, one)
	}
	got, want := m.dist(), summarize(slices.Clone(all))
	if got != want {
		t.Fatalf("dist of the merged histogram: got %+v, want %+v", got, want)
	}
	var empty latHist
	empty.merge(newLatHist(a))
	if !reflect.DeepEqual(empty, newLatHist(a)) {
		t.Fatalf("merge into an empty histogram: got %+v, want %+v", empty, newLatHist(a))
	}
	if (latHist{}).dist() != (Dist{}) {
		t.Fatal("dist of an empty histogram: got non-zero, want zero")
	}
}

func TestLatHistWithinBucket(t *testing.T) {
	// Above 1 ms a percentile is its bucket's floor: within 1 %, never
	// outside the exact minimum and maximum.
	ns := []int64{1_234_567, 5_678_901, 99_999_999}
	d := newLatHist(ns).dist()
	want := Dist{N: 3, Min: 1.235, P50: 5.67, P90: 99.9, P99: 99.9, Max: 100, Mean: 35.638}
	if d != want {
		t.Fatalf("dist: got %+v, want %+v", d, want)
	}
}

func TestMergeSummaries(t *testing.T) {
	a := childSummary{Node: "A", Subscribers: 10, Failed: 1, ConnectS: 2.5, CPU: 1.25, RSSKiB: 100, ErrorEvents: 1,
		Latency: newLatHist([]int64{1000, 2000})}
	a.Expected, a.Delivered, a.Lost, a.Duplicates, a.OutOfOrder, a.Disconnected = 30, 29, 1, 2, 3, 4
	b := childSummary{Node: "B", Subscribers: 20, ConnectS: 4, CPU: 0.5, RSSKiB: 50, Error: "1 of 21 subscriptions failed",
		Latency: newLatHist([]int64{3000})}
	b.Expected, b.Delivered = 60, 60
	m := mergeSummaries([]childSummary{a, b})
	want := childSummary{Node: "B", Subscribers: 30, Failed: 1, ConnectS: 4, CPU: 1.75, RSSKiB: 150, ErrorEvents: 1,
		Error: "B: 1 of 21 subscriptions failed", Latency: newLatHist([]int64{1000, 2000, 3000})}
	want.Expected, want.Delivered, want.Lost, want.Duplicates, want.OutOfOrder, want.Disconnected = 90, 89, 1, 2, 3, 4
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("mergeSummaries:\ngot  %+v\nwant %+v", m, want)
	}
	// A summary survives the trip through JSON (the child's stdout).
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var back childSummary
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, m) {
		t.Fatalf("summary through JSON:\ngot  %+v\nwant %+v", back, m)
	}
}

func TestAckFileRoundTrip(t *testing.T) {
	acks := newAckLog()
	acks.add("x000001", 1, 100, 200)
	acks.add("x000001", 2, 150, 260)
	acks.add("x000002", 1, 170, 300)
	const parent, child = 5_000_000, -7_000 // each process's monoOffset
	data, err := json.Marshal(encodeAcks(acks, parent))
	if err != nil {
		t.Fatal(err)
	}
	var f ackFile
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	got := decodeAcks(f, child)
	shift := int64(parent - child)
	want := map[string][]ack{
		"x000001": {{1, 100 + shift, 200 + shift}, {2, 150 + shift, 260 + shift}},
		"x000002": {{1, 170 + shift, 300 + shift}},
	}
	if !reflect.DeepEqual(got.rooms, want) {
		t.Fatalf("acks through the file: got %v, want %v", got.rooms, want)
	}
}

func TestReadCommands(t *testing.T) {
	ch := make(chan string, 1)
	readCommands(strings.NewReader("hello\ncollect /tmp/a.json\ncollect /tmp/b.json\n"), ch)
	if got := <-ch; got != "/tmp/a.json" {
		t.Fatalf("first command: got %q, want /tmp/a.json", got)
	}
	if p, ok := <-ch; ok {
		t.Fatalf("after the input's end: got %q, want a closed channel", p)
	}
}

func TestParseMetric(t *testing.T) {
	text := "# HELP roomfeed_subscribers SSE subscribers.\n# TYPE roomfeed_subscribers gauge\nroomfeed_subscribers 16667\n" +
		"roomfeed_subscribers_dropped_slow_total 0\nroomfeed_events_delivered_total 1.2345e+06\n"
	for name, want := range map[string]float64{"roomfeed_subscribers": 16667, "roomfeed_events_delivered_total": 1234500} {
		got, err := parseMetric(strings.NewReader(text), name)
		if err != nil || got != want {
			t.Errorf("parseMetric(%s): got %v, %v; want %v", name, got, err, want)
		}
	}
	if _, err := parseMetric(strings.NewReader(text), "roomfeed_missing"); err == nil {
		t.Error("parseMetric of a missing metric: got no error, want one")
	}
}

func TestScenarioSetLeavesHeavyOnesOut(t *testing.T) {
	all, err := scenarioSet("")
	if err != nil {
		t.Fatal(err)
	}
	if all[10] || !all[9] || !all[1] {
		t.Fatalf("default scenarios: got %v, want 1 to 9 without 10", all)
	}
	named, err := scenarioSet("10")
	if err != nil || !named[10] || named[1] {
		t.Fatalf("--scenarios 10: got %v, %v; want only 10", named, err)
	}
}

func TestParseRedisInfo(t *testing.T) {
	text := "# CPU\r\nused_cpu_sys:12.5\r\nused_cpu_user:30.25\r\nused_cpu_sys_children:1.0\r\n\r\n# Stats\r\n" +
		"total_commands_processed:123456\r\ntotal_net_input_bytes:10240\r\ntotal_net_output_bytes:2048000\r\n"
	got := parseRedisInfo(text)
	want := redisStats{CPU: 42.75, Commands: 123456, InKiB: 10, OutKiB: 2000}
	if got != want {
		t.Fatalf("parseRedisInfo: got %+v, want %+v", got, want)
	}
	if d := want.sub(redisStats{CPU: 40, Commands: 456, InKiB: 4, OutKiB: 1000}); d != (redisStats{CPU: 2.75, Commands: 123000, InKiB: 6, OutKiB: 1000}) {
		t.Fatalf("sub: got %+v", d)
	}
}

func TestNewRedis(t *testing.T) {
	tests := []struct {
		url   string
		addrs []string // nil: a single-node client
	}{
		{"redis://127.0.0.1:6379/0", nil},
		{"redis://h1:7000,h2:7001,h3:7002", []string{"h1:7000", "h2:7001", "h3:7002"}},
		{"redis-cluster://h1:7000", []string{"h1:7000"}},
	}
	for _, tt := range tests {
		rc, err := newRedis(tt.url)
		if err != nil {
			t.Fatalf("newRedis(%s): %v", tt.url, err)
		}
		t.Cleanup(func() { rc.Close() })
		switch c := rc.(type) {
		case *redis.Client:
			if tt.addrs != nil {
				t.Errorf("newRedis(%s): got a single-node client, want a Cluster of %v", tt.url, tt.addrs)
			}
		case *redis.ClusterClient:
			if got := c.Options().Addrs; !slices.Equal(got, tt.addrs) {
				t.Errorf("newRedis(%s): got a Cluster of %v, want %v", tt.url, got, tt.addrs)
			}
		}
	}
	if _, err := newRedis("http://127.0.0.1:6379"); err == nil {
		t.Error("newRedis(http://...): got no error, want one")
	}
}

// TestSubscribersProtocol runs a load generator's side of scenario 10
// against the bare SSE server: it connects its share, reports, takes the
// ack file the parent names and sums up what its subscribers received.
func TestSubscribersProtocol(t *testing.T) {
	b := &bare{rooms: make(map[string]*bareRoom)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /rooms/{room}/events", b.events)
	mux.HandleFunc("PUT /rooms/{room}/elements/{id}", b.put)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	saved := sourceSeq.Load()
	t.Cleanup(func() { sourceSeq.Store(saved) })

	const rooms, subs, writes = 3, 12, 30
	c := childConfig{node: hostport(srv.URL), rooms: rooms, first: 5, count: subs, sourceFirst: 199, parallel: 4, drain: 10 * time.Second}
	collectCh := make(chan string, 1)
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := runSubscribers(t.Context(), c, collectCh, outW)
		outW.CloseWithError(err)
		done <- err
	}()
	lines := bufio.NewScanner(outR)
	lines.Buffer(make([]byte, 64*1024), 16<<20)
	if !lines.Scan() || !strings.HasPrefix(lines.Text(), "connected 12 0 ") {
		t.Fatalf("first line: got %q (%v), want connected 12 0 <seconds>", lines.Text(), lines.Err())
	}

	w := newWriter(srv.URL, 2)
	t.Cleanup(w.close)
	acks := newAckLog()
	for i := range writes {
		room := scaleRoom(i, rooms)
		seq, sent, acked, err := w.put(t.Context(), room, "e1")
		if err != nil {
			t.Fatal(err)
		}
		acks.add(room, seq, sent, acked)
	}
	path := filepath.Join(t.TempDir(), "acks.json")
	if err := writeAckFile(path, acks); err != nil {
		t.Fatal(err)
	}
	collectCh <- path
	if !lines.Scan() {
		t.Fatalf("no summary: %v", lines.Err())
	}
	rest, ok := strings.CutPrefix(lines.Text(), "summary ")
	if !ok {
		t.Fatalf("second line: got %q, want summary {...}", lines.Text())
	}
	var s childSummary
	if err := json.Unmarshal([]byte(rest), &s); err != nil {
		t.Fatal(err)
	}
	want := int64(writes * subs / rooms) // every write reaches its room's subscribers
	if s.Subscribers != subs || s.Failed != 0 || s.Expected != want || s.Delivered != want || s.Lost != 0 ||
		s.Duplicates != 0 || s.OutOfOrder != 0 || s.Disconnected != 0 || s.Latency.N != want || s.Error != "" {
		t.Fatalf("summary: got %+v, want %d subscribers and %d deliveries, none lost, duplicated or out of order", s, subs, want)
	}
	if err := <-done; err != nil {
		t.Fatalf("runSubscribers: %v", err)
	}
}

func TestLoadProcLinesOutliveTheProcess(t *testing.T) {
	// The child prints its summary and exits at once: the parent must
	// still find the line after the exit.
	for range 20 {
		p, err := startLoadProc("/bin/sh", []string{"-c", "echo 'connected 1 0 0.1'; echo 'summary {}'"}, filepath.Join(t.TempDir(), "log"))
		if err != nil {
			t.Fatal(err)
		}
		<-p.done
		if got, err := p.expect(t.Context(), "connected "); err != nil || got != "1 0 0.1" {
			t.Fatalf("expect(connected): got %q, %v; want 1 0 0.1", got, err)
		}
		if got, err := p.expect(t.Context(), "summary "); err != nil || got != "{}" {
			t.Fatalf("expect(summary): got %q, %v; want {}", got, err)
		}
		if _, err := p.expect(t.Context(), "more "); err == nil {
			t.Fatal("expect after the last line of an exited process: got no error, want one")
		}
		p.stop()
	}
}
