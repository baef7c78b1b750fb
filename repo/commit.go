package repo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"modernc.org/sqlite"
)

// maxBatch bounds the writes a committer runs in one transaction.
const maxBatch = 64

// errClosed answers the writes still queued when the store closes.
var errClosed = fmt.Errorf("store closed: %w", ErrUnavailable)

// writeFunc is the body of a write: it runs with the room row locked and
// the write's sequence number taken (writeTx.seq).
type writeFunc func(context.Context, *writeTx) error

// The states of a queued request: the committer takes it or its caller
// abandons it (context cancelled), whichever comes first.
const (
	reqQueued int32 = iota
	reqTaken
	reqAbandoned
)

// writeReq is one write waiting for a committer.
type writeReq struct {
	ctx   context.Context
	room  string
	id    string // the element fn reads ("" for none); PostgreSQL reads it up front
	fn    writeFunc
	state atomic.Int32
	done  chan error // capacity 1, so answering never blocks the committer
}

// committer is the group commit of SQLite writes (runBatch); PostgreSQL
// uses the same queue with runPostgresBatch (see pgcommit.go). One goroutine takes every
// queued write (up to maxBatch) and runs them in one transaction on the
// single write connection, each inside its own savepoint, so a write whose
// fn fails is undone alone (its sequence number included) while the others
// commit. One COMMIT, so one fsync with synchronous=FULL, covers the batch;
// then every write is answered with its own result. If the COMMIT (or the
// transaction around the savepoints) fails, every write that ran in the
// batch fails with that error and none was acknowledged.
//
// A write whose context is cancelled while it is queued is answered with
// the context's error and not run. Once its batch has taken it, it runs
// with its context's values but not its cancellation, so one caller going
// away cannot abort the transaction of the others, and its caller still
// waits for the outcome.
type committer struct {
	// commitBatch runs a batch; see runBatch for its contract.
	commitBatch func(batch []*writeReq, errs []error) error
	wake        chan struct{} // capacity 1: "the queue may have work"
	stopped     chan struct{} // closed when run returns
	stop        sync.Once

	mu     sync.Mutex
	queue  []*writeReq
	closed bool
}

func newCommitter(commitBatch func(batch []*writeReq, errs []error) error) *committer {
	c := &committer{commitBatch: commitBatch, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go c.run()
	return c
}

// do queues a write and waits for its outcome. A panic in fn is raised
// again here, in the caller's goroutine.
func (c *committer) do(ctx context.Context, room, id string, fn writeFunc) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &writeReq{ctx: ctx, room: room, id: id, fn: fn, done: make(chan error, 1)}
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
		err = <-r.done // taken: the batch decides
	}
	var p *writePanic
	if errors.As(err, &p) {
		panic(p.value)
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
	batch := make([]*writeReq, 0, maxBatch)
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
func (c *committer) take(batch []*writeReq) (_ []*writeReq, open bool) {
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

// commit runs batch in one transaction and answers every write in it.
func (c *committer) commit(batch []*writeReq, errs []error) []error {
	fatal := c.commitBatch(batch, errs)
	for i, r := range batch {
		if r == nil {
			continue // answered by runBatch
		}
		if fatal != nil {
			r.done <- fatal
		} else {
			r.done <- errs[i]
		}
	}
	return errs
}

// runBatch runs the writes of batch in one transaction, each in a
// savepoint, and commits. errs[i] is the outcome of batch[i] if the batch
// commits; a non-nil result is the error that failed the whole batch. A
// write whose context was cancelled before its turn is answered at once,
// not run, and set to nil in batch.
func (s *Store) runBatch(batch []*writeReq, errs []error) error {
	ctx := context.Background()
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	stmts := make(map[string]*sql.Stmt, len(s.stmts))
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err
			batch[i] = nil
			continue
		}
		w := &writeTx{s: s, tx: tx, stmts: stmts, room: r.room}
		var fatal error
		if errs[i], fatal = w.runSavepoint(ctx, context.WithoutCancel(r.ctx), r.fn); fatal != nil {
			tx.Rollback()
			return fatal
		}
	}
	if err := tx.Commit(); err != nil {
		// A COMMIT that failed (SQLITE_BUSY, an I/O error) can leave the
		// transaction open on the connection; end it so the next batch can
		// begin. Without a transaction this fails harmlessly.
		s.write.ExecContext(ctx, `ROLLBACK`)
		return err
	}
	return nil
}

// runSavepoint runs one write of a batch inside SAVEPOINT w: it takes the
// room's next sequence number, then runs fn. An error from either undoes
// the write alone (ROLLBACK TO w). fatal is set when the transaction itself
// is lost; then the batch must not commit.
func (w *writeTx) runSavepoint(txCtx, ctx context.Context, fn writeFunc) (err, fatal error) {
	if err := w.exec(txCtx, qSavepoint); err != nil {
		return err, err
	}
	err = w.nextSeq(ctx)
	if err == nil {
		err = callWrite(ctx, w, fn)
	}
	if err == nil {
		if err := w.exec(txCtx, qRelease); err != nil {
			return err, err
		}
		return nil, nil
	}
	if rerr := w.exec(txCtx, qRollbackTo); rerr != nil {
		// SQLite rolls the whole transaction back after some errors (disk
		// full, I/O error), and the savepoint with it: report the cause.
		var sqliteErr *sqlite.Error
		if errors.As(err, &sqliteErr) {
			return err, err
		}
		return rerr, rerr
	}
	if rerr := w.exec(txCtx, qRelease); rerr != nil {
		return rerr, rerr
	}
	return err, nil
}

// writePanic carries a panic of a write's fn from the committer to the
// write's caller, where it is raised again.
type writePanic struct{ value any }

func (p *writePanic) Error() string { return fmt.Sprintf("write panicked: %v", p.value) }

func callWrite(ctx context.Context, w *writeTx, fn writeFunc) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &writePanic{value: v}
		}
	}()
	return fn(ctx, w)
}
