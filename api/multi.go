package api

import (
	"errors"
	"fmt"
	"slices"

	"github.com/gin-gonic/gin"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/sse"
)

// multiEventsRoute is the multiplexed feed; like the per-room feed it takes
// ?access_token= since EventSource cannot set headers.
const multiEventsRoute = "/events"

var errBadMultiCursor = badRequest("bad_cursor",
	"Last-Event-ID must be a composite cursor such as a:42,b:7 naming only subscribed rooms")

// multiEvents serves several rooms on one stream: GET /events?room=a&room=b.
// Each room's events come in that room's order, once; every event's id is
// the composite cursor of the whole subscription, so a browser's automatic
// Last-Event-ID resumes every room at once. It takes the filter of the
// per-room feed; pages of history are per room.
func (s *Server) multiEvents(c *gin.Context) {
	var rooms []string
	for _, r := range c.QueryArray("room") {
		if !roomfeed.ValidName(r) {
			writeError(c, badRequest("bad_room", "room must match "+roomfeed.NamePattern.String()))
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
	q, filter, page, err := feedQuery(c)
	if err == nil && page {
		err = errMultiPage
	}
	raw, err := streamCursor(c, q, err)
	if errors.Is(err, sse.ErrBadCursor) {
		err = errBadMultiCursor
	}
	if err != nil {
		writeError(c, err)
		return
	}
	cursors, err := sse.ParseComposite(raw)
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
	s.serveFeed(c, sse.Request{Rooms: rooms, Cursors: cursors, Composite: true, Filter: filter})
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
