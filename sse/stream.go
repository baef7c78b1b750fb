package sse

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

	"github.com/roomfeed/roomfeed"
)

// Stream is one subscriber's feed, from Open to its end. The goroutine that
// calls Serve writes the response head and the replay; the live part then
// runs in steps (drive.go), each run by the stream's driver: a pump worker,
// or that same goroutine. Whatever runs a step has the stream to itself.
type Stream struct {
	env       *env
	rooms     []string
	subs      []*Subscription
	last      map[string]int64 // per room, the seq of the last event sent or skipped
	heads     []int64          // per room (as rooms), its head at Open: where the replay ends; nil once sent
	admitted  bool             // holds a place among the streams catching up (gate.admit)
	composite bool
	moved     bool      // events skipped since the last id written moved the cursor
	filter    *Filter   // the events to send; nil = every event
	expires   time.Time // when the token expires; zero = never
	cleanup   []func()  // run by end, last first
	path      string    // for the log line at the end
	remote    string
	start     time.Time

	out       writer    // the response: set by Serve
	deadline  time.Time // the write deadline last set on out
	lastWrite time.Time // when the last write started (the pump's pace)
	w         *worker   // what runs the current step; nil during the replay

	drv      driver       // runs the live steps
	sched    atomic.Int32 // scheduling state (drive.go)
	gone     atomic.Bool  // the client closed the connection
	expired  atomic.Bool  // the token expired
	pingDue  atomic.Bool  // a heartbeat found the stream idle
	wrote    atomic.Bool  // something was written since the last heartbeat tick
	finished bool         // ended: later steps do nothing
}

// writer is where a stream's bytes go: its connection once taken over, or
// the ResponseWriter. Write sends b on at once (flushed).
type writer interface {
	Write(b []byte) (int, error)
	SetWriteDeadline(t time.Time) error
	Close() error // ends the connection; nothing for a ResponseWriter
}

// flushed writes through a ResponseWriter, flushing every write.
type flushed struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func (f *flushed) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}

func (f *flushed) SetWriteDeadline(t time.Time) error { return f.rc.SetWriteDeadline(t) }
func (f *flushed) Close() error                       { return nil }

var (
	errClientGone = errors.New("client gone")

	pingFrame  = AppendComment(nil, "ping")
	errorFrame = AppendEvent(nil, "", "error",
		[]byte(`{"code":"unavailable","message":"the feed could not be read; reconnect"}`))
	authExpiredFrame = AppendEvent(nil, "", "auth_expired",
		[]byte(`{"reason":"token_expired","message":"the token expired; fetch a new one and resume from the last event id"}`))
)

// Batches (see flush): one is written once it holds batchBytes, and a
// worker keeps the memory of an ordinary one for the next, not a burst's.
const (
	batchBytes     = 64 << 10
	keepMessages   = 1024
	keepBatchBytes = 64 << 10
)

// OnEnd registers fn to run when the stream ends or is closed, before
// Serve: the functions run last registered first.
func (st *Stream) OnEnd(fn func()) { st.cleanup = append(st.cleanup, fn) }

// Close releases a stream that will not be served: the caller answered an
// error instead of calling Serve.
func (st *Stream) Close() { st.end() }

// end releases everything the stream holds, last acquired first.
func (st *Stream) end() {
	for i := len(st.cleanup) - 1; i >= 0; i-- {
		st.cleanup[i]()
	}
	st.cleanup = nil
}

// Serve writes the stream as the answer to r: the headers, a retry hint and
// a first comment that says where the stream starts, every event after the
// cursors, then live events until the client leaves, a subscription ends
// (slow consumer, shutdown), the engine closes or the token expires. A
// plain HTTP/1.1 connection is taken over and handed to the pump once its
// replay is sent, and Serve returns; any other stream is served by the
// calling goroutine to its end. Errors after the headers are sent to the
// client as an "error" event, and end the stream.
func (st *Stream) Serve(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	conn, head := st.respond(w, r)
	head = AppendRetry(head, st.env.cfg.Retry)
	// The first comment says where the stream starts; `roomfeed tail`
	// adopts it as its cursor.
	from := st.rooms[0] + " from " + st.id()
	if st.composite {
		from = "from " + st.id()
	}
	err := st.write(AppendComment(head, "roomfeed "+from))
	for i := 0; err == nil && i < len(st.rooms); i++ {
		err = st.catchUp(ctx, st.rooms[i], st.heads[i], false)
	}
	// Events above the heads come from the subscriptions, registered
	// before the heads were read.
	st.heads = nil
	st.caughtUp()
	switch {
	case errors.Is(err, ErrClosed):
		st.finish(reasonShutdown)
	case err != nil && ctx.Err() != nil:
		st.finish(reasonClientGone)
	case err != nil:
		st.finish(st.fail(ctx, err))
	case conn == nil:
		st.runSolo(ctx)
	case !st.env.pump.add(st, conn):
		st.finish(reasonShutdown)
	}
}

// respond sets the response headers. It takes the connection over when the
// pump can serve it (plain HTTP/1.x), and returns it with the response
// head to write first; otherwise the ResponseWriter carries the response.
func (st *Stream) respond(w http.ResponseWriter, r *http.Request) (net.Conn, []byte) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	if conn := st.env.pump.hijack(w, r); conn != nil {
		// From here on the connection is the stream's: an HTTP/1.1
		// response delimited by the end of the connection.
		st.out = conn
		st.OnEnd(func() { conn.Close() })
		h.Set("Connection", "close")
		return conn, appendResponseHead(nil, h)
	}
	h.Set("Connection", "keep-alive")
	w.WriteHeader(http.StatusOK)
	st.out = &flushed{w: w, rc: http.NewResponseController(w)}
	return nil, nil
}

// appendResponseHead appends the status line and headers of a response
// written straight to its connection.
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

// finish ends the stream for reason: the observer and a log line are told
// (for a stream the pump took over, the request's own log line was written
// then), the driver forgets it, and everything it holds is released.
func (st *Stream) finish(reason string) {
	st.finished = true
	st.env.obs.StreamEnded(reason)
	st.env.log.LogAttrs(context.Background(), slog.LevelInfo, "stream ended",
		slog.String("path", st.path), slog.String("reason", reason),
		slog.Duration("duration", time.Since(st.start)), slog.String("remote", st.remote))
	if st.drv != nil {
		st.drv.drop(st)
	}
	st.end()
}

// write sends b within the per-write deadline: a slow client fails the write
// instead of holding its goroutine forever. A worker that may be held only
// for a slice (a pump worker) stays with a write that outlasts it for the
// rest of WriteTimeout, and the pump puts another worker in its place.
func (st *Stream) write(b []byte) error {
	st.wrote.Store(true)
	limit := st.env.cfg.WriteTimeout
	w := st.w
	sliced := w != nil && w.slice > 0
	if sliced {
		limit = min(limit, w.slice)
	}
	// Refresh the deadline at most every 1/8 of the limit: a write still
	// gets between 7/8 and all of it, without a timer update in the network
	// poller for every event.
	now := time.Now()
	st.lastWrite = now
	if d := now.Add(limit); d.Sub(st.deadline) > limit/8 {
		st.deadline = d
		_ = st.out.SetWriteDeadline(d)
	}
	n, err := st.out.Write(b)
	if err != nil && sliced && errors.Is(err, os.ErrDeadlineExceeded) && !closed(st.env.quit) {
		// The client reads slower than the events come.
		w.hold()
		st.deadline = time.Time{}
		_ = st.out.SetWriteDeadline(time.Now().Add(st.env.cfg.WriteTimeout))
		_, err = st.out.Write(b[n:])
	}
	if err != nil {
		return errClientGone
	}
	return nil
}

// ping writes a heartbeat comment: the client sees the stream is alive.
func (st *Stream) ping() error { return st.write(pingFrame) }

// id is the SSE id after the last event sent.
func (st *Stream) id() string {
	if st.composite {
		return FormatComposite(st.rooms, st.last)
	}
	return strconv.FormatInt(st.last[st.rooms[0]], 10)
}

// appendEvent frames ev after buf and records it as sent. frame is the
// event's shared encoding when there is one: a single-room stream sends it
// as is, encoded once for all its subscribers.
func (st *Stream) appendEvent(buf []byte, ev roomfeed.Event, frame []byte) []byte {
	st.last[ev.Room] = ev.Seq
	st.moved = false
	if !st.composite {
		if frame != nil {
			return append(buf, frame...)
		}
		return AppendEvent(buf, ev.ID(), ev.Type, ev.Data)
	}
	return AppendEvent(buf, st.id(), ev.Type, ev.Data)
}

// skip records that the filter left out room's event seq: the cursor moves
// past it, and the client learns so from the next id written.
func (st *Stream) skip(room string, seq int64) {
	st.last[room] = seq
	st.moved = true
}

// appendMoved ends a batch: when skipped events moved the cursor past the
// last id written, it appends a bare id (AppendID), so that a client that
// reconnects resumes after them. That is one line per batch, whatever the
// number of events skipped.
func (st *Stream) appendMoved(buf []byte) []byte {
	if !st.moved {
		return buf
	}
	st.moved = false
	return AppendID(buf, st.id())
}

// catchUp sends room's events after its cursor from the source, a page at
// a time, up to until, read through the gate (urgent: a hole's fill); the
// filter's leftovers move the cursor (appendMoved). A cursor older than the
// retained history gets a reset. While it waits for a read, the client
// gets a ping every heartbeat.
func (st *Stream) catchUp(ctx context.Context, room string, until int64, urgent bool) error {
	var buf []byte
	err := st.env.gate.pages(ctx, room, st.last[room], until, urgent, st.ping, func(p histPage) error {
		page := p.events
		if st.filter == nil && !st.composite {
			// Every stream of the room sends these same bytes.
			st.last[room] = page[len(page)-1].Seq
			st.moved = false
			st.env.obs.EventsReplayed(len(page))
			return st.write(p.frames())
		}
		buf = buf[:0]
		sent := 0
		for _, ev := range page {
			if st.filter != nil && !st.filter.Match(ev) {
				st.skip(room, ev.Seq)
				continue
			}
			buf = st.appendEvent(buf, ev, nil)
			sent++
		}
		buf = st.appendMoved(buf)
		st.env.obs.EventsReplayed(sent)
		return st.write(buf)
	})
	if errors.Is(err, roomfeed.ErrTrimmed) {
		return st.reset(ctx, room)
	}
	return err
}

// reset tells the client that room's cursor is older than its history: it
// reloads that room's snapshot. The reset carries the id after it, so a
// client that ignores it (curl, a bare EventSource reconnecting on its own)
// does not loop on the trimmed cursor; the other rooms go on.
func (st *Stream) reset(ctx context.Context, room string) error {
	head, err := st.env.gate.head(ctx, room)
	if err != nil {
		return err
	}
	st.last[room] = head
	st.moved = false
	data := `{"room":"` + room + `","cursor":"` + strconv.FormatInt(head, 10) + `","reason":"history_trimmed"}`
	return st.write(AppendEvent(nil, st.id(), "reset", []byte(data)))
}

// fail reports err, which ends the stream after its headers were sent, and
// returns the reason to end it with. Unless the client is gone, the error is
// logged and the client gets an error event (it reconnects).
func (st *Stream) fail(ctx context.Context, err error) string {
	if errors.Is(err, errClientGone) {
		return reasonClientGone
	}
	if ctx.Err() == nil {
		st.env.log.LogAttrs(ctx, slog.LevelError, "stream failed",
			slog.String("rooms", strings.Join(st.rooms, ",")), slog.String("error", err.Error()))
		_ = st.write(errorFrame)
	}
	return reasonError
}

// subsEnded reports whether the hub ended a subscription (slow consumer or
// shutdown), and the reason to record.
func (st *Stream) subsEnded() (string, bool) {
	reason, ended := reasonShutdown, false
	for _, sub := range st.subs {
		select {
		case <-sub.Done():
			ended = true
			if errors.Is(sub.Err(), ErrSlowConsumer) {
				reason = reasonSlowConsumer
			}
		default:
		}
	}
	return reason, ended
}

// flush writes everything the subscriptions have queued, batched into as
// few writes as it can, in the buffers of the step's worker. A hole before
// an event in its room (after a Redis data loss, or a reader that fell
// behind the stream's window) is filled from the source first, so the client
// never sees n+1 before n. Events the filter leaves out move the cursor,
// and the batch ends with a bare id when they were the last (appendMoved).
func (st *Stream) flush(ctx context.Context) error {
	w := st.w
	msgs := w.msgs[:0]
	for _, sub := range st.subs {
		msgs = sub.Drain(msgs)
	}
	buf := w.buf[:0]
	var (
		delivered int       // live events appended to buf
		oldest    time.Time // when the hub received the first of them
	)
	defer func() {
		if delivered > 0 {
			st.env.obs.EventsDelivered(delivered, oldest)
		}
		// Keep an ordinary batch's memory for the next one, not a burst's.
		clear(msgs)
		if cap(msgs) <= keepMessages {
			w.msgs = msgs[:0]
		} else {
			w.msgs = nil
		}
		if cap(buf) <= keepBatchBytes {
			w.buf = buf[:0]
		} else {
			w.buf = nil
		}
	}()
	for _, m := range msgs {
		switch last := st.last[m.Room]; {
		case m.Seq == 0: // ephemeral (presence): no id, never replayed
			if st.filter == nil || st.filter.matchMessage(m) {
				buf = append(buf, m.Frame...)
			}
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
				if err := st.catchUp(ctx, m.Room, m.Seq-1, true); err != nil {
					return err
				}
				if st.last[m.Room] < m.Seq-1 {
					return fmt.Errorf("room %s: events %d..%d missing from the log", m.Room, st.last[m.Room]+1, m.Seq-1)
				}
			}
			if st.filter != nil && !st.filter.matchMessage(m) {
				st.skip(m.Room, m.Seq)
				continue
			}
			buf = st.appendEvent(buf, m.Event, m.Frame)
			if delivered == 0 {
				oldest = m.Queued
			}
			delivered++
		}
		if len(buf) >= batchBytes {
			if err := st.write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	if buf = st.appendMoved(buf); len(buf) == 0 {
		return nil
	}
	return st.write(buf)
}

// closed reports whether ch is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
