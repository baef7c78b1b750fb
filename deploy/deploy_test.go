package deploy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
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

	"github.com/roomfeed/roomfeed/internal/testenv"
)

// proc is a child process the test owns; it is killed when the test ends.
type proc struct {
	name   string
	cmd    *exec.Cmd
	output *testenv.SyncBuffer
	done   chan struct{}
}

func start(t *testing.T, name string, stdout io.Writer, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), output: &testenv.SyncBuffer{}, done: make(chan struct{})}
	p.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	p.cmd.Stderr = p.output
	p.cmd.Stdout = p.output
	if stdout != nil {
		p.cmd.Stdout = stdout
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.signal(syscall.SIGKILL)
			<-p.done
		}
		if t.Failed() {
			t.Logf("--- %s output:\n%s", p.name, p.output)
		}
	})
	return p
}

func (p *proc) signal(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Signal(sig)
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// nginxPath finds Debian's nginx (package nginx); without it the test fails
// under CI and `make test`, and is skipped loudly otherwise.
func nginxPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	testenv.Missing(t, "nginx is not installed (Debian: apt-get install -y nginx)")
	return ""
}

// buildRoomfeed builds the binary as `make build` does (CGO_ENABLED=0
// -trimpath), or with -race when the test runs under -race.
func buildRoomfeed(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "roomfeed")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/roomfeed")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if raceEnabled {
		cmd = exec.Command("go", "build", "-race", "-o", bin, "./cmd/roomfeed")
		cmd.Env = os.Environ()
	}
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// direct talks to one node without keeping connections, so the only
// connections a node holds are the ones nginx opened.
var direct = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

func waitReady(t *testing.T, p *proc, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && !p.exited() {
		resp, err := direct.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not ready at %s:\n%s", p.name, base, p.output)
}

// renderNginx makes a runnable nginx configuration around deploy/nginx.conf,
// changing only the upstream addresses and the listen port.
func renderNginx(t *testing.T, dir string, listen, nodeA, nodeB int) string {
	t.Helper()
	site, err := os.ReadFile("nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := string(site)
	for old, repl := range map[string]string{
		"server 127.0.0.1:8081 ": fmt.Sprintf("server 127.0.0.1:%d ", nodeA),
		"server 127.0.0.1:8082 ": fmt.Sprintf("server 127.0.0.1:%d ", nodeB),
		"listen 80;":             fmt.Sprintf("listen 127.0.0.1:%d;", listen),
	} {
		if n := strings.Count(conf, old); n != 1 {
			t.Fatalf("deploy/nginx.conf has %q %d times, want once", old, n)
		}
		conf = strings.Replace(conf, old, repl, 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "roomfeed.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var main strings.Builder
	fmt.Fprintf(&main, "worker_processes 1;\npid %s/nginx.pid;\nerror_log %s/error.log notice;\n", dir, dir)
	fmt.Fprintf(&main, "events { worker_connections 256; }\nhttp {\n  access_log %s/access.log;\n", dir)
	for _, tmp := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&main, "  %s_temp_path %s/%s;\n", tmp, dir, tmp)
	}
	fmt.Fprintf(&main, "  include %s/roomfeed.conf;\n}\n", dir)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(main.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// subscribers reads a node's roomfeed_subscribers gauge from its /metrics:
// the node serving the tail's stream is the one with a subscriber. (Counting
// TCP connections would also count nginx's idle upstream keep-alives.)
func subscribers(t *testing.T, port int) int {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatalf("metrics of node on %d: %v", port, err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "roomfeed_subscribers "); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("roomfeed_subscribers %q: %v", v, err)
			}
			return int(n)
		}
	}
	t.Fatalf("node on %d exposes no roomfeed_subscribers", port)
	return 0
}

// TestFailoverBehindNginx: two nodes on PostgreSQL and Redis behind
// deploy/nginx.conf; `roomfeed tail` follows a room through nginx while
// writes go on; the node serving the stream is killed (SIGKILL); the tail
// resumes through the other node and prints every event exactly once, in
// order.
func TestFailoverBehindNginx(t *testing.T) {
	nginx := nginxPath(t)
	bin := buildRoomfeed(t)
	pgURL := testenv.PostgresURL(t)
	redisURL := testenv.RedisURL(t)
	_, prefix := testenv.Redis(t)

	ports := []int{freePort(t), freePort(t)}
	nodes := make([]*proc, 2)
	for i, port := range ports {
		nodes[i] = start(t, "node "+strconv.Itoa(i), nil, bin,
			"--addr", fmt.Sprintf("127.0.0.1:%d", port), "--database-url", pgURL, "--redis-url", redisURL,
			"--redis-prefix", prefix, "--relay-interval", "200ms", "--web-dir", t.TempDir(), "--trusted-proxies", "127.0.0.1")
		// One after the other: the first applies the migrations.
		waitReady(t, nodes[i], fmt.Sprintf("http://127.0.0.1:%d", port))
	}

	dir := t.TempDir()
	// The workers may run as another user: let them into their temp dirs.
	_ = os.Chmod(filepath.Dir(dir), 0o755)
	_ = os.Chmod(dir, 0o755)
	listen := freePort(t)
	conf := renderNginx(t, dir, listen, ports[0], ports[1])
	if out, err := exec.Command(nginx, "-t", "-q", "-e", filepath.Join(dir, "error.log"), "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	ngx := start(t, "nginx", nil, nginx, "-e", filepath.Join(dir, "error.log"), "-c", conf, "-g", "daemon off;")
	proxy := fmt.Sprintf("http://127.0.0.1:%d", listen)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Only a TCP check: a request would open upstream connections.
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", listen)); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) || ngx.exited() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx did not listen:\n%s\n%s", ngx.output, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("--- nginx error.log:\n%s", b)
		}
	})

	const room = "deploy"
	write := func(client *http.Client, base string, i int) (int64, error) {
		body := fmt.Sprintf(`{"kind":"item","data":{"n":%d}}`, i)
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/rooms/%s/elements/e%d", base, room, i%7), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
			b, _ := io.ReadAll(resp.Body)
			return 0, fmt.Errorf("PUT: %d %s", resp.StatusCode, b)
		}
		return strconv.ParseInt(resp.Header.Get("Event-ID"), 10, 64)
	}
	for i := range 3 {
		if _, err := write(direct, fmt.Sprintf("http://127.0.0.1:%d", ports[i%2]), i); err != nil {
			t.Fatal(err)
		}
	}

	// The client: roomfeed tail, through nginx, from the beginning.
	pr, pw := io.Pipe()
	lines := make(chan string, 4096)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	tail := start(t, "tail", pw, bin, "tail", "--server", proxy, "--from", "0", room)
	t.Cleanup(func() { pw.Close() })
	var got []int64
	next := func(timeout time.Duration) (int64, bool) {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("tail ended:\n%s", tail.output)
			}
			var ev struct{ ID string }
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatalf("tail printed %q: %v", l, err)
			}
			seq, err := strconv.ParseInt(ev.ID, 10, 64)
			if err != nil {
				t.Fatalf("tail printed id %q", ev.ID)
			}
			got = append(got, seq)
			return seq, true
		case <-time.After(timeout):
			return 0, false
		}
	}
	for range 3 {
		if _, ok := next(10 * time.Second); !ok {
			t.Fatalf("tail printed %v, want 1..3 replayed through nginx\n%s", got, tail.output)
		}
	}

	// Which node holds the stream? Nothing else has gone through nginx.
	var serving, other int
	switch a, b := subscribers(t, ports[0]), subscribers(t, ports[1]); {
	case a == 1 && b == 0:
		serving, other = 0, 1
	case a == 0 && b == 1:
		serving, other = 1, 0
	default:
		t.Fatalf("nodes have %d and %d subscribers, want the one stream on one node", a, b)
	}
	t.Logf("the stream is on node %d (port %d)", serving, ports[serving])

	// A live event through nginx arrives at once (no proxy buffering).
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	seq, err := write(client, proxy, 3)
	if err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	if s, ok := next(5 * time.Second); !ok || s != seq {
		t.Fatalf("live event %d through nginx: got %v", seq, got)
	}
	if lag := time.Since(sent); lag > 2*time.Second {
		t.Errorf("live event took %v through nginx, want it at once (buffering?)", lag)
	}

	// Writes go on through nginx while the serving node dies: some are
	// answered before the kill, and more after it, through the other node.
	// Counted, not timed: on a loaded machine a write through nginx can take
	// a tenth of a second.
	var (
		stop    = make(chan struct{})
		writers sync.WaitGroup
		written atomic.Int64
		failed  atomic.Int64
	)
	writers.Go(func() {
		for i := 4; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if _, err := write(client, proxy, i); err != nil {
				failed.Add(1) // in flight on the killed node; the next one goes to the other
				continue
			}
			written.Add(1)
		}
	})
	untilWritten := func(n int64, when string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for written.Load() < n {
			if time.Now().After(deadline) {
				close(stop)
				writers.Wait()
				t.Fatalf("%s: %d writes went through nginx (%d failed) within 30 s, want %d", when, written.Load(), failed.Load(), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	untilWritten(5, "before the kill")
	nodes[serving].signal(syscall.SIGKILL)
	<-nodes[serving].done
	killedAt := time.Now()
	untilWritten(written.Load()+15, "after the kill")
	close(stop)
	writers.Wait()

	// Every committed event, exactly once and in order, through the other node.
	resp, err := direct.Get(fmt.Sprintf("http://127.0.0.1:%d/rooms/%s/elements", ports[other], room))
	if err != nil {
		t.Fatal(err)
	}
	var snap struct{ Cursor string }
	err = json.NewDecoder(resp.Body).Decode(&snap)
	resp.Body.Close()
	head, perr := strconv.ParseInt(snap.Cursor, 10, 64)
	if err != nil || perr != nil {
		t.Fatalf("snapshot cursor %q: %v %v", snap.Cursor, err, perr)
	}
	for int64(len(got)) < head {
		if _, ok := next(15 * time.Second); !ok {
			t.Fatalf("after the kill the tail printed up to %v, want every event to %d\n%s", got[len(got)-1], head, tail.output)
		}
	}
	resumed := time.Since(killedAt)
	for i, s := range got {
		if s != int64(i+1) {
			t.Fatalf("tail printed %v, want 1..%d in order with no gap or repeat", got, head)
		}
	}
	if s, ok := next(300 * time.Millisecond); ok {
		t.Errorf("tail printed %d after the head %d", s, head)
	}
	if !strings.Contains(tail.output.String(), "reconnecting") {
		t.Errorf("tail did not say it reconnected:\n%s", tail.output)
	}
	if n := subscribers(t, ports[other]); n != 1 {
		t.Errorf("the surviving node has %d subscribers, want the resumed tail", n)
	}
	t.Logf("%d events; %d writes during the failover (%d failed in flight); tail complete %v after the kill",
		head, written.Load(), failed.Load(), resumed.Round(time.Millisecond))
}
