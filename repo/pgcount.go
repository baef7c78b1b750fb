package repo

import (
	"context"
	"sync"
)

// pgCountElements counts the elements of several rooms in one statement;
// each count is an index-only scan of the room's part of the primary key.
const pgCountElements = `SELECT k.room,
		(SELECT count(*) FROM elements WHERE elements.room = k.room)
	FROM unnest($1::text[]) AS k (room)`

// counter merges the CountElements calls made at once on PostgreSQL into
// one statement (every write of the API asks for its room's count first),
// so they cost one round trip and one statement instead of one each. A call
// made while no count runs counts at once, in its own goroutine. Otherwise
// it queues: one goroutine takes every queued call, runs the statement and
// answers them; calls made meanwhile wait for the next statement. Each count
// is exact as of a moment after its call began.
type counter struct {
	s       *Store
	wake    chan struct{} // capacity 1: "the queue may have work"
	stopped chan struct{} // closed when run returns
	stop    sync.Once

	mu       sync.Mutex
	queue    []*countReq
	inflight int // counts running, alone or batched
	closed   bool
}

type countReq struct {
	ctx  context.Context
	room string
	n    int
	err  error
	done chan struct{}
}

func newCounter(s *Store) *counter {
	c := &counter{s: s, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go c.run()
	return c
}

// count queues a count of room and waits for it or for ctx.
func (c *counter) count(ctx context.Context, room string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, errClosed
	}
	if c.inflight == 0 && len(c.queue) == 0 {
		c.inflight++
		c.mu.Unlock()
		var n int
		err := c.s.read.QueryRowContext(ctx, c.s.q(`SELECT COUNT(*) FROM elements WHERE room = ?`), room).Scan(&n)
		c.mu.Lock()
		c.inflight--
		c.mu.Unlock()
		return n, err
	}
	r := &countReq{ctx: ctx, room: room, done: make(chan struct{})}
	c.queue = append(c.queue, r)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	select {
	case <-r.done:
		return r.n, r.err
	case <-ctx.Done():
		return 0, ctx.Err() // the answer, if it comes, is dropped
	}
}

// close answers the queued calls with errClosed, lets the statement in
// flight finish and waits for the goroutine to return. It is idempotent.
func (c *counter) close() {
	c.stop.Do(func() {
		c.mu.Lock()
		c.closed = true
		queued := c.queue
		c.queue = nil
		c.mu.Unlock()
		for _, r := range queued {
			r.err = errClosed
			close(r.done)
		}
		select {
		case c.wake <- struct{}{}:
		default:
		}
	})
	<-c.stopped
}

func (c *counter) run() {
	defer close(c.stopped)
	for range c.wake {
		for {
			c.mu.Lock()
			if c.closed {
				c.mu.Unlock()
				return
			}
			batch := c.queue
			c.queue = nil
			if len(batch) > 0 {
				c.inflight++
			}
			c.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			c.countBatch(batch)
			c.mu.Lock()
			c.inflight--
			c.mu.Unlock()
		}
	}
}

// countBatch counts the rooms of batch in one statement and answers every
// call that is still waiting.
func (c *counter) countBatch(batch []*countReq) {
	rooms := make([]string, 0, len(batch))
	seen := make(map[string]int, len(batch))
	for _, r := range batch {
		if r.ctx.Err() != nil {
			continue // answered below with its context's error
		}
		if _, ok := seen[r.room]; !ok {
			seen[r.room] = 0
			rooms = append(rooms, r.room)
		}
	}
	var err error
	if len(rooms) > 0 {
		err = c.query(rooms, seen)
	}
	for _, r := range batch {
		if _, ok := seen[r.room]; ok {
			r.n, r.err = seen[r.room], err
		} else {
			r.err = r.ctx.Err()
		}
		close(r.done)
	}
}

func (c *counter) query(rooms []string, counts map[string]int) error {
	ctx, cancel := context.WithTimeout(context.Background(), pgBatchTimeout)
	defer cancel()
	rows, err := c.s.read.QueryContext(ctx, pgCountElements, rooms)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			room string
			n    int
		)
		if err := rows.Scan(&room, &n); err != nil {
			return err
		}
		counts[room] = n
	}
	return rows.Err()
}
