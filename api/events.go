package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/roomfeed/roomfeed/feed"
)

// events serves a room's feed: every event after the cursor in order, then
// live events, each exactly once. The live subscription is registered before
// the backlog is read, and live events at or below the last sent seq are
// skipped, so nothing falls between replay and live.
func (s *Server) events(c *gin.Context) {
	ctx := c.Request.Context()
	room := c.Param("room")

	if len(c.Request.Header.Values("Last-Event-ID")) > 1 || len(c.QueryArray("last_event_id")) > 1 {
		writeError(c, feed.ErrBadCursor) // repeated cursors: which one would the client mean?
		return
	}
	raw := c.GetHeader("Last-Event-ID")
	if raw == "" {
		raw = c.Query("last_event_id")
	}
	hasCursor := raw != ""
	var cursor int64
	if hasCursor {
		var err error
		if cursor, err = feed.ParseCursor(raw); err != nil {
			writeError(c, err)
			return
		}
	}
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

	sub, err := s.log.Subscribe(ctx, room)
	if err != nil {
		writeError(c, err)
		return
	}
	defer sub.Close()
	leave, err := s.joinPresence(c, room)
	if err != nil {
		writeError(c, err)
		return
	}
	defer leave()
	head, err := s.store.Head(ctx, room)
	if err != nil {
		writeError(c, err)
		return
	}
	if !hasCursor {
		cursor = head
	} else if cursor > head {
		writeError(c, &Error{http.StatusBadRequest, "cursor_ahead",
			"Last-Event-ID " + strconv.FormatInt(cursor, 10) + " is ahead of the room's latest event " + strconv.FormatInt(head, 10)})
		return
	}

	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Connection", "keep-alive")
	c.Status(http.StatusOK)

	st := &stream{
		s:       s,
		c:       c,
		rc:      http.NewResponseController(c.Writer),
		room:    room,
		last:    cursor,
		expired: expired,
	}
	buf := feed.AppendRetry(nil, s.cfg.Retry)
	buf = feed.AppendComment(buf, "roomfeed "+room+" from "+strconv.FormatInt(cursor, 10))
	if st.write(buf) != nil {
		return
	}
	if err := st.catchUp(ctx, -1); err != nil {
		st.fail(ctx, err)
		return
	}
	st.live(ctx, sub)
}

// stream is one SSE response in progress.
type stream struct {
	s    *Server
	c    *gin.Context
	rc   *http.ResponseController
	room string
	last int64 // seq of the last event sent

	expired <-chan time.Time // fires when the token expires; nil in open mode
}

// write sends b and flushes it, within the per-write deadline. A slow client
// fails the write instead of holding the handler forever.
func (st *stream) write(b []byte) error {
	_ = st.rc.SetWriteDeadline(time.Now().Add(st.s.cfg.WriteTimeout))
	if _, err := st.c.Writer.Write(b); err != nil {
		return err
	}
	return st.rc.Flush()
}

// catchUp sends every event after st.last from the log, page by page, up to
// `until` (-1 = everything there is). A cursor older than the retained
// history gets a reset event carrying the current seq as its id, and the
// stream goes on from there.
func (st *stream) catchUp(ctx context.Context, until int64) error {
	page := st.s.cfg.ReplayPage
	for until < 0 || st.last < until {
		limit := page
		if until >= 0 {
			limit = int(min(int64(page), until-st.last))
		}
		events, err := st.s.log.Range(ctx, st.room, st.last, limit)
		if errors.Is(err, feed.ErrTrimmed) {
			return st.reset(ctx)
		}
		if err != nil {
			return err
		}
		var buf []byte
		replayed := 0
		for _, ev := range events {
			if ev.Seq <= st.last {
				continue
			}
			buf = append(buf, ev.Frame()...)
			st.last = ev.Seq
			replayed++
		}
		st.s.cfg.Metrics.replayedEvents(replayed)
		if len(buf) > 0 {
			if err := st.write(buf); err != nil {
				return errClientGone
			}
		}
		if len(events) < limit {
			return nil
		}
	}
	return nil
}

var errClientGone = errors.New("client gone")

func (st *stream) reset(ctx context.Context) error {
	head, err := st.s.store.Head(ctx, st.room)
	if err != nil {
		return err
	}
	st.last = head
	data := `{"cursor":"` + strconv.FormatInt(head, 10) + `","reason":"history_trimmed"}`
	if err := st.write(feed.AppendEvent(nil, strconv.FormatInt(head, 10), "reset", []byte(data))); err != nil {
		return errClientGone
	}
	return nil
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

func (st *stream) live(ctx context.Context, sub *feed.Subscription) {
	heartbeat := time.NewTimer(st.s.cfg.Heartbeat)
	defer heartbeat.Stop()
	ping := feed.AppendComment(nil, "ping")
	reason := "client_gone"
	defer func() { st.s.cfg.Metrics.streamEnded(reason) }()
	for {
		select {
		case m := <-sub.C():
			if err := st.send(ctx, m, sub); err != nil {
				if !errors.Is(err, errClientGone) {
					reason = "error"
				}
				st.fail(ctx, err)
				return
			}
			heartbeat.Reset(st.s.cfg.Heartbeat)
		case <-heartbeat.C:
			if st.write(ping) != nil {
				return
			}
			heartbeat.Reset(st.s.cfg.Heartbeat)
		case <-sub.Done():
			// Dropped as a slow consumer or the node is shutting down: the
			// client resumes from its last id, here or on another node.
			reason = "shutdown"
			if errors.Is(sub.Err(), feed.ErrSlowConsumer) {
				reason = "slow_consumer"
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
// before an event (seen only if the log delivered out of order) is filled
// from the log first, so the client never sees n+1 before n.
func (st *stream) send(ctx context.Context, m *feed.Message, sub *feed.Subscription) error {
	var buf []byte
	for {
		if m.Seq == 0 { // ephemeral (presence): no id, never replayed
			buf = append(buf, m.Frame...)
		}
		if m.Seq > st.last+1 {
			if len(buf) > 0 {
				if err := st.write(buf); err != nil {
					return errClientGone
				}
				buf = buf[:0]
			}
			if err := st.catchUp(ctx, m.Seq-1); err != nil {
				return err
			}
			if st.last < m.Seq-1 {
				return fmt.Errorf("room %s: events %d..%d missing from the log", st.room, st.last+1, m.Seq-1)
			}
		}
		if m.Seq > st.last {
			buf = append(buf, m.Frame...)
			st.last = m.Seq
			st.s.cfg.Metrics.deliveredLive(m.Queued)
		}
		if len(buf) >= 64<<10 {
			break
		}
		select {
		case m = <-sub.C():
			continue
		default:
		}
		break
	}
	if len(buf) == 0 {
		return nil
	}
	if err := st.write(buf); err != nil {
		return errClientGone
	}
	return nil
}
