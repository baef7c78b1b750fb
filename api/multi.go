package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/roomfeed/roomfeed/feed"
)

// A composite cursor names the position of every room of a multiplexed
// subscription: "a:42,b:7". Room names cannot contain ':' or ',', so the
// form needs no escaping.

// parseComposite parses a composite cursor. An empty string is no cursor.
func parseComposite(raw string) (map[string]int64, error) {
	out := map[string]int64{}
	if strings.TrimSpace(raw) == "" {
		return out, nil
	}
	for part := range strings.SplitSeq(raw, ",") {
		room, seq, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok || !namePattern.MatchString(room) {
			return nil, feed.ErrBadCursor
		}
		n, err := feed.ParseCursor(seq)
		if err != nil {
			return nil, err
		}
		if _, dup := out[room]; dup {
			return nil, feed.ErrBadCursor
		}
		out[room] = n
	}
	return out, nil
}

// formatComposite writes the cursor of every room, in subscription order.
func formatComposite(rooms []string, last map[string]int64) string {
	var b strings.Builder
	for i, r := range rooms {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r)
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(last[r], 10))
	}
	return b.String()
}

// multiEventsRoute is the multiplexed feed; like the per-room feed it takes
// ?access_token= since EventSource cannot set headers.
const multiEventsRoute = "/events"

var errBadMultiCursor = badRequest("bad_cursor",
	"Last-Event-ID must be a composite cursor such as a:42,b:7 naming only subscribed rooms")

// multiEvents serves several rooms on one stream: GET /events?room=a&room=b.
// Each room's events come in that room's order, once; every event's id is
// the composite cursor of the whole subscription, so a browser's automatic
// Last-Event-ID resumes every room at once.
func (s *Server) multiEvents(c *gin.Context) {
	ctx := c.Request.Context()
	var rooms []string
	for _, r := range c.QueryArray("room") {
		if !namePattern.MatchString(r) {
			writeError(c, badRequest("bad_room", "room must match "+namePattern.String()))
			return
		}
		if !slices.Contains(rooms, r) {
			rooms = append(rooms, r)
		}
	}
	if len(rooms) == 0 {
		writeError(c, badRequest("bad_room", "name at least one room: /events?room=a&room=b"))
		return
	}
	if len(rooms) > s.cfg.MaxFeedRooms {
		writeError(c, badRequest("too_many_rooms", fmt.Sprintf("at most %d rooms per stream", s.cfg.MaxFeedRooms)))
		return
	}
	if err := s.authorizeRooms(c, rooms); err != nil {
		writeError(c, err)
		return
	}
	if len(c.Request.Header.Values("Last-Event-ID")) > 1 || len(c.QueryArray("last_event_id")) > 1 {
		writeError(c, errBadMultiCursor)
		return
	}
	raw := c.GetHeader("Last-Event-ID")
	if raw == "" {
		raw = c.Query("last_event_id")
	}
	cursors, err := parseComposite(raw)
	if err != nil {
		writeError(c, errBadMultiCursor)
		return
	}
	for r := range cursors {
		if !slices.Contains(rooms, r) {
			writeError(c, errBadMultiCursor)
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
				fmt.Sprintf("the cursor of room %s (%d) is ahead of its latest event %d", r, cur, head)})
			return
		}
		last[r] = cur
	}

	startStream(c)
	ms := &multiStream{
		stream: stream{s: s, c: c, rc: http.NewResponseController(c.Writer), expired: expired},
		rooms:  rooms,
		last:   last,
	}
	buf := feed.AppendRetry(nil, s.cfg.Retry)
	buf = feed.AppendComment(buf, "roomfeed "+formatComposite(rooms, last))
	if ms.write(buf) != nil {
		return
	}
	for _, r := range rooms {
		if err := ms.catchUp(ctx, r, -1); err != nil {
			ms.fail(ctx, err)
			return
		}
	}
	ms.liveMany(ctx, subs)
}

// startStream sends the SSE response headers.
func startStream(c *gin.Context) {
	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Set("Connection", "keep-alive")
	c.Status(http.StatusOK)
}

// multiStream is a multiplexed SSE response in progress.
type multiStream struct {
	stream
	rooms []string
	last  map[string]int64
}

func (ms *multiStream) frame(buf []byte, ev feed.Event) []byte {
	ms.last[ev.Room] = ev.Seq
	return feed.AppendEvent(buf, formatComposite(ms.rooms, ms.last), ev.Type, ev.Data)
}

// catchUp sends room's events after its cursor, up to `until` (-1 = all).
func (ms *multiStream) catchUp(ctx context.Context, room string, until int64) error {
	page := ms.s.cfg.ReplayPage
	for until < 0 || ms.last[room] < until {
		limit := page
		if until >= 0 {
			limit = int(min(int64(page), until-ms.last[room]))
		}
		events, err := ms.s.log.Range(ctx, room, ms.last[room], limit)
		if errors.Is(err, feed.ErrTrimmed) {
			return ms.resetRoom(ctx, room)
		}
		if err != nil {
			return err
		}
		var buf []byte
		n := 0
		for _, ev := range events {
			if ev.Seq <= ms.last[room] {
				continue
			}
			buf = ms.frame(buf, ev)
			n++
		}
		ms.s.cfg.Metrics.replayedEvents(n)
		if len(buf) > 0 {
			if err := ms.write(buf); err != nil {
				return errClientGone
			}
		}
		if len(events) < limit {
			return nil
		}
	}
	return nil
}

// resetRoom tells the client that room's cursor is older than its history:
// that room reloads its snapshot; the other rooms go on.
func (ms *multiStream) resetRoom(ctx context.Context, room string) error {
	head, err := ms.s.store.Head(ctx, room)
	if err != nil {
		return err
	}
	ms.last[room] = head
	data := `{"room":"` + room + `","cursor":"` + strconv.FormatInt(head, 10) + `","reason":"history_trimmed"}`
	if err := ms.write(feed.AppendEvent(nil, formatComposite(ms.rooms, ms.last), "reset", []byte(data))); err != nil {
		return errClientGone
	}
	return nil
}

// liveMany merges the rooms' subscriptions. One forwarding goroutine per
// room, owned and stopped by this call, keeps each room's order.
func (ms *multiStream) liveMany(ctx context.Context, subs []*feed.Subscription) {
	merged := make(chan *feed.Message, 256)
	ended := make(chan error, len(subs))
	stop := make(chan struct{})
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
					ended <- sub.Err()
					return
				case <-stop:
					return
				}
			}
		})
	}
	heartbeat := time.NewTimer(ms.s.cfg.Heartbeat)
	defer heartbeat.Stop()
	ping := feed.AppendComment(nil, "ping")
	reason := "client_gone"
	defer func() { ms.s.cfg.Metrics.streamEnded(reason) }()
	for {
		select {
		case m := <-merged:
			if err := ms.sendMany(ctx, m, merged); err != nil {
				if !errors.Is(err, errClientGone) {
					reason = "error"
				}
				ms.fail(ctx, err)
				return
			}
			heartbeat.Reset(ms.s.cfg.Heartbeat)
		case <-heartbeat.C:
			if ms.write(ping) != nil {
				return
			}
			heartbeat.Reset(ms.s.cfg.Heartbeat)
		case err := <-ended:
			reason = "shutdown"
			if errors.Is(err, feed.ErrSlowConsumer) {
				reason = "slow_consumer"
			}
			return
		case <-ms.s.quit:
			reason = "shutdown"
			return
		case <-ctx.Done():
			return
		case <-ms.expired:
			_ = ms.write(authExpiredFrame)
			reason = "auth_expired"
			return
		}
	}
}

// sendMany writes m and whatever else is queued, filling any hole in a
// room's sequence from the log first.
func (ms *multiStream) sendMany(ctx context.Context, m *feed.Message, merged <-chan *feed.Message) error {
	var buf []byte
	for {
		if m.Seq == 0 { // ephemeral (presence): no id, never replayed
			buf = append(buf, m.Frame...)
		}
		if last := ms.last[m.Room]; m.Seq > last+1 {
			if len(buf) > 0 {
				if err := ms.write(buf); err != nil {
					return errClientGone
				}
				buf = buf[:0]
			}
			if err := ms.catchUp(ctx, m.Room, m.Seq-1); err != nil {
				return err
			}
			if ms.last[m.Room] < m.Seq-1 {
				return fmt.Errorf("room %s: events %d..%d missing from the log", m.Room, ms.last[m.Room]+1, m.Seq-1)
			}
		}
		if m.Seq > ms.last[m.Room] && m.Seq > 0 {
			buf = ms.frame(buf, m.Event)
			ms.s.cfg.Metrics.deliveredLive(m.Queued)
		}
		if len(buf) >= 64<<10 {
			break
		}
		select {
		case m = <-merged:
			continue
		default:
		}
		break
	}
	if len(buf) == 0 {
		return nil
	}
	if err := ms.write(buf); err != nil {
		return errClientGone
	}
	return nil
}

// authorizeRooms checks a read grant for every room of a multiplexed
// stream. Without a verifier (open development mode) everything is allowed.
func (s *Server) authorizeRooms(c *gin.Context, rooms []string) error {
	if s.cfg.Auth == nil {
		return nil
	}
	raw, _, err := tokenFrom(c)
	if err != nil {
		return err
	}
	claims, err := s.cfg.Auth.Verify(raw)
	if err != nil {
		return err
	}
	for _, r := range rooms {
		if !allowed(claims.Roomfeed.Read, r) {
			return errForbiddenRead
		}
	}
	c.Set(claimsKey, claims)
	c.Set(tokenKeyKey, tokenKey(raw))
	return nil
}
