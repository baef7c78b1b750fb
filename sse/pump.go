package sse

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// pumpSlice bounds how long a pump worker waits on one client's write;
// after that the worker finishes the write as the stream's own goroutine
// (up to WriteTimeout) and the pump starts another worker in its place.
const pumpSlice = 200 * time.Millisecond

// A stream must have waited pace/paceBusy for a worker before the pump
// paces it (Config.Pace).
const paceBusy = 8

// The pump drives the live part of the streams whose HTTP/1.1 connection
// it took over, with a few worker goroutines instead of one goroutine (plus
// net/http's reader goroutine and buffers) per stream. An idle subscriber
// then costs its connection, its subscriptions and a few small structs.
//
//   - Besides the stream's own reasons to be scheduled (drive.go), the
//     connection watcher (the client closed the connection), one heartbeat
//     ticker for every stream and shutdown schedule the pump's streams.
//   - A worker takes a scheduled stream off the ready list and runs a step.
//   - A write that does not complete within pumpSlice (a client reading
//     slower than events arrive) keeps its worker, now the stream's own
//     goroutine, for the rest of the write (up to WriteTimeout), and the pump
//     starts another worker in its place; the held one leaves after that
//     step. A stuck client therefore never holds up the others.
//   - With a pace (Config.Pace), the pump paces streams under load: while
//     streams wait pace/8 or more for a worker, a stream that wrote less
//     than the pace ago waits until the pace has passed, then sends what
//     came meanwhile in one larger write. A saturated pump then spends its
//     CPU on fewer, larger writes (and its clients on fewer reads): a
//     write(2) on a socket costs mostly per call. A pump that keeps up
//     never paces; one near its limit adds up to the pace to the latency.
//   - At shutdown the pump closes every connection, which also ends a write
//     blocked on a client that does not read, and ends every stream.
type pump struct {
	quit      <-chan struct{}
	heartbeat time.Duration
	logger    *slog.Logger
	workers   int
	pace      time.Duration // Config.Pace; 0 = never pace
	busy      time.Duration // how long a stream must have waited for a worker to pace

	startOnce sync.Once
	started   bool
	watch     *connWatch // nil where the platform has no watcher: then no pump

	mu        sync.Mutex
	cond      *sync.Cond
	queue     []waiting // FIFO of scheduled streams (when queued), from head on
	head      int
	streams   map[*Stream]struct{}
	stopping  bool      // quit: no new streams; workers leave once streams is empty
	later     []waiting // FIFO of streams scheduled but paced (when due), from laterHead on
	laterHead int
	paceWake  chan struct{} // the pacer: later became non-empty
	paced     atomic.Uint64 // steps put off by pacing

	lent        atomic.Uint64  // workers held by slow writes
	workerWG    sync.WaitGroup // the workers
	wg          sync.WaitGroup // every pump goroutine
	ctx         context.Context
	cancel      context.CancelFunc
	idleStreams []*Stream // the heartbeat's scratch list
}

// waiting is a scheduled stream in a queue, and a time: when it was queued,
// or when its pace ends.
type waiting struct {
	st *Stream
	at time.Time
}

func newPump(quit <-chan struct{}, heartbeat, pace time.Duration, logger *slog.Logger) *pump {
	p := &pump{quit: quit, heartbeat: heartbeat, logger: logger,
		workers: max(32, 8*runtime.GOMAXPROCS(0)), streams: make(map[*Stream]struct{}),
		pace: pace, busy: pace / paceBusy, paceWake: make(chan struct{}, 1)}
	p.cond = sync.NewCond(&p.mu)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// hijack takes over the connection of a plain HTTP/1.x request whose
// response has not started, when the pump can serve it; nil means the
// request's goroutine serves the stream.
func (p *pump) hijack(w http.ResponseWriter, r *http.Request) net.Conn {
	if r.ProtoMajor != 1 || r.TLS != nil || r.Context().Value(http.ServerContextKey) == nil {
		return nil // HTTP/2 and TLS cannot be hijacked usefully; a test recorder cannot at all
	}
	if !p.start() {
		return nil
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil
	}
	return conn
}

// start starts the pump's goroutines once; false when the pump cannot run
// (no connection watcher on this platform, or shutting down).
func (p *pump) start() bool {
	p.startOnce.Do(func() {
		if closed(p.quit) {
			return
		}
		w, err := newConnWatch()
		if err != nil {
			p.logger.LogAttrs(context.Background(), slog.LevelInfo,
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
		if p.pace > 0 {
			p.wg.Go(p.pacer)
		}
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

// add takes over st, whose replay is sent on conn, and ends it later; false
// when the pump is stopping (the caller ends st).
func (p *pump) add(st *Stream, conn net.Conn) bool {
	st.goLive(p)
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		return false
	}
	p.streams[st] = struct{}{}
	p.mu.Unlock()
	if unwatch, ok := p.watch.add(conn, st.left); ok {
		st.OnEnd(unwatch) // runs before the connection is closed
	}
	st.release()
	return true
}

// ready queues st for a worker.
func (p *pump) ready(st *Stream) {
	p.mu.Lock()
	var at time.Time // read only to pace
	if p.pace > 0 {
		at = time.Now()
	}
	p.queue = append(p.queue, waiting{st, at})
	p.mu.Unlock()
	p.cond.Signal()
}

// pop waits for a scheduled stream; false when the pump has stopped. A
// stream to pace is set aside for the pacer instead (putOff).
func (p *pump) pop() (*Stream, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		for p.head == len(p.queue) {
			if p.stopping && len(p.streams) == 0 {
				return nil, false
			}
			p.cond.Wait()
		}
		q := p.queue[p.head]
		p.queue[p.head] = waiting{}
		p.head++
		if p.head == len(p.queue) {
			p.queue, p.head = p.queue[:0], 0
		}
		if !p.putOff(q) {
			return q.st, true
		}
	}
}

// putOff sets q's stream aside until its pace has passed, when streams
// wait for a worker (this one waited busy or more) and it wrote within the
// pace; p.mu is held. The stream stays scheduled (queued) meanwhile:
// whatever comes for it waits for that step.
func (p *pump) putOff(q waiting) bool {
	st := q.st
	if p.pace <= 0 || p.stopping || st.lastWrite.IsZero() {
		return false
	}
	now := time.Now()
	if now.Sub(q.at) < p.busy {
		return false
	}
	due := st.lastWrite.Add(p.pace)
	if !now.Before(due) {
		return false
	}
	if p.laterHead == len(p.later) {
		select {
		case p.paceWake <- struct{}{}:
		default:
		}
	}
	p.later = append(p.later, waiting{st, due})
	p.paced.Add(1)
	return true
}

// pacer hands the paced streams back to the workers as their pace passes.
// A stream waits at most the pace after it was set aside, whatever the
// streams ahead of it (due times within the FIFO differ by less than that).
func (p *pump) pacer() {
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		p.mu.Lock()
		now := time.Now()
		moved := 0
		for p.laterHead < len(p.later) && !p.later[p.laterHead].at.After(now) {
			p.queue = append(p.queue, waiting{p.later[p.laterHead].st, now})
			p.later[p.laterHead] = waiting{}
			p.laterHead++
			moved++
		}
		var wait time.Duration
		if p.laterHead == len(p.later) {
			p.later, p.laterHead = p.later[:0], 0
		} else {
			wait = p.later[p.laterHead].at.Sub(now)
		}
		p.mu.Unlock()
		for range min(moved, p.workers) {
			p.cond.Signal()
		}
		var tick <-chan time.Time
		if wait > 0 {
			t.Reset(wait)
			tick = t.C
		}
		select {
		case <-p.quit:
			t.Stop()
			return
		case <-p.paceWake:
			t.Stop()
		case <-tick:
		}
	}
}

func (p *pump) work() {
	w := &worker{slice: pumpSlice, pump: p}
	for {
		st, ok := p.pop()
		if !ok {
			return
		}
		if st.run(p.ctx, w) {
			return // a new worker took this one's place
		}
	}
}

// lend starts a worker in place of one a slow write holds.
func (p *pump) lend() {
	p.lent.Add(1)
	p.spawn()
}

// drop forgets an ended stream.
func (p *pump) drop(st *Stream) {
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
	t := time.NewTicker(p.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-t.C:
		}
		p.mu.Lock()
		idle := p.idleStreams[:0]
		for st := range p.streams {
			if st.idle() {
				idle = append(idle, st)
			}
		}
		p.mu.Unlock()
		for i, st := range idle {
			st.wantPing()
			idle[i] = nil
		}
		p.idleStreams = idle[:0]
	}
}

// stopper ends every stream at quit (clients see the end of the response
// and resume elsewhere), then lets the workers and the watcher go.
func (p *pump) stopper() {
	<-p.quit
	p.mu.Lock()
	p.stopping = true
	// The paced streams run at once: their steps end them.
	p.queue = append(p.queue, p.later[p.laterHead:]...)
	p.later, p.laterHead = nil, 0
	all := make([]*Stream, 0, len(p.streams))
	for st := range p.streams {
		all = append(all, st)
	}
	p.mu.Unlock()
	p.cond.Broadcast()
	for _, st := range all {
		// Closing the connection also ends a write blocked on a client
		// that does not read: shutdown never waits for one.
		st.out.Close()
		st.schedule()
	}
	p.workerWG.Wait()
	p.cancel()
	p.watch.close()
}
