package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ---- scenario 10, the load-generator side: the hidden "subscribers" subcommand ----
//
// One process may hold at most RLIMIT_NOFILE descriptors, so scenario 10
// spreads its subscribers over child processes of this same binary, one per
// node. The protocol on the child's standard streams:
//
//	child  → "connected <connected> <failed> <seconds>"   once its share is up
//	parent → "collect <ack file>"                          after the writes
//	child  → "summary <childSummary as JSON>"              then it exits
//
// End of input before "collect" (the parent went away) closes every
// subscriber and exits. Times cross the process boundary in CLOCK_MONOTONIC
// nanoseconds (one clock for the whole machine): see ackFile.

// childConfig is the command line of a subscribers process.
type childConfig struct {
	node        string // host:port of the node to subscribe to
	rooms       int    // rooms of the run: subscriber i follows scaleRoom(i, rooms)
	first       int    // index of this process's first subscriber
	count       int    // subscribers of this process
	sourceFirst int64  // sourceSeq starts here: this process's source addresses (see splitSubscribers)
	parallel    int    // subscribers connecting at a time
	drain       time.Duration
}

func parseChildFlags(args []string) (childConfig, error) {
	var c childConfig
	fs := flag.NewFlagSet("subscribers", flag.ContinueOnError)
	fs.StringVar(&c.node, "node", "", "host:port of the node")
	fs.IntVar(&c.rooms, "rooms", 1, "rooms of the run")
	fs.IntVar(&c.first, "first", 0, "index of the first subscriber")
	fs.IntVar(&c.count, "count", 0, "subscribers to connect")
	fs.Int64Var(&c.sourceFirst, "source-first", 0, "first source address counter (addresses are counter/100)")
	fs.IntVar(&c.parallel, "parallel", 64, "subscribers connecting at a time")
	fs.DurationVar(&c.drain, "drain", 30*time.Second, "how long to wait for the last acknowledged event of every room")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.node == "" || c.count <= 0 || c.rooms <= 0 || c.first < 0 || c.sourceFirst < 0 {
		return c, errors.New("need --node, --count > 0, --rooms > 0")
	}
	return c, nil
}

// scaleRoom names the room of subscriber i (and of write target i).
func scaleRoom(i, rooms int) string { return fmt.Sprintf("x%06d", i%rooms) }

// subscribersMain is the hidden "subscribers" subcommand.
func subscribersMain(args []string) error {
	c, err := parseChildFlags(args)
	if err != nil {
		return err
	}
	if _, err := raiseNoFile(); err != nil {
		fmt.Fprintln(os.Stderr, "subscribers: raising RLIMIT_NOFILE:", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	collectCh := make(chan string, 1)
	// Reads the parent's commands until the end of input, which cancels
	// the run; the process exits soon after, which ends a blocked read.
	go func() {
		defer cancel()
		readCommands(os.Stdin, collectCh)
	}()
	return runSubscribers(ctx, c, collectCh, os.Stdout)
}

// runSubscribers connects c's subscribers, reports, waits for the ack file
// named on collectCh (closed: the parent went away) and prints the summary
// on out.
func runSubscribers(ctx context.Context, c childConfig, collectCh <-chan string, out io.Writer) error {
	sourceSeq.Store(c.sourceFirst)
	rooms := make([]string, c.count)
	for i := range rooms {
		rooms[i] = scaleRoom(c.first+i, c.rooms)
	}
	start := time.Now()
	subs, err := subscribeMany(ctx, c.node, rooms, c.parallel)
	defer func() { closeAll(subs) }()
	sum := childSummary{Node: c.node, Subscribers: len(subs), Failed: c.count - len(subs), ConnectS: round1(time.Since(start).Seconds())}
	if err != nil {
		sum.Error = err.Error()
		fmt.Fprintln(os.Stderr, "subscribers:", err)
	}
	fmt.Fprintf(out, "connected %d %d %.1f\n", sum.Subscribers, sum.Failed, sum.ConnectS)
	var path string
	select {
	case p, ok := <-collectCh:
		if !ok {
			return nil // the parent went away
		}
		path = p
	case <-ctx.Done():
		return nil
	}
	acks, err := readAckFile(path)
	if err != nil {
		return err
	}
	waitDrain(subs, acks.tops(), c.drain)
	sum.fill(subs, acks)
	line, err := json.Marshal(sum)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "summary %s\n", line)
	return err
}

// readCommands reads the parent's lines from in until its end and then
// closes collect: the path of the first "collect <path>" line goes to
// collect (which has room for it), other lines are ignored.
func readCommands(in io.Reader, collect chan<- string) {
	defer close(collect)
	sc := bufio.NewScanner(in)
	sent := false
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "collect "); ok && !sent {
			collect <- strings.TrimSpace(p)
			sent = true
		}
	}
}

// childSummary is what one subscribers process measured of the writes in
// the ack file: the delivery counts of collect and the latency histograms.
type childSummary struct {
	Node        string  `json:"node"`
	Subscribers int     `json:"subscribers"` // connected
	Failed      int     `json:"failed"`      // could not connect
	ConnectS    float64 `json:"connect_s"`
	delivery
	ErrorEvents int64   `json:"error_events"`
	Latency     latHist `json:"latency_ack_to_receipt"`
	SendLatency latHist `json:"latency_send_to_receipt"`
	CPU         float64 `json:"cpu_s"`
	RSSKiB      int64   `json:"rss_kib"`
	Error       string  `json:"error,omitempty"`
}

// fill records what subs received of acks, and this process's CPU and RSS.
func (s *childSummary) fill(subs []*subscriber, acks *ackLog) {
	d := collect(subs, acks, nil)
	s.delivery = d
	s.Latency = newLatHist(d.lat)
	s.SendLatency = newLatHist(d.latSend)
	for _, sub := range subs {
		s.ErrorEvents += sub.errEvents.Load()
	}
	s.CPU = round3(selfCPU())
	s.RSSKiB = rssKiB(os.Getpid())
}

// mergeSummaries adds up the summaries of several processes; Node and
// ConnectS become those of the slowest, the errors are joined.
func mergeSummaries(all []childSummary) childSummary {
	var m childSummary
	var errs []string
	for _, s := range all {
		m.Subscribers += s.Subscribers
		m.Failed += s.Failed
		if s.ConnectS >= m.ConnectS {
			m.Node, m.ConnectS = s.Node, s.ConnectS
		}
		m.Expected += s.Expected
		m.Delivered += s.Delivered
		m.Lost += s.Lost
		m.Duplicates += s.Duplicates
		m.OutOfOrder += s.OutOfOrder
		m.Disconnected += s.Disconnected
		m.ErrorEvents += s.ErrorEvents
		m.Latency.merge(s.Latency)
		m.SendLatency.merge(s.SendLatency)
		m.CPU = round3(m.CPU + s.CPU)
		m.RSSKiB += s.RSSKiB
		if s.Error != "" {
			errs = append(errs, s.Node+": "+s.Error)
		}
	}
	m.Error = strings.Join(errs, "; ")
	return m
}

// ---- latency histograms that merge exactly ----

// latHist is a distribution of latencies (ns) kept in buckets of three
// significant digits of microseconds (at most 1 % wide), so the summaries of
// several processes add up without shipping every sample. Min, Max, N and
// the sum are exact.
type latHist struct {
	Buckets map[int64]int64 `json:"buckets_us,omitempty"` // bucket (µs) → count
	N       int64           `json:"n"`
	SumNS   int64           `json:"sum_ns"`
	MinNS   int64           `json:"min_ns"`
	MaxNS   int64           `json:"max_ns"`
}

// latBucket returns the bucket of ns: its microseconds (toward zero) kept to
// three significant digits.
func latBucket(ns int64) int64 {
	us := ns / 1000
	a, sign := us, int64(1)
	if a < 0 {
		a, sign = -a, -1
	}
	p := int64(1)
	for a >= 1000 {
		a /= 10
		p *= 10
	}
	return sign * a * p
}

func newLatHist(ns []int64) latHist {
	var h latHist
	for _, v := range ns {
		h.add(v)
	}
	return h
}

func (h *latHist) add(ns int64) {
	if h.Buckets == nil {
		h.Buckets = make(map[int64]int64)
	}
	if h.N == 0 || ns < h.MinNS {
		h.MinNS = ns
	}
	if h.N == 0 || ns > h.MaxNS {
		h.MaxNS = ns
	}
	h.Buckets[latBucket(ns)]++
	h.N++
	h.SumNS += ns
}

func (h *latHist) merge(o latHist) {
	if o.N == 0 {
		return
	}
	if h.Buckets == nil {
		h.Buckets = make(map[int64]int64, len(o.Buckets))
	}
	if h.N == 0 || o.MinNS < h.MinNS {
		h.MinNS = o.MinNS
	}
	if h.N == 0 || o.MaxNS > h.MaxNS {
		h.MaxNS = o.MaxNS
	}
	for b, n := range o.Buckets {
		h.Buckets[b] += n
	}
	h.N += o.N
	h.SumNS += o.SumNS
}

// dist returns the distribution in milliseconds, percentiles by nearest
// rank over the buckets (as percentile does over samples), clamped to the
// exact minimum and maximum.
func (h latHist) dist() Dist {
	if h.N == 0 {
		return Dist{}
	}
	keys := make([]int64, 0, len(h.Buckets))
	for b := range h.Buckets {
		keys = append(keys, b)
	}
	slices.Sort(keys)
	at := func(p float64) float64 {
		rank := max(1, int64(math.Ceil(p*float64(h.N)/100-1e-9))) // as in percentile
		var seen int64
		for _, b := range keys {
			if seen += h.Buckets[b]; seen >= rank {
				return ms(min(max(b*1000, h.MinNS), h.MaxNS))
			}
		}
		return ms(h.MaxNS)
	}
	return Dist{
		N: int(h.N), Min: ms(h.MinNS), Max: ms(h.MaxNS),
		P50: at(50), P90: at(90), P99: at(99),
		Mean: round3(float64(h.SumNS) / float64(h.N) / 1e6),
	}
}

// ---- the ack file: what the parent wrote, for the children to check ----

// ackFile is the acknowledged writes of scenario 10's write phase: per
// room, [seq, sent, acked] with the times in CLOCK_MONOTONIC nanoseconds.
type ackFile struct {
	Clock string                `json:"clock"`
	Rooms map[string][][3]int64 `json:"rooms"`
}

// monoOffset returns CLOCK_MONOTONIC minus now(): add it to a time of this
// process to get the machine's monotonic clock, subtract it to come back.
func monoOffset() (int64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("clock_gettime: %w", err)
	}
	return ts.Nano() - now(), nil
}

// encodeAcks returns acks with their times moved by off.
func encodeAcks(acks *ackLog, off int64) ackFile {
	acks.mu.Lock()
	defer acks.mu.Unlock()
	f := ackFile{Clock: "CLOCK_MONOTONIC ns", Rooms: make(map[string][][3]int64, len(acks.rooms))}
	for r, as := range acks.rooms {
		out := make([][3]int64, len(as))
		for i, a := range as {
			out[i] = [3]int64{a.seq, a.sent + off, a.acked + off}
		}
		f.Rooms[r] = out
	}
	return f
}

// decodeAcks returns the writes of f with their times moved back by off.
func decodeAcks(f ackFile, off int64) *ackLog {
	acks := newAckLog()
	for r, as := range f.Rooms {
		for _, a := range as {
			acks.add(r, a[0], a[1]-off, a[2]-off)
		}
	}
	return acks
}

func writeAckFile(path string, acks *ackLog) error {
	off, err := monoOffset()
	if err != nil {
		return err
	}
	data, err := json.Marshal(encodeAcks(acks, off))
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

func readAckFile(path string) (*ackLog, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f ackFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	off, err := monoOffset()
	if err != nil {
		return nil, err
	}
	return decodeAcks(f, off), nil
}
