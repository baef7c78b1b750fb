package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/testenv"
	"github.com/roomfeed/roomfeed/repo"
)

// tailRun is one `roomfeed tail` running through run, as main would start it.
type tailRun struct {
	lines  chan string
	stderr *testenv.SyncBuffer
	done   chan error
	cancel context.CancelFunc
}

func startTail(t *testing.T, args ...string) *tailRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	tr := &tailRun{lines: make(chan string, 1024), stderr: &testenv.SyncBuffer{}, done: make(chan error, 1), cancel: cancel}
	go func() {
		err := run(ctx, append([]string{"tail"}, args...), func(string) string { return "" }, pw, tr.stderr)
		pw.Close()
		tr.done <- err
	}()
	go func() {
		defer close(tr.lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			tr.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { tr.stop(t) })
	return tr
}

// stop interrupts the tail and returns what run returned.
func (tr *tailRun) stop(t *testing.T) error {
	t.Helper()
	tr.cancel()
	return tr.wait(t, 10*time.Second)
}

// wait returns run's result once it ends by itself.
func (tr *tailRun) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-tr.done:
		tr.done <- err // stop may be called again by the cleanup
		return err
	case <-time.After(timeout):
		t.Fatalf("tail did not return within %v\n%s", timeout, tr.stderr)
		return nil
	}
}

func (tr *tailRun) line(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-tr.lines:
		if !ok {
			t.Fatalf("tail ended its output; stderr:\n%s", tr.stderr)
		}
		return l
	case <-time.After(15 * time.Second):
		t.Fatalf("no line from tail within 15s; stderr:\n%s", tr.stderr)
		return ""
	}
}

// expectIDs reads lines and checks they are the JSON events from+1..to.
func (tr *tailRun) expectIDs(t *testing.T, from, to int64) {
	t.Helper()
	for want := from + 1; want <= to; want++ {
		l := tr.line(t)
		var ev struct{ ID, Type string }
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("line %q is not JSON: %v", l, err)
		}
		if ev.ID != strconv.FormatInt(want, 10) {
			t.Fatalf("got event %q (%s), want id %d; stderr:\n%s", ev.ID, ev.Type, want, tr.stderr)
		}
	}
}

func (tr *tailRun) expectQuiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case l, ok := <-tr.lines:
		if ok {
			t.Fatalf("got an extra line %q, want none", l)
		}
	case <-time.After(d):
	}
}

// waitCursorFile waits until the cursor file holds want: the tail rewrites
// it just after printing a line, so it may lag the line by a moment.
func waitCursorFile(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		got := strings.TrimSpace(string(b))
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cursor file: got %q (%v), want %q", got, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTailFollowsAcrossRestart tails a room while its node restarts on the
// same address: the tail reconnects with its last id and prints every event
// once; a second tail resumes from the cursor file.
func TestTailFollowsAcrossRestart(t *testing.T) {
	for _, be := range backendsArgs {
		t.Run(be.name, func(t *testing.T) {
			addr := testenv.FreeAddr(t)
			args := append(be.args(t), "--addr", addr)
			n := startNode(t, args...)
			for i := range 3 {
				put(t, n.URL, "tl", "c"+strconv.Itoa(i), "before")
			}
			cursorFile := filepath.Join(t.TempDir(), "tl.cursor")
			tail := startTail(t, "--server", "http://"+addr, "--from", "0", "--cursor-file", cursorFile, "tl")
			tail.expectIDs(t, 0, 3)
			waitCursorFile(t, cursorFile, "3")

			n.stop()
			n = startNode(t, args...)
			put(t, n.URL, "tl", "c9", "after")
			put(t, n.URL, "tl", "c0", "after")
			tail.expectIDs(t, 3, 5)
			tail.expectQuiet(t, 300*time.Millisecond)
			waitCursorFile(t, cursorFile, "5")
			if err := tail.stop(t); err != nil {
				t.Fatalf("tail after interrupt: got %v, want nil", err)
			}
			if !strings.Contains(tail.stderr.String(), "reconnecting") {
				t.Errorf("stderr does not mention the reconnection:\n%s", tail.stderr)
			}

			put(t, n.URL, "tl", "c1", "while away")
			again := startTail(t, "--server", n.URL, "--cursor-file", cursorFile, "--format", "text", "tl")
			l := again.line(t)
			if !strings.Contains(l, " #6 element.updated c1 character v2 ") || !strings.Contains(l, `{"name":"while away"}`) {
				t.Errorf("resumed text line: got %q, want event 6 in the human form", l)
			}
			again.expectQuiet(t, 200*time.Millisecond)
		})
	}
}

// TestTailLiveWithoutCursor: without --from or a cursor file the tail starts
// at the room's position and adopts it, so the file is written at once.
func TestTailLiveWithoutCursor(t *testing.T) {
	n := startNode(t, backendsArgs[0].args(t)...)
	put(t, n.URL, "lv", "a", "old")
	cursorFile := filepath.Join(t.TempDir(), "cursor")
	tail := startTail(t, "--server", n.URL, "lv", "--cursor-file", cursorFile)
	waitCursorFile(t, cursorFile, "1")
	put(t, n.URL, "lv", "b", "new")
	tail.expectIDs(t, 1, 2)
}

// TestTailReset trims the history under a cursor: the tail exits with
// status 3, or with --resnapshot prints the snapshot and follows on.
func TestTailReset(t *testing.T) {
	dbURL := "sqlite://" + filepath.Join(t.TempDir(), "rf.db")
	n := startNode(t, "--database-url", dbURL)
	for i := range 5 {
		put(t, n.URL, "rs", "c"+strconv.Itoa(i), "x")
	}
	n.stop()
	if removed := trimHistory(t, dbURL, "rs", 2, 5); removed != 3 {
		t.Fatalf("trim: got %d, want 3 events removed", removed)
	}
	n = startNode(t, "--database-url", dbURL)

	tail := startTail(t, "--server", n.URL, "--from", "1", "rs")
	err := tail.wait(t, 10*time.Second)
	var coded interface{ ExitCode() int }
	if !errors.As(err, &coded) || coded.ExitCode() != exitReset {
		t.Fatalf("got %v, want an error with exit status %d", err, exitReset)
	}
	if !strings.Contains(err.Error(), "--resnapshot") {
		t.Errorf("error %q does not say how to go on", err)
	}
	tail.expectQuiet(t, 50*time.Millisecond)

	cursorFile := filepath.Join(t.TempDir(), "cursor")
	re := startTail(t, "--server", n.URL, "--from", "1", "--resnapshot", "--cursor-file", cursorFile, "rs")
	seen := map[string]bool{}
	for range 5 {
		var l struct {
			Type, Cursor string
			Element      struct{ ID string }
		}
		if err := json.Unmarshal([]byte(re.line(t)), &l); err != nil || l.Type != "snapshot" || l.Cursor != "5" {
			t.Fatalf("got %+v (%v), want a snapshot line at cursor 5", l, err)
		}
		seen[l.Element.ID] = true
	}
	if len(seen) != 5 {
		t.Errorf("snapshot lines name %v, want the 5 elements", seen)
	}
	waitCursorFile(t, cursorFile, "5")
	put(t, n.URL, "rs", "c9", "after")
	re.expectIDs(t, 5, 6)
}

// chat posts a chat message to room and returns its seq.
func chat(t *testing.T, base, room string) int64 {
	t.Helper()
	status, h, body := call(t, http.MethodPost, base+"/rooms/"+room+"/messages", `{"event":"chat","data":"hi"}`)
	seq, err := strconv.ParseInt(h.Get("Event-ID"), 10, 64)
	if status != http.StatusCreated || err != nil {
		t.Fatalf("POST message: got %d %s", status, body)
	}
	return seq
}

// expectSeqs reads a line per seq and checks each is that event's JSON.
func (tr *tailRun) expectSeqs(t *testing.T, seqs ...int64) {
	t.Helper()
	for _, want := range seqs {
		l := tr.line(t)
		var ev struct{ ID, Type string }
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.ID != strconv.FormatInt(want, 10) {
			t.Fatalf("got line %q, want event %d; stderr:\n%s", l, want, tr.stderr)
		}
	}
}

// TestTailUntilHead: --until-head prints the history up to the head the
// tail found at start, filtered or not, from 0 or from a cursor, keeps the
// cursor file at the head, and exits 0; events written meanwhile wait for
// the next run.
func TestTailUntilHead(t *testing.T) {
	for _, be := range backendsArgs {
		t.Run(be.name, func(t *testing.T) {
			n := startNode(t, be.args(t)...)
			var chats []int64
			for i := range 12 {
				put(t, n.URL, "uh", "c"+strconv.Itoa(i%3), "v"+strconv.Itoa(i))
				chats = append(chats, chat(t, n.URL, "uh"))
			}
			cursorFile := filepath.Join(t.TempDir(), "uh.cursor")
			all := startTail(t, "--server", n.URL, "--until-head", "--cursor-file", cursorFile, "uh")
			all.expectIDs(t, 0, 24)
			if err := all.wait(t, 10*time.Second); err != nil {
				t.Fatalf("--until-head: got %v, want exit 0 at the head", err)
			}
			all.expectQuiet(t, 50*time.Millisecond)
			waitCursorFile(t, cursorFile, "24")

			only := startTail(t, "--server", n.URL, "--until-head", "--from", "3", "--type", "chat", "uh")
			only.expectSeqs(t, chats[1:]...) // 4, 6, ... 24
			if err := only.wait(t, 10*time.Second); err != nil {
				t.Fatalf("--until-head --type chat: got %v, want exit 0", err)
			}
			only.expectQuiet(t, 50*time.Millisecond)

			put(t, n.URL, "uh", "c1", "last") // 25: the last events are left out by the filter
			chat(t, n.URL, "uh")              // 26
			none := startTail(t, "--server", n.URL, "--until-head", "--cursor-file", cursorFile, "--element", "c9", "uh")
			if err := none.wait(t, 10*time.Second); err != nil {
				t.Fatalf("--until-head with nothing to print: got %v, want exit 0", err)
			}
			none.expectQuiet(t, 50*time.Millisecond)
			waitCursorFile(t, cursorFile, "26")
		})
	}
}

// TestTailFilters: a filtered tail prints only the matching events, and
// its cursor file follows the events left out too (a restart does not read
// them again); --until-head meets a trimmed history as the stream does.
func TestTailFilters(t *testing.T) {
	dbURL := "sqlite://" + filepath.Join(t.TempDir(), "rf.db")
	n := startNode(t, "--database-url", dbURL)
	cursorFile := filepath.Join(t.TempDir(), "cursor")
	tail := startTail(t, "--server", n.URL, "--from", "0", "--cursor-file", cursorFile, "--kind", "character", "--element", "c1", "--element", "c2", "ft")
	c1 := put(t, n.URL, "ft", "c1", "a")
	put(t, n.URL, "ft", "c3", "b")
	c2 := put(t, n.URL, "ft", "c2", "c")
	tail.expectSeqs(t, c1, c2)
	last := chat(t, n.URL, "ft")
	waitCursorFile(t, cursorFile, strconv.FormatInt(last, 10))
	tail.expectQuiet(t, 100*time.Millisecond)
	if err := tail.stop(t); err != nil {
		t.Fatal(err)
	}

	for i := range 5 {
		put(t, n.URL, "ft", "d"+strconv.Itoa(i), "x")
	}
	n.stop()
	trimHistory(t, dbURL, "ft", 2, 9)
	n = startNode(t, "--database-url", dbURL)
	gone := startTail(t, "--server", n.URL, "--until-head", "--from", "1", "ft")
	err := gone.wait(t, 10*time.Second)
	var coded interface{ ExitCode() int }
	if !errors.As(err, &coded) || coded.ExitCode() != exitReset || !strings.Contains(err.Error(), "--from 7") {
		t.Fatalf("--until-head from a trimmed cursor: got %v, want exit status %d saying --from 7", err, exitReset)
	}
	re := startTail(t, "--server", n.URL, "--until-head", "--from", "1", "--resnapshot", "ft")
	for range 8 { // the snapshot: c1, c2, c3, d0..d4
		if l := re.line(t); !strings.Contains(l, `"type":"snapshot","cursor":"9"`) {
			t.Fatalf("got %q, want a snapshot line at 9", l)
		}
	}
	if err := re.wait(t, 10*time.Second); err != nil {
		t.Fatalf("--until-head --resnapshot: got %v, want exit 0", err)
	}
}

// trimHistory applies retention to room in the database at dbURL, whose
// node is stopped: it keeps the newest keep events at or below below, and
// returns how many it removed.
func trimHistory(t *testing.T, dbURL, room string, keep, below int64) int64 {
	t.Helper()
	store, err := repo.Open(t.Context(), dbURL, repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	removed, err := store.Trim(t.Context(), room, keep, 0, below)
	if err != nil {
		t.Fatalf("trim: %v", err)
	}
	return removed
}

// fakeFeed serves scripted streams: the nth connection gets streams[n].
type fakeFeed struct {
	streams []func(w http.ResponseWriter, r *http.Request)
	conns   atomic.Int32
	lastIDs chan string
}

func (f *fakeFeed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := int(f.conns.Add(1)) - 1
	f.lastIDs <- r.Header.Get("Last-Event-ID")
	if i >= len(f.streams) {
		http.Error(w, "no more", http.StatusServiceUnavailable)
		return
	}
	f.streams[i](w, r)
}

func sseHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
}

// announcedWait returns the wait of the first "reconnecting in" note in a
// tail's stderr.
func announcedWait(stderr string) (time.Duration, error) {
	_, after, ok := strings.Cut(stderr, "reconnecting in ")
	if f := strings.Fields(after); ok && len(f) > 0 {
		return time.ParseDuration(f[0])
	}
	return 0, errors.New("no reconnecting note")
}

// TestTailProtocol drives the tail with a scripted server where a real node
// cannot show the case: retry: hints, clean closes, CR line endings,
// duplicate ids, 503 with Retry-After, a refused cursor.
func TestTailProtocol(t *testing.T) {
	hold := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	f := &fakeFeed{lastIDs: make(chan string, 16), streams: []func(http.ResponseWriter, *http.Request){
		func(w http.ResponseWriter, r *http.Request) {
			sseHeaders(w)
			fmt.Fprint(w, "retry: 50\n\n: hello\n\nid: 1\nevent: element.created\ndata: {\"id\":\"1\",\n")
			fmt.Fprint(w, "data: \"type\":\"element.created\"}\n\n")
		},
		func(w http.ResponseWriter, r *http.Request) {
			sseHeaders(w)
			// CR and CRLF endings, an id already printed, then a new one.
			fmt.Fprint(w, "id: 1\revent: element.created\rdata: {\"id\":\"1\"}\r\rid: 2\r\ndata: {\"id\":\"2\",\"type\":\"chat\"}\r\n\r\n"+
				"event: presence.joined\ndata: {\"person\":\"bram\",\"type\":\"presence.joined\"}\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		},
	}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close) // after the tail stops: Close waits for open streams

	tail := startTail(t, "--server", srv.URL, "--from", "0", "room1")
	if got := <-f.lastIDs; got != "0" {
		t.Errorf("first Last-Event-ID: got %q, want 0", got)
	}
	if l := tail.line(t); l != `{"id":"1","type":"element.created"}` {
		t.Errorf("line 1: got %q, want the two data lines joined as compact JSON", l)
	}
	select {
	case got := <-f.lastIDs:
		if got != "1" {
			t.Errorf("Last-Event-ID after a clean close: got %q, want 1", got)
		}
		// The wait the tail took, as it announced it before waiting, not
		// the time the reconnection took: a loaded machine may take longer
		// to dial than the default wait.
		if wait, err := announcedWait(tail.stderr.String()); err != nil || wait > 100*time.Millisecond {
			t.Errorf("reconnected after %v (%v), want about the 50ms retry: hint; stderr:\n%s", wait, err, tail.stderr)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no reconnection after a clean close; stderr:\n%s", tail.stderr)
	}
	if l := tail.line(t); l != `{"id":"2","type":"chat"}` {
		t.Errorf("line 2: got %q, want event 2 (event 1 again skipped)", l)
	}
	if l := tail.line(t); l != `{"person":"bram","type":"presence.joined"}` {
		t.Errorf("line 3: got %q, want the id-less presence event (not skipped as a repeat of id 2)", l)
	}
	if err := tail.stop(t); err != nil {
		t.Errorf("tail: got %v, want nil after interrupt", err)
	}

	t.Run("503 then refused cursor", func(t *testing.T) {
		var calls atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if calls.Add(1) == 1 {
				w.Header().Set("Retry-After", "1")
				http.Error(w, `{"error":{"code":"shutting_down","message":"bye"}}`, http.StatusServiceUnavailable)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":{"code":"cursor_ahead","message":"Last-Event-ID 9 is ahead"}}`)
		}))
		t.Cleanup(srv.Close)
		start := time.Now()
		tail := startTail(t, "--server", srv.URL, "--from", "9", "room1")
		err := tail.wait(t, 10*time.Second)
		if err == nil || !strings.Contains(err.Error(), "cursor_ahead") {
			t.Fatalf("got %v, want the 400 cursor_ahead as the error", err)
		}
		if elapsed := time.Since(start); elapsed < 900*time.Millisecond {
			t.Errorf("retried after %v, want at least the 1s of Retry-After", elapsed)
		}
		if calls.Load() != 2 {
			t.Errorf("got %d requests, want 2 (503 retried, 400 final)", calls.Load())
		}
	})

	t.Run("snapshot retried after a 503", func(t *testing.T) {
		var snapshots atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/elements") {
				if snapshots.Add(1) == 1 {
					http.Error(w, `{"error":{"code":"database_unavailable","message":"down"}}`, http.StatusServiceUnavailable)
					return
				}
				fmt.Fprint(w, `{"room":"room1","cursor":"8","elements":[{"id":"c1","kind":"k","version":3,"data":{"a":1},"updated_at":"2026-11-25T11:40:59.123456Z"}]}`)
				return
			}
			sseHeaders(w)
			fmt.Fprint(w, "retry: 10\n\nid: 7\nevent: reset\ndata: {\"room\":\"room1\",\"cursor\":\"7\",\"reason\":\"history_trimmed\"}\n\n"+
				"id: 8\nevent: chat\ndata: {\"id\":\"8\"}\n\nid: 9\nevent: chat\ndata: {\"id\":\"9\"}\n\n")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}))
		t.Cleanup(srv.Close)
		tail := startTail(t, "--server", srv.URL, "--from", "2", "--resnapshot", "--max-backoff", "10ms", "room1")
		want := `{"room":"room1","type":"snapshot","cursor":"8","element":{"id":"c1","kind":"k","version":3,"data":{"a":1},"updated_at":"2026-11-25T11:40:59.123456Z"}}`
		if l := tail.line(t); l != want {
			t.Errorf("got %q, want the snapshot line %q", l, want)
		}
		if l := tail.line(t); l != `{"id":"9"}` {
			t.Errorf("got %q, want event 9 (8 is in the snapshot)", l)
		}
		if !strings.Contains(tail.stderr.String(), "database_unavailable") {
			t.Errorf("stderr does not say why the snapshot was retried:\n%s", tail.stderr)
		}
	})

	t.Run("silent stream", func(t *testing.T) {
		f := &fakeFeed{lastIDs: make(chan string, 16), streams: []func(http.ResponseWriter, *http.Request){
			func(w http.ResponseWriter, r *http.Request) {
				sseHeaders(w)
				fmt.Fprint(w, "retry: 10\n\n")
				w.(http.Flusher).Flush()
				<-r.Context().Done() // never a ping: a dead connection
			},
			hold,
		}}
		srv := httptest.NewServer(f)
		t.Cleanup(srv.Close)
		tail := startTail(t, "--server", srv.URL, "--from", "4", "--idle-timeout", "200ms", "room1")
		<-f.lastIDs
		select {
		case got := <-f.lastIDs:
			if got != "4" {
				t.Errorf("Last-Event-ID: got %q, want 4", got)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no reconnection after 200ms of silence; stderr:\n%s", tail.stderr)
		}
		if !strings.Contains(tail.stderr.String(), "nothing received") {
			t.Errorf("stderr does not say why it reconnected:\n%s", tail.stderr)
		}
	})
}

func TestTailArgs(t *testing.T) {
	tests := []struct {
		args    []string
		env     map[string]string
		wantErr string
		check   func(t *testing.T, c tailConfig)
	}{
		{args: []string{"w1"}, check: func(t *testing.T, c tailConfig) {
			if c.Server.String() != "http://127.0.0.1:8080" || c.Room != "w1" || c.Format != "json" || c.From != "" {
				t.Errorf("got %+v, want the defaults", c)
			}
		}},
		{args: []string{"w1", "--from", "42-0", "--format", "text"}, env: map[string]string{"ROOMFEED_SERVER": "https://feed.example/"},
			check: func(t *testing.T, c tailConfig) {
				if c.Server.String() != "https://feed.example" || c.From != "42-0" || c.Format != "text" {
					t.Errorf("got %+v, want flags after the room and the server from the environment", c)
				}
			}},
		{args: nil, wantErr: "exactly one room"},
		{args: []string{"a", "b"}, wantErr: "exactly one room"},
		{args: []string{"bad/room"}, wantErr: "must match"},
		{args: []string{"--format", "yaml", "w1"}, wantErr: "--format"},
		{args: []string{"--from", "x", "w1"}, wantErr: "--from"},
		{args: []string{"--server", "ftp://x", "w1"}, wantErr: "--server"},
		{args: []string{"--kind", "Bad", "w1"}, wantErr: "--kind"},
		{args: []string{"--element", "..", "w1"}, wantErr: "--element"},
		{args: []string{"--type", "", "w1"}, wantErr: "--type"},
		{args: []string{"--type", "chat", "w1", "--type", "element.updated", "--kind", "character", "--until-head"},
			check: func(t *testing.T, c tailConfig) {
				if !c.UntilHead || len(c.Filter.Types) != 2 || c.Filter.Kinds[0] != "character" {
					t.Errorf("got %+v, want --until-head and the filter, flags on both sides of the room", c)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			c, err := parseTailConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}
