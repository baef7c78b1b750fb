package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"
)

// ---- scenario 8: reconnect storm ----

// Storm is scenario 8: a node full of subscribers is stopped (SIGKILL, then
// separately SIGTERM) and restarted while writes go on; every subscriber
// reconnects with Last-Event-ID as an EventSource does.
type Storm struct {
	Subscribers int          `json:"subscribers"`
	Rooms       int          `json:"rooms"`
	WriteRate   float64      `json:"writes_per_s"`
	Runs        []StormPoint `json:"runs"`
}

// StormPoint is one stop and restart.
type StormPoint struct {
	Signal    string `json:"signal"`
	Connected int    `json:"connected_before"`
	DownMS    int64  `json:"down_ms"` // from the signal until the new process listened
	// LastResumedS and LastLiveS count from the restart (the new process
	// listening): the last subscriber reconnected, and the last one had
	// every event acknowledged before the stop.
	LastResumedS float64 `json:"last_resumed_s"`
	LastLiveS    float64 `json:"last_live_s"`
	AllLive      bool    `json:"all_live"`
	// Attempts is every reconnection tried; Refused those the closed port
	// refused, Busy those answered 503 (with their Retry-After honoured),
	// OtherFailures the rest (timeouts, other statuses).
	Attempts      int64 `json:"attempts"`
	Refused       int64 `json:"refused"`
	Busy          int64 `json:"answered_503"`
	OtherFailures int64 `json:"other_failures"`
	// FailedAfterResume counts streams that ended again after they had
	// reconnected (an "error" event: the server failed the replay).
	FailedAfterResume int64 `json:"streams_failed_after_resume"`
	ErrorEvents       int64 `json:"error_events"`
	PeakRSSKiB        int64 `json:"peak_rss_kib"`
	RSSBeforeKiB      int64 `json:"rss_before_kib"`
	WriteErrors       int64 `json:"write_errors"`
	delivery
	Error string `json:"error,omitempty"`
}

func (b *bench) storm(ctx context.Context, be *backend, run *BackendRun) error {
	st := &Storm{Subscribers: b.cfg.fullSubs, Rooms: max(1, b.cfg.fullSubs/10), WriteRate: b.cfg.stormRate}
	run.Storm = st
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		p := StormPoint{Signal: sig.String()}
		if err := b.stormRun(ctx, be, st, sig, &p); err != nil {
			p.Error = err.Error()
			run.Errors = append(run.Errors, fmt.Sprintf("reconnect storm (%s): %v", sig, err))
		}
		st.Runs = append(st.Runs, p)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// stormRun starts a server on a fixed port, fills it, stops it with sig,
// restarts it on the same port and storage, and measures the return.
func (b *bench) stormRun(ctx context.Context, be *backend, st *Storm, sig syscall.Signal, p *StormPoint) error {
	if b.cfg.target != "" {
		return errors.New("needs a server the bench starts (not --target)")
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	args, err := b.serverArgs(ctx, be, addr)
	defer be.cleanup(ctx)
	if err != nil {
		return err
	}
	logName := func(n int) string { return fmt.Sprintf("%s/server-%s-storm-%s-%d.log", b.dir, be.name, sig, n) }
	srv, err := startProcess(ctx, "roomfeed", b.serverBin, args, logName(1))
	if err != nil {
		return err
	}
	defer func() { srv.stop() }()
	roomOf := func(i int) string { return fmt.Sprintf("s%05d", i%st.Rooms) }
	rooms := make([]string, st.Subscribers)
	for i := range rooms {
		rooms[i] = roomOf(i)
	}
	subs, err := subscribeMany(ctx, addr, rooms, 64)
	defer func() { closeAll(subs) }()
	p.Connected = len(subs)
	if err != nil {
		return err
	}
	time.Sleep(3 * time.Second)
	p.RSSBeforeKiB = rssKiB(srv.pid)
	acks := newAckLog()
	stopWrites := writeOn(ctx, srv.url, st.WriteRate, st.Rooms, roomOf, acks)
	defer stopWrites()
	time.Sleep(3 * time.Second) // writes flowing to a full node

	res := newResumers(ctx, subs, addr)
	defer res.stop()
	stopped := time.Now()
	if err := srv.cmd.Process.Signal(sig); err != nil {
		return err
	}
	<-srv.done
	srv.log.Close()
	topsAtStop := acks.tops()
	if srv, err = startProcess(ctx, "roomfeed", b.serverBin, args, logName(2)); err != nil {
		return err
	}
	restarted := time.Now()
	p.DownMS = restarted.Sub(stopped).Milliseconds()
	peak := res.watch(srv.pid, topsAtStop, restarted, b.cfg.stormLimit, p)
	p.PeakRSSKiB = peak
	time.Sleep(3 * time.Second) // live writes after the storm
	p.WriteErrors = stopWrites()
	waitDrain(subs, acks.tops(), 30*time.Second)
	p.delivery = collect(subs, acks, nil)
	p.Attempts, p.Refused, p.Busy, p.OtherFailures = res.attempts.Load(), res.refused.Load(), res.busy.Load(), res.other.Load()
	p.FailedAfterResume = res.failedAgain.Load()
	for _, s := range subs {
		p.ErrorEvents += s.errEvents.Load()
	}
	logf("storm %s: %d subs, down %d ms; last resumed %.1f s, last live %.1f s after the restart (all live: %v); %d attempts (%d refused, %d 503, %d other); %d failed after resuming, %d error events; RSS %d KiB before, peak %d KiB; lost %d, dup %d, out of order %d",
		sig, p.Connected, p.DownMS, p.LastResumedS, p.LastLiveS, p.AllLive, p.Attempts, p.Refused, p.Busy, p.OtherFailures,
		p.FailedAfterResume, p.ErrorEvents, p.RSSBeforeKiB, p.PeakRSSKiB, p.Lost, p.Duplicates, p.OutOfOrder)
	return nil
}

// writeOn writes at rate into random rooms of base (writes to a stopped
// server fail and are counted) until the returned function is called; it
// stops them and returns how many failed.
func writeOn(ctx context.Context, base string, rate float64, rooms int, roomOf func(int) string, acks *ackLog) (stop func() int64) {
	w := newWriter(base, 32)
	var errs atomic.Int64
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		openLoop(ctx, rate, time.Hour, 16, func(int) {
			r := rand.IntN(rooms)
			seq, sent, acked, err := w.put(ctx, roomOf(r), "e"+strconv.Itoa(r%7))
			if err != nil {
				errs.Add(1)
				return
			}
			acks.add(roomOf(r), seq, sent, acked)
		})
	})
	var once sync.Once
	return func() int64 {
		once.Do(func() {
			cancel()
			wg.Wait()
			w.close()
		})
		return errs.Load()
	}
}

// freeAddr returns a loopback address nothing listens on.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// resumers reconnect every subscriber whose stream ends, as EventSource
// does: after the retry delay the server asked for (2 s) with jitter, then
// with backoff; a 503's Retry-After is honoured.
type resumers struct {
	cancel                         context.CancelFunc
	wg                             sync.WaitGroup
	subs                           []*subscriber
	resumedAt                      []atomic.Int64 // per subscriber, when it last reconnected (now())
	attempts, refused, busy, other atomic.Int64
	failedAgain                    atomic.Int64
	resumedOnce                    []atomic.Bool
}

func newResumers(ctx context.Context, subs []*subscriber, addr string) *resumers {
	ctx, cancel := context.WithCancel(ctx)
	r := &resumers{cancel: cancel, subs: subs, resumedAt: make([]atomic.Int64, len(subs)), resumedOnce: make([]atomic.Bool, len(subs))}
	for i, s := range subs {
		r.wg.Go(func() { r.follow(ctx, i, s, addr) })
	}
	return r
}

func (r *resumers) stop() {
	r.cancel()
	r.wg.Wait()
}

// follow keeps subscriber i connected until ctx ends.
func (r *resumers) follow(ctx context.Context, i int, s *subscriber, addr string) {
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-s.endedCh():
		}
		if r.resumedOnce[i].Load() {
			r.failedAgain.Add(1)
		}
		wait := 2*time.Second + rand.N(time.Second)
		for attempt := 0; ctx.Err() == nil; attempt++ {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			r.attempts.Add(1)
			err := s.resume(ctx, addr)
			if err == nil {
				r.resumedAt[i].Store(now())
				r.resumedOnce[i].Store(true)
				break
			}
			wait = min(2*time.Second<<min(attempt, 4), 30*time.Second)/2 + rand.N(time.Second)
			var se *statusError
			switch {
			case errors.Is(err, syscall.ECONNREFUSED):
				r.refused.Add(1)
				wait = time.Second + rand.N(time.Second)
			case errors.As(err, &se) && se.status == 503:
				r.busy.Add(1)
			default:
				r.other.Add(1)
				if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
					fmt.Fprintf(os.Stderr, "bench: resume %s: %v\n", s.room, err)
				}
			}
		}
	}
}

// watch samples the server's RSS and waits until every subscriber has
// reconnected and received every event acknowledged before the stop
// (tops), or limit passes; it records when in p and returns the peak RSS.
func (r *resumers) watch(pid int, tops map[string]int64, restarted time.Time, limit time.Duration, p *StormPoint) (peak int64) {
	deadline := restarted.Add(limit)
	base := now() - int64(time.Since(restarted))
	for time.Now().Before(deadline) {
		peak = max(peak, rssKiB(pid))
		resumed, live := true, true
		var lastResume int64
		for i, s := range r.subs {
			at := r.resumedAt[i].Load()
			if at == 0 || s.ended.Load() {
				resumed, live = false, false
				break
			}
			lastResume = max(lastResume, at)
			if s.last.Load() < tops[s.room] {
				live = false
			}
		}
		if resumed && p.LastResumedS == 0 {
			p.LastResumedS = round1(float64(lastResume-base) / 1e9)
		}
		if live {
			p.AllLive = true
			p.LastLiveS = round1(time.Since(restarted).Seconds())
			return peak
		}
		time.Sleep(250 * time.Millisecond)
	}
	p.LastLiveS = round1(time.Since(restarted).Seconds())
	return peak
}

// stormTargets checks scenario 8 against issue 19's targets.
func stormTargets(r BackendRun, add func(name, backend, goal, measured string, pass bool)) {
	st := r.Storm
	if st == nil {
		return
	}
	for _, p := range st.Runs {
		add("reconnect storm", r.Backend,
			fmt.Sprintf("%d subscribers, %s and restart at %.0f writes/s: all caught up <= 30 s after the restart, 0 lost, 0 duplicated, no stream failed by its replay", st.Subscribers, p.Signal, st.WriteRate),
			fmt.Sprintf("all live %v at %.1f s; lost %d, dup %d, out of order %d; %d failed after resuming; %d answered 503; peak RSS %.0f MiB",
				p.AllLive, p.LastLiveS, p.Lost, p.Duplicates, p.OutOfOrder, p.FailedAfterResume, p.Busy, float64(p.PeakRSSKiB)/1024),
			p.AllLive && p.LastLiveS <= 30 && p.Lost == 0 && p.Duplicates == 0 && p.OutOfOrder == 0 && p.FailedAfterResume == 0 && p.Error == "")
	}
}

func printStorm(out io.Writer, r BackendRun) {
	st := r.Storm
	if st == nil {
		return
	}
	fmt.Fprintf(out, "\n[%s] 8. reconnect storm: %d subscribers over %d rooms, %.0f writes/s; times from the restart\n", r.Backend, st.Subscribers, st.Rooms, st.WriteRate)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "signal\tdown ms\tlast resumed s\tlast live s\tattempts\trefused\t503\tother\tfailed after resume\terror events\tRSS MiB before\tpeak\tlost\tdup\tdisorder\t")
	for _, p := range st.Runs {
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%d\t%d\t%d\t%d\t%d\t%d\t%.0f\t%.0f\t%d\t%d\t%d\t\n", p.Signal, p.DownMS, p.LastResumedS, p.LastLiveS,
			p.Attempts, p.Refused, p.Busy, p.OtherFailures, p.FailedAfterResume, p.ErrorEvents,
			float64(p.RSSBeforeKiB)/1024, float64(p.PeakRSSKiB)/1024, p.Lost, p.Duplicates, p.OutOfOrder)
	}
	tw.Flush()
}
