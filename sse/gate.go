package sse

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/roomfeed/roomfeed"
)

// ErrBusy refuses a stream that would have to catch up while CatchUpQueue
// streams already are: the client retries later (503 with Retry-After).
var ErrBusy = errors.New("too many streams catching up")

// Kinds of catch-up reads (Observer.CatchUpRead).
const (
	ReadEvents = "events" // a page of events after a cursor
	ReadHead   = "head"   // a room's head
)

// The gate is how streams read the source: a replay, the fill of a hole
// before a live event, a room's head. A reconnect storm (every subscriber
// of a restarted node resuming at once) then costs a bounded number of
// reads, none of which times out waiting for the database.
//
//   - Reads are shared. A read of room's events after cursor a, queued or
//     running, is joined by every stream of the room whose cursor lies in
//     [a, a+limit): each takes the events above its own cursor from the one
//     answer, a read-only slice. A trimmed history is shared only at the
//     same cursor. A head read is joined only while it is queued, so no
//     head is older than the call that asked for it.
//   - At most CatchUpReads reads run at once, in the order asked for: heads
//     and fills (their streams are live, or not admitted yet) before
//     replays. A stream waits for its read as long as its request lasts:
//     the database's timeout applies to the read, not to the wait. A stream
//     waiting after its headers were sent gets a ping every heartbeat.
//   - At most CatchUpQueue streams catch up at once: Open refuses the next
//     with ErrBusy; a stream is admitted until its replay is sent.
type gate struct {
	src       Source
	obs       Observer
	quit      <-chan struct{}
	size      int           // events per read at most (ReplayPage)
	workers   int           // reads at once at most (CatchUpReads)
	capacity  int64         // streams catching up at most (CatchUpQueue)
	heartbeat time.Duration // a stream waiting after its headers is pinged this often

	admitted atomic.Int64 // streams catching up now

	mu      sync.Mutex
	reads   map[string][]*read // per room, the events reads queued or running
	heads   map[string]*read   // per room, the head read queued, if any
	urgent  []*read            // FIFO of heads and fills
	replays []*read            // FIFO of replays' reads
	running int                // workers
	started uint64             // reads started so far, the order of the last one
	closed  bool               // stop was called: reads fail at once

	ctx    context.Context // the reads'; cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the workers
}

// read is one read of the source, shared by every stream that waits for it.
type read struct {
	room   string
	after  int64 // a page of the events after this seq; -1: the room's head
	limit  int
	order  uint64        // when it started (gate.started); 0 while queued
	urgent bool          // in the urgent queue
	done   chan struct{} // closed once the answer below is set
	// The answer: read-only once done is closed.
	events []roomfeed.Event
	head   int64
	err    error

	encode sync.Once // the events' frames, made by the first stream that wants them
	wire   []byte    // the frames of events, one after the other
	ends   []int     // where the frame of each event ends in wire
}

// histPage is a page of events a stream catches up with, from a read it
// may share with others.
type histPage struct {
	events []roomfeed.Event // r.events[lo:hi]
	r      *read
	lo, hi int
}

// frames returns the page's events framed as a single-room stream without
// a filter sends them, encoded once for every stream that shares the read:
// read-only bytes.
func (p histPage) frames() []byte {
	r := p.r
	r.encode.Do(func() {
		size := 0
		for _, ev := range r.events {
			size += len(ev.Type) + len(ev.Data) + 32 // "id: ", "event: ", "data: ", the id, the newlines
		}
		r.wire, r.ends = make([]byte, 0, size), make([]int, len(r.events))
		for i, ev := range r.events {
			r.wire = AppendEvent(r.wire, ev.ID(), ev.Type, ev.Data)
			r.ends[i] = len(r.wire)
		}
	})
	start, end := 0, r.ends[p.hi-1]
	if p.lo > 0 {
		start = r.ends[p.lo-1]
	}
	return r.wire[start:end:end]
}

func newGate(src Source, obs Observer, quit <-chan struct{}, cfg Config) *gate {
	g := &gate{src: src, obs: obs, quit: quit, size: cfg.ReplayPage, workers: cfg.CatchUpReads,
		capacity: int64(cfg.CatchUpQueue), heartbeat: cfg.Heartbeat,
		reads: map[string][]*read{}, heads: map[string]*read{}}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	return g
}

// admit takes a place for a stream that has to catch up; false when
// CatchUpQueue streams hold them all.
func (g *gate) admit() bool {
	for {
		n := g.admitted.Load()
		if n >= g.capacity {
			g.obs.CatchUpRefused()
			return false
		}
		if g.admitted.CompareAndSwap(n, n+1) {
			g.obs.CatchUpAdmitted(1)
			return true
		}
	}
}

// leave gives back the place admit took.
func (g *gate) leave() {
	g.admitted.Add(-1)
	g.obs.CatchUpAdmitted(-1)
}

// head returns room's head, from a read that starts after the call. A read
// that fails is read again once before its error is returned.
func (g *gate) head(ctx context.Context, room string) (head int64, err error) {
	for range 2 {
		g.mu.Lock()
		r := g.heads[room]
		if r == nil {
			r = &read{room: room, after: -1, done: make(chan struct{})}
			g.heads[room] = r
			g.enqueue(r, true)
		} else {
			g.obs.CatchUpRead(ReadHead, true)
		}
		g.mu.Unlock()
		if err := g.wait(ctx, r, nil); err != nil {
			return 0, err
		}
		if head, err = r.head, r.err; err == nil || errors.Is(err, ErrClosed) {
			break
		}
	}
	return head, err
}

// pages calls fn with room's events in (after, until], in order, a page at
// a time, as roomfeed.Pages does, reading them through the gate: urgent
// for a fill. ping, when not nil, is called every heartbeat while a read
// is awaited. Reading ends early when a read that started after the call
// brings nothing new (the source has no more). A read that fails is read
// again once (a new read) before its error is returned.
func (g *gate) pages(ctx context.Context, room string, after, until int64, urgent bool,
	ping func() error, fn func(histPage) error) error {
	var (
		need    uint64 // reads started up to this one may have started before the call
		fresh   uint64 // join no read started up to this one
		exact   bool   // join only a read after this very cursor
		retried bool   // a failed read was read again
	)
	for first := true; after < until; first = false {
		limit := int(min(int64(g.size), until-after))
		r, asked := g.join(room, after, limit, urgent, fresh, exact)
		if first {
			need = asked
		}
		if err := g.wait(ctx, r, ping); err != nil {
			return err
		}
		switch trimmed := errors.Is(r.err, roomfeed.ErrTrimmed); {
		case trimmed && r.after != after:
			exact = true // trimmed after r.after says nothing of after
			continue
		case r.err != nil && !trimmed && !retried:
			// Once, in case the source failed only for a moment: every
			// stream that shared the read would end.
			retried, fresh = true, max(fresh, r.order)
			continue
		case r.err != nil:
			return r.err
		}
		if lo, hi := span(r.events, after, until); lo < hi {
			if err := fn(histPage{events: r.events[lo:hi], r: r, lo: lo, hi: hi}); err != nil {
				return err
			}
			after, exact = r.events[hi-1].Seq, false
			continue
		}
		if r.order > need || fresh >= need {
			return nil // the source has nothing after the cursor
		}
		fresh = need // r may have started before the events were there: read again
	}
	return nil
}

// join returns a read of room's events that answers the cursor after: one
// queued or running that covers it and may be joined, else a new one; and
// the number of reads started when it was joined.
func (g *gate) join(room string, after int64, limit int, urgent bool, fresh uint64, exact bool) (*read, uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	var r *read
	for _, c := range g.reads[room] {
		switch {
		case after < c.after || after >= c.after+int64(c.limit):
		case exact && c.after != after:
		case c.order != 0 && c.order <= fresh:
		case r == nil || c.after > r.after:
			r = c // the one that reaches farthest
		}
	}
	if r != nil {
		g.obs.CatchUpRead(ReadEvents, true)
		if urgent && r.order == 0 && !r.urgent {
			r.urgent = true // a fill waits behind no replay (it leaves it queued twice: next skips it)
			g.urgent = append(g.urgent, r)
		}
		return r, g.started
	}
	r = &read{room: room, after: after, limit: limit, done: make(chan struct{})}
	g.reads[room] = append(g.reads[room], r)
	g.enqueue(r, urgent)
	return r, g.started
}

// enqueue queues r, and starts a worker when fewer than CatchUpReads run.
// The caller holds g.mu.
func (g *gate) enqueue(r *read, urgent bool) {
	if g.closed {
		r.err = ErrClosed
		if r.after < 0 {
			delete(g.heads, r.room)
		} else {
			g.forget(r)
		}
		close(r.done)
		return
	}
	r.urgent = urgent
	if urgent {
		g.urgent = append(g.urgent, r)
	} else {
		g.replays = append(g.replays, r)
	}
	if g.running < g.workers {
		g.running++
		g.wg.Go(g.work)
	}
}

// work runs queued reads until there are none.
func (g *gate) work() {
	for r := g.next(); r != nil; r = g.next() {
		g.do(r)
	}
}

// next takes the next read to run off the queues, urgent first, and marks
// it started; nil when there is none (the worker then leaves).
func (g *gate) next() *read {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, q := range []*[]*read{&g.urgent, &g.replays} {
		for len(*q) > 0 {
			r := (*q)[0]
			(*q)[0] = nil
			if *q = (*q)[1:]; len(*q) == 0 {
				*q = nil
			}
			if r.order != 0 {
				continue // started already from the other queue
			}
			g.started++
			r.order = g.started
			if r.after < 0 && g.heads[r.room] == r {
				delete(g.heads, r.room) // a head read started: later calls need a later one
			}
			return r
		}
	}
	g.running--
	return nil
}

// do runs r and hands its answer to every stream waiting for it.
func (g *gate) do(r *read) {
	if r.after < 0 {
		r.head, r.err = g.src.Head(g.ctx, r.room)
		g.obs.CatchUpRead(ReadHead, false)
	} else {
		r.events, r.err = g.src.EventsAfter(g.ctx, r.room, r.after, r.limit)
		g.obs.CatchUpRead(ReadEvents, false)
		g.mu.Lock()
		g.forget(r)
		g.mu.Unlock()
	}
	close(r.done)
}

// forget removes an events read that ended from its room's. The caller
// holds g.mu.
func (g *gate) forget(r *read) {
	rs := g.reads[r.room]
	for i, c := range rs {
		if c == r {
			rs[i] = rs[len(rs)-1]
			rs[len(rs)-1] = nil
			rs = rs[:len(rs)-1]
			break
		}
	}
	if len(rs) == 0 {
		delete(g.reads, r.room)
	} else {
		g.reads[r.room] = rs
	}
}

// wait waits for r's answer, as long as ctx lasts and the engine is open.
// ping, when not nil, is called every heartbeat meanwhile, to keep the
// client's connection alive.
func (g *gate) wait(ctx context.Context, r *read, ping func() error) error {
	select {
	case <-r.done:
		return nil
	default:
	}
	g.obs.CatchUpWaiting(1)
	defer g.obs.CatchUpWaiting(-1)
	var tick <-chan time.Time
	if ping != nil {
		t := time.NewTicker(g.heartbeat)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-r.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-g.quit:
			return ErrClosed
		case <-tick:
			if err := ping(); err != nil {
				return err
			}
		}
	}
}

// stop cancels the reads running; the workers then fail the reads still
// queued at once, and any read asked for later fails with ErrClosed.
func (g *gate) stop() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.cancel()
}

// waitWorkers waits for the workers to leave, after stop.
func (g *gate) waitWorkers() { g.wg.Wait() }

// span returns the bounds of the events of page in (after, until]:
// page[lo:hi], in order.
func span(page []roomfeed.Event, after, until int64) (lo, hi int) {
	for lo < len(page) && page[lo].Seq <= after {
		lo++
	}
	for hi = lo; hi < len(page) && page[hi].Seq <= until; hi++ {
	}
	return lo, hi
}
