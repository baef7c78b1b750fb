package sse

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/roomfeed/roomfeed"
)

// Defaults of Config.
const (
	DefaultHeartbeat    = 15 * time.Second
	DefaultWriteTimeout = 10 * time.Second
	DefaultRetry        = 2 * time.Second
	DefaultReplayPage   = 1000
	// DefaultCatchUpReads is at most the smallest database pool (SQLite's
	// read pool of 4), leaving PostgreSQL's pool of 10 room for writes.
	DefaultCatchUpReads = 4
	// DefaultCatchUpQueue lets every stream a node holds at a descriptor
	// limit of 20,000 catch up at once after a restart: a stream waiting
	// for its turn holds nothing but its connection, the pages being
	// shared.
	DefaultCatchUpQueue = 20000
)

// Config holds the engine's settings; a zero field takes its default.
type Config struct {
	Heartbeat    time.Duration // a stream that wrote nothing for this long gets ": ping"
	WriteTimeout time.Duration // deadline of one write to a client; a slower one is dropped
	Retry        time.Duration // the reconnection delay the "retry:" line asks for
	ReplayPage   int           // events read from the source at a time
	CatchUpReads int           // source reads of the streams (replays, fills, heads) running at once at most
	CatchUpQueue int           // streams catching up at once at most; Open refuses more with ErrBusy
	// Pace, when positive, paces pumped streams under load (pump.go): a
	// stream that wrote less than Pace ago waits until Pace has passed
	// while the pump's workers fall behind. 0 (the default): never.
	Pace time.Duration
}

func (c *Config) defaults() {
	orDefault(&c.Heartbeat, DefaultHeartbeat)
	orDefault(&c.WriteTimeout, DefaultWriteTimeout)
	orDefault(&c.Retry, DefaultRetry)
	orDefault(&c.ReplayPage, DefaultReplayPage)
	orDefault(&c.CatchUpReads, DefaultCatchUpReads)
	orDefault(&c.CatchUpQueue, DefaultCatchUpQueue)
}

// orDefault sets *v to def unless it is positive.
func orDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Source is the event log: it delivers the events of the rooms it follows
// to the engine's hub, and replays them.
type Source interface {
	// Follow makes the log deliver room's events to the hub from now on;
	// the engine calls it once it has subscribed to room there.
	Follow(ctx context.Context, room string) error
	// EventsAfter (replay) may answer roomfeed.ErrTrimmed: the events after
	// the cursor are no longer retained.
	roomfeed.Pager
	// Head returns the room's highest committed seq, 0 for a room never
	// written.
	Head(ctx context.Context, room string) (int64, error)
}

// Observer is told what the streams do, for metrics. Its methods are
// called from the streams' goroutines and must not block.
type Observer interface {
	// EventsReplayed: n events were sent from the source (catch-up, or
	// filling a hole before a live event).
	EventsReplayed(n int)
	// EventsDelivered: n live events were written to a stream in one step;
	// oldest is when the hub received the first of them (zero: unknown).
	EventsDelivered(n int, oldest time.Time)
	// StreamEnded: a stream ended, for reason: client_gone, slow_consumer,
	// shutdown, error or auth_expired.
	StreamEnded(reason string)
	// CatchUpRead: the streams read the source (kind ReadEvents or
	// ReadHead); joined: a stream took the answer of a read already asked
	// for instead.
	CatchUpRead(kind string, joined bool)
	// CatchUpWaiting: delta streams began (+1) or ended (-1) waiting for a
	// read.
	CatchUpWaiting(delta int)
	// CatchUpAdmitted: delta streams were admitted to catch up (+1), or
	// sent their replay or ended (-1).
	CatchUpAdmitted(delta int)
	// CatchUpRefused: Open refused a stream with ErrBusy.
	CatchUpRefused()
}

// Why a stream ended (Observer.StreamEnded, the "stream ended" log line).
const (
	reasonClientGone   = "client_gone"
	reasonSlowConsumer = "slow_consumer"
	reasonShutdown     = "shutdown"
	reasonError        = "error"
	reasonAuthExpired  = "auth_expired"
)

type noObserver struct{}

func (noObserver) EventsReplayed(int)             {}
func (noObserver) EventsDelivered(int, time.Time) {}
func (noObserver) StreamEnded(string)             {}
func (noObserver) CatchUpRead(string, bool)       {}
func (noObserver) CatchUpWaiting(int)             {}
func (noObserver) CatchUpAdmitted(int)            {}
func (noObserver) CatchUpRefused()                {}

// Request is what a client asks of a stream, parsed and authorized.
type Request struct {
	Rooms     []string         // distinct; at least one
	Cursors   map[string]int64 // per room, the seq of the last event the client has; a room without one starts live
	Composite bool             // every id is the cursor of all the rooms ("a:42,b:7"), not the one room's seq
	Filter    Filter           // the events to send; the zero Filter sends every event
	Expires   time.Time        // the token's expiry: the stream then ends with auth_expired; zero = never
	Path      string           // for the "stream ended" log line
	Remote    string           // the client's address, likewise
}

// CursorAheadError refuses a cursor beyond its room's latest event: a
// client bug.
type CursorAheadError struct {
	Room         string
	Cursor, Head int64
}

func (e *CursorAheadError) Error() string {
	return fmt.Sprintf("the cursor of room %s (%d) is ahead of its latest event (%d)", e.Room, e.Cursor, e.Head)
}

// env is what an engine hands each of its streams; it never changes.
type env struct {
	src  Source
	gate *gate // how the streams read src
	obs  Observer
	log  *slog.Logger
	cfg  Config
	quit <-chan struct{} // closed by Engine.Close
	pump *pump           // takes plain HTTP/1.1 streams over once their replay is sent
}

// Engine serves the Server-Sent Events streams of one node: Open a stream
// for a request, then Serve it. Close ends them all.
type Engine struct {
	env *env
	hub *Hub

	mu      sync.Mutex // orders streams.Add before the Wait in Close
	closed  bool
	quit    chan struct{}
	streams sync.WaitGroup // streams opened and not yet ended
}

// New returns an engine whose streams subscribe on hub and read src, the
// log that delivers to hub. obs may be nil; logger too (nothing logged).
func New(hub *Hub, src Source, cfg Config, obs Observer, logger *slog.Logger) *Engine {
	cfg.defaults()
	if obs == nil {
		obs = noObserver{}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	quit := make(chan struct{})
	e := &Engine{hub: hub, quit: quit}
	e.env = &env{src: src, gate: newGate(src, obs, quit, cfg), obs: obs, log: logger, cfg: cfg, quit: quit,
		pump: newPump(quit, cfg.Heartbeat, cfg.Pace, logger)}
	return e
}

// Open prepares a stream for req before any response is written: it
// subscribes to every room on the hub, has the source follow it, and places
// each room's cursor (a room without one starts at its head). A stream with
// a cursor behind its room's head is admitted to catch up, if fewer than
// Config.CatchUpQueue streams are. Its errors are the caller's to answer:
// ErrClosed (the node is shutting down), ErrBusy (too many streams catching
// up), a *CursorAheadError, or the hub's or the source's error. The caller
// then Serves the stream, or Closes it.
func (e *Engine) Open(ctx context.Context, req Request) (*Stream, error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, ErrClosed
	}
	e.streams.Add(1)
	e.mu.Unlock()
	st := &Stream{
		env:       e.env,
		rooms:     req.Rooms,
		last:      make(map[string]int64, len(req.Rooms)),
		composite: req.Composite,
		expires:   req.Expires,
		path:      req.Path,
		remote:    req.Remote,
		start:     time.Now(),
	}
	if f := req.Filter; !f.IsZero() {
		st.filter = &f
	}
	st.OnEnd(e.streams.Done)
	if err := st.open(ctx, e.hub, req.Cursors); err != nil {
		st.Close()
		return nil, err
	}
	if st.behind() {
		if !e.env.gate.admit() {
			st.Close()
			return nil, ErrBusy
		}
		st.admitted = true
		st.OnEnd(st.caughtUp)
	}
	return st, nil
}

// open subscribes st to its rooms and places their cursors.
func (st *Stream) open(ctx context.Context, hub *Hub, cursors map[string]int64) error {
	for _, r := range st.rooms {
		sub, err := hub.Subscribe(r)
		if err != nil {
			return err
		}
		st.subs = append(st.subs, sub)
		st.OnEnd(sub.Close)
		if err := st.env.src.Follow(ctx, r); err != nil {
			return fmt.Errorf("follow %s: %w", r, err)
		}
	}
	st.heads = make([]int64, len(st.rooms))
	for i, r := range st.rooms {
		head, err := st.env.gate.head(ctx, r)
		if err != nil {
			return fmt.Errorf("head of %s: %w", r, err)
		}
		cur, ok := cursors[r]
		if !ok {
			cur = head
		} else if cur > head {
			return &CursorAheadError{Room: r, Cursor: cur, Head: head}
		}
		st.last[r], st.heads[i] = cur, head
	}
	return nil
}

// behind reports whether a room's cursor is behind its head: the stream
// has a replay to send.
func (st *Stream) behind() bool {
	for i, r := range st.rooms {
		if st.last[r] < st.heads[i] {
			return true
		}
	}
	return false
}

// caughtUp gives back the stream's place among those catching up, if it
// holds one.
func (st *Stream) caughtUp() {
	if st.admitted {
		st.admitted = false
		st.env.gate.leave()
	}
}

// Paced returns how many steps of pumped streams were put off to pace them
// under load (Config.Pace).
func (e *Engine) Paced() uint64 { return e.env.pump.paced.Load() }

// Close refuses new streams, ends every open one at once (clients reconnect,
// here or elsewhere), closes the hub, and waits until the streams, the pump
// and the catch-up reads have stopped or ctx is done. It is safe to call
// more than once.
func (e *Engine) Close(ctx context.Context) {
	e.mu.Lock()
	if !e.closed {
		e.closed = true
		close(e.quit)
	}
	e.mu.Unlock()
	e.hub.Close()
	e.env.gate.stop()
	done := make(chan struct{})
	go func() {
		e.streams.Wait()
		e.env.pump.wait()
		e.env.gate.waitWorkers()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}
