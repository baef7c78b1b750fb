package api

import (
	"context"
	"log/slog"
	"sync"

	"github.com/roomfeed/roomfeed"
)

// maxBackgroundPublishes bounds the publishes that run after their write
// was answered.
const maxBackgroundPublishes = 1024

// publisher runs the publishes of committed events in the background.
//
// A write is answered once its SQL commit returns: the events table is the
// outbox, and the relay republishes whatever a failed or lost publish left
// out of the log, so waiting for Redis would add a round trip to every
// write and promise nothing more. The publishes made at once share one
// round trip to Redis (feed/redis). When maxBackgroundPublishes are
// running, or after wait began, a write publishes before it is answered,
// so a slow log slows the writers instead of piling up goroutines.
type publisher struct {
	slots chan struct{}
	mu    sync.RWMutex // guards closed, and orders running.Add before running.Wait
	// closed: wait began; publishes no longer start in the background.
	closed  bool
	running sync.WaitGroup
}

func newPublisher() *publisher {
	return &publisher{slots: make(chan struct{}, maxBackgroundPublishes)}
}

// start runs fn in the background and reports true, or reports false when
// the caller must run it itself.
func (p *publisher) start(fn func()) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return false
	}
	select {
	case p.slots <- struct{}{}:
	default:
		return false
	}
	p.running.Add(1)
	go func() {
		defer p.running.Done()
		defer func() { <-p.slots }()
		fn()
	}()
	return true
}

// wait stops background publishes and waits for those running, or until
// ctx is done.
func (p *publisher) wait(ctx context.Context) {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	waitOrDone(ctx, p.running.Wait)
}

// WaitPublishes waits until the events of the writes already answered are
// published (or ctx is done). Call it after the http.Server has shut down
// and before the log and the store close.
func (s *Server) WaitPublishes(ctx context.Context) { s.publisher.wait(ctx) }

// publish hands a committed event to the log, in the background when it
// can (see publisher). A failure is logged, not answered: the change is
// committed, and the relay republishes what the log lacks.
func (s *Server) publish(ctx context.Context, ev roomfeed.Event) {
	s.cfg.Metrics.wrote(!ev.IsElement())
	ctx = context.WithoutCancel(ctx)
	if !s.publisher.start(func() { s.publishNow(ctx, ev) }) {
		s.publishNow(ctx, ev)
	}
}

func (s *Server) publishNow(ctx context.Context, ev roomfeed.Event) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishWait)
	defer cancel()
	err := s.log.Publish(ctx, ev)
	s.cfg.Metrics.publishResult(err)
	if err != nil {
		s.logger.LogAttrs(ctx, slog.LevelWarn, "publish failed; the relay will republish",
			slog.String("room", ev.Room), slog.Int64("seq", ev.Seq), slog.Any("error", err))
	}
}
