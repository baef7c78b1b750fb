package api

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/roomfeed/roomfeed/sse"
)

// The pump serves the live part of hijacked HTTP/1.1 streams with a few
// worker goroutines instead of one goroutine (plus net/http's reader
// goroutine and buffers) per stream. An idle subscriber then costs its
// connection, its subscriptions and a few small structs.
//
//   - A subscription's Notify callback, the connection watcher (the client
//     closed the connection), the heartbeat ticker, the token expiry timer
//     and shutdown schedule the stream; scheduling is idempotent.
//   - A worker takes a scheduled stream and runs one step: end it if there is
//     a reason to, else write everything queued (and a ping when due) in one
//     write. A stream is run by at most one worker at a time; one scheduled
//     while it runs is run again afterwards.
//   - A write that does not complete within pumpSlice (a client reading
//     slower than events arrive) keeps its worker, now the stream's own
//     goroutine, for the rest of the write (up to WriteTimeout), and the pump
//     starts another worker in its place; the lent one returns after that
//     step. A stuck client therefore never holds up the others.
type pump struct {
	s       *Server
	workers int

	startOnce sync.Once
	started   bool
	watch     *connWatch // nil where the platform has no watcher: then no pump

	mu       sync.Mutex
	cond     *sync.Cond
	ready    []*stream // FIFO of scheduled streams, from head on
	head     int
	streams  map[*stream]struct{}
	stopping bool // quit: no new streams; workers leave once streams is empty

	lent        atomic.Uint64  // workers that stayed with a slow write
	workerWG    sync.WaitGroup // the workers
	wg          sync.WaitGroup // every pump goroutine
	ctx         context.Context
	cancel      context.CancelFunc
	idleStreams []*stream // the heartbeat's scratch list
}

// Scheduling states of a stream (stream.sched).
const (
	schedIdle    int32 = iota // not scheduled
	schedQueued               // on the ready list
	schedRunning              // a worker runs its step
	schedRerun                // scheduled again while running
)

func newPump(s *Server) *pump {
	p := &pump{s: s, workers: max(32, 8*runtime.GOMAXPROCS(0)), streams: make(map[*stream]struct{})}
	p.cond = sync.NewCond(&p.mu)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// hijack takes over the connection of a plain HTTP/1.x stream whose
// response has not started, when the pump can serve it; nil means the
// handler goroutine serves the stream as usual.
func (s *Server) hijack(c *gin.Context) net.Conn {
	r := c.Request
	if s.cfg.NoPump || r.ProtoMajor != 1 || r.TLS != nil || r.Context().Value(http.ServerContextKey) == nil {
		return nil // HTTP/2 and TLS cannot be hijacked usefully; a test recorder cannot at all
	}
	if !s.pump.start() {
		return nil
	}
	conn, _, err := c.Writer.Hijack()
	if err != nil {
		return nil
	}
	return conn
}

// start starts the pump's goroutines once; false when the pump cannot run
// (no connection watcher on this platform, or shutting down).
func (p *pump) start() bool {
	p.startOnce.Do(func() {
		select {
		case <-p.s.quit:
			return
		default:
		}
		w, err := newConnWatch()
		if err != nil {
			p.s.logger.LogAttrs(context.Background(), slog.LevelInfo,
				"streams are served by their own goroutines", slog.String("reason", err.Error()))
			return
		}
		p.watch = w
		p.started = true
		p.wg.Go(w.run)
		for range p.workers {
			p.spawn()
		}
		p.wg.Go(p.heartbeats)
		p.wg.Go(p.stopper)
	})
	return p.started
}

func (p *pump) spawn() {
	p.workerWG.Add(1)
	p.wg.Go(func() {
		defer p.workerWG.Done()
		p.work()
	})
}

// size returns the number of pumped streams.
func (p *pump) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.streams)
}

// wait waits for every pump goroutine to return (after quit).
func (p *pump) wait() { p.wg.Wait() }

// add hands st, whose replay is sent, to the pump, which sets st.pumping
// and ends the stream later; when the pump is stopping it leaves st alone
// (st.pumping stays false) and the caller ends it.
func (p *pump) add(st *stream) {
	// Held as if running until everything below is in place: whatever
	// schedules st meanwhile (the watcher, a Notify, a heartbeat) marks it
	// for a run afterwards.
	st.sched.Store(schedRunning)
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		return
	}
	p.streams[st] = struct{}{}
	p.mu.Unlock()

	st.pumping = true
	st.deadline = time.Time{} // the next write sets a pumpSlice deadline
	if unwatch, ok := p.watch.add(st.conn, func() {
		st.gone.Store(true)
		p.schedule(st)
	}); ok {
		st.onEnd(unwatch) // runs before the connection is closed
	}
	if !st.expires.IsZero() {
		t := time.AfterFunc(time.Until(st.expires), func() {
			st.expired.Store(true)
			p.schedule(st)
		})
		st.onEnd(func() { t.Stop() })
	}
	st.wrote.Store(false)
	for _, sub := range st.subs {
		sub.Notify(func() { p.schedule(st) })
	}
	if !st.sched.CompareAndSwap(schedRunning, schedIdle) {
		st.sched.Store(schedQueued)
		p.push(st)
	}
}

// schedule makes sure st runs a step soon. It never blocks.
func (p *pump) schedule(st *stream) {
	for {
		switch st.sched.Load() {
		case schedIdle:
			if st.sched.CompareAndSwap(schedIdle, schedQueued) {
				p.push(st)
				return
			}
		case schedRunning:
			if st.sched.CompareAndSwap(schedRunning, schedRerun) {
				return
			}
		default:
			return // already queued, or will run again
		}
	}
}

func (p *pump) push(st *stream) {
	p.mu.Lock()
	p.ready = append(p.ready, st)
	p.mu.Unlock()
	p.cond.Signal()
}

// pop waits for a scheduled stream; false when the pump has stopped.
func (p *pump) pop() (*stream, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.head == len(p.ready) {
		if p.stopping && len(p.streams) == 0 {
			return nil, false
		}
		p.cond.Wait()
	}
	st := p.ready[p.head]
	p.ready[p.head] = nil
	p.head++
	if p.head == len(p.ready) {
		p.ready, p.head = p.ready[:0], 0
	}
	return st, true
}

func (p *pump) work() {
	// The batch buffers belong to the worker, lent to the stream it runs,
	// so an idle pumped stream holds none.
	var buf []byte
	var msgs []*sse.Message
	for {
		st, ok := p.pop()
		if !ok {
			return
		}
		st.sched.Store(schedRunning)
		st.buf, st.msgs = buf, msgs
		st.step(p.ctx)
		buf, msgs = st.buf, st.msgs
		st.buf, st.msgs = nil, nil
		lent := st.lent
		st.lent = false
		if !st.sched.CompareAndSwap(schedRunning, schedIdle) {
			// Scheduled again meanwhile: back of the line, for fairness.
			st.sched.Store(schedQueued)
			p.push(st)
		}
		if lent {
			return // a new worker took this one's place
		}
	}
}

// lend starts a worker in place of the calling one, which stays with a
// slow write and returns after its step.
func (p *pump) lend(st *stream) {
	st.lent = true
	p.lent.Add(1)
	p.spawn()
}

// remove forgets an ended stream.
func (p *pump) remove(st *stream) {
	p.mu.Lock()
	delete(p.streams, st)
	last := p.stopping && len(p.streams) == 0
	p.mu.Unlock()
	if last {
		p.cond.Broadcast()
	}
}

// heartbeats schedules a ping for every stream that wrote nothing during a
// whole interval.
func (p *pump) heartbeats() {
	t := time.NewTicker(p.s.cfg.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-p.s.quit:
			return
		case <-t.C:
		}
		p.mu.Lock()
		idle := p.idleStreams[:0]
		for st := range p.streams {
			if !st.wrote.Swap(false) {
				idle = append(idle, st)
			}
		}
		p.mu.Unlock()
		for i, st := range idle {
			st.pingDue.Store(true)
			p.schedule(st)
			idle[i] = nil
		}
		p.idleStreams = idle[:0]
	}
}

// stopper ends every stream at quit (clients see the end of the response
// and resume elsewhere), then lets the workers and the watcher go.
func (p *pump) stopper() {
	<-p.s.quit
	p.mu.Lock()
	p.stopping = true
	all := make([]*stream, 0, len(p.streams))
	for st := range p.streams {
		all = append(all, st)
	}
	p.mu.Unlock()
	p.cond.Broadcast()
	for _, st := range all {
		// Closing the connection also ends a write blocked on a client
		// that does not read: shutdown never waits for one.
		st.conn.Close()
		p.schedule(st)
	}
	p.workerWG.Wait()
	p.cancel()
	p.watch.close()
}

// step runs one turn of a pumped stream: end it if there is a reason to,
// else send what is queued and a ping when one is due.
func (st *stream) step(ctx context.Context) {
	if st.finished {
		return
	}
	reason := ""
	switch {
	case closed(st.s.quit):
		reason = "shutdown"
	case st.gone.Load():
		reason = "client_gone"
	case st.expired.Load():
		// Never carry on as anonymous: say why, and end; the client comes
		// back with a fresh token and its cursor.
		_ = st.write(authExpiredFrame)
		reason = "auth_expired"
	default:
		if r, ended := st.subsEnded(); ended {
			reason = r // the client resumes from its last id
			break
		}
		if err := st.flush(ctx); err != nil {
			reason = "client_gone"
			if !errors.Is(err, errClientGone) {
				reason = "error"
			}
			st.fail(ctx, err)
			break
		}
		if st.pingDue.Swap(false) {
			if st.write(pingFrame) != nil {
				reason = "client_gone"
				break
			}
			st.wrote.Store(false)
		}
	}
	if reason != "" {
		st.finished = true
		st.ended(reason)
		st.s.pump.remove(st)
		st.end()
	}
}
