package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ---- results ----

type FanOutPoint struct {
	Subscribers  int     `json:"subscribers"`
	TargetRate   float64 `json:"target_writes_per_s"`
	AchievedRate float64 `json:"achieved_writes_per_s"`
	Seconds      float64 `json:"seconds"`
	delivery
	Latency      Dist    `json:"latency_ack_to_receipt"`
	SendLatency  Dist    `json:"latency_send_to_receipt"`
	DeliveriesPS float64 `json:"deliveries_per_s"`
	ServerCPU    float64 `json:"server_cpu_s"`
	ServerWrites int64   `json:"server_write_calls"` // write(2) and the like, from /proc/PID/io
	BenchCPU     float64 `json:"loadgen_cpu_s"`
	ServerRSSKiB int64   `json:"server_rss_kib"`
	Load1        float64 `json:"load1"`
}

type SatStep struct {
	TargetRate   float64 `json:"target_writes_per_s"`
	AchievedRate float64 `json:"achieved_writes_per_s"`
	Delivered    int64   `json:"delivered"`
	Lost         int64   `json:"lost"`
	Duplicates   int64   `json:"duplicates"`
	OutOfOrder   int64   `json:"out_of_order"`
	Disconnected int     `json:"disconnected"`
	DeliveriesPS float64 `json:"deliveries_per_s"`
	ServerCPU    float64 `json:"server_cpu_s"`
	BenchCPU     float64 `json:"loadgen_cpu_s"`
	CPUPer100k   float64 `json:"server_cpu_s_per_100k_deliveries"`
	WritesPer100 float64 `json:"server_write_calls_per_100_deliveries"`
	P99          float64 `json:"p99_ms"`
	KeptUp       bool    `json:"kept_up"`
	Why          string  `json:"why,omitempty"`
}

type SatRun struct {
	Server      string    `json:"server"`
	Subscribers int       `json:"subscribers"`
	Steps       []SatStep `json:"steps"`
	KneeRate    float64   `json:"knee_writes_per_s"`
	KneeDPS     float64   `json:"knee_deliveries_per_s"`
	KneeCPU100k float64   `json:"knee_cpu_s_per_100k_deliveries"`
	MaxDPS      float64   `json:"max_deliveries_per_s"`
	Load1       float64   `json:"load1"`
	Error       string    `json:"error,omitempty"`
}

type Saturation struct {
	Criterion        string  `json:"kept_up_criterion"`
	Roomfeed         SatRun  `json:"roomfeed"`
	Paced            *SatRun `json:"roomfeed_paced,omitempty"` // run with --stream-pace Pace
	Pace             string  `json:"pace,omitempty"`
	Bare             SatRun  `json:"bare_net_http"`
	ThroughputRatio  float64 `json:"knee_throughput_ratio"`                 // roomfeed / bare deliveries/s at the knee
	PacedRatio       float64 `json:"paced_knee_throughput_ratio,omitempty"` // paced roomfeed / bare
	CPUEfficiency    float64 `json:"cpu_per_delivery_ratio"`                // bare / roomfeed CPU per delivery (1 = as cheap)
	CPURatioRoomfeed float64 `json:"roomfeed_cpu_vs_bare"`                  // roomfeed / bare CPU per delivery
}

type IdleMemory struct {
	BaselineRSSKiB int64   `json:"baseline_rss_kib"`
	RSS1kKiB       int64   `json:"rss_1000_kib"`
	RSS10kKiB      int64   `json:"rss_10000_kib"`
	PerSub1k       float64 `json:"kib_per_subscriber_1000"`
	PerSub10k      float64 `json:"kib_per_subscriber_10000"`
	Connected      int     `json:"connected"`
	ConnectSeconds float64 `json:"connect_seconds_10000"`
	Error          string  `json:"error,omitempty"`
}

type ManyRooms struct {
	Rooms       int `json:"rooms"`
	Subscribers int `json:"subscribers"`
	FanOutPoint
	Error string `json:"error,omitempty"`
}

type CatchUp struct {
	Events        int       `json:"events"`
	PrefillPerSec float64   `json:"prefill_writes_per_s"`
	TrialsLiveMS  []float64 `json:"trials_until_live_ms"`
	TrialsFirstMS []float64 `json:"trials_first_event_ms"`
	MedianLiveMS  float64   `json:"median_until_live_ms"`
	BestLiveMS    float64   `json:"best_until_live_ms"`
	Complete      bool      `json:"all_events_received_in_order"`
	Error         string    `json:"error,omitempty"`
}

type WritePoint struct {
	Writers   int     `json:"writers"`
	Rooms     string  `json:"rooms"` // one or many
	Seconds   float64 `json:"seconds"`
	Acked     int64   `json:"acked"`
	Errors    int64   `json:"errors"`
	PerSec    float64 `json:"writes_per_s"`
	Latency   Dist    `json:"latency"`
	ServerCPU float64 `json:"server_cpu_s"`
	// The CPU of the other parts on this machine during the point: the
	// load generator (this process), and on PostgreSQL + Redis every local
	// postgres and redis-server process.
	LoadgenCPU  float64 `json:"loadgen_cpu_s"`
	PostgresCPU float64 `json:"postgres_cpu_s,omitempty"`
	RedisCPU    float64 `json:"redis_cpu_s,omitempty"`
	Load1       float64 `json:"load1"`
}

type BackendRun struct {
	Backend    string        `json:"backend"`
	FanOut     []FanOutPoint `json:"fan_out,omitempty"`
	Saturation *Saturation   `json:"saturation,omitempty"`
	ManyRooms  *ManyRooms    `json:"many_rooms,omitempty"`
	IdleMemory *IdleMemory   `json:"idle_memory,omitempty"`
	CatchUp    *CatchUp      `json:"catch_up,omitempty"`
	Writes     []WritePoint  `json:"writes,omitempty"`
	PgBench    *PgBenchRun   `json:"pgbench,omitempty"`
	FullNode   *FullNode     `json:"full_node,omitempty"`
	Storm      *Storm        `json:"reconnect_storm,omitempty"`
	TwoNodes   *TwoNodes     `json:"two_nodes,omitempty"`
	Scale      *Scale        `json:"scale_out,omitempty"`
	Errors     []string      `json:"errors,omitempty"`
}

// ---- the bench ----

type bench struct {
	cfg       *options
	serverBin string
	selfBin   string
	dir       string
}

// withServer runs fn against a fresh server of the backend (or the --target).
func (b *bench) withServer(ctx context.Context, be *backend, name string, fn func(*server) error) error {
	return b.withServerArgs(ctx, be, name, nil, fn)
}

// withServerArgs is withServer with more roomfeed flags.
func (b *bench) withServerArgs(ctx context.Context, be *backend, name string, extra []string, fn func(*server) error) error {
	if b.cfg.target != "" {
		return fn(&server{name: "target", url: b.cfg.target, pid: b.cfg.targetPID})
	}
	args, err := b.serverArgs(ctx, be, "127.0.0.1:0")
	args = append(args, extra...)
	defer be.cleanup(ctx)
	if err != nil {
		return err
	}
	srv, err := startProcess(ctx, "roomfeed", b.serverBin, args, fmt.Sprintf("%s/server-%s-%s.log", b.dir, be.name, name))
	if err != nil {
		return err
	}
	defer srv.stop()
	return fn(srv)
}

// serverArgs prepares the backend's storage for a fresh run and returns the
// flags of a server listening on addr; the caller cleans the backend up.
func (b *bench) serverArgs(ctx context.Context, be *backend, addr string) ([]string, error) {
	args, err := be.args(ctx, b.dir)
	if err != nil {
		return nil, err
	}
	args = append([]string{"--addr", addr, "--web-dir", b.dir + "/no-web"}, args...)
	if b.cfg.profileDir != "" {
		args = append(args, "--debug-addr", "127.0.0.1:0")
	}
	return append(args, b.cfg.serverArgs...), nil
}

// baselineRSS warms the server up (warmUp), lets it settle and returns its
// RSS then: the baseline of a memory figure.
func baselineRSS(ctx context.Context, srv *server) (int64, error) {
	if err := warmUp(ctx, srv); err != nil {
		return 0, err
	}
	time.Sleep(2 * time.Second)
	return rssKiB(srv.pid), nil
}

func hostport(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return u
	}
	return p.Host
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] "+format+"\n", append([]any{time.Since(clockBase).Seconds()}, args...)...)
}

// phase writes at rate into rooms (picked by pick) for d and measures what
// subs received.
func (b *bench) phase(ctx context.Context, srv *server, w *writer, subs []*subscriber, rate float64, d time.Duration, workers int, pick func(i int) (room, id string), drain time.Duration) (FanOutPoint, int64) {
	acks := newAckLog()
	before := dupSnapshot(subs)
	cpu0, self0, writes0 := cpuSeconds(srv.pid), selfCPU(), writeCalls(srv.pid)
	var errs atomic.Int64
	start := time.Now()
	issued, skipped := openLoop(ctx, rate, d, workers, func(i int) {
		room, id := pick(i)
		seq, sent, acked, err := w.put(ctx, room, id)
		if err != nil {
			errs.Add(1)
			return
		}
		acks.add(room, seq, sent, acked)
	})
	el := time.Since(start)
	_ = skipped
	waitDrain(subs, acks.tops(), drain)
	cpu := cpuSeconds(srv.pid) - cpu0
	writes := writeCalls(srv.pid) - writes0
	del := collect(subs, acks, before)
	p := FanOutPoint{
		Subscribers:  len(subs),
		TargetRate:   rate,
		AchievedRate: perSecond(acks.count(), el),
		Seconds:      round1(el.Seconds()),
		delivery:     del,
		Latency:      summarize(del.lat),
		SendLatency:  summarize(del.latSend),
		DeliveriesPS: perSecond(del.Delivered, el),
		ServerCPU:    round3(cpu),
		ServerWrites: writes,
		BenchCPU:     round3(selfCPU() - self0),
		ServerRSSKiB: rssKiB(srv.pid),
		Load1:        loadAvg(),
	}
	_ = issued
	return p, errs.Load()
}

// ---- scenario 1: fan-out latency ----

func (b *bench) fanOut(ctx context.Context, be *backend, run *BackendRun) error {
	return b.withServer(ctx, be, "fanout", func(srv *server) error {
		room := "fanout-" + strconv.Itoa(os.Getpid())
		w := newWriter(srv.url, 32)
		defer w.close()
		var subs []*subscriber
		defer func() { closeAll(subs) }()
		for _, n := range b.cfg.fanSubs {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if n > len(subs) {
				rooms := make([]string, n-len(subs))
				for i := range rooms {
					rooms[i] = room
				}
				more, err := subscribeMany(ctx, hostport(srv.url), rooms, 64)
				subs = append(subs, more...)
				if err != nil {
					return fmt.Errorf("fan-out: %w", err)
				}
			}
			time.Sleep(300 * time.Millisecond)
			// Track only this phase's seqs.
			head := int64(0)
			for _, s := range subs {
				head = max(head, s.last.Load())
			}
			windowAll(subs, map[string]int64{room: head + 1})
			p, errs := b.phase(ctx, srv, w, subs, b.cfg.rate, b.cfg.fanDur, 16, func(i int) (string, string) {
				return room, "e" + strconv.Itoa(i%50)
			}, 10*time.Second)
			if errs > 0 {
				run.Errors = append(run.Errors, fmt.Sprintf("fan-out %d subscribers: %d write errors", n, errs))
			}
			run.FanOut = append(run.FanOut, p)
			logf("fan-out %-8s subs=%-5d writes/s=%-6.1f p50=%.2fms p90=%.2fms p99=%.2fms max=%.2fms lost=%d dup=%d disc=%d cpu=%.2fs load=%.2f",
				be.name, p.Subscribers, p.AchievedRate, p.Latency.P50, p.Latency.P90, p.Latency.P99, p.Latency.Max, p.Lost, p.Duplicates, p.Disconnected, p.ServerCPU, p.Load1)
		}
		return nil
	})
}

// ---- scenario 2: saturation ----

const satCriterion = "a step keeps up when every acknowledged write reached every subscriber within 3 s after the step, no subscriber was dropped, p99 ack-to-receipt <= 250 ms, and >= 90 % of the target write rate was acknowledged"

// saturate ramps the write rate into one room of b.cfg.satSubs subscribers
// on srv until it no longer keeps up. name is the server's in the results;
// be is the backend's, for the profiles' names.
func (b *bench) saturate(ctx context.Context, srv *server, be, name string) SatRun {
	r := SatRun{Server: name, Subscribers: b.cfg.satSubs, Load1: loadAvg()}
	room := "sat"
	w := newWriter(srv.url, 64)
	defer w.close()
	rooms := make([]string, b.cfg.satSubs)
	for i := range rooms {
		rooms[i] = room
	}
	subs, err := subscribeMany(ctx, hostport(srv.url), rooms, 64)
	defer closeAll(subs)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	time.Sleep(300 * time.Millisecond)
	for _, rate := range b.cfg.satRates {
		if ctx.Err() != nil {
			break
		}
		head := int64(0)
		for _, s := range subs {
			head = max(head, s.last.Load())
		}
		windowAll(subs, map[string]int64{room: head + 1})
		disc0 := 0
		for _, s := range subs {
			if s.ended.Load() {
				disc0++
			}
		}
		profiled := b.profile(ctx, srv, fmt.Sprintf("s2-%s-%s-%g", be, name, rate), b.cfg.satDur)
		p, _ := b.phase(ctx, srv, w, subs, rate, b.cfg.satDur, 64, func(i int) (string, string) {
			return room, "e" + strconv.Itoa(i%50)
		}, 3*time.Second)
		profiled()
		st := SatStep{
			TargetRate: rate, AchievedRate: p.AchievedRate, Delivered: p.Delivered, Lost: p.Lost,
			Duplicates: p.Duplicates, OutOfOrder: p.OutOfOrder,
			Disconnected: p.Disconnected - disc0, DeliveriesPS: p.DeliveriesPS, ServerCPU: p.ServerCPU, BenchCPU: p.BenchCPU,
			P99: p.Latency.P99, KeptUp: true,
		}
		if p.Delivered > 0 {
			st.CPUPer100k = round3(p.ServerCPU / float64(p.Delivered) * 1e5)
			st.WritesPer100 = round3(float64(p.ServerWrites) / float64(p.Delivered) * 100)
		}
		switch {
		case st.Lost > 0:
			st.KeptUp, st.Why = false, fmt.Sprintf("%d deliveries missing 3 s after the step", st.Lost)
		case st.Disconnected > 0:
			st.KeptUp, st.Why = false, fmt.Sprintf("%d subscribers dropped", st.Disconnected)
		case st.P99 > 250:
			st.KeptUp, st.Why = false, fmt.Sprintf("p99 %.0f ms > 250 ms", st.P99)
		case st.AchievedRate < 0.9*rate:
			st.KeptUp, st.Why = false, fmt.Sprintf("only %.0f of %.0f writes/s acknowledged", st.AchievedRate, rate)
		}
		r.Steps = append(r.Steps, st)
		r.MaxDPS = max(r.MaxDPS, st.DeliveriesPS)
		logf("saturation %-8s rate=%-5.0f achieved=%-7.1f deliveries/s=%-9.0f p99=%.1fms cpu/100k=%.3fs writes/100=%.1f server_cpu=%.2fs loadgen_cpu=%.2fs lost=%d kept_up=%v %s",
			name, rate, st.AchievedRate, st.DeliveriesPS, st.P99, st.CPUPer100k, st.WritesPer100, st.ServerCPU, st.BenchCPU, st.Lost, st.KeptUp, st.Why)
		if !st.KeptUp {
			break
		}
		r.KneeRate, r.KneeDPS, r.KneeCPU100k = rate, st.DeliveriesPS, st.CPUPer100k
	}
	return r
}

func (b *bench) saturation(ctx context.Context, be *backend, run *BackendRun) error {
	sat := &Saturation{Criterion: satCriterion}
	run.Saturation = sat
	var bareErr error
	if b.cfg.target == "" {
		// The bare broadcaster ramps first: it has no database, and after
		// roomfeed's ramps it would share the cores with PostgreSQL still
		// writing out and vacuuming their events (in one run of both
		// orders, its knee was 962k deliveries/s before SQLite's ramps and
		// 542k after PostgreSQL's).
		bare, err := startProcess(ctx, "bare-sse", b.selfBin, []string{"bare-sse", "--addr", "127.0.0.1:0"}, b.dir+"/bare.log")
		if err != nil {
			sat.Bare.Error, bareErr = err.Error(), err
		} else {
			sat.Bare = b.saturate(ctx, bare, be.name, "bare")
			bare.stop()
		}
	}
	err := b.withServer(ctx, be, "saturation", func(srv *server) error {
		sat.Roomfeed = b.saturate(ctx, srv, be.name, "roomfeed")
		return nil
	})
	if err != nil {
		sat.Roomfeed.Error = err.Error()
	}
	if b.cfg.target != "" {
		return err
	}
	if b.cfg.satPace > 0 && ctx.Err() == nil {
		pace := b.cfg.satPace.String()
		paced := SatRun{}
		perr := b.withServerArgs(ctx, be, "saturation-paced", []string{"--stream-pace", pace}, func(srv *server) error {
			paced = b.saturate(ctx, srv, be.name, "paced")
			return nil
		})
		if perr != nil {
			paced.Error = perr.Error()
		}
		sat.Paced, sat.Pace = &paced, pace
	}
	if sat.Bare.KneeDPS > 0 {
		sat.ThroughputRatio = round3(sat.Roomfeed.KneeDPS / sat.Bare.KneeDPS)
		if sat.Paced != nil {
			sat.PacedRatio = round3(sat.Paced.KneeDPS / sat.Bare.KneeDPS)
		}
	}
	if sat.Roomfeed.KneeCPU100k > 0 && sat.Bare.KneeCPU100k > 0 {
		sat.CPUEfficiency = round3(sat.Bare.KneeCPU100k / sat.Roomfeed.KneeCPU100k)
		sat.CPURatioRoomfeed = round3(sat.Roomfeed.KneeCPU100k / sat.Bare.KneeCPU100k)
	}
	return bareErr
}

// ---- scenarios 5 and 3: idle memory, then many rooms on the same subscribers ----

func (b *bench) manyRooms(ctx context.Context, be *backend, run *BackendRun, doIdle, doMany bool) error {
	return b.withServer(ctx, be, "manyrooms", func(srv *server) error {
		const nRooms = 1000
		total := b.cfg.manySubs
		im := &IdleMemory{}
		if doIdle {
			run.IdleMemory = im
		}
		w := newWriter(srv.url, 32)
		defer w.close()
		var err error
		if im.BaselineRSSKiB, err = baselineRSS(ctx, srv); err != nil {
			return err
		}
		roomOf := func(i int) string { return fmt.Sprintf("r%04d", i%nRooms) }
		rooms := make([]string, total)
		for i := range rooms {
			rooms[i] = roomOf(i)
		}
		var subs []*subscriber
		defer func() { closeAll(subs) }()
		start := time.Now()
		first := min(1000, total)
		s1, err := subscribeMany(ctx, hostport(srv.url), rooms[:first], b.cfg.connectPar)
		subs = append(subs, s1...)
		if err != nil {
			im.Error = err.Error()
			return err
		}
		time.Sleep(3 * time.Second)
		im.RSS1kKiB = rssKiB(srv.pid)
		s2, err := subscribeMany(ctx, hostport(srv.url), rooms[first:], b.cfg.connectPar)
		subs = append(subs, s2...)
		im.ConnectSeconds = round1(time.Since(start).Seconds())
		im.Connected = len(subs)
		if err != nil {
			im.Error = err.Error()
			run.Errors = append(run.Errors, "many rooms: "+err.Error())
		}
		time.Sleep(3 * time.Second)
		im.RSS10kKiB = rssKiB(srv.pid)
		if im.BaselineRSSKiB > 0 {
			im.PerSub1k = round1(float64(im.RSS1kKiB-im.BaselineRSSKiB) / float64(first))
			im.PerSub10k = round1(float64(im.RSS10kKiB-im.BaselineRSSKiB) / float64(len(subs)))
		}
		logf("idle memory %-8s baseline=%d KiB  1k subs=%d KiB (%.1f KiB/sub)  %d subs=%d KiB (%.1f KiB/sub), connected in %.1fs",
			be.name, im.BaselineRSSKiB, im.RSS1kKiB, im.PerSub1k, len(subs), im.RSS10kKiB, im.PerSub10k, im.ConnectSeconds)
		if !doMany {
			return nil
		}
		mr := &ManyRooms{Rooms: nRooms, Subscribers: len(subs)}
		run.ManyRooms = mr
		if im.Error != "" {
			mr.Error = im.Error
		}
		p, errs := b.phase(ctx, srv, w, subs, b.cfg.manyRate, b.cfg.manyDur, 32, func(i int) (string, string) {
			return roomOf(rand.IntN(nRooms)), "e" + strconv.Itoa(i%10)
		}, 10*time.Second)
		if errs > 0 {
			run.Errors = append(run.Errors, fmt.Sprintf("many rooms: %d write errors", errs))
		}
		mr.FanOutPoint = p
		logf("many rooms %-8s subs=%d rooms=%d writes/s=%.1f p50=%.2fms p90=%.2fms p99=%.2fms max=%.2fms lost=%d dup=%d disc=%d",
			be.name, len(subs), nRooms, p.AchievedRate, p.Latency.P50, p.Latency.P90, p.Latency.P99, p.Latency.Max, p.Lost, p.Duplicates, p.Disconnected)
		return nil
	})
}

// ---- scenario 4: catch-up ----

func (b *bench) catchUp(ctx context.Context, be *backend, run *BackendRun) error {
	cu := &CatchUp{Events: b.cfg.catchEvents}
	run.CatchUp = cu
	err := b.withServer(ctx, be, "catchup", func(srv *server) error {
		room := "catchup"
		w := newWriter(srv.url, 16)
		defer w.close()
		var left atomic.Int64
		left.Store(int64(cu.Events))
		var firstErr error
		var mu sync.Mutex
		start := time.Now()
		var wg sync.WaitGroup
		for k := range 16 {
			wg.Go(func() {
				for i := 0; left.Add(-1) >= 0 && ctx.Err() == nil; i++ {
					if _, _, _, err := w.put(ctx, room, fmt.Sprintf("e%d-%d", k, i%20)); err != nil {
						mu.Lock()
						firstErr = err
						mu.Unlock()
						return
					}
				}
			})
		}
		wg.Wait()
		if firstErr != nil {
			return firstErr
		}
		cu.PrefillPerSec = round1(float64(cu.Events) / time.Since(start).Seconds())
		logf("catch-up %-8s prefilled %d events at %.0f writes/s", be.name, cu.Events, cu.PrefillPerSec)
		top := int64(cu.Events)
		time.Sleep(time.Second)
		cu.Complete = true
		for range b.cfg.catchTrials {
			t0 := now()
			s, err := subscribe(ctx, hostport(srv.url), room, 0)
			if err != nil {
				return err
			}
			deadline := time.Now().Add(30 * time.Second)
			for s.last.Load() < top && time.Now().Before(deadline) && !s.ended.Load() {
				time.Sleep(200 * time.Microsecond)
			}
			live, first := s.received(top), s.received(1)
			dups, dis := s.counters()
			if live == 0 || dups != 0 || dis != 0 || s.count.Load() != top {
				cu.Complete = false
			}
			s.close()
			if live == 0 {
				return fmt.Errorf("catch-up did not reach seq %d within 30 s (at %d)", top, s.last.Load())
			}
			cu.TrialsLiveMS = append(cu.TrialsLiveMS, ms(live-t0))
			cu.TrialsFirstMS = append(cu.TrialsFirstMS, ms(first-t0))
			logf("catch-up %-8s %d events: first event after %.1f ms, live after %.1f ms", be.name, top, ms(first-t0), ms(live-t0))
			time.Sleep(200 * time.Millisecond)
		}
		sorted := slices.Clone(cu.TrialsLiveMS)
		slices.Sort(sorted)
		cu.BestLiveMS = sorted[0]
		cu.MedianLiveMS = sorted[len(sorted)/2]
		return nil
	})
	if err != nil {
		cu.Error = err.Error()
	}
	return err
}

// ---- scenario 6: writes ----

// partsCPU is the CPU seconds used so far by the parts beside the server.
type partsCPU struct{ loadgen, postgres, redis float64 }

// otherCPU reads the CPU of the load generator, and on the postgres
// backend of the local PostgreSQL and Redis processes.
func otherCPU(backend string) partsCPU {
	c := partsCPU{loadgen: cpuSeconds(os.Getpid())}
	if backend == "postgres" {
		c.postgres, c.redis = commandCPU("postgres"), commandCPU("redis-server")
	}
	return c
}

func (c partsCPU) minus(o partsCPU) partsCPU {
	return partsCPU{c.loadgen - o.loadgen, c.postgres - o.postgres, c.redis - o.redis}
}

// writes measures roomfeed's closed-loop writes; on the postgres backend
// pgbench then runs the same transaction shape (unless --pgbench=false),
// once the server has stopped.
func (b *bench) writes(ctx context.Context, be *backend, run *BackendRun) error {
	err := b.writePoints(ctx, be, run)
	if be.name == "postgres" && b.cfg.target == "" && b.cfg.pgbench && ctx.Err() == nil {
		run.PgBench = b.pgbench(ctx, be)
	}
	return err
}

func (b *bench) writePoints(ctx context.Context, be *backend, run *BackendRun) error {
	return b.withServer(ctx, be, "writes", func(srv *server) error {
		for _, many := range []bool{false, true} {
			for _, n := range b.cfg.writers {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				w := newWriter(srv.url, n)
				lats := make([][]int64, n)
				errs := make([]int64, n)
				counter := make([]int, n)
				cpu0 := cpuSeconds(srv.pid)
				other0 := otherCPU(be.name)
				rooms := "one"
				if many {
					rooms = "many (1000)"
				}
				profiled := b.profile(ctx, srv, fmt.Sprintf("s6-%s-%dw-%s", be.name, n, strings.TrimSuffix(rooms, " (1000)")), b.cfg.writeDur)
				start := time.Now()
				closedLoop(ctx, n, b.cfg.writeDur, func(k int) {
					room := "w1"
					if many {
						room = "wm" + strconv.Itoa(rand.IntN(1000))
					}
					counter[k]++
					_, sent, acked, err := w.put(ctx, room, fmt.Sprintf("e%d-%d", k, counter[k]%16))
					if err != nil {
						if ctx.Err() == nil {
							errs[k]++
						}
						return
					}
					if time.Since(start) <= b.cfg.writeDur {
						lats[k] = append(lats[k], acked-sent)
					}
				})
				el := time.Since(start)
				other := otherCPU(be.name).minus(other0)
				profiled()
				w.close()
				var all []int64
				var nerr int64
				for k := range n {
					all = append(all, lats[k]...)
					nerr += errs[k]
				}
				p := WritePoint{
					Writers: n, Rooms: rooms, Seconds: round1(el.Seconds()), Acked: int64(len(all)), Errors: nerr,
					PerSec: perSecond(int64(len(all)), el), ServerCPU: round3(cpuSeconds(srv.pid) - cpu0), Load1: loadAvg(),
					LoadgenCPU: round3(other.loadgen), PostgresCPU: round3(other.postgres), RedisCPU: round3(other.redis),
				}
				p.Latency = summarize(all)
				run.Writes = append(run.Writes, p)
				logf("writes %-8s writers=%-3d rooms=%-11s %.0f writes/s p50=%.2fms p99=%.2fms errors=%d load=%.2f",
					be.name, n, rooms, p.PerSec, p.Latency.P50, p.Latency.P99, p.Errors, p.Load1)
				time.Sleep(500 * time.Millisecond)
			}
		}
		return nil
	})
}
