package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/sse"
)

// events serves one room's feed: GET /rooms/{room}/events.
func (s *Server) events(c *gin.Context) {
	room := c.Param("room")
	if len(c.Request.Header.Values("Last-Event-ID")) > 1 || len(c.QueryArray("last_event_id")) > 1 {
		writeError(c, sse.ErrBadCursor) // repeated cursors: which one would the client mean?
		return
	}
	raw := c.GetHeader("Last-Event-ID")
	if raw == "" {
		raw = c.Query("last_event_id")
	}
	cursors := map[string]int64{}
	if raw != "" {
		cursor, err := sse.ParseCursor(raw)
		if err != nil {
			writeError(c, err)
			return
		}
		cursors[room] = cursor
	}
	s.serveFeed(c, []string{room}, cursors, false)
}

// serveFeed streams rooms: for each room every event after its cursor, in
// order, then live events, each exactly once; a room without a cursor starts
// live. The live subscriptions are registered before the backlogs are read,
// and live events at or below a room's last sent seq are skipped, so nothing
// falls between replay and live. With composite, every id is the cursor of
// the whole subscription ("a:42,b:7"); otherwise it is the one room's seq.
//
// A plain HTTP/1.1 stream is handed to the pump once its replay is sent
// (pump.go): the handler returns and no goroutine waits for an idle
// subscriber. Other streams (HTTP/2, TLS, platforms without the connection
// watcher) are served by their handler goroutine until they end.
func (s *Server) serveFeed(c *gin.Context, rooms []string, cursors map[string]int64, composite bool) {
	ctx := c.Request.Context()
	select {
	case <-s.quit:
		writeError(c, sse.ErrClosed)
		return
	default:
	}
	st := &stream{s: s, rooms: rooms, composite: composite, path: c.Request.URL.Path, remote: c.ClientIP(), start: time.Now()}
	s.streams.Add(1)
	st.onEnd(s.streams.Done)
	defer func() {
		if !st.pumping {
			st.end() // else the pump ends the stream
		}
	}()
	release, err := s.acquireStream(c)
	if err != nil {
		writeError(c, err)
		return
	}
	st.onEnd(release)
	st.expires = tokenExpiresAt(c)

	for _, r := range rooms {
		sub, err := s.hub.Subscribe(r)
		if err != nil {
			writeError(c, err)
			return
		}
		st.subs = append(st.subs, sub)
		st.onEnd(sub.Close)
		if err := s.log.Follow(ctx, r); err != nil {
			writeError(c, err)
			return
		}
	}
	leave, err := s.joinPresence(c, rooms...)
	if err != nil {
		writeError(c, err)
		return
	}
	st.onEnd(leave)
	st.last = make(map[string]int64, len(rooms))
	for _, r := range rooms {
		head, err := s.store.Head(ctx, r)
		if err != nil {
			writeError(c, err)
			return
		}
		cur, ok := cursors[r]
		if !ok {
			cur = head
		} else if cur > head {
			writeError(c, &Error{http.StatusBadRequest, "cursor_ahead",
				fmt.Sprintf("the cursor of room %s (%d) is ahead of its latest event (%d)", r, cur, head)})
			return
		}
		st.last[r] = cur
	}

	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	c.Status(http.StatusOK)

	var buf []byte
	if conn := s.hijack(c); conn != nil {
		// From here on the connection is ours: an HTTP/1.1 response
		// delimited by the end of the connection.
		st.conn = conn
		st.onEnd(func() { conn.Close() })
		h.Set("Connection", "close")
		buf = appendResponseHead(buf, h)
	} else {
		h.Set("Connection", "keep-alive")
		st.c = c
		st.rc = http.NewResponseController(c.Writer)
	}
	buf = sse.AppendRetry(buf, s.cfg.Retry)
	// The first comment says where the stream starts; `roomfeed tail`
	// adopts it as its cursor.
	start := rooms[0] + " from " + st.id()
	if composite {
		start = "from " + st.id()
	}
	buf = sse.AppendComment(buf, "roomfeed "+start)
	if st.write(buf) != nil {
		return
	}
	for _, r := range rooms {
		if err := st.catchUp(ctx, r, -1); err != nil {
			st.fail(ctx, err)
			return
		}
	}
	if st.conn != nil {
		s.pump.add(st)
		return
	}
	st.live(ctx)
}

// appendResponseHead appends the status line and headers of a hijacked
// stream's response.
func appendResponseHead(buf []byte, h http.Header) []byte {
	h = h.Clone()
	h.Del("Content-Length")
	h.Del("Transfer-Encoding")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\n")
	_ = h.Write(&b)
	b.WriteString("\r\n")
	return append(buf, b.Bytes()...)
}

// stream is one SSE response in progress. It is written either through the
// ResponseWriter by its handler goroutine (c, rc) or straight to its
// hijacked connection (conn): by the handler during the replay, then by the
// pump's workers.
type stream struct {
	s         *Server
	rooms     []string
	subs      []*sse.Subscription
	last      map[string]int64 // per room, the seq of the last event sent
	composite bool
	expires   time.Time // when the token expires; zero = never
	cleanup   []func()  // run by end, last first
	path      string    // for the log line at the end
	remote    string
	start     time.Time

	c        *gin.Context             // handler-served streams only
	rc       *http.ResponseController // handler-served streams only
	conn     net.Conn                 // hijacked streams only
	pumping  bool                     // the pump serves (and ends) the stream: short write slices
	sched    atomic.Int32             // pump scheduling state (pump.go)
	gone     atomic.Bool              // the client closed the connection
	expired  atomic.Bool              // the token expired (pumped streams)
	pingDue  atomic.Bool              // a heartbeat found the stream idle (pumped streams)
	finished bool                     // the pump ended the stream
	lent     bool                     // this step's worker stayed with a slow write

	buf      []byte         // batch buffer, reused from one flush to the next
	msgs     []*sse.Message // drained messages, reused likewise
	deadline time.Time      // the write deadline last set
	wrote    atomic.Bool    // something was written since the last heartbeat tick
}

var errClientGone = errors.New("client gone")

// closed reports whether ch is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// onEnd registers fn to run when the stream ends.
func (st *stream) onEnd(fn func()) { st.cleanup = append(st.cleanup, fn) }

// ended records why the stream ended: a metric and a log line (for a pumped
// stream the request's own log line was written when the pump took it).
func (st *stream) ended(reason string) {
	st.s.cfg.Metrics.streamEnded(reason)
	st.s.logger.LogAttrs(context.Background(), slog.LevelInfo, "stream ended",
		slog.String("path", st.path), slog.String("reason", reason),
		slog.Duration("duration", time.Since(st.start)), slog.String("remote", st.remote))
}

// end releases everything the stream holds, last acquired first.
func (st *stream) end() {
	for i := len(st.cleanup) - 1; i >= 0; i-- {
		st.cleanup[i]()
	}
	st.cleanup = nil
}

// pumpSlice bounds how long a pump worker waits on one client's write;
// after that the worker finishes the write as the stream's own goroutine
// (up to WriteTimeout) and the pump starts another worker in its place.
const pumpSlice = 200 * time.Millisecond

// write sends b and flushes it, within the per-write deadline. A slow client
// fails the write instead of holding the handler forever.
func (st *stream) write(b []byte) error {
	st.wrote.Store(true)
	limit := st.s.cfg.WriteTimeout
	if st.pumping {
		limit = min(limit, pumpSlice)
	}
	// Refresh the deadline at most every 1/8 of the limit: a write still
	// gets between 7/8 and all of it, without a timer update in the network
	// poller for every event.
	if d := time.Now().Add(limit); d.Sub(st.deadline) > limit/8 {
		st.deadline = d
		if st.conn != nil {
			_ = st.conn.SetWriteDeadline(d)
		} else {
			_ = st.rc.SetWriteDeadline(d)
		}
	}
	if st.conn == nil {
		if _, err := st.c.Writer.Write(b); err != nil {
			return errClientGone
		}
		if err := st.rc.Flush(); err != nil {
			return errClientGone
		}
		return nil
	}
	n, err := st.conn.Write(b)
	if err != nil && st.pumping && errors.Is(err, os.ErrDeadlineExceeded) && !closed(st.s.quit) {
		// The client reads slower than the events come: this worker stays
		// with the stream for the rest of the write.
		st.s.pump.lend(st)
		st.deadline = time.Time{}
		_ = st.conn.SetWriteDeadline(time.Now().Add(st.s.cfg.WriteTimeout))
		_, err = st.conn.Write(b[n:])
	}
	if err != nil {
		return errClientGone
	}
	return nil
}

// id is the SSE id after the last event sent.
func (st *stream) id() string {
	if st.composite {
		return sse.FormatComposite(st.rooms, st.last)
	}
	return strconv.FormatInt(st.last[st.rooms[0]], 10)
}

// appendEvent frames ev after buf and records it as sent. frame is the
// event's shared encoding when there is one: a single-room stream sends it
// as is, encoded once for all its subscribers.
func (st *stream) appendEvent(buf []byte, ev roomfeed.Event, frame []byte) []byte {
	st.last[ev.Room] = ev.Seq
	if !st.composite {
		if frame != nil {
			return append(buf, frame...)
		}
		return sse.AppendEvent(buf, ev.ID(), ev.Type, ev.Data)
	}
	return sse.AppendEvent(buf, st.id(), ev.Type, ev.Data)
}

// catchUp sends room's events after its cursor from the log, page by page,
// up to `until` (-1 = everything there is). A cursor older than the retained
// history gets a reset.
func (st *stream) catchUp(ctx context.Context, room string, until int64) error {
	page := st.s.cfg.ReplayPage
	for until < 0 || st.last[room] < until {
		limit := page
		if until >= 0 {
			limit = int(min(int64(page), until-st.last[room]))
		}
		events, err := st.s.log.EventsAfter(ctx, room, st.last[room], limit)
		if errors.Is(err, roomfeed.ErrTrimmed) {
			return st.reset(ctx, room)
		}
		if err != nil {
			return err
		}
		var buf []byte
		n := 0
		for _, ev := range events {
			if ev.Seq <= st.last[room] {
				continue
			}
			buf = st.appendEvent(buf, ev, nil)
			n++
		}
		st.s.cfg.Metrics.replayedEvents(n)
		if len(buf) > 0 {
			if err := st.write(buf); err != nil {
				return err
			}
		}
		if len(events) < limit {
			return nil
		}
	}
	return nil
}

// reset tells the client that room's cursor is older than its history: it
// reloads that room's snapshot. The reset carries the id after it, so a
// client that ignores it (curl, a bare EventSource reconnecting on its own)
// does not loop on the trimmed cursor; the other rooms go on.
func (st *stream) reset(ctx context.Context, room string) error {
	head, err := st.s.store.Head(ctx, room)
	if err != nil {
		return err
	}
	st.last[room] = head
	data := `{"room":"` + room + `","cursor":"` + strconv.FormatInt(head, 10) + `","reason":"history_trimmed"}`
	return st.write(sse.AppendEvent(nil, st.id(), "reset", []byte(data)))
}

// fail ends a stream whose headers are already sent: an error event the
// client can see, then the end of the response (the client reconnects).
func (st *stream) fail(ctx context.Context, err error) {
	if errors.Is(err, errClientGone) || ctx.Err() != nil {
		return
	}
	if st.c != nil {
		_ = st.c.Error(err)
	} else {
		st.s.logger.LogAttrs(ctx, slog.LevelError, "stream failed",
			slog.String("rooms", strings.Join(st.rooms, ",")), slog.String("error", err.Error()))
	}
	_ = st.write(sse.AppendEvent(nil, "", "error", []byte(`{"code":"unavailable","message":"the feed could not be read; reconnect"}`)))
}

// subsEnded reports whether the hub ended a subscription (slow consumer or
// shutdown), and the reason to record.
func (st *stream) subsEnded() (string, bool) {
	reason, ended := "shutdown", false
	for _, sub := range st.subs {
		select {
		case <-sub.Done():
			ended = true
			if errors.Is(sub.Err(), sse.ErrSlowConsumer) {
				reason = "slow_consumer"
			}
		default:
		}
	}
	return reason, ended
}

// live sends the rooms' live events from the handler goroutine until the
// client leaves, a subscription ends (slow consumer, shutdown), the node
// stops or the token expires.
func (st *stream) live(ctx context.Context) {
	wake := make(chan struct{}, 1)
	for _, sub := range st.subs {
		sub.Notify(func() {
			select {
			case wake <- struct{}{}:
			default:
			}
		})
	}
	var expired <-chan time.Time
	if !st.expires.IsZero() {
		t := time.NewTimer(time.Until(st.expires))
		defer t.Stop()
		expired = t.C
	}
	// One ticker rather than a timer reset per event: a ping goes out when
	// nothing was written during a whole interval.
	heartbeat := time.NewTicker(st.s.cfg.Heartbeat)
	defer heartbeat.Stop()
	st.wrote.Store(false)
	reason := "client_gone"
	defer func() { st.ended(reason) }()
	for {
		select {
		case <-wake:
			if r, ended := st.subsEnded(); ended {
				// The client resumes from its last id, here or on another node.
				reason = r
				return
			}
			if err := st.flush(ctx); err != nil {
				if !errors.Is(err, errClientGone) {
					reason = "error"
				}
				st.fail(ctx, err)
				return
			}
		case <-heartbeat.C:
			if st.wrote.Swap(false) {
				continue
			}
			if st.write(pingFrame) != nil {
				return
			}
			st.wrote.Store(false)
		case <-st.s.quit:
			reason = "shutdown"
			return
		case <-ctx.Done():
			return
		case <-expired:
			// Never carry on as anonymous: say why, and end; the client
			// comes back with a fresh token and its cursor.
			_ = st.write(authExpiredFrame)
			reason = "auth_expired"
			return
		}
	}
}

var pingFrame = sse.AppendComment(nil, "ping")

// What a stream keeps between flushes (see flush).
const (
	keepMessages   = 1024
	keepBatchBytes = 64 << 10
)

// flush writes everything the subscriptions have queued, batched into as
// few writes as it can. A hole before an event in its room (after a Redis
// data loss, or a reader that fell behind the stream's window) is filled
// from the log first, so the client never sees n+1 before n.
func (st *stream) flush(ctx context.Context) error {
	msgs := st.msgs[:0]
	for _, sub := range st.subs {
		msgs = sub.Drain(msgs)
	}
	buf := st.buf[:0]
	defer func() {
		// Keep an ordinary batch's memory for the next one, not a burst's.
		// (Pumped streams borrow their worker's instead; see pump.work.)
		clear(msgs)
		if cap(msgs) <= keepMessages {
			st.msgs = msgs[:0]
		} else {
			st.msgs = nil
		}
		if cap(buf) <= keepBatchBytes {
			st.buf = buf[:0]
		} else {
			st.buf = nil
		}
	}()
	for _, m := range msgs {
		switch last := st.last[m.Room]; {
		case m.Seq == 0: // ephemeral (presence): no id, never replayed
			buf = append(buf, m.Frame...)
		case m.Seq <= last:
			// already sent (replay overlapped live)
		default:
			if m.Seq > last+1 {
				if len(buf) > 0 {
					if err := st.write(buf); err != nil {
						return err
					}
					buf = buf[:0]
				}
				if err := st.catchUp(ctx, m.Room, m.Seq-1); err != nil {
					return err
				}
				if st.last[m.Room] < m.Seq-1 {
					return fmt.Errorf("room %s: events %d..%d missing from the log", m.Room, st.last[m.Room]+1, m.Seq-1)
				}
			}
			buf = st.appendEvent(buf, m.Event, m.Frame)
			st.s.cfg.Metrics.deliveredLive(m.Queued)
		}
		if len(buf) >= 64<<10 {
			if err := st.write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	if len(buf) == 0 {
		return nil
	}
	return st.write(buf)
}
