package api

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/roomfeed/roomfeed/feed"
)

const (
	signalsRoute = "/rooms/:room/signals"
	// maxSignalBytes bounds a signal's data.
	maxSignalBytes = 4 << 10
	// signalWait bounds how long a signal waits for the log (Redis) before
	// it is answered 503 feed_unavailable and dropped.
	signalWait = 2 * time.Second
)

// postSignal sends a signal, {"event","data"} as a message's body with data
// of at most maxSignalBytes, to the room's current subscribers on every
// node, from person (the token's sub, or ?client= in open mode): delivered
// at once as an event without an id, never recorded or replayed, at most
// once. It answers 202 with the signal's data; a log that cannot be reached
// is 503 feed_unavailable, and the signal is lost. The write grant and the
// signal rate (limitRate) are checked before. A signal is never recorded,
// so an idempotency key means nothing to it; a malformed one is refused as
// on every write (400), a well-formed one is ignored.
func (s *Server) postSignal(c *gin.Context) error {
	who, err := person(c)
	if err != nil {
		return err
	}
	if _, err := idempotencyKey(c); err != nil {
		return err
	}
	b, _, err := s.readMessage(c, "signal", maxSignalBytes)
	if err != nil {
		return err
	}
	ev, err := feed.SignalEvent(c.Param("room"), b.Event, who, b.Data, time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), signalWait)
	defer cancel()
	if err := s.log.Signal(ctx, ev); err != nil {
		return err
	}
	s.cfg.Metrics.signaled()
	c.Data(http.StatusAccepted, "application/json; charset=utf-8", ev.Data)
	return nil
}
