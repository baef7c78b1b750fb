package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// evaluate checks the targets against what was measured.
func evaluate(rep *Report) []Target {
	var ts []Target
	add := func(name, backend, goal, measured string, pass bool) {
		ts = append(ts, Target{Name: name, Backend: backend, Goal: goal, Measured: measured, Pass: pass})
	}
	for _, r := range rep.Runs {
		for _, p := range r.FanOut {
			if p.Subscribers == 1000 {
				add("fan-out", r.Backend, "1,000 subscribers, 100 writes/s: p99 <= 50 ms, zero loss",
					fmt.Sprintf("p99 %.1f ms at %.0f writes/s, lost %d, duplicates %d, dropped %d", p.Latency.P99, p.AchievedRate, p.Lost, p.Duplicates, p.Disconnected),
					p.Latency.P99 <= 50 && p.Lost == 0 && p.Duplicates == 0 && p.Disconnected == 0 && p.AchievedRate >= 0.95*p.TargetRate)
			}
		}
		if s := r.Saturation; s != nil && s.Bare.KneeDPS > 0 {
			add("saturation", r.Backend, ">= 40 % of the bare net/http ceiling (deliveries/s at the knee)",
				fmt.Sprintf("%.0f / %.0f deliveries/s = %.0f %%; CPU per 100k deliveries %.2f s vs %.2f s", s.Roomfeed.KneeDPS, s.Bare.KneeDPS, 100*s.ThroughputRatio, s.Roomfeed.KneeCPU100k, s.Bare.KneeCPU100k),
				s.ThroughputRatio >= 0.40)
		}
		if m := r.IdleMemory; m != nil {
			add("10k subscribers", r.Backend, "10,000 concurrent subscribers on one node",
				fmt.Sprintf("%d connected", m.Connected), m.Connected >= 10000 && m.Error == "")
			if m.Connected > 0 {
				add("idle memory", r.Backend, "idle RSS <= 12 KiB per subscriber",
					fmt.Sprintf("%.1f KiB/sub at %d, %.1f KiB/sub at 1,000", m.PerSub10k, m.Connected, m.PerSub1k),
					m.PerSub10k <= 12 && m.Connected >= 10000)
			}
		}
		if m := r.ManyRooms; m != nil {
			add("many rooms", r.Backend, "10,000 subscribers over 1,000 rooms: zero loss (no latency target)",
				fmt.Sprintf("p99 %.1f ms, lost %d, duplicates %d, dropped %d", m.Latency.P99, m.Lost, m.Duplicates, m.Disconnected),
				m.Lost == 0 && m.Duplicates == 0 && m.Disconnected == 0 && m.Subscribers >= 10000)
		}
		if c := r.CatchUp; c != nil && len(c.TrialsLiveMS) > 0 {
			add("catch-up", r.Backend, fmt.Sprintf("%d events behind, live in <= 1 s", c.Events),
				fmt.Sprintf("median %.0f ms (best %.0f ms), complete and in order: %v", c.MedianLiveMS, c.BestLiveMS, c.Complete),
				c.MedianLiveMS <= 1000 && c.Complete)
		}
		for _, w := range r.Writes {
			if w.Writers != 16 {
				continue
			}
			var goal float64
			switch {
			case w.Rooms == "one":
				goal = 1500
			case r.Backend == "postgres":
				goal = 5000
			default:
				goal = 2000
			}
			add("writes", r.Backend, fmt.Sprintf("16 writers, %s room(s): >= %.0f/s", w.Rooms, goal),
				fmt.Sprintf("%.0f/s, p99 %.1f ms, %d errors", w.PerSec, w.Latency.P99, w.Errors), w.PerSec >= goal && w.Errors == 0)
		}
		fullNodeTargets(r, add)
		stormTargets(r, add)
		twoNodeTargets(r, add)
		scaleTargets(r, add)
	}
	return ts
}

func printTable(out io.Writer, rep *Report) {
	fmt.Fprintf(out, "\nroomfeed-bench %s run, %s, %d CPUs (%s), %s; load1 %.2f before, %.2f after, max %.2f; RLIMIT_NOFILE %d\n",
		rep.Mode, rep.Started.Format("2006-01-02 15:04 UTC"), rep.Machine.CPUs, rep.Machine.CPUModel, rep.Machine.GoVersion,
		rep.Load.Before, rep.Load.After, rep.Load.Max, rep.NoFile)
	if rep.Label != "" {
		fmt.Fprintln(out, "server:", rep.Label)
	}
	if rep.Load.Warning != "" {
		fmt.Fprintln(out, "WARNING:", rep.Load.Warning)
	}
	for _, r := range rep.Runs {
		printRun(out, r)
	}
	if len(rep.Targets) > 0 {
		fmt.Fprintln(out, "\ntargets")
		tw2 := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		for _, t := range rep.Targets {
			verdict := "MISS"
			if t.Pass {
				verdict = "PASS"
			}
			fmt.Fprintf(tw2, "%s\t%s\t%s\t%s\t%s\n", verdict, t.Backend, t.Goal, "measured:", t.Measured)
		}
		tw2.Flush()
	}
	for _, n := range rep.Notes {
		fmt.Fprintln(out, "note:", n)
	}
	for _, b := range rep.Broken {
		fmt.Fprintln(out, "BROKEN:", b)
	}
	fmt.Fprintln(out)
}

// printRun prints what one backend's scenarios measured.
func printRun(out io.Writer, r BackendRun) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(r.FanOut) > 0 {
		fmt.Fprintf(out, "\n[%s] 1. fan-out latency, one room, write ack -> SSE receipt (ms)\n", r.Backend)
		fmt.Fprintln(tw, "subs\twrites/s\tp50\tp90\tp99\tmax\tlost\tdup\tdropped\tdeliv/s\tsrv CPU s\tRSS MiB\t")
		for _, p := range r.FanOut {
			fmt.Fprintf(tw, "%d\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%d\t%.0f\t%.2f\t%.1f\t\n", p.Subscribers, p.AchievedRate,
				p.Latency.P50, p.Latency.P90, p.Latency.P99, p.Latency.Max, p.Lost, p.Duplicates, p.Disconnected, p.DeliveriesPS, p.ServerCPU, float64(p.ServerRSSKiB)/1024)
		}
		tw.Flush()
	}
	if s := r.Saturation; s != nil {
		fmt.Fprintf(out, "\n[%s] 2. saturation, %d subscribers on one room\n", r.Backend, s.Roomfeed.Subscribers)
		fmt.Fprintln(tw, "server\tknee writes/s\tknee deliveries/s\tCPU s/100k deliv\tmax deliveries/s\tlimited by\t")
		runs := []SatRun{s.Roomfeed, s.Bare}
		if s.Paced != nil {
			runs = []SatRun{s.Roomfeed, *s.Paced, s.Bare}
		}
		for _, sr := range runs {
			why := sr.Error
			if why == "" && len(sr.Steps) > 0 {
				last := sr.Steps[len(sr.Steps)-1]
				why = last.Why
				if last.KeptUp {
					why = "highest rate tried"
				}
			}
			fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.3f\t%.0f\t%s\t\n", sr.Server, sr.KneeRate, sr.KneeDPS, sr.KneeCPU100k, sr.MaxDPS, why)
		}
		tw.Flush()
		fmt.Fprintf(out, "roomfeed / bare: %.0f %% of the deliveries/s, %.2fx the CPU per delivery\n", 100*s.ThroughputRatio, s.CPURatioRoomfeed)
		if s.Paced != nil {
			fmt.Fprintf(out, "paced (--stream-pace %s) / bare: %.0f %% of the deliveries/s\n", s.Pace, 100*s.PacedRatio)
		}
	}
	if m := r.IdleMemory; m != nil {
		fmt.Fprintf(out, "\n[%s] 5. idle memory: baseline %.1f MiB; 1,000 subs %.1f MiB (%.1f KiB/sub); %d subs %.1f MiB (%.1f KiB/sub); %d connected in %.1f s\n",
			r.Backend, float64(m.BaselineRSSKiB)/1024, float64(m.RSS1kKiB)/1024, m.PerSub1k, m.Connected, float64(m.RSS10kKiB)/1024, m.PerSub10k, m.Connected, m.ConnectSeconds)
	}
	if m := r.ManyRooms; m != nil {
		p := m.FanOutPoint
		fmt.Fprintf(out, "\n[%s] 3. many rooms: %d subs over %d rooms, %.0f writes/s: p50 %.2f p90 %.2f p99 %.2f max %.2f ms, lost %d, dup %d, dropped %d\n",
			r.Backend, m.Subscribers, m.Rooms, p.AchievedRate, p.Latency.P50, p.Latency.P90, p.Latency.P99, p.Latency.Max, p.Lost, p.Duplicates, p.Disconnected)
	}
	if c := r.CatchUp; c != nil {
		fmt.Fprintf(out, "\n[%s] 4. catch-up of %d events on one connection: median %.0f ms, best %.0f ms until live (trials %v ms; first event %v ms); complete %v\n",
			r.Backend, c.Events, c.MedianLiveMS, c.BestLiveMS, c.TrialsLiveMS, c.TrialsFirstMS, c.Complete)
	}
	if len(r.Writes) > 0 {
		fmt.Fprintf(out, "\n[%s] 6. writes (PUT, closed loop)\n", r.Backend)
		fmt.Fprintln(tw, "writers\trooms\twrites/s\tp50 ms\tp99 ms\tmax ms\terrors\tsrv CPU s\tCPU µs per write: srv\tloadgen\tpostgres\tredis\t")
		for _, w := range r.Writes {
			per := func(cpu float64) string {
				if cpu <= 0 || w.Acked == 0 {
					return "-"
				}
				return fmt.Sprintf("%.0f", cpu/float64(w.Acked)*1e6)
			}
			fmt.Fprintf(tw, "%d\t%s\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t%.2f\t%s\t%s\t%s\t%s\t\n", w.Writers, w.Rooms, w.PerSec, w.Latency.P50, w.Latency.P99, w.Latency.Max, w.Errors, w.ServerCPU,
				per(w.ServerCPU), per(w.LoadgenCPU), per(w.PostgresCPU), per(w.RedisCPU))
		}
		tw.Flush()
	}
	printPgBench(out, r)
	printFullNode(out, r)
	printStorm(out, r)
	printTwoNodes(out, r)
	printScale(out, r)
	for _, e := range r.Errors {
		fmt.Fprintf(out, "[%s] error: %s\n", r.Backend, e)
	}
}

func hasFanOut(rep *Report) bool {
	for _, r := range rep.Runs {
		if len(r.FanOut) > 0 {
			return true
		}
	}
	return false
}

// printPgBench prints what pgbench measured beside scenario 6, or why it
// did not run.
func printPgBench(out io.Writer, r BackendRun) {
	pb := r.PgBench
	if pb == nil {
		return
	}
	if len(pb.Points) > 0 {
		fmt.Fprintf(out, "\n[%s] 6. beside it, pgbench: the same transaction shape, one per write, %d rooms; %s\n", r.Backend, pb.Rooms, pb.Version)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "clients\tsync commit\ttps\tlat avg ms\tfailed\ts\tload1\t")
		for _, p := range pb.Points {
			fmt.Fprintf(tw, "%d\t%s\t%.0f\t%.2f\t%d\t%.0f\t%.2f\t%s\n", p.Clients, onOff(p.SyncCommit), p.TPS, p.LatencyAvg, p.Failed, p.Seconds, p.Load1, p.Error)
		}
		tw.Flush()
	}
	if pb.Error != "" {
		fmt.Fprintf(out, "[%s] 6. pgbench: %s\n", r.Backend, pb.Error)
	}
}
