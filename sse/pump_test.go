package sse

import (
	"bufio"
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dialRaw sends GET target on a bare TCP connection with a receive buffer
// of rcvbuf bytes (0: the default): nothing reads it until the test does.
func dialRaw(t testing.TB, te *testEngine, target string, rcvbuf int) (net.Conn, *bufio.Reader) {
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
	conn, err := d.DialContext(t.Context(), "tcp", te.ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write([]byte("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	return conn, bufio.NewReader(conn)
}

// readUntil reads lines from br until want, within 60 s.
func readUntil(t testing.TB, conn net.Conn, br *bufio.Reader, want string) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("got %v before %q", err, want)
		}
		if strings.TrimSpace(line) == want {
			return
		}
	}
}

// TestPumpLendsWorkersToSlowClients: with more clients that stop reading
// than the pump has workers, a reading client still gets every event long
// before the stuck writes time out; the workers stuck in those writes were
// replaced.
func TestPumpLendsWorkersToSlowClients(t *testing.T) {
	te := newTestEngine(t, Config{WriteTimeout: 2 * time.Minute}, 4096, false)
	p := te.env.pump
	p.workers = 2
	const stuck = 4 // twice the workers
	for range stuck {
		dialRaw(t, te, "/r", 4096)
	}
	conn, br := dialRaw(t, te, "/r", 0)
	eventually(t, "every stream pumped", func() bool { return te.hub.Subscribers() == stuck+1 && p.size() == stuck+1 })

	// Small send buffers (no autotuning), so the stuck clients block
	// writes soon.
	p.mu.Lock()
	for st := range p.streams {
		if err := st.out.(*net.TCPConn).SetWriteBuffer(8 << 10); err != nil {
			t.Fatal(err)
		}
	}
	p.mu.Unlock()

	const n = 100
	blob := strings.Repeat("x", 32<<10)
	for range n {
		te.src.publish("r", blob)
	}
	readUntil(t, conn, br, "id: "+strconv.Itoa(n))
	if got := te.hub.Subscribers(); got != stuck+1 {
		t.Errorf("got %d subscribers, want %d: a stuck client keeps its stream until WriteTimeout", got, stuck+1)
	}
	if got := p.lent.Load(); got == 0 {
		t.Errorf("got %d workers lent to slow writes, want some (the stuck clients never blocked a write?)", got)
	}
}

// TestPumpShutdownClosesStreams: Close ends pumped streams (the client sees
// the end of the response) and returns once the pump stopped, even with a
// client that reads nothing.
func TestPumpShutdownClosesStreams(t *testing.T) {
	te := newTestEngine(t, Config{WriteTimeout: time.Minute}, 1024, false)
	reader, br := dialRaw(t, te, "/s", 0)
	dialRaw(t, te, "/s", 4096)
	eventually(t, "both streams pumped", func() bool { return te.env.pump.size() == 2 })
	blob := strings.Repeat("x", 60<<10)
	for range 40 {
		te.src.publish("s", blob)
	}
	readUntil(t, reader, br, "id: 40")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	te.Close(ctx)
	if ctx.Err() != nil {
		t.Fatalf("Close still waiting after %v, want the pump stopped", time.Since(start))
	}
	_ = reader.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, err := br.ReadString('\n')
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the stream did not end at shutdown")
			}
			break
		}
	}
	if _, _, ended := te.obs.counts(); len(ended) != 2 || ended[0] != "shutdown" || ended[1] != "shutdown" {
		t.Errorf("ended: got %v, want two shutdowns", ended)
	}
}

// pace sets the pump's pace and how long a stream must have waited for a
// worker before a stream is paced (0: always; the test stands in for a
// saturated pump).
func (p *pump) setPace(pace, busy time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pace, p.busy = pace, busy
}

// pacedNow returns the number of streams the pacer holds.
func (p *pump) pacedNow() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.later) - p.laterHead
}

// pumpedAfterOne starts an engine with a pacer and one pumped stream of
// room, which has read the room's first event.
func pumpedAfterOne(t *testing.T, room string) (*testEngine, net.Conn, *bufio.Reader) {
	t.Helper()
	// A pace so long that nothing waits for a worker long enough to be
	// paced (busy is an eighth of it) until the test says so (setPace); with
	// it the pump runs its pacer.
	te := newTestEngine(t, Config{Pace: time.Hour}, 1024, false)
	conn, br := dialRaw(t, te, "/"+room, 0)
	eventually(t, "the stream pumped", func() bool { return te.env.pump.size() == 1 })
	te.src.publish(room, "first")
	readUntil(t, conn, br, "id: 1")
	return te, conn, br
}

// TestPumpPacesUnderLoad: while the pump is saturated, a stream that wrote
// within the pace is set aside until the pace has passed, and then sends
// everything that came meanwhile in one write, in order, each event once.
func TestPumpPacesUnderLoad(t *testing.T) {
	te, conn, br := pumpedAfterOne(t, "r")
	p := te.env.pump

	// Saturated, with a pace that does not pass by itself.
	p.setPace(time.Hour, 0)
	writes := te.obs.liveWrites()
	const n = 40
	for range n {
		te.src.publish("r", "x")
	}
	eventually(t, "the stream paced", func() bool { return p.pacedNow() == 1 })
	if got := te.obs.liveWrites() - writes; got != 0 {
		t.Fatalf("got %d writes while paced, want 0", got)
	}

	// The pace passes: the pacer hands the stream back at its due time.
	p.setPace(0, 0)
	p.mu.Lock()
	p.later[p.laterHead].at = time.Now()
	p.mu.Unlock()
	select {
	case p.paceWake <- struct{}{}:
	default: // the pacer is already due to look
	}
	_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	ids := <-readIDs(t, br, n)
	want := make([]string, n)
	for i := range want {
		want[i] = strconv.Itoa(i + 2)
	}
	if !slices.Equal(ids, want) {
		t.Errorf("got ids %v, want %v", ids, want)
	}
	eventually(t, "every delivery counted", func() bool {
		_, delivered, _ := te.obs.counts()
		return delivered == n+1
	})
	if got := te.obs.liveWrites() - writes; got != 1 {
		t.Errorf("got %d writes for %d events, want 1", got, n)
	}
	if got := te.Paced(); got != 1 {
		t.Errorf("got %d steps paced, want 1", got)
	}
}

// TestPumpShutdownEndsPacedStreams: shutdown does not wait for a pace to
// pass: a paced stream ends at once, like every other.
func TestPumpShutdownEndsPacedStreams(t *testing.T) {
	te, _, _ := pumpedAfterOne(t, "s")
	p := te.env.pump
	p.setPace(time.Hour, 0)
	te.src.publish("s", "second")
	eventually(t, "the stream paced", func() bool { return p.pacedNow() == 1 })

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	te.Close(ctx)
	if ctx.Err() != nil {
		t.Fatal("Close still waiting after 10 s, want the paced stream ended at once")
	}
	if _, _, ended := te.obs.counts(); !slices.Equal(ended, []string{"shutdown"}) {
		t.Errorf("ended: got %v, want one shutdown", ended)
	}
}
