package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
)

// ---- scenario 10: scale-out, many subscribers across several nodes ----

// Scale is scenario 10 (PostgreSQL + Redis): --scale-subs subscribers spread
// over --scale-nodes nodes that share one database and one Redis, connected
// by one load-generator process per node (a process holds at most
// RLIMIT_NOFILE connections), then writes round-robin through the nodes over
// rooms whose subscribers sit on several nodes, so events cross nodes
// through Redis.
type Scale struct {
	Nodes          int     `json:"nodes"`
	Subscribers    int     `json:"subscribers"` // asked for
	Rooms          int     `json:"rooms"`
	Processes      int     `json:"loadgen_processes"`
	Connected      int     `json:"connected"`
	ConnectSeconds float64 `json:"connect_seconds"`
	SettleS        float64 `json:"settle_s"` // idle time before RSS is read
	// SockMemKiB and SlabKiB are the kernel's TCP buffer memory and
	// unreclaimable slab the connections added, per connection, both ends
	// (as in scenario 7; everything else on the machine moves them too).
	SockMemKiB   float64 `json:"kernel_socket_kib_per_connection"`
	SlabKiB      float64 `json:"kernel_slab_kib_per_connection"`
	TargetRate   float64 `json:"target_writes_per_s"`
	AchievedRate float64 `json:"achieved_writes_per_s"`
	Seconds      float64 `json:"seconds"`
	WriteErrors  int64   `json:"write_errors"`
	// Skipped counts writes that fell due while every writer connection
	// (scaleWritersPerNode per node) was busy: not sent, the rate was not
	// reached;
	// WriteLatency is each acknowledged write's, sent to answered.
	Skipped      int64 `json:"writes_skipped"`
	WriteLatency Dist  `json:"write_latency"`
	delivery
	ErrorEvents  int64       `json:"error_events"`
	Latency      Dist        `json:"latency_ack_to_receipt"`
	SendLatency  Dist        `json:"latency_send_to_receipt"`
	DeliveriesPS float64     `json:"deliveries_per_s"`
	PerNode      []ScaleNode `json:"per_node"`
	// Redis is what the shared Redis did during the writes and the drain
	// (zero when INFO could not be read): the whole server's figures, so
	// they hold other users' work too when the Redis is not the run's alone.
	Redis redisStats `json:"redis_during_writes"`
	// LoadgenCPU is the CPU seconds of every load-generator process (the
	// children's whole lives and this process's share of the scenario),
	// LoadgenRSSKiB the children's RSS at the end.
	LoadgenCPU    float64 `json:"loadgen_cpu_s"`
	LoadgenRSSKiB int64   `json:"loadgen_rss_kib"`
	Load1         float64 `json:"load1"`
	Error         string  `json:"error,omitempty"`
}

// ScaleNode is one node of scenario 10 and the subscribers of its
// load-generator process.
type ScaleNode struct {
	Node              string  `json:"node"`
	Subscribers       int     `json:"subscribers"`        // connected by its load generator
	ServerSubscribers int64   `json:"server_subscribers"` // roomfeed_subscribers after the connections
	ConnectSeconds    float64 `json:"connect_seconds"`
	BaselineRSSKiB    int64   `json:"baseline_rss_kib"`
	RSSKiB            int64   `json:"rss_kib"`
	PerSubKiB         float64 `json:"rss_kib_per_subscriber"`
	ConnectCPU        float64 `json:"connect_cpu_s"` // from start to settled
	WriteCPU          float64 `json:"write_cpu_s"`   // during the writes and the drain
	Writes            int64   `json:"writes_through"`
	// Delivered is roomfeed_events_delivered_total over the writes and
	// the drain; CPUPer100k the node's CPU per 100,000 of them (writes
	// through it included).
	Delivered  int64   `json:"delivered"`
	CPUPer100k float64 `json:"cpu_s_per_100k_deliveries"`
	// CPUPer1kWrites is the node's CPU per 1,000 writes of the whole
	// cluster: every node reads every room it has subscribers of.
	CPUPer1kWrites float64 `json:"cpu_s_per_1000_cluster_writes"`
	Latency        Dist    `json:"latency_ack_to_receipt"`
	Lost           int64   `json:"lost"`
	Duplicates     int64   `json:"duplicates"`
	Dropped        int     `json:"dropped"`
}

// scaleNode is a running node of scenario 10 and its load generator.
type scaleNode struct {
	srv  *server
	proc *loadProc
	res  ScaleNode
	cpu0 float64
}

func (b *bench) scale(ctx context.Context, be *backend, run *BackendRun) error {
	if be.name != "postgres" {
		return errors.New("needs the postgres backend (nodes share PostgreSQL and Redis)")
	}
	if b.cfg.target != "" {
		return errors.New("needs servers the bench starts (not --target)")
	}
	c := b.cfg
	sc := &Scale{Nodes: c.scaleNodes, Subscribers: c.scaleSubs, Rooms: max(1, c.scaleSubs/10), Processes: c.scaleNodes,
		TargetRate: c.scaleRate, SettleS: c.fullSettle.Seconds()}
	run.Scale = sc
	err := b.scaleRun(ctx, be, sc)
	if err != nil {
		sc.Error = err.Error()
	}
	return err
}

// scaleRun starts the nodes, warms them up, and runs the phases.
func (b *bench) scaleRun(ctx context.Context, be *backend, sc *Scale) error {
	self0 := selfCPU()
	args, err := b.serverArgs(ctx, be, "127.0.0.1:0")
	defer be.cleanup(ctx)
	if err != nil {
		return err
	}
	nodes := make([]*scaleNode, sc.Nodes)
	defer func() {
		for _, n := range nodes {
			if n != nil {
				n.proc.stop()
				n.srv.stop()
			}
		}
	}()
	for i := range nodes {
		name := nodeName(i)
		log := fmt.Sprintf("%s/server-%s-scale-%s.log", b.dir, be.name, name)
		srv, err := startProcess(ctx, "roomfeed", b.serverBin, args, log)
		if err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}
		nodes[i] = &scaleNode{srv: srv, res: ScaleNode{Node: name}, cpu0: cpuSeconds(srv.pid)}
		if err := warmUp(ctx, srv); err != nil {
			return fmt.Errorf("node %s: %w", name, err)
		}
	}
	time.Sleep(2 * time.Second)
	for _, n := range nodes {
		n.res.BaselineRSSKiB = rssKiB(n.srv.pid)
	}
	if err := b.scaleConnect(ctx, sc, nodes); err != nil {
		return err
	}
	if err := b.scaleWrite(ctx, sc, nodes); err != nil {
		return err
	}
	sc.LoadgenCPU = round3(sc.LoadgenCPU + selfCPU() - self0)
	sc.Load1 = loadAvg()
	return nil
}

func nodeName(i int) string {
	if i < 26 {
		return string(rune('A' + i))
	}
	return "N" + strconv.Itoa(i)
}

// warmUp sends one write and opens and closes one stream, so the baseline
// RSS holds what any serving node holds.
func warmUp(ctx context.Context, srv *server) error {
	w := newWriter(srv.url, 1)
	defer w.close()
	if _, _, _, err := w.put(ctx, "warmup", "e1"); err != nil {
		return err
	}
	if s, err := subscribe(ctx, hostport(srv.url), "warmup", -1); err == nil {
		s.close()
	}
	return nil
}

// scaleConnect starts one load generator per node and waits until each has
// connected its share; then, after the settle time, reads every node's RSS.
func (b *bench) scaleConnect(ctx context.Context, sc *Scale, nodes []*scaleNode) error {
	shares, err := splitSubscribers(sc.Subscribers, len(nodes))
	if err != nil {
		return err
	}
	mem0, slab0 := sockMemPages(), meminfoKiB("SUnreclaim")
	start := time.Now()
	for i, n := range nodes {
		sh := shares[i]
		args := []string{"subscribers", "--node", hostport(n.srv.url), "--rooms", strconv.Itoa(sc.Rooms),
			"--first", strconv.Itoa(sh.First), "--count", strconv.Itoa(sh.Count),
			"--source-first", strconv.FormatInt(sh.SourceFirst, 10), "--parallel", strconv.Itoa(b.cfg.connectPar)}
		log := fmt.Sprintf("%s/loadgen-scale-%s.log", b.dir, n.res.Node)
		if n.proc, err = startLoadProc(b.selfBin, args, log); err != nil {
			return fmt.Errorf("load generator %s: %w", n.res.Node, err)
		}
	}
	var errs []string
	for _, n := range nodes {
		line, err := n.proc.expect(ctx, "connected ")
		if err != nil {
			return fmt.Errorf("load generator %s: %w", n.res.Node, err)
		}
		var failed int
		fmt.Sscanf(line, "%d %d %g", &n.res.Subscribers, &failed, &n.res.ConnectSeconds)
		sc.Connected += n.res.Subscribers
		if failed > 0 {
			errs = append(errs, fmt.Sprintf("node %s: %d subscriptions failed", n.res.Node, failed))
		}
	}
	sc.ConnectSeconds = round1(time.Since(start).Seconds())
	logf("scale-out: %d of %d subscribers connected to %d nodes in %.1f s", sc.Connected, sc.Subscribers, len(nodes), sc.ConnectSeconds)
	time.Sleep(b.cfg.fullSettle)
	if c := float64(sc.Connected); c > 0 {
		sc.SockMemKiB = round3(float64(sockMemPages()-mem0) * float64(os.Getpagesize()) / 1024 / c)
		sc.SlabKiB = round1(float64(meminfoKiB("SUnreclaim")-slab0) / c)
	}
	for _, n := range nodes {
		r := &n.res
		r.RSSKiB = rssKiB(n.srv.pid)
		r.ConnectCPU = round3(cpuSeconds(n.srv.pid) - n.cpu0)
		if r.Subscribers > 0 {
			r.PerSubKiB = round1(float64(r.RSSKiB-r.BaselineRSSKiB) / float64(r.Subscribers))
		}
		if v, err := metricValue(ctx, n.srv.url, "roomfeed_subscribers"); err == nil {
			r.ServerSubscribers = int64(v)
		}
	}
	if len(errs) > 0 {
		sc.Error = strings.Join(errs, "; ")
	}
	return nil
}

// scaleWritersPerNode is how many writes scenario 10 keeps in flight per
// node at most: the open loop's writers, as many independent clients (as
// scenario 7 keeps for its one node).
const scaleWritersPerNode = 64

// scaleWrite writes at the scenario's rate round-robin through the nodes,
// hands the acknowledged writes to the load generators and adds up what
// they measured.
func (b *bench) scaleWrite(ctx context.Context, sc *Scale, nodes []*scaleNode) error {
	writers := make([]*writer, len(nodes))
	through := make([]atomic.Int64, len(nodes))
	deliv0 := make([]float64, len(nodes))
	for i, n := range nodes {
		writers[i] = newWriter(n.srv.url, scaleWritersPerNode)
		defer writers[i].close()
		n.cpu0 = cpuSeconds(n.srv.pid)
		deliv0[i], _ = metricValue(ctx, n.srv.url, "roomfeed_events_delivered_total")
	}
	redis0, redisErr := readRedisStats(ctx, b.cfg.redisURL)
	acks := newAckLog()
	var errs atomic.Int64
	start := time.Now()
	_, skipped := openLoop(ctx, sc.TargetRate, b.cfg.scaleDur, scaleWritersPerNode*len(nodes), func(i int) {
		k, r := i%len(nodes), rand.IntN(sc.Rooms)
		room := scaleRoom(r, sc.Rooms)
		seq, sent, acked, err := writers[k].put(ctx, room, "e"+strconv.Itoa(r%7))
		if err != nil {
			errs.Add(1)
			return
		}
		through[k].Add(1)
		acks.add(room, seq, sent, acked)
	})
	el := time.Since(start)
	sc.Seconds, sc.AchievedRate, sc.WriteErrors, sc.Skipped = round1(el.Seconds()), perSecond(acks.count(), el), errs.Load(), skipped
	sc.WriteLatency = summarize(acks.writeLatencies())
	path := filepath.Join(b.dir, "scale-acks.json")
	if err := writeAckFile(path, acks); err != nil {
		return err
	}
	sums, err := collectSummaries(ctx, nodes, path)
	if err != nil {
		return err
	}
	if r, err := readRedisStats(ctx, b.cfg.redisURL); err == nil && redisErr == nil {
		sc.Redis = r.sub(redis0)
	}
	for i, n := range nodes {
		r := &n.res
		r.Writes = through[i].Load()
		r.WriteCPU = round3(cpuSeconds(n.srv.pid) - n.cpu0)
		if v, err := metricValue(ctx, n.srv.url, "roomfeed_events_delivered_total"); err == nil {
			r.Delivered = int64(v - deliv0[i])
		}
		r.CPUPer100k = cpuPer100k(r.WriteCPU, r.Delivered)
		if n := acks.count(); n > 0 {
			r.CPUPer1kWrites = round3(r.WriteCPU / float64(n) * 1000)
		}
		s := sums[i]
		r.Latency, r.Lost, r.Duplicates, r.Dropped = s.Latency.dist(), s.Lost, s.Duplicates, s.Disconnected
		sc.PerNode = append(sc.PerNode, *r)
	}
	sc.addUp(mergeSummaries(sums), el)
	logf("scale-out: %.0f writes/s through %d nodes for %.1f s: p50 %.2f p99 %.2f max %.2f ms; expected %d, delivered %d, lost %d, dup %d, out of order %d, dropped %d",
		sc.AchievedRate, len(nodes), sc.Seconds, sc.Latency.P50, sc.Latency.P99, sc.Latency.Max, sc.Expected, sc.Delivered, sc.Lost, sc.Duplicates, sc.OutOfOrder, sc.Disconnected)
	return nil
}

// addUp records the load generators' merged summary m of a write phase of el.
func (sc *Scale) addUp(m childSummary, el time.Duration) {
	sc.delivery = m.delivery
	sc.ErrorEvents = m.ErrorEvents
	sc.Latency, sc.SendLatency = m.Latency.dist(), m.SendLatency.dist()
	sc.DeliveriesPS = perSecond(m.Delivered, el)
	sc.LoadgenCPU, sc.LoadgenRSSKiB = m.CPU, m.RSSKiB
	if m.Error != "" {
		sc.Error = strings.TrimPrefix(sc.Error+"; "+m.Error, "; ")
	}
}

// collectSummaries asks every load generator to check the writes in the
// ack file at path and returns their summaries, in the order of nodes.
func collectSummaries(ctx context.Context, nodes []*scaleNode, path string) ([]childSummary, error) {
	for _, n := range nodes {
		if _, err := fmt.Fprintf(n.proc.stdin, "collect %s\n", path); err != nil {
			return nil, fmt.Errorf("load generator %s: %w", n.res.Node, err)
		}
	}
	sums := make([]childSummary, len(nodes))
	for i, n := range nodes {
		line, err := n.proc.expect(ctx, "summary ")
		if err != nil {
			return nil, fmt.Errorf("load generator %s: %w", n.res.Node, err)
		}
		if err := json.Unmarshal([]byte(line), &sums[i]); err != nil {
			return nil, fmt.Errorf("load generator %s: summary: %w", n.res.Node, err)
		}
		sums[i].Node = n.res.Node
	}
	return sums, nil
}

// subsShare is one load generator's part of the subscribers: indexes
// First to First+Count-1, and the source-address counter its connections
// start after.
type subsShare struct {
	First, Count int
	SourceFirst  int64
}

// splitSubscribers divides total subscribers over parts processes as evenly
// as it goes, and gives each process source addresses no other process
// uses: sourceAddr puts connection k (counted from 1 after SourceFirst) on
// address k/subsPerSource, so each share starts at the first address after
// the previous share's last.
func splitSubscribers(total, parts int) ([]subsShare, error) {
	if parts <= 0 || total < parts {
		return nil, fmt.Errorf("cannot split %d subscribers over %d processes", total, parts)
	}
	out := make([]subsShare, parts)
	first, src := 0, int64(0)
	for i := range out {
		n := total / parts
		if i < total%parts {
			n++
		}
		out[i] = subsShare{First: first, Count: n, SourceFirst: src}
		first += n
		lastAddr := (src + int64(n)) / subsPerSource
		src = (lastAddr+1)*subsPerSource - 1
	}
	if last := out[parts-1]; (last.SourceFirst+int64(last.Count))/subsPerSource >= 250*256 {
		return nil, fmt.Errorf("%d subscribers need more than the 64,000 source addresses of 127.10/16", total)
	}
	return out, nil
}

// metricValue reads one unlabelled metric from a node's /metrics.
func metricValue(ctx context.Context, base, name string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return parseMetric(resp.Body, name)
}

// parseMetric finds "name value" in a Prometheus text exposition.
func parseMetric(r io.Reader, name string) (float64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no metric %s", name)
}

// loadProc is a load-generator child process (the "subscribers"
// subcommand) and the lines of its standard output.
type loadProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // its stdout, line by line
	done  chan struct{}
	log   *os.File
}

// startLoadProc runs bin with args; its stderr goes to logPath. A goroutine
// owned by the process reads its stdout until it exits, then waits for it.
func startLoadProc(bin string, args []string, logPath string) (*loadProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stderr = logf
	p := &loadProc{cmd: cmd, log: logf, lines: make(chan string, 16), done: make(chan struct{})}
	out, err := cmd.StdoutPipe()
	if err == nil {
		p.stdin, err = cmd.StdinPipe()
	}
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		logf.Close()
		return nil, err
	}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64*1024), 64<<20)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default: // nobody asked for it
			}
		}
		_ = cmd.Wait()
	}()
	return p, nil
}

// expect returns the rest of the next output line that starts with prefix.
// Lines the process printed before it exited still count.
func (p *loadProc) expect(ctx context.Context, prefix string) (string, error) {
	for {
		select {
		case l := <-p.lines:
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				return rest, nil
			}
		case <-p.done:
			for {
				select {
				case l := <-p.lines:
					if rest, ok := strings.CutPrefix(l, prefix); ok {
						return rest, nil
					}
					continue
				default:
				}
				tail, _ := os.ReadFile(p.log.Name())
				return "", fmt.Errorf("exited before %q: %s", strings.TrimSpace(prefix), lastLines(string(tail), 10))
			}
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// stop closes the process's input, which ends it, and kills it if it is
// still there after 15 s.
func (p *loadProc) stop() {
	if p == nil {
		return
	}
	p.stdin.Close()
	waitOrKill(p.cmd.Process, p.done)
	p.log.Close()
}

func cpuPer100k(cpu float64, delivered int64) float64 {
	if delivered <= 0 {
		return 0
	}
	return round3(cpu / float64(delivered) * 1e5)
}

// scaleTargets checks scenario 10 against issue 19's target.
func scaleTargets(r BackendRun, add func(name, backend, goal, measured string, pass bool)) {
	sc := r.Scale
	if sc == nil {
		return
	}
	add("scale-out", r.Backend, fmt.Sprintf("%d subscribers across %d nodes, %.0f writes/s through the nodes: all connected, >= 95 %% of the rate, 0 lost, 0 duplicated",
		sc.Subscribers, sc.Nodes, sc.TargetRate),
		fmt.Sprintf("%d connected in %.1f s; %.0f writes/s; p99 %.1f ms; lost %d, dup %d, out of order %d, dropped %d",
			sc.Connected, sc.ConnectSeconds, sc.AchievedRate, sc.Latency.P99, sc.Lost, sc.Duplicates, sc.OutOfOrder, sc.Disconnected),
		sc.Connected >= sc.Subscribers && sc.AchievedRate >= 0.95*sc.TargetRate && sc.Expected > 0 && sc.Lost == 0 &&
			sc.Duplicates == 0 && sc.OutOfOrder == 0 && sc.Disconnected == 0 && sc.WriteErrors == 0 && sc.Error == "")
}

func printScale(out io.Writer, r BackendRun) {
	sc := r.Scale
	if sc == nil {
		return
	}
	fmt.Fprintf(out, "\n[%s] 10. scale-out: %d subscribers across %d nodes (%d load-generator processes) over %d rooms; RSS read %.0f s after the last connected\n",
		r.Backend, sc.Subscribers, sc.Nodes, sc.Processes, sc.Rooms, sc.SettleS)
	fmt.Fprintf(out, "  %d connected in %.1f s; %.0f of %.0f writes/s round-robin through the nodes for %.1f s (%d errors, %d skipped; write p50 %.2f p99 %.2f ms); %.0f deliveries/s\n",
		sc.Connected, sc.ConnectSeconds, sc.AchievedRate, sc.TargetRate, sc.Seconds, sc.WriteErrors, sc.Skipped, sc.WriteLatency.P50, sc.WriteLatency.P99, sc.DeliveriesPS)
	fmt.Fprintf(out, "  delivery p50 %.2f p90 %.2f p99 %.2f max %.2f ms; expected %d, delivered %d, lost %d, dup %d, out of order %d, dropped %d; load generators %.1f CPU s, %.0f MiB\n",
		sc.Latency.P50, sc.Latency.P90, sc.Latency.P99, sc.Latency.Max, sc.Expected, sc.Delivered, sc.Lost, sc.Duplicates, sc.OutOfOrder, sc.Disconnected,
		sc.LoadgenCPU, float64(sc.LoadgenRSSKiB)/1024)
	fmt.Fprintf(out, "  kernel per connection, both ends: socket buffers %.3f KiB, slab %.1f KiB\n", sc.SockMemKiB, sc.SlabKiB)
	if rs := sc.Redis; rs.Commands > 0 {
		fmt.Fprintf(out, "  Redis during the writes: %.2f CPU s, %d commands, %.1f MiB in, %.1f MiB out\n", rs.CPU, rs.Commands, float64(rs.InKiB)/1024, float64(rs.OutKiB)/1024)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "node\tsubs\tserver says\tRSS MiB\tKiB/sub\tconnect CPU s\twrites through\twrite CPU s\tCPU s/1k writes\tdelivered\tCPU s/100k deliv\tp50 ms\tp99 ms\tmax ms\tlost\tdup\tdropped\t")
	for _, n := range sc.PerNode {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.1f\t%.1f\t%.2f\t%d\t%.2f\t%.3f\t%d\t%.3f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%d\t\n", n.Node, n.Subscribers, n.ServerSubscribers,
			float64(n.RSSKiB)/1024, n.PerSubKiB, n.ConnectCPU, n.Writes, n.WriteCPU, n.CPUPer1kWrites, n.Delivered, n.CPUPer100k,
			n.Latency.P50, n.Latency.P99, n.Latency.Max, n.Lost, n.Duplicates, n.Dropped)
	}
	if f := r.FullNode; f != nil { // the single-node figures of the same run, beside
		for _, p := range f.Points {
			q := p.Writes
			fmt.Fprintf(tw, "one node (7, %d at a time)\t%d\t\t%.1f\t%.1f\t\t%.0f/s\t%.2f\t\t%d\t%.3f\t%.2f\t%.2f\t%.2f\t%d\t%d\t%d\t\n", p.Parallel, p.Connected,
				float64(p.RSSKiB)/1024, p.PerSubKiB, q.AchievedRate, q.ServerCPU, q.Delivered, cpuPer100k(q.ServerCPU, q.Delivered),
				q.Latency.P50, q.Latency.P99, q.Latency.Max, q.Lost, q.Duplicates, q.Disconnected)
		}
	}
	tw.Flush()
}

// redisStats is what Redis's INFO says of its own work, for the write
// phase of scenario 10: the Redis all nodes share.
type redisStats struct {
	CPU      float64 `json:"cpu_s"`          // used_cpu_user + used_cpu_sys
	Commands int64   `json:"commands"`       // total_commands_processed
	InKiB    int64   `json:"net_input_kib"`  // total_net_input_bytes / 1024
	OutKiB   int64   `json:"net_output_kib"` // total_net_output_bytes / 1024
}

// readRedisStats asks the Redis at url for INFO cpu and stats, and adds
// up every node's of a Cluster, masters and replicas.
func readRedisStats(ctx context.Context, url string) (redisStats, error) {
	rc, err := newRedis(url)
	if err != nil {
		return redisStats{}, err
	}
	defer rc.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var mu sync.Mutex
	var sum redisStats
	err = forEachRedisNode(ctx, rc, false, func(ctx context.Context, c *redis.Client) error {
		text, err := c.Info(ctx, "cpu", "stats").Result()
		if err != nil {
			return err
		}
		s := parseRedisInfo(text)
		mu.Lock()
		defer mu.Unlock()
		sum = redisStats{CPU: sum.CPU + s.CPU, Commands: sum.Commands + s.Commands, InKiB: sum.InKiB + s.InKiB, OutKiB: sum.OutKiB + s.OutKiB}
		return nil
	})
	return sum, err
}

// parseRedisInfo reads the fields of redisStats from INFO's text.
func parseRedisInfo(text string) redisStats {
	var s redisStats
	var in, out int64
	for _, line := range strings.Split(text, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		f, _ := strconv.ParseFloat(v, 64)
		switch k {
		case "used_cpu_user", "used_cpu_sys":
			s.CPU += f
		case "total_commands_processed":
			s.Commands = int64(f)
		case "total_net_input_bytes":
			in = int64(f)
		case "total_net_output_bytes":
			out = int64(f)
		}
	}
	s.InKiB, s.OutKiB = in/1024, out/1024
	return s
}

// sub returns what Redis did between before and s.
func (s redisStats) sub(before redisStats) redisStats {
	return redisStats{CPU: round3(s.CPU - before.CPU), Commands: s.Commands - before.Commands,
		InKiB: s.InKiB - before.InKiB, OutKiB: s.OutKiB - before.OutKiB}
}
