package faults

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver: the SQLite nodes' files

	"github.com/roomfeed/roomfeed/internal/testenv"
)

// binary is the roomfeed executable built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "roomfeed-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "roomfeed")
	args := []string{"build", "-o", binary}
	if raceEnabled {
		// The nodes run with the race detector too; a report fails the
		// test that started the node (see node.checkStderr).
		args = append(args, "-race")
	}
	args = append(args, "github.com/roomfeed/roomfeed/cmd/roomfeed")
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "faults: go build:", err)
		return 1
	}
	return m.Run()
}

// lockedBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// ---------------------------------------------------------------- nodes

// node is one roomfeed process. It keeps its address across restarts.
type node struct {
	tb   testing.TB
	name string
	args []string
	addr string // host:port, fixed after the first start
	url  atomic.Pointer[string]

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error
	logs    []*lockedBuffer // stderr of every run
}

// startNode starts roomfeed with args (plus --addr, --web-dir and fast
// heartbeats) and kills it when the test ends.
func startNode(tb testing.TB, name string, args ...string) *node {
	tb.Helper()
	n := &node{tb: tb, name: name, args: args, addr: "127.0.0.1:0"}
	n.start()
	tb.Cleanup(func() {
		n.kill()
		n.checkStderr()
		if tb.Failed() {
			n.dumpLogs()
		}
	})
	return n
}

// URL returns the node's base URL.
func (n *node) URL() string { return *n.url.Load() }

func (n *node) start() {
	n.tb.Helper()
	args := append([]string{"--addr", n.addr, "--web-dir", n.tb.TempDir(), "--heartbeat", "500ms",
		"--shutdown-timeout", "5s"}, n.args...)
	cmd := exec.Command(binary, args...)
	cmd.Env = []string{"GORACE=halt_on_error=0"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		n.tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		n.tb.Fatalf("start %s: %v", n.name, err)
	}
	exited := make(chan struct{})
	n.mu.Lock()
	n.cmd, n.exited, n.exitErr = cmd, exited, nil
	n.logs = append(n.logs, stderr)
	n.mu.Unlock()

	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() {
		err := cmd.Wait()
		n.mu.Lock()
		n.exitErr = err
		n.mu.Unlock()
		close(exited)
	}()
	select {
	case line, ok := <-lines:
		u, found := strings.CutPrefix(line, "listening on ")
		if !ok || !found {
			n.kill()
			n.tb.Fatalf("%s: first line %q, want listening on ...\n%s", n.name, line, stderr)
		}
		n.url.Store(&u)
		n.addr = strings.TrimPrefix(u, "http://")
	case <-time.After(30 * time.Second):
		n.kill()
		n.tb.Fatalf("%s did not listen within 30s\n%s", n.name, stderr)
	}
}

// running reports whether the process is alive.
func (n *node) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (n *node) kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// freeze stops the process (SIGSTOP) without killing it: connections and
// requests sent to it wait unanswered, in its socket queues, until it is
// killed (kill works on a stopped process).
func (n *node) freeze() {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Signal(syscall.SIGSTOP)
	}
}

// term sends SIGTERM and returns how long the process took to exit and its
// exit error (nil for status 0). It kills the process after timeout.
func (n *node) term(timeout time.Duration) (time.Duration, error) {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	start := time.Now()
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(timeout):
		n.kill()
		return time.Since(start), fmt.Errorf("%s did not exit within %v of SIGTERM", n.name, timeout)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return time.Since(start), n.exitErr
}

// restart starts the process again on the same address.
func (n *node) restart() {
	n.tb.Helper()
	n.kill()
	n.start()
}

func (n *node) stderr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var b strings.Builder
	for i, l := range n.logs {
		fmt.Fprintf(&b, "--- %s run %d ---\n%s", n.name, i+1, l)
	}
	return b.String()
}

// checkStderr fails the test on a race report or a panic in any run.
func (n *node) checkStderr() {
	s := n.stderr()
	for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
		if strings.Contains(s, bad) {
			n.tb.Errorf("%s logged %q", n.name, bad)
		}
	}
	// No fault is a reason for a 500: a dependency down is a 503.
	for _, line := range strings.Split(s, "\n") {
		// (A request its client cancelled is logged as a 500 with "context
		// canceled"; nobody receives that answer.)
		if strings.Contains(line, "msg=request") && strings.Contains(line, "status=500") &&
			!strings.Contains(line, "context canceled") {
			n.tb.Errorf("%s answered 500: %s", n.name, line)
		}
	}
}

func (n *node) dumpLogs() {
	var keep []string
	for _, line := range strings.SplitAfter(n.stderr(), "\n") {
		if (!strings.Contains(line, "msg=request ") || !strings.Contains(line, " status=2") || strings.Contains(line, "/events ")) &&
			!strings.Contains(line, "publish failed") {
			keep = append(keep, line) // request lines only when they failed
		}
	}
	s := strings.Join(keep, "")
	const max = 12 << 10
	if len(s) > max {
		s = "...\n" + s[len(s)-max:]
	}
	n.tb.Logf("%s stderr:\n%s", n.name, s)
}

// ---------------------------------------------------------------- services

// backend is one isolated PostgreSQL schema and Redis prefix.
type backend struct {
	pgURL    string
	redisURL string
	prefix   string
}

func newBackend(tb testing.TB) backend {
	tb.Helper()
	_, prefix := testenv.Redis(tb)
	return backend{pgURL: testenv.PostgresURL(tb), redisURL: testenv.RedisURL(tb), prefix: prefix}
}

// args returns the node flags for this backend.
func (b backend) args(extra ...string) []string {
	return append([]string{"--database-url", b.pgURL, "--redis-url", b.redisURL, "--redis-prefix", b.prefix,
		"--relay-interval", "200ms"}, extra...)
}

// redisServer is a throwaway redis-server the test owns: it can be killed and
// restarted (empty: no persistence) on the same port.
type redisServer struct {
	tb   testing.TB
	addr string
	dir  string

	cmd    *exec.Cmd
	exited chan struct{}
}

func startRedis(tb testing.TB) *redisServer {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" || os.Getenv("ROOMFEED_TEST_REQUIRE_SERVICES") != "" {
			tb.Fatal("redis-server is not installed")
		}
		tb.Skip("SKIPPED LOUDLY: redis-server is not installed; run scripts/test-services.sh")
	}
	r := &redisServer{tb: tb, addr: testenv.FreeAddr(tb), dir: tb.TempDir()}
	r.start()
	tb.Cleanup(r.stop)
	return r
}

func (r *redisServer) URL() string { return "redis://" + r.addr + "/0" }

func (r *redisServer) start() {
	r.tb.Helper()
	_, port, _ := net.SplitHostPort(r.addr)
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--protected-mode", "no", "--loglevel", "warning")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		r.tb.Fatalf("redis-server: %v", err)
	}
	r.cmd, r.exited = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(r.exited)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.addr, time.Second)
		if err == nil {
			_, _ = c.Write([]byte("PING\r\n"))
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "+PONG") {
				return
			}
		}
		if time.Now().After(deadline) {
			r.tb.Fatalf("redis-server on %s did not answer within 10s", r.addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop kills the server (SIGKILL: no chance to save anything).
func (r *redisServer) stop() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.exited
	r.cmd = nil
}

// proxy is testenv.Proxy: a TCP proxy the test can cut or stall.
type proxy = testenv.Proxy

func startProxy(tb testing.TB, target string) *proxy { return testenv.StartProxy(tb, target) }

// proxiedPostgres returns pgURL with its host replaced by the proxy's.
func proxiedPostgres(tb testing.TB, pgURL string) (string, *proxy) {
	tb.Helper()
	u, err := url.Parse(pgURL)
	if err != nil {
		tb.Fatal(err)
	}
	p := startProxy(tb, u.Host)
	u.Host = p.Addr()
	return u.String(), p
}

// ---------------------------------------------------------------- HTTP

// client is an HTTP client of its own transport, closed with the test.
func newClient(tb testing.TB, timeout time.Duration) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, ResponseHeaderTimeout: timeout}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: timeout}
}

// writeResult is the outcome of one write as the writer saw it.
type writeResult struct {
	Status int
	Seq    int64 // Event-ID when acknowledged
	Body   string
	Err    error
	Header http.Header // of the answer, where the test needs it
}

func (r writeResult) acked() bool { return r.Err == nil && r.Status/100 == 2 && r.Seq > 0 }

// do sends one write with an Op-ID.
func do(ctx context.Context, c *http.Client, method, u, op, ctype, body string) writeResult {
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		return writeResult{Err: err}
	}
	if body != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if op != "" {
		req.Header.Set("Op-ID", op)
	}
	resp, err := c.Do(req)
	if err != nil {
		return writeResult{Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	res := writeResult{Status: resp.StatusCode, Body: string(b), Err: err}
	if id := resp.Header.Get("Event-ID"); id != "" && resp.StatusCode/100 == 2 {
		res.Seq, _ = strconv.ParseInt(id, 10, 64)
	}
	return res
}

func putElement(ctx context.Context, c *http.Client, base, room, id, op, data string) writeResult {
	return do(ctx, c, http.MethodPut, base+"/rooms/"+room+"/elements/"+id, op, "application/json",
		`{"kind":"item","data":`+data+`}`)
}

// ack is one acknowledged write.
type ack struct {
	Room string
	Seq  int64
	Op   string
}

// ledger records what the writers saw.
type ledger struct {
	mu       sync.Mutex
	acks     []ack
	failed   int            // writes that got no acknowledgement
	lost     []string       // Op-IDs of the writes that got no answer at all
	statuses map[string]int // failures by status or error kind
}

func newLedger() *ledger { return &ledger{statuses: make(map[string]int)} }

func (l *ledger) record(room, op string, r writeResult) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.acked() {
		l.acks = append(l.acks, ack{room, r.Seq, op})
		return
	}
	l.failed++
	key := strconv.Itoa(r.Status)
	if r.Err != nil {
		key = "error"
		l.lost = append(l.lost, op)
	}
	l.statuses[key]++
}

func (l *ledger) snapshot() ([]ack, int, map[string]int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := make(map[string]int, len(l.statuses))
	for k, v := range l.statuses {
		st[k] = v
	}
	return append([]ack(nil), l.acks...), l.failed, st
}

// writer writes to room until ctx is done, through the node pick returns,
// recording every outcome. Elements are spread over a few ids so there are
// creates and replaces.
func writer(ctx context.Context, c *http.Client, l *ledger, name, room string, pick func(i int) *node, pause time.Duration) {
	for i := 0; ctx.Err() == nil; i++ {
		n := pick(i)
		op := name + "-" + strconv.Itoa(i)
		r := putElement(ctx, c, n.URL(), room, name+"-e"+strconv.Itoa(i%5), op, `{"i":`+strconv.Itoa(i)+`}`)
		if ctx.Err() != nil && !r.acked() {
			return // cancelled by the test: not a failure of the service
		}
		l.record(room, op, r)
		if !r.acked() {
			time.Sleep(20 * time.Millisecond)
		}
		if pause > 0 {
			time.Sleep(pause)
		}
	}
}

// ---------------------------------------------------------------- SSE

// feedEvent is one event a subscriber received.
type feedEvent struct {
	Seq  int64
	Type string
	Data string
}

// subscriber follows a room like a robust client: it reconnects with
// Last-Event-ID after every end of stream (to the node pick returns) and
// records every event and every violation of the feed contract it sees.
// A filtered one asks for query (type=, kind=, element=) and expects the
// events want passes; its cursor moves on bare ids too.
type subscriber struct {
	name  string
	room  string
	pick  func(attempt int) *node
	hc    *http.Client
	query string
	want  func(payload string) bool // nil: every event

	mu         sync.Mutex
	events     []feedEvent
	last       int64
	pings      int
	lastPing   time.Time
	connects   int
	refused    map[int]int // non-200 answers by status
	violations []string
	done       chan struct{}
}

// startSubscriber follows room from cursor 0 until the test ends.
func startSubscriber(tb testing.TB, name, room string, pick func(attempt int) *node) *subscriber {
	s := newSubscriber(name, room, pick)
	s.start(tb)
	return s
}

func newSubscriber(name, room string, pick func(attempt int) *node) *subscriber {
	tr := &http.Transport{ResponseHeaderTimeout: 10 * time.Second}
	return &subscriber{name: name, room: room, pick: pick, hc: &http.Client{Transport: tr},
		refused: make(map[int]int), done: make(chan struct{})}
}

// start follows the room from the subscriber's last seq until the test ends.
func (s *subscriber) start(tb testing.TB) {
	tr := s.hc.Transport.(*http.Transport)
	ctx, cancel := context.WithCancel(context.Background())
	go s.run(ctx)
	tb.Cleanup(func() {
		cancel()
		<-s.done
		tr.CloseIdleConnections()
	})
}

func (s *subscriber) run(ctx context.Context) {
	defer close(s.done)
	for attempt := 0; ctx.Err() == nil; attempt++ {
		s.connect(ctx, s.pick(attempt))
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// connect follows one stream until it ends, or until nothing (not even a
// ping) arrived for 5s.
func (s *subscriber) connect(ctx context.Context, n *node) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchdog := time.AfterFunc(5*time.Second, cancel)
	defer watchdog.Stop()
	u := n.URL() + "/rooms/" + s.room + "/events"
	if s.query != "" {
		u += "?" + s.query
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return
	}
	s.mu.Lock()
	req.Header.Set("Last-Event-ID", strconv.FormatInt(s.last, 10))
	s.mu.Unlock()
	resp, err := s.hc.Do(req)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	s.mu.Lock()
	if resp.StatusCode != http.StatusOK {
		s.refused[resp.StatusCode]++
		s.mu.Unlock()
		return
	}
	s.connects++
	s.mu.Unlock()
	s.read(resp.Body, func() { watchdog.Reset(5 * time.Second) })
}

// read parses an SSE body until it ends, calling activity on every line.
func (s *subscriber) read(body io.Reader, activity func()) {
	br := bufio.NewReader(body)
	var (
		id, typ string
		data    []string
	)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		activity()
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if data != nil || typ != "" {
				s.deliver(id, typ, strings.Join(data, "\n"))
			} else if id != "" {
				s.move(id)
			}
			id, typ, data = "", "", nil
		case strings.HasPrefix(line, ":"):
			if strings.TrimSpace(line[1:]) == "ping" {
				s.mu.Lock()
				s.pings++
				s.lastPing = time.Now()
				s.mu.Unlock()
			}
		default:
			f, v, _ := strings.Cut(line, ":")
			v = strings.TrimPrefix(v, " ")
			switch f {
			case "id":
				id = v
			case "event":
				typ = v
			case "data":
				data = append(data, v)
			}
		}
	}
}

func (s *subscriber) deliver(id, typ, data string) {
	if strings.HasPrefix(typ, "presence.") && id == "" {
		return // ephemeral: no id, never replayed (subscribers with ?client=)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if typ == "error" || typ == "reset" {
		s.violations = append(s.violations, fmt.Sprintf("%s event %q after %d: %s", typ, id, s.last, data))
		if typ == "error" {
			return
		}
	}
	seq, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		s.violations = append(s.violations, fmt.Sprintf("event with id %q after %d", id, s.last))
		return
	}
	if seq <= s.last || (s.want == nil && seq != s.last+1) {
		s.violations = append(s.violations, fmt.Sprintf("got seq %d after %d", seq, s.last))
	}
	if seq > s.last {
		s.last = seq
	}
	s.events = append(s.events, feedEvent{Seq: seq, Type: typ, Data: data})
}

// move takes a bare id (an id line alone): a filtered stream's cursor moved
// past events the filter left out.
func (s *subscriber) move(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq, err := strconv.ParseInt(id, 10, 64)
	switch {
	case err != nil || s.want == nil:
		s.violations = append(s.violations, fmt.Sprintf("bare id %q after %d on an unfiltered stream", id, s.last))
	case seq <= s.last:
		s.violations = append(s.violations, fmt.Sprintf("bare id %d after %d: the cursor went back", seq, s.last))
	default:
		s.last = seq
	}
}

// expected returns the events of hist s must receive, in order.
func (s *subscriber) expected(hist []sqlEvent) []sqlEvent {
	if s.want == nil {
		return hist
	}
	var out []sqlEvent
	for _, e := range hist {
		if s.want(e.Payload) {
			out = append(out, e)
		}
	}
	return out
}

// lastSeq returns the highest seq received, or reached by a bare id.
func (s *subscriber) lastSeq() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last
}

func (s *subscriber) stats() (pings, connects int, lastPing time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pings, s.connects, s.lastPing
}

// waitCaughtUp waits until every subscriber has received head.
func waitCaughtUp(tb testing.TB, subs []*subscriber, head int64, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		behind := ""
		for _, s := range subs {
			if got := s.lastSeq(); got < head {
				behind += fmt.Sprintf(" %s at %d;", s.name, got)
			}
		}
		if behind == "" {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("subscribers not caught up to %d within %v:%s", head, timeout, behind)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---------------------------------------------------------------- checks

// sqlEvent is one row of the events table.
type sqlEvent struct {
	Seq     int64
	Payload string
}

// openTruth opens the database of a node's --database-url (postgres:// or
// sqlite://) from the test.
func openTruth(tb testing.TB, dbURL string) *sql.DB {
	tb.Helper()
	driver, dsn := "pgx", dbURL
	if path, ok := strings.CutPrefix(dbURL, "sqlite://"); ok {
		driver, dsn = "sqlite", path+"?_pragma=busy_timeout(10000)"
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	return db
}

// sqlHistory reads a room's history straight from the database (PostgreSQL
// or a SQLite file): the truth.
func sqlHistory(tb testing.TB, dbURL, room string) []sqlEvent {
	tb.Helper()
	db := openTruth(tb, dbURL)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, `SELECT seq, payload FROM events WHERE room = $1 ORDER BY seq`, room)
	if err != nil {
		tb.Fatalf("read history: %v", err)
	}
	defer rows.Close()
	var out []sqlEvent
	for rows.Next() {
		var e sqlEvent
		if err := rows.Scan(&e.Seq, &e.Payload); err != nil {
			tb.Fatal(err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// checkReport is what checkFeed counted.
type checkReport struct {
	Acked, Failed, Committed, Checked int
}

// checkFeed compares what every subscriber received with the SQL history
// and the writers' acknowledgements: each subscriber got every committed
// event exactly once, in seq order, byte for byte as committed, and every
// acknowledged write is the committed event of its Event-ID (by its Op-ID).
// It waits (up to timeout) for the subscribers to reach the SQL head.
func checkFeed(tb testing.TB, pgURL, room string, l *ledger, subs []*subscriber, timeout time.Duration) checkReport {
	tb.Helper()
	// A write whose client gave up may still commit (it was already in a
	// group commit): wait until the history stops growing.
	hist := sqlHistory(tb, pgURL, room)
	for range 50 {
		time.Sleep(200 * time.Millisecond)
		next := sqlHistory(tb, pgURL, room)
		if len(next) == len(hist) {
			break
		}
		hist = next
	}
	head := int64(len(hist))
	for i, e := range hist {
		if e.Seq != int64(i+1) {
			tb.Fatalf("SQL history of %s: got seq %d at position %d, want %d", room, e.Seq, i, i+1)
		}
	}
	waitCaughtUp(tb, subs, head, timeout)
	acks, failed, _ := l.snapshot()
	rep := checkReport{Failed: failed, Committed: len(hist)}
	for _, a := range acks {
		if a.Room != room {
			continue
		}
		rep.Acked++
		if a.Seq < 1 || a.Seq > head {
			tb.Errorf("acknowledged write %s has Event-ID %d, beyond the committed head %d", a.Op, a.Seq, head)
			continue
		}
		if op := opID(hist[a.Seq-1].Payload); op != a.Op {
			tb.Errorf("acknowledged write %s has Event-ID %d, but committed event %d has op_id %q", a.Op, a.Seq, a.Seq, op)
		}
	}
	for _, s := range subs {
		s.mu.Lock()
		evs := append([]feedEvent(nil), s.events...)
		viol := append([]string(nil), s.violations...)
		s.mu.Unlock()
		for _, v := range viol {
			tb.Errorf("%s: %s", s.name, v)
		}
		want := s.expected(hist)
		if len(evs) != len(want) {
			tb.Errorf("%s received %d events, want exactly %d", s.name, len(evs), len(want))
		}
		for i, e := range evs {
			if i >= len(want) {
				break
			}
			if e.Seq != want[i].Seq {
				tb.Errorf("%s: event %d has seq %d, want %d", s.name, i, e.Seq, want[i].Seq)
				break
			}
			if e.Data != want[i].Payload {
				tb.Errorf("%s: event %d data differs from the committed one:\ngot  %s\nwant %s", s.name, e.Seq, e.Data, want[i].Payload)
				break
			}
			rep.Checked++
		}
	}
	return rep
}

// opID extracts op_id from an event payload.
func opID(payload string) string {
	var p struct {
		OpID string `json:"op_id"`
	}
	_ = json.Unmarshal([]byte(payload), &p)
	return p.OpID
}

// getJSON GETs u and decodes the JSON answer into v, returning the status.
func getJSON(ctx context.Context, c *http.Client, u string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s: %w", b, err)
		}
	}
	return resp.StatusCode, nil
}

// eventually polls cond every 50ms until it holds or timeout passes.
func eventually(tb testing.TB, timeout time.Duration, what string, cond func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var errNotYet = errors.New("not yet")

func parseURL(raw string) (*url.URL, error) { return url.Parse(raw) }

func itoa(i int) string { return strconv.Itoa(i) }

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

func readAll(r io.Reader) ([]byte, error) { return io.ReadAll(r) }
