package api

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/repo"
	"github.com/roomfeed/roomfeed/sse"
)

// TestPumpLendsWorkersToSlowClients: with more clients that stop reading
// than the pump has workers, a reading client still gets every event long
// before the stuck writes time out; the workers stuck in those writes were
// replaced.
func TestPumpLendsWorkersToSlowClients(t *testing.T) {
	store, err := repo.Open(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "rf.db")+"?_pragma=synchronous(OFF)", repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	hub := sse.NewHub(4096)
	log := feed.NewMemLog(hub, store)
	srv := New(Config{WriteTimeout: 2 * time.Minute}, store, log, hub, nil)
	srv.pump.workers = 2
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		hub.Close()
		srv.CloseStreams(ctx)
		if ctx.Err() != nil {
			t.Error("CloseStreams did not return within 10s with stuck clients")
		}
		ts.Close()
		store.Close()
	})
	addr := strings.TrimPrefix(ts.URL, "http://")
	open := func(rcvbuf int) (net.Conn, *bufio.Reader) {
		t.Helper()
		d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			if rcvbuf == 0 {
				return nil
			}
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			if err != nil {
				return err
			}
			return serr
		}}
		conn, err := d.DialContext(t.Context(), "tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := conn.Write([]byte("GET /rooms/r/events HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
			t.Fatal(err)
		}
		return conn, bufio.NewReader(conn)
	}
	const stuck = 4 // twice the workers
	for range stuck {
		open(4096)
	}
	conn, br := open(0)
	deadline := time.Now().Add(60 * time.Second)
	_ = conn.SetReadDeadline(deadline)
	for hub.Subscribers() < stuck+1 || srv.pump.size() < stuck+1 {
		if time.Now().After(deadline) {
			t.Fatalf("got %d subscribers, %d pumped; want %d", hub.Subscribers(), srv.pump.size(), stuck+1)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Small send buffers (no autotuning), so the stuck clients block
	// writes soon.
	srv.pump.mu.Lock()
	for st := range srv.pump.streams {
		if err := st.conn.(*net.TCPConn).SetWriteBuffer(8 << 10); err != nil {
			t.Fatal(err)
		}
	}
	srv.pump.mu.Unlock()

	const n = 100
	blob, _ := json.Marshal(strings.Repeat("x", 32<<10))
	for range n {
		ev, err := store.Message(t.Context(), "r", "blob", blob, repo.Meta{})
		if err != nil {
			t.Fatal(err)
		}
		if err := log.Publish(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	want := "id: " + strconv.Itoa(n)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading client: got %v before %q, want every event while %d clients are stuck", err, want, stuck)
		}
		if strings.TrimSpace(line) == want {
			break
		}
	}
	if got := hub.Subscribers(); got != stuck+1 {
		t.Errorf("got %d subscribers, want %d: a stuck client keeps its stream until WriteTimeout", got, stuck+1)
	}
	if got := srv.pump.lent.Load(); got == 0 {
		t.Errorf("got %d workers lent to slow writes, want some (the stuck clients never blocked a write?)", got)
	}
}
