package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// ---- scenario 9: two nodes ----

// TwoNodes is scenario 9 (PostgreSQL + Redis): one room's subscribers on
// node B while the writes go through node A, beside the same load on one
// node, in the same run.
type TwoNodes struct {
	Subscribers int         `json:"subscribers"`
	SingleNode  FanOutPoint `json:"single_node"`
	AcrossNodes FanOutPoint `json:"subscribers_on_b_writes_through_a"`
	P99Ratio    float64     `json:"p99_ratio"` // across / single
}

func (b *bench) twoNodes(ctx context.Context, be *backend, run *BackendRun) error {
	if be.name != "postgres" {
		return errors.New("needs the postgres backend (nodes share PostgreSQL and Redis)")
	}
	if b.cfg.target != "" {
		return errors.New("needs servers the bench starts (not --target)")
	}
	args, err := b.serverArgs(ctx, be, "127.0.0.1:0")
	defer be.cleanup(ctx)
	if err != nil {
		return err
	}
	var nodes [2]*server
	for i := range nodes {
		log := fmt.Sprintf("%s/server-%s-twonodes-%c.log", b.dir, be.name, 'A'+i)
		if nodes[i], err = startProcess(ctx, "roomfeed", b.serverBin, args, log); err != nil {
			return err
		}
		defer nodes[i].stop()
	}
	tn := &TwoNodes{Subscribers: b.cfg.twoSubs}
	run.TwoNodes = tn
	a, bNode := nodes[0], nodes[1]
	w := newWriter(a.url, 32)
	defer w.close()
	measure := func(subsOn *server, room string) (FanOutPoint, error) {
		rooms := make([]string, tn.Subscribers)
		for i := range rooms {
			rooms[i] = room
		}
		subs, err := subscribeMany(ctx, hostport(subsOn.url), rooms, 64)
		defer func() { closeAll(subs) }()
		if err != nil {
			return FanOutPoint{}, err
		}
		time.Sleep(time.Second)
		p, errs := b.phase(ctx, a, w, subs, b.cfg.twoRate, b.cfg.fanDur, 16, func(i int) (string, string) {
			return room, "e" + strconv.Itoa(i%50)
		}, 10*time.Second)
		if errs > 0 {
			return p, fmt.Errorf("%d write errors", errs)
		}
		return p, nil
	}
	tag := strconv.Itoa(os.Getpid())
	if tn.SingleNode, err = measure(a, "one-node-"+tag); err != nil {
		return fmt.Errorf("one node: %w", err)
	}
	if tn.AcrossNodes, err = measure(bNode, "two-nodes-"+tag); err != nil {
		return fmt.Errorf("two nodes: %w", err)
	}
	if s := tn.SingleNode.Latency.P99; s > 0 {
		tn.P99Ratio = round3(tn.AcrossNodes.Latency.P99 / s)
	}
	for _, x := range []struct {
		what string
		p    FanOutPoint
	}{{"one node", tn.SingleNode}, {"subs on B, writes through A", tn.AcrossNodes}} {
		logf("two nodes, %s: %d subs, %.0f writes/s: p50 %.2f p99 %.2f max %.2f ms, lost %d, dup %d, dropped %d",
			x.what, x.p.Subscribers, x.p.AchievedRate, x.p.Latency.P50, x.p.Latency.P99, x.p.Latency.Max, x.p.Lost, x.p.Duplicates, x.p.Disconnected)
	}
	return nil
}

func twoNodeTargets(r BackendRun, add func(name, backend, goal, measured string, pass bool)) {
	t := r.TwoNodes
	if t == nil {
		return
	}
	s, x := t.SingleNode, t.AcrossNodes
	add("two nodes", r.Backend, fmt.Sprintf("%d subscribers on node B, %.0f writes/s through node A: p99 <= 1.5 x one node's, 0 lost", t.Subscribers, x.TargetRate),
		fmt.Sprintf("p99 %.1f ms vs %.1f ms on one node (%.2fx); lost %d, dup %d", x.Latency.P99, s.Latency.P99, t.P99Ratio, x.Lost, x.Duplicates),
		t.P99Ratio > 0 && t.P99Ratio <= 1.5 && x.Lost == 0 && x.Duplicates == 0 && x.Disconnected == 0)
}

func printTwoNodes(out io.Writer, r BackendRun) {
	t := r.TwoNodes
	if t == nil {
		return
	}
	fmt.Fprintf(out, "\n[%s] 9. two nodes: %d subscribers of one room\n", r.Backend, t.Subscribers)
	for _, x := range []struct {
		what string
		p    FanOutPoint
	}{{"one node        ", t.SingleNode}, {"on B, writes A  ", t.AcrossNodes}} {
		fmt.Fprintf(out, "  %s %.0f writes/s: p50 %.2f p90 %.2f p99 %.2f max %.2f ms, lost %d, dup %d, dropped %d\n", x.what,
			x.p.AchievedRate, x.p.Latency.P50, x.p.Latency.P90, x.p.Latency.P99, x.p.Latency.Max, x.p.Lost, x.p.Duplicates, x.p.Disconnected)
	}
	fmt.Fprintf(out, "  p99 ratio %.2f\n", t.P99Ratio)
}
