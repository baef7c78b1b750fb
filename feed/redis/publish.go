package redis

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed"
)

// Publishes made at the same time share one pipelined round trip to Redis:
// the first of them sends every event queued by then while the others wait
// for their answers, then hands the queue to the first Publish that arrived
// meanwhile. A lone Publish goes straight out, so it waits for nobody.

// pipelineEvents bounds the events of one pipeline.
const pipelineEvents = 256

// publishQueue holds the Publishes waiting for a pipeline.
type publishQueue struct {
	mu       sync.Mutex
	flushing bool // a caller is sending a pipeline; queue waits for the next
	queue    []*publishReq
}

// publishReq is one Publish in the queue. done is closed when ok, top and
// err are set, or when lead is set: then its caller sends the next pipeline.
type publishReq struct {
	ev   roomfeed.Event
	ok   bool
	top  int64
	err  error
	lead bool
	done chan struct{}
}

// appendCoalesced appends ev to its room's stream as appendBatch(ctx,
// ev.Room, []roomfeed.Event{ev}, false) does, in a pipeline shared with the
// Publishes made at the same time. The pipeline runs under the context of
// the caller that sends it.
func (l *Log) appendCoalesced(ctx context.Context, ev roomfeed.Event) (bool, int64, error) {
	r := &publishReq{ev: ev, done: make(chan struct{})}
	q := &l.pub
	q.mu.Lock()
	q.queue = append(q.queue, r)
	wait := q.flushing
	q.flushing = true
	q.mu.Unlock()
	if wait {
		<-r.done
		if !r.lead {
			return r.ok, r.top, r.err
		}
	}

	// This caller sends the pipeline; r is the first of the queue.
	q.mu.Lock()
	n := min(len(q.queue), pipelineEvents)
	batch := q.queue[:n]
	q.queue = slices.Clone(q.queue[n:])
	q.mu.Unlock()

	l.appendPipelined(ctx, batch)

	for _, o := range batch[1:] {
		close(o.done)
	}
	q.mu.Lock()
	if len(q.queue) > 0 {
		next := q.queue[0]
		next.lead = true
		close(next.done)
	} else {
		q.flushing = false
	}
	q.mu.Unlock()
	return r.ok, r.top, r.err
}

// appendRun is a run of consecutive events of one room in a pipeline, and
// the Publishes waiting for them.
type appendRun struct {
	room string
	evs  []roomfeed.Event
	size int // of evs, against batchBytes
	reqs []*publishReq
}

func (c *appendRun) answer(ok bool, top int64, err error) {
	for _, r := range c.reqs {
		r.ok, r.top, r.err = ok, top, err
	}
}

// scriptCall is one script call of a pipeline and the runs it appends.
type scriptCall struct {
	calls  []*appendRun
	script *goredis.Script
	keys   []string
	args   []any
	cmd    *goredis.Cmd
}

// appendPipelined sets the outcome of every request of batch. Each room's
// events go in ascending seq order, one run of consecutive seqs at a time:
// a run above a hole is refused like a lone Publish above a hole, and its
// callers fill the hole from the history. On a single Redis one script call
// appends to every room (up to batchBytes of events per call); on a
// Cluster each run is its own call.
func (l *Log) appendPipelined(ctx context.Context, batch []*publishReq) {
	if len(batch) == 1 {
		r := batch[0]
		r.ok, r.top, r.err = l.appendBatch(ctx, r.ev.Room, []roomfeed.Event{r.ev}, false)
		return
	}
	reqs := slices.Clone(batch)
	slices.SortStableFunc(reqs, func(a, b *publishReq) int {
		return cmp.Or(strings.Compare(a.ev.Room, b.ev.Room), cmp.Compare(a.ev.Seq, b.ev.Seq))
	})
	var calls []*appendRun
	for i := 0; i < len(reqs); {
		j := i + 1
		for j < len(reqs) && reqs[j].ev.Room == reqs[i].ev.Room && reqs[j].ev.Seq <= reqs[j-1].ev.Seq+1 {
			j++
		}
		run := reqs[i:j]
		evs := make([]roomfeed.Event, len(run))
		for k, r := range run {
			evs[k] = r.ev
		}
		for len(evs) > 0 {
			n := chunk(evs)
			c := &appendRun{room: evs[0].Room, evs: evs[:n], reqs: run[:n]}
			for _, ev := range c.evs {
				c.size += eventSize(ev)
			}
			calls = append(calls, c)
			evs, run = evs[n:], run[n:]
		}
		i = j
	}

	pipe := l.client.Pipeline()
	var scripts []*scriptCall
	for i := 0; i < len(calls); {
		sc := &scriptCall{}
		if l.cluster {
			c := calls[i]
			sc.calls, sc.script = calls[i:i+1], appendScript
			sc.keys, sc.args = []string{l.streamKey(c.room)}, l.appendArgs(c.evs, false)
			i++
		} else {
			keys := make([]string, 0, len(calls)-i)
			args := []any{l.opts.MaxLen}
			size := 0
			j := i
			for ; j < len(calls) && (j == i || size+calls[j].size <= batchBytes); j++ {
				c := calls[j]
				size += c.size
				keys = append(keys, l.streamKey(c.room))
				args = appendEventArgs(append(args, len(c.evs)), c.evs)
			}
			sc.calls, sc.script, sc.keys, sc.args = calls[i:j], appendRoomsScript, keys, args
			i = j
		}
		sc.cmd = sc.script.EvalSha(ctx, pipe, sc.keys, sc.args...)
		scripts = append(scripts, sc)
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error

	tops := make(map[string]int64)
	for _, sc := range scripts {
		res, err := sc.cmd.Int64Slice()
		if goredis.HasErrorPrefix(err, "NOSCRIPT") {
			// Redis does not hold the script (restarted, flushed, or
			// never sent): Run sends it. The calls go in pipeline order,
			// so each room's runs still go in seq order.
			res, err = sc.script.Run(ctx, l.client, sc.keys, sc.args...).Int64Slice()
		}
		if err == nil && len(res) != 2*len(sc.calls) {
			err = fmt.Errorf("append script returned %v", res)
		}
		for k, c := range sc.calls {
			if err != nil {
				c.answer(false, 0, err)
				continue
			}
			ok, top := res[2*k] == 1, res[2*k+1]
			if ok {
				tops[c.room] = max(tops[c.room], top)
			}
			c.answer(ok, top, nil)
		}
	}
	if l.cluster && len(tops) > 0 {
		pipe := l.client.Pipeline()
		for room, top := range tops {
			pipe.Publish(ctx, l.notifyChannel(), notification(room, top))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			l.log.LogAttrs(ctx, slog.LevelDebug, "redis notify failed, readers catch up at their next poll",
				slog.Int("rooms", len(tops)), slog.String("error", err.Error()))
		}
	}
}
