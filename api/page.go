package api

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/sse"
)

// The feed routes answer a stream or, for GET /rooms/{room}/events, one JSON
// page of the room's history: the events after ?after=, at most ?limit=,
// as {"room","events","next","head"}. Both take the same filter.

var (
	errPageParams = badRequest("bad_format",
		"after and limit page the history as JSON (Accept: application/json or ?format=json); a stream resumes from Last-Event-ID or ?last_event_id=")
	errPageCursor = badRequest("bad_cursor",
		"a page of history takes its cursor as one ?after=<seq> (such as 42), not Last-Event-ID")
	errPageAfter = badRequest("bad_cursor",
		"after must be one seq: a whole number such as 42 (0 for the start)")
	errPageLimit = badRequest("bad_limit",
		fmt.Sprintf("limit must be one whole number from 1 (at most %d events are sent)", sse.MaxPageLimit))
	errMultiPage = badRequest("bad_format",
		"pages of history are per room: GET /rooms/{room}/events?format=json")
)

// feedQuery reads what every feed request may say besides its rooms and
// cursor: its filter (type=, kind=, element=) and whether it wants a JSON
// page of history instead of a stream: ?format=json, or an Accept header
// that names application/json and not text/event-stream (?format=sse
// asks for the stream, the default).
func feedQuery(c *gin.Context) (q url.Values, f sse.Filter, page bool, err error) {
	q = c.Request.URL.Query()
	if f, err = sse.ParseFilter(q); err != nil {
		var fe *sse.FilterError
		if errors.As(err, &fe) {
			err = badRequest("bad_filter", fe.Error()+"; type, kind and element name the events to send")
		}
		return q, f, false, err
	}
	switch format := q["format"]; {
	case len(format) > 1 || (len(format) == 1 && format[0] != "json" && format[0] != "sse"):
		return q, f, false, badRequest("bad_format", "format must be json (a page of history) or sse (the stream), once")
	case len(format) == 1:
		return q, f, format[0] == "json", nil
	}
	return q, f, acceptsJSONOnly(c.GetHeader("Accept")), nil
}

// acceptsJSONOnly reports whether an Accept header names application/json
// and not text/event-stream.
func acceptsJSONOnly(accept string) bool {
	json := false
	for r := range strings.SplitSeq(accept, ",") {
		switch mt, _, _ := mime.ParseMediaType(r); mt {
		case "text/event-stream":
			return false
		case "application/json":
			json = true
		}
	}
	return json
}

// streamOnly refuses the parameters of a page on a stream request: they
// would be ignored.
func streamOnly(q url.Values) error {
	if q.Has("after") || q.Has("limit") {
		return errPageParams
	}
	return nil
}

// pageParams reads a page's cursor, ?after= (0 when absent), and its size,
// ?limit= (sse.DefaultPageLimit when absent, sse.MaxPageLimit when above
// it). A Last-Event-ID is refused: which cursor would the client mean?
func pageParams(c *gin.Context, q url.Values) (after int64, limit int, err error) {
	if c.GetHeader("Last-Event-ID") != "" || q.Has("last_event_id") || len(q["after"]) > 1 {
		return 0, 0, errPageCursor
	}
	if q.Has("after") {
		if after, err = sse.ParseCursor(q.Get("after")); err != nil {
			return 0, 0, errPageAfter
		}
	}
	n, err := queryNumber(c, "limit", 1, sse.DefaultPageLimit, errPageLimit)
	if err != nil {
		return 0, 0, err
	}
	return after, int(min(n, sse.MaxPageLimit)), nil
}

// eventsPage answers GET /rooms/{room}/events as JSON: one page of the
// room's history after ?after=, read from the event log as a replay is.
// "events" are the events' data objects, byte for byte; "next" is the
// cursor of the next page (the last event read, passed by the filter or
// not) and "head" the room's head when the page was read: a reader pages
// until next == head. A cursor older than the retained history is 410
// history_trimmed (trimmed), one beyond the head 400 cursor_ahead.
func (s *Server) eventsPage(c *gin.Context, room string, q url.Values, f sse.Filter) {
	after, limit, err := pageParams(c, q)
	if err != nil {
		writeError(c, err)
		return
	}
	page, err := s.feeds.Page(c.Request.Context(), room, after, limit, f)
	if errors.Is(err, roomfeed.ErrTrimmed) {
		s.trimmed(c, room, after)
		return
	}
	if err != nil {
		writeError(c, err)
		return
	}
	s.cfg.Metrics.historyPage(len(page.Events))
	c.Header("Cache-Control", "no-cache") // the head moves
	c.Data(http.StatusOK, "application/json; charset=utf-8", appendPage(nil, room, page))
}

// appendPage writes page as {"room","events":[...],"next","head"}.
func appendPage(b []byte, room string, page sse.Page) []byte {
	b = append(b, `{"room":"`...)
	b = append(b, room...) // a room name needs no escaping (roomfeed.NamePattern)
	b = append(b, `","events":[`...)
	for i, ev := range page.Events {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, ev.Data...)
	}
	b = append(b, `],"next":"`...)
	b = strconv.AppendInt(b, page.Next, 10)
	b = append(b, `","head":"`...)
	b = strconv.AppendInt(b, page.Head, 10)
	return append(b, `"}`...)
}

// trimmed answers a page whose cursor is older than the retained history:
// 410 history_trimmed, with "oldest", the seq of the oldest event still
// retained (the head + 1 when none is), so ?after=<oldest-1> is served.
func (s *Server) trimmed(c *gin.Context, room string, after int64) {
	ctx := c.Request.Context()
	oldest, err := s.store.Oldest(ctx, room)
	if err == nil && oldest == 0 {
		var head int64
		head, err = s.store.Head(ctx, room)
		oldest = head + 1
	}
	if err != nil {
		writeError(c, err)
		return
	}
	writeError(c, &trimmedError{
		err: &Error{http.StatusGone, "history_trimmed",
			fmt.Sprintf("the events after %d are no longer retained; page from after=%d, or reload the snapshot", after, oldest-1)},
		oldest: oldest,
	})
}
