package sse

import (
	"context"
	"time"
)

// A live stream runs in steps. Whatever may give a stream something to do
// schedules it: a subscription's queue, a heartbeat that finds it idle, the
// token's expiry, the client leaving, shutdown. Scheduling is idempotent and
// never blocks; the stream's driver then runs one step, which ends the
// stream if there is a reason to, else writes everything queued (and a ping
// when due) in one write. A stream is run by one goroutine at a time; one
// scheduled while it runs is run again afterwards.

// driver runs the steps of the live streams handed to it: the pump, or the
// goroutine of the stream's own request (solo).
type driver interface {
	// ready is called when st is scheduled: the driver runs st.run soon.
	// It must not block.
	ready(st *Stream)
	// drop forgets st, which has ended.
	drop(st *Stream)
}

// Scheduling states of a stream (Stream.sched).
const (
	schedIdle    int32 = iota // not scheduled
	schedQueued               // handed to the driver
	schedRunning              // a step runs
	schedRerun                // scheduled again while running
)

// worker is a goroutine that runs steps: a pump worker, or a solo stream's
// own goroutine. It lends the stream it runs its batch buffers, so an idle
// stream holds none.
type worker struct {
	buf   []byte
	msgs  []*Message
	slice time.Duration // how long one write may keep this worker; 0 = all of WriteTimeout
	pump  *pump         // puts another worker in this one's place (hold)
	held  bool          // a slow write keeps this worker: it leaves after the step
}

// hold keeps w with a write that outlasted its slice, and has the pump go
// on with another worker.
func (w *worker) hold() {
	w.held = true
	w.pump.lend()
}

// goLive hands st, its replay sent, to d, held as if running: whatever
// schedules st from now on (its subscriptions, its expiry) makes it run once
// the caller calls release.
func (st *Stream) goLive(d driver) {
	st.sched.Store(schedRunning)
	st.drv = d
	st.deadline = time.Time{} // the next write sets the deadline of its worker
	if !st.expires.IsZero() {
		t := time.AfterFunc(time.Until(st.expires), func() {
			st.expired.Store(true)
			st.schedule()
		})
		st.OnEnd(func() { t.Stop() })
	}
	st.wrote.Store(false)
	schedule := st.schedule
	for _, sub := range st.subs {
		sub.Notify(schedule)
	}
}

// schedule makes sure a step of st runs soon. It never blocks.
func (st *Stream) schedule() {
	for {
		switch st.sched.Load() {
		case schedIdle:
			if st.sched.CompareAndSwap(schedIdle, schedQueued) {
				st.drv.ready(st)
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

// release ends a step (or goLive's hold): a stream scheduled meanwhile is
// handed to its driver again, at the back of the line.
func (st *Stream) release() {
	if !st.sched.CompareAndSwap(schedRunning, schedIdle) {
		st.sched.Store(schedQueued)
		st.drv.ready(st)
	}
}

// run runs one step of st, which its driver took off its queue, on w. It
// reports whether a slow write held w, which must then leave: another
// worker has taken its place.
func (st *Stream) run(ctx context.Context, w *worker) (held bool) {
	st.sched.Store(schedRunning)
	st.w = w
	st.step(ctx)
	st.w = nil
	held, w.held = w.held, false
	st.release()
	return held
}

// left records that the client closed the connection.
func (st *Stream) left() {
	st.gone.Store(true)
	st.schedule()
}

// idle reports whether st wrote nothing since the last call; a heartbeat
// then has its next step send a ping with wantPing.
func (st *Stream) idle() bool { return !st.wrote.Swap(false) }

func (st *Stream) wantPing() {
	st.pingDue.Store(true)
	st.schedule()
}

// step runs one turn of a live stream: end it if there is a reason to, else
// send what is queued and a ping when one is due. These are the only rules
// that end a live stream.
func (st *Stream) step(ctx context.Context) {
	if st.finished {
		return
	}
	if reason := st.turn(ctx); reason != "" {
		if reason == reasonClientGone && closed(st.env.quit) {
			// Shutdown closed the connection under a write in progress.
			reason = reasonShutdown
		}
		st.finish(reason)
	}
}

// turn does the work of a step and returns why the stream must end, or "".
func (st *Stream) turn(ctx context.Context) string {
	switch {
	case closed(st.env.quit):
		return reasonShutdown
	case st.gone.Load():
		return reasonClientGone
	case st.expired.Load():
		// Never carry on as anonymous: say why, and end; the client comes
		// back with a fresh token and its cursor.
		_ = st.write(authExpiredFrame)
		return reasonAuthExpired
	}
	if reason, ended := st.subsEnded(); ended {
		return reason // the client resumes from its last id, here or elsewhere
	}
	if err := st.flush(ctx); err != nil {
		return st.fail(ctx, err)
	}
	if st.pingDue.Swap(false) {
		if st.write(pingFrame) != nil {
			return reasonClientGone
		}
		st.wrote.Store(false)
	}
	return ""
}

// solo drives one stream from the goroutine that serves its request: a
// pump of one stream, for the connections the pump cannot take over
// (HTTP/2, TLS, platforms without the connection watcher).
type solo struct{ wake chan struct{} }

func (d *solo) ready(*Stream) {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *solo) drop(*Stream) {}

// runSolo runs st's steps on the calling goroutine until it ends. The request
// context ending is the client leaving.
func (st *Stream) runSolo(ctx context.Context) {
	d := &solo{wake: make(chan struct{}, 1)}
	st.goLive(d)
	st.release()
	heartbeat := time.NewTicker(st.env.cfg.Heartbeat)
	defer heartbeat.Stop()
	quit, gone := st.env.quit, ctx.Done()
	var w worker
	for !st.finished {
		select {
		case <-d.wake:
			st.run(ctx, &w)
		case <-heartbeat.C:
			if st.idle() {
				st.wantPing()
			}
		case <-quit:
			quit = nil
			st.schedule()
		case <-gone:
			gone = nil
			st.left()
		}
	}
}
