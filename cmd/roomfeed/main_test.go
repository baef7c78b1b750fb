package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/roomfeed/roomfeed/internal/ssetest"
	"github.com/roomfeed/roomfeed/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Idle keep-alive connections of http.DefaultClient belong to the
		// test process, not to the server under test.
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

// process is one roomfeed process started through run, as main would.
type process struct {
	URL    string
	stop   func()
	stderr *testenv.SyncBuffer
	stdout *testenv.SyncBuffer // what run printed after its first line
}

// startNode runs the service on 127.0.0.1:0 with the given flags and stops it
// when the test ends (or when Stop is called).
func startNode(t *testing.T, args ...string) *process {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	stderr := &testenv.SyncBuffer{}
	done := make(chan error, 1)
	// A node given no database gets a file of its own, never the default
	// data/roomfeed.db in the package's directory (a later flag wins).
	args = append([]string{"--addr", "127.0.0.1:0", "--web-dir", t.TempDir(), "--heartbeat", "1s",
		"--database-url", "sqlite://" + filepath.Join(t.TempDir(), "rf.db")}, args...)
	go func() {
		err := run(ctx, args, func(string) string { return "" }, pw, stderr)
		pw.Close()
		done <- err
	}()
	lines := bufio.NewScanner(pr)
	if !lines.Scan() {
		cancel()
		t.Fatalf("run ended before listening: %v\n%s", <-done, stderr)
	}
	url, ok := strings.CutPrefix(lines.Text(), "listening on ")
	if !ok {
		cancel()
		t.Fatalf("first line %q, want listening on ...", lines.Text())
	}
	stdout := &testenv.SyncBuffer{}
	go func() { _, _ = io.Copy(stdout, pr) }()
	var once sync.Once
	n := &process{URL: url, stderr: stderr, stdout: stdout}
	n.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run: %v\n%s", err, stderr)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("run did not return within 15s of cancel\n%s", stderr)
			}
			http.DefaultClient.CloseIdleConnections()
		})
	}
	t.Cleanup(n.stop)
	return n
}

type backendArgs struct {
	name string
	args func(t *testing.T) []string
}

var backendsArgs = []backendArgs{
	{"sqlite", func(t *testing.T) []string {
		return []string{"--database-url", "sqlite://" + filepath.Join(t.TempDir(), "rf.db")}
	}},
	{"postgres+redis", func(t *testing.T) []string {
		_, prefix := testenv.Redis(t)
		return []string{"--database-url", testenv.PostgresURL(t), "--redis-url", testenv.RedisURL(t), "--redis-prefix", prefix,
			"--relay-interval", "200ms"}
	}},
}

func call(t *testing.T, method, url, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func put(t *testing.T, base, room, id, name string) int64 {
	t.Helper()
	status, h, body := call(t, http.MethodPut, base+"/rooms/"+room+"/elements/"+id, `{"kind":"character","data":{"name":"`+name+`"}}`)
	if status != http.StatusOK && status != http.StatusCreated {
		t.Fatalf("PUT %s: got %d %s, want 200 or 201", id, status, body)
	}
	seq, err := strconv.ParseInt(h.Get("Event-ID"), 10, 64)
	if err != nil {
		t.Fatalf("Event-ID %q: %v", h.Get("Event-ID"), err)
	}
	return seq
}

// expect reads events from s and checks their ids are exactly from+1..to.
func expect(t *testing.T, s *ssetest.Stream, from, to int64) []ssetest.Event {
	t.Helper()
	var out []ssetest.Event
	for want := from + 1; want <= to; want++ {
		ev := s.MustNext(t, 10*time.Second)
		if ev.ID != strconv.FormatInt(want, 10) {
			t.Fatalf("got event id %q (%s), want %d", ev.ID, ev.Type, want)
		}
		out = append(out, ev)
	}
	return out
}

func TestCurlSession(t *testing.T) {
	for _, be := range backendsArgs {
		t.Run(be.name, func(t *testing.T) {
			n := startNode(t, be.args(t)...)
			tail := ssetest.Open(t, n.URL+"/rooms/w1/events", "")
			seq := put(t, n.URL, "w1", "c1", "Aria")
			ev := expect(t, tail, 0, seq)[0]
			if ev.Type != "element.created" || !strings.Contains(ev.Data, `"name":"Aria"`) {
				t.Errorf("tail got %+v, want element.created with Aria", ev)
			}
			status, _, body := call(t, http.MethodGet, n.URL+"/rooms/w1/elements", "")
			var snap struct {
				Cursor   string `json:"cursor"`
				Elements []struct {
					ID string `json:"id"`
				} `json:"elements"`
			}
			if err := json.Unmarshal(body, &snap); status != http.StatusOK || err != nil {
				t.Fatalf("snapshot: got %d %s (%v)", status, body, err)
			}
			if snap.Cursor != "1" || len(snap.Elements) != 1 || snap.Elements[0].ID != "c1" {
				t.Errorf("snapshot: got %s, want cursor 1 with c1", body)
			}
			replay := ssetest.Open(t, n.URL+"/rooms/w1/events", "0")
			expect(t, replay, 0, 1)

			status, _, body = call(t, http.MethodGet, n.URL+"/readyz", "")
			if status != http.StatusOK {
				t.Errorf("readyz: got %d %s, want 200", status, body)
			}
		})
	}
}

func TestReconnectGetsExactlyMissedEvents(t *testing.T) {
	for _, be := range backendsArgs {
		t.Run(be.name, func(t *testing.T) {
			n := startNode(t, be.args(t)...)
			s := ssetest.Open(t, n.URL+"/rooms/w2/events", "0")
			for i := range 5 {
				put(t, n.URL, "w2", "c"+strconv.Itoa(i), "x")
			}
			got := expect(t, s, 0, 5)
			s.Close()
			last := got[len(got)-1].ID
			var head int64
			for i := range 7 {
				head = put(t, n.URL, "w2", "d"+strconv.Itoa(i), "y")
			}
			again := ssetest.Open(t, n.URL+"/rooms/w2/events", last)
			expect(t, again, 5, head)
			if ev, err := again.Next(300 * time.Millisecond); !errors.Is(err, ssetest.ErrTimeout) {
				t.Errorf("after the missed events: got %+v, %v; want nothing more", ev, err)
			}
		})
	}
}

func TestRestartKeepsHistory(t *testing.T) {
	for _, be := range backendsArgs {
		t.Run(be.name, func(t *testing.T) {
			args := be.args(t)
			n := startNode(t, args...)
			for i := range 3 {
				put(t, n.URL, "w3", "c"+strconv.Itoa(i), "before")
			}
			n.stop()

			n2 := startNode(t, args...)
			replay := ssetest.Open(t, n2.URL+"/rooms/w3/events", "1")
			expect(t, replay, 1, 3)
			if seq := put(t, n2.URL, "w3", "c9", "after"); seq != 4 {
				t.Errorf("seq after restart: got %d, want 4", seq)
			}
			expect(t, replay, 3, 4)
		})
	}
}

// TestTwoNodes runs two processes over one PostgreSQL and one Redis: writes
// through either node reach subscribers of both, in one gap-free order, and
// signals reach them too.
func TestTwoNodes(t *testing.T) {
	args := backendsArgs[1].args(t)
	a := startNode(t, args...)
	b := startNode(t, args...)
	subA := ssetest.Open(t, a.URL+"/rooms/shared/events", "0")
	subB := ssetest.Open(t, b.URL+"/rooms/shared/events", "0")

	seq := put(t, a.URL, "shared", "c1", "from A")
	if ev := expect(t, subB, 0, seq)[0]; !strings.Contains(ev.Data, "from A") {
		t.Errorf("node B got %q, want the write made on node A", ev.Data)
	}
	expect(t, subA, 0, seq)

	const perNode = 60
	var wg sync.WaitGroup
	for i, n := range []*process{a, b} {
		for w := range 3 {
			wg.Go(func() {
				for j := range perNode / 3 {
					put(t, n.URL, "shared", "n"+strconv.Itoa(i)+"w"+strconv.Itoa(w)+"-"+strconv.Itoa(j%4), "x")
				}
			})
		}
	}
	wg.Wait()
	total := int64(1 + 2*perNode)
	gotA := expect(t, subA, 1, total)
	gotB := expect(t, subB, 1, total)
	for i := range gotA {
		if gotA[i].Data != gotB[i].Data {
			t.Fatalf("event %s differs between nodes:\nA %s\nB %s", gotA[i].ID, gotA[i].Data, gotB[i].Data)
		}
	}
	// Signals cross the nodes too, both ways.
	sendSignal(t, a.URL, "shared", "cursor", subB)
	sendSignal(t, b.URL, "shared", "typing", subA) // (subA has the cursor signal too)
}

// TestShutdownClosesStreamsPromptly stops a node with feeds open: the streams
// end at once (clients reconnect elsewhere) and run returns.
func TestShutdownClosesStreamsPromptly(t *testing.T) {
	n := startNode(t, backendsArgs[0].args(t)...)
	var streams []*ssetest.Stream
	for i := range 5 {
		streams = append(streams, ssetest.Open(t, n.URL+"/rooms/r"+strconv.Itoa(i)+"/events", ""))
	}
	start := time.Now()
	n.stop()
	for i, s := range streams {
		if !s.Ended(2 * time.Second) {
			t.Errorf("stream %d still open 2s after shutdown", i)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v with open streams, want well under the 10s timeout", d)
	}
}
