package repo

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
)

// maxBatch bounds the writes a committer runs in one transaction.
const maxBatch = 64

// errClosed answers the writes still queued when the store closes.
var errClosed = fmt.Errorf("store closed: %w", ErrUnavailable)

// The states of a queued request: the committer takes it or its caller
// abandons it (context cancelled), whichever comes first.
const (
	reqQueued int32 = iota
	reqTaken
	reqAbandoned
)

// writeReq is one write waiting for a committer; its batch sees it as a
// sqlstore.Write.
type writeReq struct {
	ctx   context.Context
	room  string
	reads sqlstore.Reads // what fn reads; PostgreSQL reads it up front
	fn    sqlstore.Func
	state atomic.Int32
	done  chan error // capacity 1, so answering never blocks the committer
	// event is what the last run of fn recorded, if it succeeded; only
	// the committer's goroutine touches it.
	event roomfeed.Event
}

func (r *writeReq) Context() context.Context { return r.ctx }
func (r *writeReq) Room() string             { return r.room }
func (r *writeReq) Reads() sqlstore.Reads    { return r.reads }
func (r *writeReq) Skip(err error)           { r.done <- err }

// Run runs the write's fn and keeps the event it recorded; a panic in it
// is returned as a *sqlstore.Panic, which do raises again in the write's
// caller. A dialect may run a write twice (alone, after its batch failed):
// only the last run's event counts.
func (r *writeReq) Run(ctx context.Context, tx sqlstore.Tx) (err error) {
	r.event = roomfeed.Event{}
	defer func() {
		if v := recover(); v != nil {
			err = &sqlstore.Panic{Value: v}
		}
	}()
	ev, err := r.fn(ctx, tx)
	if err == nil {
		r.event = ev
	}
	return err
}

// committer is the group commit of the writes of its rooms. One goroutine
// takes every queued write (up to maxBatch) and hands them to the
// dialect's RunBatch, which runs them in one transaction where it can
// (see sqlstore.Write): a write whose fn fails is undone alone (its
// sequence number included) while the others commit, and one COMMIT
// covers the batch; then every write is answered with its own result. If
// the batch fails as a whole, every write that ran in it fails with that
// error and none was acknowledged.
//
// A write whose context is cancelled while it is queued is answered with
// the context's error and not run. Once its batch has taken it, it runs
// with its context's values but not its cancellation, so one caller going
// away cannot abort the transaction of the others, and its caller still
// waits for the outcome, unless the store's own bound on the call
// (Options.QueryTimeout, whose cause is sqlstore.ErrNoAnswer) runs out
// first: then it is answered ErrNoAnswer at once, and may still commit.
type committer struct {
	// commitBatch runs a batch: the dialect's RunBatch.
	commitBatch func(batch []sqlstore.Write, errs []error) error
	announce    func([]roomfeed.Event)
	wake        chan struct{} // capacity 1: "the queue may have work"
	stopped     chan struct{} // closed when run returns
	stop        sync.Once

	mu     sync.Mutex
	queue  []*writeReq
	closed bool
}

func newCommitter(commitBatch func(batch []sqlstore.Write, errs []error) error, announce func([]roomfeed.Event)) *committer {
	c := &committer{commitBatch: commitBatch, announce: announce, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go c.run()
	return c
}

// do queues a write and waits for its outcome. A panic in fn is raised
// again here, in the caller's goroutine.
func (c *committer) do(ctx context.Context, room string, reads sqlstore.Reads, fn sqlstore.Func) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &writeReq{ctx: ctx, room: room, reads: reads, fn: fn, done: make(chan error, 1)}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return errClosed
	}
	c.queue = append(c.queue, r)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}

	var err error
	select {
	case err = <-r.done:
	case <-ctx.Done():
		if r.state.CompareAndSwap(reqQueued, reqAbandoned) {
			return ctx.Err()
		}
		if context.Cause(ctx) == sqlstore.ErrNoAnswer {
			// Taken, and the store's bound ran out: the batch is stuck (a
			// hung disk a statement cannot be interrupted in). Answer now;
			// the write may still commit, like one whose COMMIT fails.
			return fmt.Errorf("%w: its batch did not finish in time", sqlstore.ErrNoAnswer)
		}
		err = <-r.done // taken, its caller gone: the batch decides
	}
	var p *sqlstore.Panic
	if errors.As(err, &p) {
		panic(p.Value)
	}
	return err
}

// close answers the queued writes with errClosed, lets the batch in flight
// finish and waits for the committer to return. It is idempotent.
func (c *committer) close() {
	c.stop.Do(func() {
		c.mu.Lock()
		c.closed = true
		queued := c.queue
		c.queue = nil
		c.mu.Unlock()
		for _, r := range queued {
			if r.state.CompareAndSwap(reqQueued, reqTaken) {
				r.done <- errClosed
			}
		}
		select {
		case c.wake <- struct{}{}:
		default:
		}
	})
	<-c.stopped
}

func (c *committer) run() {
	defer close(c.stopped)
	batch := make([]sqlstore.Write, 0, maxBatch)
	errs := make([]error, 0, maxBatch)
	for range c.wake {
		for {
			var open bool
			batch, open = c.take(batch[:0])
			if !open {
				return
			}
			if len(batch) == 0 {
				break
			}
			errs = c.commit(batch, errs[:len(batch)])
			clear(batch)
			clear(errs)
		}
	}
}

// take moves up to maxBatch queued writes into batch, dropping the ones
// their callers abandoned. open is false once the store is closing.
func (c *committer) take(batch []sqlstore.Write) (_ []sqlstore.Write, open bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return batch, false
	}
	n := 0
	for _, r := range c.queue {
		if len(batch) == maxBatch {
			break
		}
		n++
		if r.state.CompareAndSwap(reqQueued, reqTaken) {
			batch = append(batch, r)
		}
	}
	rest := copy(c.queue, c.queue[n:])
	clear(c.queue[rest:])
	c.queue = c.queue[:rest]
	return batch, true
}

// commit runs batch, announces its events and answers every write in it.
func (c *committer) commit(batch []sqlstore.Write, errs []error) []error {
	fatal := c.commitBatch(batch, errs)
	if fatal == nil {
		c.announceEvents(batch, errs)
	}
	for i, w := range batch {
		if w == nil {
			continue // skipped: answered by the batch
		}
		r := w.(*writeReq)
		if fatal != nil {
			r.done <- fatal
		} else {
			r.done <- errs[i]
		}
	}
	return errs
}

// announceEvents hands the events of the writes of a committed batch that
// succeeded to announce, in batch order.
func (c *committer) announceEvents(batch []sqlstore.Write, errs []error) {
	var evs []roomfeed.Event
	for i, w := range batch {
		if w == nil || errs[i] != nil {
			continue
		}
		if ev := w.(*writeReq).event; ev.Seq > 0 {
			if evs == nil {
				evs = make([]roomfeed.Event, 0, len(batch)-i)
			}
			evs = append(evs, ev)
		}
	}
	if len(evs) > 0 {
		c.announce(evs)
	}
}
