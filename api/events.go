package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/roomfeed/roomfeed/feed"
)

// events serves one room's feed: GET /rooms/{room}/events.
func (s *Server) events(c *gin.Context) {
	room := c.Param("room")
	if len(c.Request.Header.Values("Last-Event-ID")) > 1 || len(c.QueryArray("last_event_id")) > 1 {
		writeError(c, feed.ErrBadCursor) // repeated cursors: which one would the client mean?
		return
	}
	raw := c.GetHeader("Last-Event-ID")
	if raw == "" {
		raw = c.Query("last_event_id")
	}
	cursors := map[string]int64{}
	if raw != "" {
		cursor, err := feed.ParseCursor(raw)
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
func (s *Server) serveFeed(c *gin.Context, rooms []string, cursors map[string]int64, composite bool) {
	ctx := c.Request.Context()
	select {
	case <-s.quit:
		writeError(c, feed.ErrClosed)
		return
	default:
	}
	s.streams.Add(1)
	defer s.streams.Done()
	release, err := s.acquireStream(c)
	if err != nil {
		writeError(c, err)
		return
	}
	defer release()
	expired, stopExpiry := tokenExpiry(c)
	defer stopExpiry()

	subs := make([]*feed.Subscription, 0, len(rooms))
	defer func() {
		for _, sub := range subs {
			sub.Close()
		}
	}()
	for _, r := range rooms {
		sub, err := s.log.Subscribe(ctx, r)
		if err != nil {
			writeError(c, err)
			return
		}
		subs = append(subs, sub)
	}
	leave, err := s.joinPresence(c, rooms...)
	if err != nil {
		writeError(c, err)
		return
	}
	defer leave()
	last := make(map[string]int64, len(rooms))
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
		last[r] = cur
	}

	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Connection", "keep-alive")
	c.Status(http.StatusOK)

	st := &stream{
		s:         s,
		c:         c,
		rc:        http.NewResponseController(c.Writer),
		rooms:     rooms,
		last:      last,
		composite: composite,
		expired:   expired,
	}
	buf := feed.AppendRetry(nil, s.cfg.Retry)
	// The first comment says where the stream starts; `roomfeed tail`
	// adopts it as its cursor.
	start := rooms[0] + " from " + st.id()
	if composite {
		start = "from " + st.id()
	}
	buf = feed.AppendComment(buf, "roomfeed "+start)
	if st.write(buf) != nil {
		return
	}
	for _, r := range rooms {
		if err := st.catchUp(ctx, r, -1); err != nil {
			st.fail(ctx, err)
			return
		}
	}
	st.live(ctx, subs)
}

// stream is one SSE response in progress.
type stream struct {
	s         *Server
	c         *gin.Context
	rc        *http.ResponseController
	rooms     []string
	last      map[string]int64 // per room, the seq of the last event sent
	composite bool

	expired <-chan time.Time // fires when the token expires; nil in open mode

	buf      []byte    // batch buffer, reused from one send to the next
	deadline time.Time // the write deadline last set
	wrote    bool      // something was written since the last heartbeat tick
}

var errClientGone = errors.New("client gone")

// write sends b and flushes it, within the per-write deadline. A slow client
// fails the write instead of holding the handler forever.
func (st *stream) write(b []byte) error {
	// Refresh the deadline at most every 1/8 of the timeout: a write still
	// gets between 7/8 and all of WriteTimeout, without a timer update in
	// the network poller for every event.
	if d := time.Now().Add(st.s.cfg.WriteTimeout); d.Sub(st.deadline) > st.s.cfg.WriteTimeout/8 {
		_ = st.rc.SetWriteDeadline(d)
		st.deadline = d
	}
	st.wrote = true
	if _, err := st.c.Writer.Write(b); err != nil {
		return errClientGone
	}
	if err := st.rc.Flush(); err != nil {
		return errClientGone
	}
	return nil
}

// id is the SSE id after the last event sent.
func (st *stream) id() string {
	if st.composite {
		return formatComposite(st.rooms, st.last)
	}
	return strconv.FormatInt(st.last[st.rooms[0]], 10)
}

// appendEvent frames ev after buf and records it as sent. frame is the
// event's shared encoding when there is one: a single-room stream sends it
// as is, encoded once for all its subscribers.
func (st *stream) appendEvent(buf []byte, ev feed.Event, frame []byte) []byte {
	st.last[ev.Room] = ev.Seq
	if !st.composite {
		if frame != nil {
			return append(buf, frame...)
		}
		return feed.AppendEvent(buf, ev.ID(), ev.Type, ev.Data)
	}
	return feed.AppendEvent(buf, st.id(), ev.Type, ev.Data)
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
		events, err := st.s.log.Range(ctx, room, st.last[room], limit)
		if errors.Is(err, feed.ErrTrimmed) {
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
	return st.write(feed.AppendEvent(nil, st.id(), "reset", []byte(data)))
}

// fail ends a stream whose headers are already sent: an error event the
// client can see, then the end of the response (the client reconnects).
func (st *stream) fail(ctx context.Context, err error) {
	if errors.Is(err, errClientGone) || ctx.Err() != nil {
		return
	}
	_ = st.c.Error(err)
	_ = st.write(feed.AppendEvent(nil, "", "error", []byte(`{"code":"unavailable","message":"the feed could not be read; reconnect"}`)))
}

// live sends the rooms' live events until the client leaves, a
// subscription ends (slow consumer, shutdown), the node stops or the token
// expires. With several rooms, one forwarding goroutine per room, owned and
// stopped here, merges them, each keeping its room's order.
func (st *stream) live(ctx context.Context, subs []*feed.Subscription) {
	in, ended := subs[0].C(), subs[0].Done()
	if len(subs) > 1 {
		merged := make(chan *feed.Message, 256)
		anyEnded := make(chan struct{})
		stop := make(chan struct{})
		var once sync.Once
		var wg sync.WaitGroup
		defer func() {
			close(stop)
			wg.Wait()
		}()
		for _, sub := range subs {
			wg.Go(func() {
				for {
					select {
					case m := <-sub.C():
						select {
						case merged <- m:
						case <-stop:
							return
						}
					case <-sub.Done():
						once.Do(func() { close(anyEnded) })
						return
					case <-stop:
						return
					}
				}
			})
		}
		in, ended = merged, anyEnded
	}

	// One ticker rather than a timer reset per event: a ping goes out when
	// nothing was written during a whole interval.
	heartbeat := time.NewTicker(st.s.cfg.Heartbeat)
	defer heartbeat.Stop()
	st.wrote = false
	ping := feed.AppendComment(nil, "ping")
	reason := "client_gone"
	defer func() { st.s.cfg.Metrics.streamEnded(reason) }()
	for {
		select {
		case m := <-in:
			if err := st.send(ctx, m, in); err != nil {
				if !errors.Is(err, errClientGone) {
					reason = "error"
				}
				st.fail(ctx, err)
				return
			}
		case <-heartbeat.C:
			if st.wrote {
				st.wrote = false
				continue
			}
			if st.write(ping) != nil {
				return
			}
			st.wrote = false
		case <-ended:
			// Dropped as a slow consumer or the node is shutting down: the
			// client resumes from its last id, here or on another node.
			reason = "shutdown"
			for _, sub := range subs {
				if errors.Is(sub.Err(), feed.ErrSlowConsumer) {
					reason = "slow_consumer"
				}
			}
			return
		case <-st.s.quit:
			reason = "shutdown"
			return
		case <-ctx.Done():
			return
		case <-st.expired:
			// Never carry on as anonymous: say why, and end; the client
			// comes back with a fresh token and its cursor.
			_ = st.write(authExpiredFrame)
			reason = "auth_expired"
			return
		}
	}
}

// send writes m and whatever else is already queued in one flush. A hole
// before an event in its room (after a Redis data loss, or a reader that
// fell behind the stream's window) is filled from the log first, so the
// client never sees n+1 before n.
func (st *stream) send(ctx context.Context, m *feed.Message, in <-chan *feed.Message) error {
	buf := st.buf[:0]
	defer func() {
		if cap(buf) <= 64<<10 {
			st.buf = buf[:0] // keep an ordinary batch's memory for the next one
		}
	}()
	for {
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
			break
		}
		select {
		case m = <-in:
			continue
		default:
		}
		break
	}
	if len(buf) == 0 {
		return nil
	}
	return st.write(buf)
}
