package api

import (
	"context"
	"net/url"

	"github.com/gin-gonic/gin"

	"github.com/roomfeed/roomfeed/sse"
)

// events serves one room's feed: GET /rooms/{room}/events, the stream or a
// JSON page of its history (page.go). The room group's middleware has
// checked the read grant.
func (s *Server) events(c *gin.Context) {
	room := c.Param("room")
	c.Writer.Header().Add("Vary", "Accept")
	q, filter, page, err := feedQuery(c)
	if err == nil && page {
		s.eventsPage(c, room, q, filter)
		return
	}
	raw, err := streamCursor(c, q, err)
	req := sse.Request{Rooms: []string{room}, Cursors: map[string]int64{}, Filter: filter}
	if err == nil && raw != "" {
		req.Cursors[room], err = sse.ParseCursor(raw)
	}
	if err != nil {
		writeError(c, err)
		return
	}
	s.serveFeed(c, req)
}

// streamCursor is what a stream request says after feedQuery (whose error
// is err): no page parameters, and the raw cursor of lastEventID.
func streamCursor(c *gin.Context, q url.Values, err error) (string, error) {
	if err == nil {
		err = streamOnly(q)
	}
	if err != nil {
		return "", err
	}
	return lastEventID(c)
}

// lastEventID returns the client's cursor as given: the Last-Event-ID
// header, else the last_event_id query parameter (a browser sends the header
// only on its own reconnects); "" for none. Either one repeated is
// sse.ErrBadCursor: which one would the client mean?
func lastEventID(c *gin.Context) (string, error) {
	if len(c.Request.Header.Values("Last-Event-ID")) > 1 || len(c.QueryArray("last_event_id")) > 1 {
		return "", sse.ErrBadCursor
	}
	if raw := c.GetHeader("Last-Event-ID"); raw != "" {
		return raw, nil
	}
	return c.Query("last_event_id"), nil
}

// maxOpening is how many streams are opened at once (subscribed, their
// cursors placed); the others wait their turn. Thousands of clients
// connecting at the same moment then do not all hold a set-up's memory
// (a deep stack, buffers, garbage) together (what that saves:
// docs/performance.md). Opening is short (a store read), so a few more
// than the cores keep the store busy.
const maxOpening = 16

// serveFeed limits, opens and serves a parsed and authorized feed request.
// What fails before the response starts is answered as a JSON error; after
// that, the stream itself tells the client.
func (s *Server) serveFeed(c *gin.Context, req sse.Request) {
	release, err := s.acquireStream(c)
	if err != nil {
		writeError(c, err)
		return
	}
	req.Expires = tokenExpiresAt(c)
	req.Path, req.Remote = c.Request.URL.Path, c.ClientIP()
	st, err := s.open(c.Request.Context(), req)
	if err != nil {
		release()
		writeError(c, err)
		return
	}
	st.OnEnd(release)
	leave, err := s.joinPresence(c, req.Rooms...)
	if err != nil {
		st.Close()
		writeError(c, err)
		return
	}
	st.OnEnd(leave)
	st.Serve(c.Writer, c.Request)
}

// open opens req's stream once it is its turn (maxOpening); a client that
// leaves while it waits gets nothing.
func (s *Server) open(ctx context.Context, req sse.Request) (*sse.Stream, error) {
	select {
	case s.opening <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.opening }()
	return s.feeds.Open(ctx, req)
}
