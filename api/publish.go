package api

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/roomfeed/roomfeed"
)

const (
	// maxQueuedEvents bounds the committed events waiting for the log;
	// beyond it the store's committers wait, so a slow log slows the
	// writers instead of filling memory.
	maxQueuedEvents = 8192
	// maxPublishEvents bounds the events of one PublishAll.
	maxPublishEvents = 4096
)

// publisher hands the events of committed writes to the log, in the order
// the store's committers announce them (Store.OnCommit: each batch once
// committed, before its writes are answered, so in seq order per room).
//
// A write is answered once its SQL commit returns: the events table is the
// outbox, and the relay republishes whatever a failed or lost publish left
// out of the log, so waiting for Redis would add a round trip to every
// write and promise nothing more. One goroutine at a time publishes, taking
// everything queued by then in one PublishAll, so the events of this node
// reach the log in order: none waits for another's publish, and none is
// refused above a hole this node left (only another node's can leave one).
// The goroutine runs while there is something to publish; wait waits for it.
type publisher struct {
	log     EventLog
	timeout time.Duration
	metrics *Metrics
	logger  *slog.Logger

	mu    sync.Mutex
	space *sync.Cond // broadcast when the queue shrinks or wait begins
	queue []roomfeed.Event
	// idle is nil while no goroutine publishes; else the running one
	// closes it when it returns.
	idle    chan struct{}
	closing bool // wait began: committed no longer waits for space
}

func newPublisher(log EventLog, timeout time.Duration, metrics *Metrics, logger *slog.Logger) *publisher {
	p := &publisher{log: log, timeout: timeout, metrics: metrics, logger: logger}
	p.space = sync.NewCond(&p.mu)
	return p
}

// committed queues the events of a committed batch, waiting while the
// queue is full, and starts the goroutine that publishes if none runs.
func (p *publisher) committed(evs []roomfeed.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.queue) >= maxQueuedEvents && !p.closing {
		p.space.Wait()
	}
	p.queue = append(p.queue, evs...)
	p.metrics.publishQueued(len(p.queue))
	if p.idle == nil {
		p.idle = make(chan struct{})
		go p.drain(p.idle)
	}
}

// drain publishes the queue, in order, until it is empty.
func (p *publisher) drain(idle chan struct{}) {
	defer close(idle)
	for {
		p.mu.Lock()
		if len(p.queue) == 0 {
			p.queue = nil
			p.idle = nil
			p.mu.Unlock()
			return
		}
		n := min(len(p.queue), maxPublishEvents)
		evs := p.queue[:n:n]
		p.queue = p.queue[n:]
		p.metrics.publishQueued(len(p.queue))
		p.space.Broadcast()
		p.mu.Unlock()
		p.publish(evs)
	}
}

// publish hands evs to the log. A failure is logged, not answered: the
// changes are committed, and the relay republishes what the log lacks.
func (p *publisher) publish(evs []roomfeed.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	err := p.log.PublishAll(ctx, evs)
	p.metrics.publishResult(len(evs), err)
	if err != nil {
		p.logger.LogAttrs(ctx, slog.LevelWarn, "publish failed; the relay will republish",
			slog.Int("events", len(evs)), slog.String("room", evs[0].Room), slog.Int64("seq", evs[0].Seq),
			slog.Any("error", err))
	}
}

// wait waits until the events queued so far are published, or ctx is
// done. From then on committed no longer waits for space.
func (p *publisher) wait(ctx context.Context) {
	p.mu.Lock()
	p.closing = true
	p.space.Broadcast()
	idle := p.idle
	p.mu.Unlock()
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
		}
	}
}

// WaitPublishes waits until the events of the writes already answered are
// published (or ctx is done). Call it after the http.Server has shut down
// and before the log and the store close.
func (s *Server) WaitPublishes(ctx context.Context) { s.publisher.wait(ctx) }
