package api_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/feed/redis"
	"github.com/roomfeed/roomfeed/internal/testenv"
	"github.com/roomfeed/roomfeed/repo"
	"github.com/roomfeed/roomfeed/sse"
)

// testServer is the real handler over a real store and log, on a real
// loopback listener.
type testServer struct {
	URL   string
	Store *repo.Store
	Hub   *sse.Hub
	Feeds *sse.Engine
	Srv   *api.Server
	Log   eventLog
}

// eventLog is a backend's log: api publishes to it, the feed engine reads
// it.
type eventLog interface {
	api.EventLog
	sse.Source
}

type backend struct {
	name string
	// tls serves HTTPS with HTTP/2, where no connection is taken over: every
	// stream is served by its request's goroutine, as with TLS in
	// production, instead of the pump.
	tls bool
	// open returns the store and the log for a fresh, isolated backend.
	open func(t *testing.T, hub *sse.Hub, redisMaxLen int64) (*repo.Store, eventLog)
}

// openSQLite is the embedded backend.
func openSQLite(t *testing.T, hub *sse.Hub, _ int64) (*repo.Store, eventLog) {
	// synchronous=NORMAL only trades durability on power loss for speed
	// when building long histories; the behaviour under test is the same.
	store := openStore(t, "sqlite://"+filepath.Join(t.TempDir(), "rf.db")+"?_pragma=synchronous(NORMAL)")
	return store, feed.NewMemLog(hub, store)
}

// backends are what every forEachBackend test runs on: both stores and
// logs over plain HTTP/1.1 (pumped streams), and SQLite once more over
// HTTPS with HTTP/2 (streams served by their request's goroutine).
var backends = []backend{
	{"sqlite", false, openSQLite},
	{"sqlite-tls", true, openSQLite},
	{"postgres+redis", false, func(t *testing.T, hub *sse.Hub, maxLen int64) (*repo.Store, eventLog) {
		store := openStore(t, testenv.PostgresURL(t))
		client, prefix := testenv.Redis(t)
		return store, runRedisLog(t, client, prefix, hub, store, maxLen)
	}},
}

// sharedRedis is PostgreSQL and Redis shared by every server opened on
// it, as the nodes of one deployment share them.
func sharedRedis(t *testing.T) (backend, goredis.UniversalClient, string) {
	t.Helper()
	pgURL := testenv.PostgresURL(t)
	client, prefix := testenv.Redis(t)
	be := backend{name: "shared postgres+redis", open: func(t *testing.T, hub *sse.Hub, maxLen int64) (*repo.Store, eventLog) {
		store := openStore(t, pgURL)
		return store, runRedisLog(t, client, prefix, hub, store, maxLen)
	}}
	return be, client, prefix
}

// runRedisLog returns a Redis log delivering to hub, with its reader and
// its signals' subscriber running until the test ends; the subscriber
// listens when it returns.
func runRedisLog(t *testing.T, client goredis.UniversalClient, prefix string, hub *sse.Hub, store *repo.Store, maxLen int64) *redis.Log {
	t.Helper()
	rl := redis.New(client, hub, store, redis.Options{Prefix: prefix, MaxLen: maxLen, Block: 200 * time.Millisecond})
	runLoop(t, rl.Run)
	channel := prefix + "signals"
	listening := func() int64 {
		n, err := client.PubSubNumSub(t.Context(), channel).Result()
		if err != nil {
			t.Fatalf("PUBSUB NUMSUB: %v", err)
		}
		return n[channel]
	}
	before := listening()
	runLoop(t, rl.RunSignals)
	eventually(t, "the log listens for signals", func() bool { return listening() > before })
	return rl
}

func openStore(t testing.TB, url string) *repo.Store {
	t.Helper()
	s, err := repo.Open(t.Context(), url, repo.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// runLoop runs a background loop until the test ends.
func runLoop(t testing.TB, loop func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- loop(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("loop: %v", err)
		}
	})
}

type serverOpts struct {
	cfg         api.Config
	feed        sse.Config
	buffer      int
	redisMaxLen int64
	presence    func(hub *sse.Hub) api.Presence
	source      func(sse.Source) sse.Source // what the feed engine reads instead of the log, if set
}

func newServer(t *testing.T, be backend, o serverOpts) *testServer {
	t.Helper()
	if o.buffer == 0 {
		o.buffer = 1024
	}
	if o.redisMaxLen == 0 {
		o.redisMaxLen = 100000
	}
	hub := sse.NewHub(o.buffer)
	store, log := be.open(t, hub, o.redisMaxLen)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if o.presence != nil {
		o.cfg.Presence = o.presence(hub)
	}
	var obs sse.Observer
	if o.cfg.Metrics != nil {
		obs = o.cfg.Metrics
	}
	var src sse.Source = log
	if o.source != nil {
		src = o.source(log)
	}
	feeds := sse.New(hub, src, o.feed, obs, logger)
	srv := api.New(o.cfg, store, log, feeds, logger)
	ts := start(t, be, srv, feeds, nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.WaitPublishes(ctx)
	})
	return &testServer{URL: ts.URL, Store: store, Hub: hub, Feeds: feeds, Srv: srv, Log: log}
}

// start serves h on a loopback listener, over HTTPS with HTTP/2 for a tls
// backend, after configure (if any) has seen its http.Server. When the test
// ends, feeds closes (Shutdown would wait for the open streams), then the
// listener.
func start(t *testing.T, be backend, h http.Handler, feeds *sse.Engine, configure func(*http.Server)) *httptest.Server {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	if configure != nil {
		configure(ts.Config)
	}
	if be.tls {
		ts.EnableHTTP2 = true
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		feeds.Close(ctx)
		ts.Close()
	})
	return ts
}

// testRoots trusts the certificate of httptest's TLS servers (the same for
// all of them).
var testRoots = x509.NewCertPool()

// TestMain makes http.DefaultClient, which the tests and ssetest use,
// trust the TLS backend, and runs gin in release mode as the service does.
func TestMain(m *testing.M) {
	gin.SetMode(gin.ReleaseMode)
	ts := httptest.NewTLSServer(http.NotFoundHandler())
	testRoots.AddCert(ts.Certificate())
	// Before the transport's first use (ts.Close is one), which offers
	// HTTP/2 with the TLS configuration it has then.
	http.DefaultTransport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: testRoots}
	ts.Close()
	m.Run()
}

// dialRaw opens a bare connection to the server at base, with TLS for an
// https URL (then HTTP/1.1: no ALPN) and a receive buffer of rcvbuf bytes
// when rcvbuf > 0. Nothing reads it until the test does; it is closed when
// the test ends.
func dialRaw(t *testing.T, base string, rcvbuf int) net.Conn {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	if rcvbuf > 0 {
		if err := conn.(*net.TCPConn).SetReadBuffer(rcvbuf); err != nil {
			t.Fatal(err)
		}
	}
	if u.Scheme == "https" {
		tc := tls.Client(conn, &tls.Config{RootCAs: testRoots, ServerName: u.Hostname()})
		if err := tc.HandshakeContext(t.Context()); err != nil {
			t.Fatal(err)
		}
		conn = tc
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func forEachBackend(t *testing.T, f func(t *testing.T, be backend)) {
	t.Helper()
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) { f(t, be) })
	}
}

// response is a decoded answer.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		t.Fatalf("decode %q: %v", r.Body, err)
	}
	return m
}

func (r response) errorCode(t *testing.T) string {
	t.Helper()
	m := r.json(t)
	e, ok := m["error"].(map[string]any)
	if !ok {
		t.Fatalf("no error object in %s", r.Body)
	}
	if msg, _ := e["message"].(string); msg == "" {
		t.Errorf("error without message: %s", r.Body)
	}
	code, _ := e["code"].(string)
	return code
}

func do(t *testing.T, method, url string, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = bytes.NewBufferString(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func mustStatus(t *testing.T, r response, want int) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("got status %d, want %d (body %s)", r.Status, want, r.Body)
	}
}

// writeMany makes n element writes to room from `writers` goroutines and
// returns when all are acknowledged.
func writeMany(t *testing.T, base, room string, n, writers int) {
	t.Helper()
	var wg sync.WaitGroup
	per := n / writers
	for w := range writers {
		wg.Go(func() {
			for i := range per {
				id := "e" + strconv.Itoa(w) + "-" + strconv.Itoa(i%5)
				r := do(t, http.MethodPut, base+"/rooms/"+room+"/elements/"+id, `{"kind":"item","data":{"n":`+strconv.Itoa(i)+`}}`)
				if r.Status != http.StatusOK && r.Status != http.StatusCreated {
					t.Errorf("write: got status %d, want 200/201 (%s)", r.Status, r.Body)
					return
				}
			}
		})
	}
	wg.Wait()
}

// messages records n messages directly in the store, a fast way to build a
// long history; the server's publisher (the store's OnCommit hook)
// publishes them.
func messages(t *testing.T, ts *testServer, room string, n int) {
	t.Helper()
	for i := range n {
		if _, err := ts.Store.Message(t.Context(), room, "tick", json.RawMessage(strconv.Itoa(i)), repo.Meta{}); err != nil {
			t.Fatalf("message: %v", err)
		}
	}
}
