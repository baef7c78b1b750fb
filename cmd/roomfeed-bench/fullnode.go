package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// ---- scenario 7: one node at its descriptor limit ----

// FullNode is scenario 7: as many subscribers as one process's descriptors
// allow, connected at several rates (a fresh server each), then writes over
// their rooms.
type FullNode struct {
	Subscribers int             `json:"subscribers"`
	Rooms       int             `json:"rooms"`
	SettleS     float64         `json:"settle_s"` // idle time before RSS is read
	Points      []FullNodePoint `json:"points"`
}

// FullNodePoint is one connect rate.
type FullNodePoint struct {
	Parallel       int     `json:"connecting_at_a_time"`
	Connected      int     `json:"connected"`
	ConnectSeconds float64 `json:"connect_seconds"`
	BaselineRSSKiB int64   `json:"baseline_rss_kib"`
	RSSKiB         int64   `json:"rss_kib"`
	PerSubKiB      float64 `json:"rss_kib_per_subscriber"`
	// SockMemKiB is the kernel's TCP buffer memory (/proc/net/sockstat,
	// "mem") the connections added, per connection; both ends are on this
	// machine, so it counts the client's socket too.
	SockMemKiB float64 `json:"kernel_socket_kib_per_connection"`
	// SlabKiB is the kernel's unreclaimable slab memory (/proc/meminfo,
	// SUnreclaim: socket, file and epoll structures) the connections added,
	// per connection, both ends.
	SlabKiB float64     `json:"kernel_slab_kib_per_connection"`
	Writes  FanOutPoint `json:"writes"`
	Error   string      `json:"error,omitempty"`
}

func (b *bench) fullNode(ctx context.Context, be *backend, run *BackendRun) error {
	fn := &FullNode{Subscribers: b.cfg.fullSubs, Rooms: max(1, b.cfg.fullSubs/10), SettleS: b.cfg.fullSettle.Seconds()}
	run.FullNode = fn
	for _, par := range b.cfg.fullParallel {
		p := FullNodePoint{Parallel: par}
		err := b.withServer(ctx, be, "fullnode-"+strconv.Itoa(par), func(srv *server) error {
			return b.fullNodePoint(ctx, srv, fn, &p)
		})
		if err != nil {
			p.Error = err.Error()
			run.Errors = append(run.Errors, fmt.Sprintf("full node at %d connecting: %v", par, err))
		}
		fn.Points = append(fn.Points, p)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

func (b *bench) fullNodePoint(ctx context.Context, srv *server, fn *FullNode, p *FullNodePoint) error {
	roomOf := func(i int) string { return fmt.Sprintf("f%05d", i%fn.Rooms) }
	w := newWriter(srv.url, 64)
	defer w.close()
	var err error
	if p.BaselineRSSKiB, err = baselineRSS(ctx, srv); err != nil {
		return err
	}
	mem0, slab0 := sockMemPages(), meminfoKiB("SUnreclaim")
	rooms := make([]string, fn.Subscribers)
	for i := range rooms {
		rooms[i] = roomOf(i)
	}
	start := time.Now()
	subs, err := subscribeMany(ctx, hostport(srv.url), rooms, p.Parallel)
	defer func() { closeAll(subs) }()
	p.ConnectSeconds = round1(time.Since(start).Seconds())
	p.Connected = len(subs)
	if err != nil {
		return err
	}
	time.Sleep(b.cfg.fullSettle)
	p.RSSKiB = rssKiB(srv.pid)
	if n := float64(len(subs)); n > 0 {
		p.PerSubKiB = round1(float64(p.RSSKiB-p.BaselineRSSKiB) / n)
		p.SockMemKiB = round3(float64(sockMemPages()-mem0) * float64(os.Getpagesize()) / 1024 / n)
		p.SlabKiB = round1(float64(meminfoKiB("SUnreclaim")-slab0) / n)
	}
	logf("full node %d subs connected %d at a time in %.1fs: RSS %d KiB (baseline %d), %.1f KiB/sub; kernel: socket buffers %.3f KiB, slab %.1f KiB per connection (both ends)",
		len(subs), p.Parallel, p.ConnectSeconds, p.RSSKiB, p.BaselineRSSKiB, p.PerSubKiB, p.SockMemKiB, p.SlabKiB)
	var errs int64
	p.Writes, errs = b.phase(ctx, srv, w, subs, b.cfg.fullRate, b.cfg.fullDur, 64, func(int) (string, string) {
		r := rand.IntN(fn.Rooms)
		return roomOf(r), "e" + strconv.Itoa(r%7)
	}, 15*time.Second)
	if errs > 0 {
		return fmt.Errorf("%d write errors", errs)
	}
	q := p.Writes
	logf("full node writes %.0f/s over %d rooms: p50 %.2f p99 %.2f max %.2f ms, lost %d, dup %d, dropped %d",
		q.AchievedRate, fn.Rooms, q.Latency.P50, q.Latency.P99, q.Latency.Max, q.Lost, q.Duplicates, q.Disconnected)
	return nil
}

// sockMemPages reads the pages of TCP buffer memory in use on this machine
// ("TCP: ... mem N" in /proc/net/sockstat); 0 when it cannot.
func sockMemPages() int64 {
	f, err := os.Open("/proc/net/sockstat")
	if err != nil {
		return 0
	}
	defer f.Close()
	return parseSockMem(f)
}

// meminfoKiB reads one field of /proc/meminfo, in KiB; 0 when it cannot.
func meminfoKiB(field string) int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

func parseSockMem(r io.Reader) int64 {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "TCP:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			if f[i] == "mem" {
				n, _ := strconv.ParseInt(f[i+1], 10, 64)
				return n
			}
		}
	}
	return 0
}

// fullNodeTargets checks scenario 7 against issue 19's targets.
func fullNodeTargets(r BackendRun, add func(name, backend, goal, measured string, pass bool)) {
	f := r.FullNode
	if f == nil {
		return
	}
	for _, p := range f.Points {
		q := p.Writes
		add("full node", r.Backend, fmt.Sprintf("%d subscribers over %d rooms, %d connecting at a time: connected within 15 s, <= 4 KiB RSS each",
			f.Subscribers, f.Rooms, p.Parallel),
			fmt.Sprintf("%d connected in %.1f s, %.1f KiB/sub", p.Connected, p.ConnectSeconds, p.PerSubKiB),
			p.Connected >= f.Subscribers && p.ConnectSeconds <= 15 && p.PerSubKiB <= 4 && p.Error == "")
		add("full node writes", r.Backend, fmt.Sprintf("1,000 writes/s over the rooms (%d at a time): p99 <= 100 ms, 0 lost, 0 duplicated", p.Parallel),
			fmt.Sprintf("%.0f writes/s, p99 %.1f ms, lost %d, dup %d, dropped %d", q.AchievedRate, q.Latency.P99, q.Lost, q.Duplicates, q.Disconnected),
			q.Latency.P99 <= 100 && q.Lost == 0 && q.Duplicates == 0 && q.Disconnected == 0 && q.AchievedRate >= 0.95*q.TargetRate && p.Error == "")
	}
}

func printFullNode(out io.Writer, r BackendRun) {
	f := r.FullNode
	if f == nil {
		return
	}
	fmt.Fprintf(out, "\n[%s] 7. one node at its descriptor limit: %d subscribers over %d rooms, RSS read %.0f s after the last connected\n",
		r.Backend, f.Subscribers, f.Rooms, f.SettleS)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "at a time\tconnected\tin s\tRSS MiB\tKiB/sub\tkernel buf KiB/conn\tkernel slab KiB/conn\twrites/s\tp50 ms\tp99 ms\tmax ms\tlost\tdup\tdropped\t")
	for _, p := range f.Points {
		q := p.Writes
		fmt.Fprintf(tw, "%d\t%d\t%.1f\t%.1f\t%.1f\t%.3f\t%.1f\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%d\t\n", p.Parallel, p.Connected, p.ConnectSeconds,
			float64(p.RSSKiB)/1024, p.PerSubKiB, p.SockMemKiB, p.SlabKiB, q.AchievedRate, q.Latency.P50, q.Latency.P99, q.Latency.Max, q.Lost, q.Duplicates, q.Disconnected)
	}
	tw.Flush()
}
