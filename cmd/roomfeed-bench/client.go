package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roomfeed/roomfeed/sse"
)

// Every time in the tool is nanoseconds on one monotonic clock, so a write's
// acknowledgement and a subscriber's receipt compare directly.
var clockBase = time.Now()

func now() int64 { return int64(time.Since(clockBase)) + 1 } // never 0: 0 means "not received"

// subscriber is one SSE connection. A single goroutine reads it and records,
// per seq, when its event arrived.
type subscriber struct {
	room string
	from int64 // the cursor the server started this stream from
	conn net.Conn

	mu       sync.Mutex
	recv     []int64 // recv[seq-winBase] = receipt time, 0 = not received
	winBase  int64   // first seq tracked (see window)
	dups     int64
	disorder int64
	err      error

	last      atomic.Int64
	count     atomic.Int64
	ended     atomic.Bool
	errEvents atomic.Int64  // "event: error" frames: the server failed the stream
	done      chan struct{} // closed when the current connection's reading ends (under mu)
}

// start reads events, the current connection's stream, until it ends, and
// then closes the connection.
func (s *subscriber) start(events *sse.Decoder) {
	done := make(chan struct{})
	s.mu.Lock()
	s.done = done
	conn := s.conn
	s.mu.Unlock()
	s.ended.Store(false)
	go func() {
		defer close(done)
		s.read(events)
		conn.Close()
	}()
}

// endedCh is closed when the current connection's stream ends.
func (s *subscriber) endedCh() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

var errNotSSE = errors.New("not an SSE stream")

// sourceSeq numbers subscriber connections to spread them over source
// addresses.
var sourceSeq atomic.Int64

// subsPerSource is how many subscriber connections share one loopback source
// address: below a per-address stream limit (roomfeed's default is 128), and
// it multiplies the ephemeral ports available for 10,000 connections.
const subsPerSource = 100

// sourceAddr returns the local address of the next subscriber connection:
// on a loopback target, 127.10.x.y with subsPerSource connections each (all
// of 127.0.0.0/8 is routed to lo on Linux); nil otherwise.
func sourceAddr(hostport string) net.Addr {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
		return nil
	}
	k := sourceSeq.Add(1) / subsPerSource
	return &net.TCPAddr{IP: net.IPv4(127, 10, byte(k/250), byte(k%250+1))}
}

// subscribe opens GET /rooms/{room}/events on hostport and returns once the
// stream's opening comment (": roomfeed <room> from <seq>") has arrived, i.e.
// once the live subscription is registered on the server. cursor < 0 sends
// no Last-Event-ID.
func subscribe(ctx context.Context, hostport, room string, cursor int64) (*subscriber, error) {
	st, err := openStream(ctx, hostport, room, cursor)
	if err != nil {
		return nil, err
	}
	s := &subscriber{room: room, conn: st.conn, from: st.from}
	s.last.Store(st.from)
	s.start(st.events)
	return s, nil
}

// stream is an SSE response whose opening comment was read.
type stream struct {
	conn   net.Conn
	events *sse.Decoder
	from   int64 // the cursor the server says the stream starts from
}

// streamBuffer is the read buffer of one stream: the tool holds up to tens
// of thousands of them, and an event is a few hundred bytes.
const streamBuffer = 4096

// statusError is a response other than 200.
type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%v: %d %s: %s", errNotSSE, e.status, http.StatusText(e.status), e.body)
}

func (e *statusError) Unwrap() error { return errNotSSE }

// openStream sends GET /rooms/{room}/events (with Last-Event-ID when
// cursor >= 0) and reads up to the stream's opening comment.
func openStream(ctx context.Context, hostport, room string, cursor int64) (*stream, error) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: sourceAddr(hostport)}
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return nil, err
	}
	var req strings.Builder
	req.WriteString("GET /rooms/" + url.PathEscape(room) + "/events HTTP/1.1\r\nHost: " + hostport + "\r\nAccept: text/event-stream\r\n")
	if cursor >= 0 {
		req.WriteString("Last-Event-ID: " + strconv.FormatInt(cursor, 10) + "\r\n")
	}
	req.WriteString("\r\n")
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, req.String()); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(conn, streamBuffer)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		conn.Close()
		return nil, &statusError{status: resp.StatusCode, body: string(b)}
	}
	var body io.Reader = resp.Body
	if resp.ContentLength < 0 && len(resp.TransferEncoding) == 0 {
		body = br // identity encoding until close: the decoder reads br itself
	}
	st := &stream{conn: conn, events: sse.NewDecoderSize(body, streamBuffer), from: -1}
	st.events.IgnoreData = true
	if err := st.readOpening(); err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return st, nil
}

// errOpened stops the decoder at the stream's opening comment.
var errOpened = errors.New("opening read")

// readOpening reads up to the opening comment (": roomfeed <room> from
// <seq>") and sets st.from from it.
func (st *stream) readOpening() error {
	st.events.OnComment = func(text string) error {
		rest, ok := strings.CutPrefix(text, "roomfeed ")
		if !ok {
			return nil
		}
		if i := strings.LastIndex(rest, " from "); i >= 0 {
			if from, err := strconv.ParseInt(strings.TrimSpace(rest[i+len(" from "):]), 10, 64); err == nil {
				st.from = from
				return errOpened
			}
		}
		return fmt.Errorf("%w: opening comment %q", errNotSSE, text)
	}
	defer func() { st.events.OnComment = nil }()
	for {
		_, err := st.events.Next()
		switch {
		case errors.Is(err, errOpened):
			return nil
		case errors.Is(err, errNotSSE):
			return err
		case err != nil:
			return fmt.Errorf("reading the stream's opening: %w", err)
		}
	}
}

// resume reconnects s, whose stream ended, from the last seq it received;
// it keeps what s received. The caller retries when it fails.
func (s *subscriber) resume(ctx context.Context, hostport string) error {
	st, err := openStream(ctx, hostport, s.room, s.last.Load())
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.conn = st.conn
	s.mu.Unlock()
	s.start(st.events)
	return nil
}

// read records the events of one connection's stream until it ends.
func (s *subscriber) read(events *sse.Decoder) {
	var err error
	for {
		var ev sse.Event
		if ev, err = events.Next(); err != nil {
			break
		}
		if ev.Type == "error" {
			s.errEvents.Add(1)
		}
		if !ev.HasID {
			continue
		}
		t := now()
		seq, perr := strconv.ParseInt(ev.ID, 10, 64)
		if perr != nil || seq <= 0 {
			continue
		}
		s.mu.Lock()
		i := seq - s.winBase
		switch {
		case i < 0:
			// Before the measured window: a repeat or a very late event.
			s.disorder++
		default:
			if int64(len(s.recv)) <= i {
				n := max(2*len(s.recv), int(i)+64)
				grown := make([]int64, n)
				copy(grown, s.recv)
				s.recv = grown
			}
			switch {
			case s.recv[i] != 0:
				s.dups++
			default:
				s.recv[i] = t
				if seq <= s.last.Load() {
					s.disorder++
				}
			}
		}
		s.mu.Unlock()
		if seq > s.last.Load() {
			s.last.Store(seq)
		}
		s.count.Add(1)
	}
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	s.ended.Store(true)
}

func (s *subscriber) close() {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	c.Close()
}

// received returns the receipt time of seq, 0 if none.
func (s *subscriber) received(seq int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := seq - s.winBase; i >= 0 && i < int64(len(s.recv)) {
		return s.recv[i]
	}
	return 0
}

// window forgets receipts below seq first, so long runs keep memory bounded.
func (s *subscriber) window(first int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if first <= s.winBase {
		return
	}
	if k := first - s.winBase; k < int64(len(s.recv)) {
		s.recv = append(s.recv[:0:0], s.recv[k:]...)
	} else {
		s.recv = nil
	}
	s.winBase = first
}

func windowAll(subs []*subscriber, first map[string]int64) {
	for _, s := range subs {
		s.window(first[s.room])
	}
}

func (s *subscriber) counters() (dups, disorder int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dups, s.disorder
}

// subscribeMany opens one subscriber per room in rooms, `parallel` at a time.
func subscribeMany(ctx context.Context, hostport string, rooms []string, parallel int) ([]*subscriber, error) {
	subs := make([]*subscriber, len(rooms))
	errs := make([]error, len(rooms))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(1, min(parallel, len(rooms))) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(rooms) || ctx.Err() != nil {
					return
				}
				var err error
				for attempt := 0; attempt < 3; attempt++ {
					if subs[i], err = subscribe(ctx, hostport, rooms[i], -1); err == nil {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				errs[i] = err
			}
		})
	}
	wg.Wait()
	var out []*subscriber
	var firstErr error
	failed := 0
	for i, s := range subs {
		if errs[i] != nil {
			failed++
			if firstErr == nil {
				firstErr = errs[i]
			}
			continue
		}
		if s != nil {
			out = append(out, s)
		}
	}
	if failed > 0 {
		return out, fmt.Errorf("%d of %d subscriptions failed, first: %w", failed, len(rooms), firstErr)
	}
	return out, ctx.Err()
}

func closeAll(subs []*subscriber) {
	for _, s := range subs {
		s.close()
	}
}

// waitDrain waits until every live subscriber of a room in want has received
// the room's highest seq, or until timeout.
func waitDrain(subs []*subscriber, want map[string]int64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		for _, s := range subs {
			if top, has := want[s.room]; has && !s.ended.Load() && s.last.Load() < top {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ackLog records, per room and seq, when the write was sent and when its
// acknowledgement (the response with Event-ID) arrived.
type ackLog struct {
	mu    sync.Mutex
	rooms map[string][]ack
}

type ack struct{ seq, sent, acked int64 }

func newAckLog() *ackLog { return &ackLog{rooms: make(map[string][]ack)} }

func (a *ackLog) add(room string, seq, sent, acked int64) {
	a.mu.Lock()
	a.rooms[room] = append(a.rooms[room], ack{seq, sent, acked})
	a.mu.Unlock()
}

// tops returns the highest acknowledged seq per room.
func (a *ackLog) tops() map[string]int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := make(map[string]int64, len(a.rooms))
	for r, acks := range a.rooms {
		for _, x := range acks {
			m[r] = max(m[r], x.seq)
		}
	}
	return m
}

// writeLatencies returns, for every acknowledged write, the time from its
// sending to its answer.
func (a *ackLog) writeLatencies() []int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []int64
	for _, acks := range a.rooms {
		for _, x := range acks {
			out = append(out, x.acked-x.sent)
		}
	}
	return out
}

func (a *ackLog) count() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	var n int64
	for _, acks := range a.rooms {
		n += int64(len(acks))
	}
	return n
}

// delivery is what the subscribers received of the writes in an ackLog.
type delivery struct {
	Expected     int64 `json:"expected"`
	Delivered    int64 `json:"delivered"`
	Lost         int64 `json:"lost"`
	Duplicates   int64 `json:"duplicates"`
	OutOfOrder   int64 `json:"out_of_order"`
	Disconnected int   `json:"disconnected"`
	lat, latSend []int64
	lastRecv     int64
}

// collect matches every acknowledged write with every subscriber of its
// room that was subscribed before it (from < seq).
func collect(subs []*subscriber, acks *ackLog, dupsBefore map[*subscriber][2]int64) delivery {
	acks.mu.Lock()
	defer acks.mu.Unlock()
	var d delivery
	for _, s := range subs {
		if s.ended.Load() {
			d.Disconnected++
		}
		dup, dis := s.counters()
		if b, ok := dupsBefore[s]; ok {
			dup, dis = dup-b[0], dis-b[1]
		}
		d.Duplicates += dup
		d.OutOfOrder += dis
		s.mu.Lock()
		for _, a := range acks.rooms[s.room] {
			if a.seq <= s.from {
				continue
			}
			d.Expected++
			var r int64
			if i := a.seq - s.winBase; i >= 0 && i < int64(len(s.recv)) {
				r = s.recv[i]
			}
			if r == 0 {
				d.Lost++
				continue
			}
			d.Delivered++
			d.lat = append(d.lat, r-a.acked)
			d.latSend = append(d.latSend, r-a.sent)
			d.lastRecv = max(d.lastRecv, r)
		}
		s.mu.Unlock()
	}
	return d
}

func dupSnapshot(subs []*subscriber) map[*subscriber][2]int64 {
	m := make(map[*subscriber][2]int64, len(subs))
	for _, s := range subs {
		a, b := s.counters()
		m[s] = [2]int64{a, b}
	}
	return m
}

// writer issues element writes over keep-alive HTTP/1.1 connections, one
// request at a time on each. It writes the request and reads the answer
// (http.ReadResponse) on the connection itself: net/http's client hands
// every request to two goroutines per connection, CPU taken from the server
// being measured (what it cost: docs/performance.md).
type writer struct {
	scheme, host, prefix string
	n                    atomic.Int64
	idle                 chan *writerConn
}

type writerConn struct {
	c   net.Conn
	br  *bufio.Reader
	req []byte
}

func newWriter(base string, conns int) *writer {
	w := &writer{idle: make(chan *writerConn, conns)}
	if u, err := url.Parse(strings.TrimRight(base, "/")); err == nil {
		w.scheme, w.host, w.prefix = u.Scheme, u.Host, u.Path
	}
	return w
}

func (w *writer) close() {
	for {
		select {
		case c := <-w.idle:
			c.c.Close()
		default:
			return
		}
	}
}

func (w *writer) conn(ctx context.Context) (*writerConn, error) {
	select {
	case c := <-w.idle:
		return c, nil
	default:
	}
	var (
		c   net.Conn
		err error
	)
	switch w.scheme {
	case "http":
		c, err = (&net.Dialer{}).DialContext(ctx, "tcp", w.host)
	case "https":
		c, err = (&tls.Dialer{}).DialContext(ctx, "tcp", w.host)
	default:
		err = fmt.Errorf("target scheme %q: want http or https", w.scheme)
	}
	if err != nil {
		return nil, err
	}
	return &writerConn{c: c, br: bufio.NewReaderSize(c, 4096)}, nil
}

func (w *writer) release(c *writerConn, reuse bool) {
	if reuse {
		select {
		case w.idle <- c:
			return
		default:
		}
	}
	c.c.Close()
}

// elementData is the data of every benchmark write: about 100 bytes, so an
// SSE frame is about 300 bytes.
const elementData = `{"name":"bench element","hp":10,"note":"the quick brown fox jumps over the lazy dog near the harbor"}`

// put writes element id of room and returns its seq, the send time and the
// acknowledgement time.
func (w *writer) put(ctx context.Context, room, id string) (seq, sent, acked int64, err error) {
	n := w.n.Add(1)
	body := `{"kind":"item","data":` + elementData[:len(elementData)-1] + `,"n":` + strconv.FormatInt(n, 10) + `}}`
	path := w.prefix + "/rooms/" + room + "/elements/" + id
	c, err := w.conn(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	reuse := false
	defer func() { w.release(c, reuse) }()
	_ = c.c.SetDeadline(time.Now().Add(30 * time.Second))
	defer context.AfterFunc(ctx, func() { _ = c.c.SetDeadline(time.Unix(1, 0)) })()
	c.req = append(c.req[:0], "PUT "...)
	c.req = append(c.req, path...)
	c.req = append(c.req, " HTTP/1.1\r\nHost: "...)
	c.req = append(c.req, w.host...)
	c.req = append(c.req, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	c.req = strconv.AppendInt(c.req, int64(len(body)), 10)
	c.req = append(c.req, "\r\n\r\n"...)
	c.req = append(c.req, body...)
	sent = now()
	if _, err := c.c.Write(c.req); err != nil {
		return 0, 0, 0, fmt.Errorf("PUT %s: %w", path, err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("PUT %s: %w", path, err)
	}
	acked = now()
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("PUT %s: %w", path, err)
	}
	reuse = !resp.Close
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return 0, 0, 0, fmt.Errorf("PUT %s: %s", path, resp.Status)
	}
	seq, err = strconv.ParseInt(resp.Header.Get("Event-ID"), 10, 64)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("PUT %s: bad Event-ID %q", path, resp.Header.Get("Event-ID"))
	}
	return seq, sent, acked, nil
}

// openLoop calls call(i) at `rate` per second for d from up to `workers`
// goroutines. A call that falls due while every worker is busy is not
// issued; it is counted in skipped (the target rate was not reached).
func openLoop(ctx context.Context, rate float64, d time.Duration, workers int, call func(i int)) (issued, skipped int64) {
	ch := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range ch {
				call(i)
			}
		})
	}
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var due int64
loop:
	for {
		el := time.Since(start)
		if el >= d || ctx.Err() != nil {
			break
		}
		due = int64(el.Seconds() * rate)
		for issued+skipped < due {
			select {
			case ch <- int(issued):
				issued++
			default:
				// Give a busy pool a moment before skipping.
				select {
				case ch <- int(issued):
					issued++
				case <-time.After(time.Millisecond):
					skipped++
				}
			}
			if time.Since(start) >= d {
				break loop
			}
		}
		<-tick.C
	}
	close(ch)
	wg.Wait()
	return issued, skipped
}

// closedLoop runs n workers, each calling call(worker) back to back for d.
func closedLoop(ctx context.Context, n int, d time.Duration, call func(worker int)) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				call(w)
			}
		})
	}
	wg.Wait()
}
