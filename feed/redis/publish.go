package redis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/feed"
)

// Publish makes the room's stream hold every committed event up to ev.Seq,
// in order and each once: PublishAll of one event. Events of the room
// committed before ev that are not in the stream yet (another node's
// publish still on its way, a crash, an outage) are read from the history
// and added first, so the stream never holds ev above a hole. An event
// already in the stream is a success.
func (l *Log) Publish(ctx context.Context, ev roomfeed.Event) error {
	return l.PublishAll(ctx, []roomfeed.Event{ev})
}

// PublishAll makes the streams hold evs, committed events in seq order per
// room (the batches of a store's committers), as Publish does for each, in
// pipelines of up to pipelineEvents events. Events published in commit order
// by one caller never sit above a hole of their own, so no history is read;
// a run above a hole (another node's events still on their way, an earlier
// failure) is filled from the history as Publish fills it. The error joins
// those of the events left out (the relay republishes them).
func (l *Log) PublishAll(ctx context.Context, evs []roomfeed.Event) error {
	for _, ev := range evs {
		if ev.Room == "" || ev.Seq < 1 {
			return fmt.Errorf("publish %q/%d: invalid event", ev.Room, ev.Seq)
		}
	}
	if len(l.pauses) == 1 {
		return l.publishPaused(ctx, &l.pauses[0], evs)
	}
	// A Cluster: each slot's events under its own pause, the slots at once,
	// so a dead shard holds only its own rooms' events.
	groups := make(map[*pause][]roomfeed.Event)
	for _, ev := range evs {
		p := l.pauseOf(ev.Room)
		groups[p] = append(groups[p], ev)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for p, group := range groups {
		wg.Go(func() {
			if err := l.publishPaused(ctx, p, group); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// publishPaused publishes evs, whose rooms share the pause p, as Publish
// does one event: left to the relay while p is on, one probe at a time.
func (l *Log) publishPaused(ctx context.Context, p *pause, evs []roomfeed.Event) error {
	ctx, cancel, mode := p.enter(ctx, len(l.pauses) > 1)
	defer cancel()
	if mode == paused {
		return fmt.Errorf("publish %d events of %s and others: %w (left to the relay)", len(evs), evs[0].Room, feed.ErrUnavailable)
	}
	err := l.publishRuns(ctx, evs)
	if err != nil {
		if unreachable(err) || errors.Is(err, context.DeadlineExceeded) {
			p.start()
			l.reloadSlots(ctx)
			err = fmt.Errorf("%w: %w", feed.ErrUnavailable, err)
		}
		return fmt.Errorf("publish %d events of %s and others: %w", len(evs), evs[0].Room, err)
	}
	p.end()
	return nil
}

// publishRuns appends evs, pipelineEvents at a time, and fills the holes
// below the runs Redis refused.
func (l *Log) publishRuns(ctx context.Context, evs []roomfeed.Event) error {
	for len(evs) > 0 {
		n := min(len(evs), pipelineEvents)
		reqs := make([]*publishReq, n)
		for i := range reqs {
			reqs[i] = &publishReq{ev: evs[i]}
		}
		evs = evs[n:]
		l.appendPipelined(ctx, reqs)
		// Per room, the highest refused event: filling up to it covers
		// every refused run of the room.
		refused := make(map[string]*publishReq)
		for _, r := range reqs {
			if r.err != nil {
				return r.err
			}
			if last := refused[r.ev.Room]; !r.ok && (last == nil || r.ev.Seq > last.ev.Seq) {
				refused[r.ev.Room] = r
			}
		}
		for room, r := range refused {
			if err := l.fill(ctx, room, r.top, r.ev.Seq, &r.ev); err != nil {
				return err
			}
		}
	}
	return nil
}

// pause is how a Publish that failed to reach Redis spares the others the
// same wait: for publishPause, one Publish probes Redis with a short
// deadline (go-redis would otherwise retry dials for seconds) and the others
// leave their event to the relay.
type pause struct {
	until atomic.Int64 // unix nanoseconds; 0: not paused
}

// What enter lets a Publish do.
const (
	publish = iota // go on, in the shared pipeline
	probe          // go on alone, the one probe of a paused Redis or slot
	paused         // leave the event to the relay
)

// enter says what a Publish may do; when the pause is on, only the one that
// takes the probe may go on, under a deadline of half the pause. With
// bounded (a Cluster) every Publish has that deadline: Publishes made at
// once share a pipeline per shard, and a dead shard must not hold the
// others' answers while go-redis retries its dials.
func (p *pause) enter(ctx context.Context, bounded bool) (context.Context, context.CancelFunc, int) {
	until := p.until.Load()
	if until == 0 {
		if bounded {
			ctx, cancel := context.WithTimeout(ctx, publishPause/2)
			return ctx, cancel, publish
		}
		return ctx, func() {}, publish
	}
	now := time.Now()
	if now.UnixNano() < until || !p.until.CompareAndSwap(until, now.Add(publishPause).UnixNano()) {
		return ctx, func() {}, paused
	}
	ctx, cancel := context.WithTimeout(ctx, publishPause/2)
	return ctx, cancel, probe
}

func (p *pause) start() { p.until.Store(time.Now().Add(publishPause).UnixNano()) }
func (p *pause) end()   { p.until.Store(0) }

// unreachable reports whether err means Redis could not be reached or
// did not answer (as opposed to an error reply or a failure of the history).
func unreachable(err error) bool {
	if errors.Is(err, goredis.ErrClosed) || errors.Is(err, goredis.ErrPoolTimeout) {
		return true
	}
	var reply goredis.Error
	if errors.As(err, &reply) {
		// An error reply: Redis answered. Only a server still loading its
		// data or a replica without its master counts as down.
		msg := reply.Error()
		return strings.HasPrefix(msg, "LOADING") || strings.HasPrefix(msg, "MASTERDOWN")
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// pipelineEvents bounds the events of one pipeline.
const pipelineEvents = 256

// publishReq is one event of a pipeline and its outcome: ok (appended, or
// already there), the stream's top, or an error.
type publishReq struct {
	ev  roomfeed.Event
	ok  bool
	top int64
	err error
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

// scriptCall is one appendRoomsScript call of a pipeline and the runs it
// appends.
type scriptCall struct {
	runs []*appendRun
	keys []string
	args []any
	cmd  *goredis.Cmd
}

// appendPipelined sets the outcome of every request of batch. Each room's
// events go in ascending seq order, one run of consecutive seqs at a time:
// a run above a hole is refused, and publishRuns fills the hole from the
// history. The runs share script calls of up
// to batchBytes of events, all in one pipeline.
func (l *Log) appendPipelined(ctx context.Context, batch []*publishReq) {
	if len(batch) == 1 {
		r := batch[0]
		r.ok, r.top, r.err = l.appendBatch(ctx, r.ev.Room, []roomfeed.Event{r.ev}, false)
		return
	}
	runs := appendRuns(batch)
	rooms := make([]string, len(runs))
	for i, c := range runs {
		rooms[i] = c.room
	}
	l.perShard(ctx, rooms, func(idx []int) {
		group := make([]*appendRun, len(idx))
		for k, i := range idx {
			group[k] = runs[i]
		}
		pipe := l.client.Pipeline()
		calls := l.queueCalls(ctx, pipe, group)
		_, _ = pipe.Exec(ctx) // each command carries its own error
		if tops := l.answer(ctx, calls); len(tops) > 0 {
			l.reader.appended(ctx, tops)
		}
	})
}

// appendRuns sorts the requests of batch by room and seq and cuts them into
// runs of consecutive seqs of one room, each small enough for one call.
func appendRuns(batch []*publishReq) []*appendRun {
	reqs := slices.Clone(batch)
	slices.SortStableFunc(reqs, func(a, b *publishReq) int {
		return cmp.Or(strings.Compare(a.ev.Room, b.ev.Room), cmp.Compare(a.ev.Seq, b.ev.Seq))
	})
	var runs []*appendRun
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
			runs = append(runs, c)
			evs, run = evs[n:], run[n:]
		}
		i = j
	}
	return runs
}

// queueCalls queues on pipe the script calls that append runs, in order:
// consecutive runs share a call up to batchBytes of events, if the mode
// lets one call span rooms (else only the runs of one room do).
func (l *Log) queueCalls(ctx context.Context, pipe goredis.Pipeliner, runs []*appendRun) []*scriptCall {
	var calls []*scriptCall
	for i := 0; i < len(runs); {
		sc := &scriptCall{args: []any{l.opts.MaxLen}}
		size := 0
		j := i
		for ; j < len(runs) && (j == i || size+runs[j].size <= batchBytes && (l.spanRooms || runs[j].room == runs[i].room)); j++ {
			size += runs[j].size
			sc.keys = append(sc.keys, l.streamKey(runs[j].room))
			sc.args = appendEventArgs(append(sc.args, len(runs[j].evs)), runs[j].evs)
		}
		sc.runs = runs[i:j]
		sc.cmd = appendRoomsScript.EvalSha(ctx, pipe, sc.keys, sc.args...)
		calls = append(calls, sc)
		i = j
	}
	return calls
}

// answer sets the outcome of the runs of every call once the pipeline ran,
// and returns the new tops of the rooms appended to, in room order.
func (l *Log) answer(ctx context.Context, calls []*scriptCall) []roomfeed.RoomHead {
	var tops []roomfeed.RoomHead
	for _, sc := range calls {
		res, err := sc.cmd.Int64Slice()
		if goredis.HasErrorPrefix(err, "NOSCRIPT") {
			// Redis does not hold the script (restarted, flushed, or
			// never sent): Run sends it. The calls go in pipeline order,
			// so each room's runs still go in seq order.
			res, err = appendRoomsScript.Run(ctx, l.client, sc.keys, sc.args...).Int64Slice()
		}
		if err == nil && len(res) != 2*len(sc.runs) {
			err = fmt.Errorf("append script returned %v", res)
		}
		for k, c := range sc.runs {
			if err != nil {
				c.answer(false, 0, err)
				continue
			}
			ok, top := res[2*k] == 1, res[2*k+1]
			c.answer(ok, top, nil)
			if !ok {
				continue
			}
			if n := len(tops); n > 0 && tops[n-1].Room == c.room {
				tops[n-1].Seq = max(tops[n-1].Seq, top)
			} else {
				tops = append(tops, roomfeed.RoomHead{Room: c.room, Seq: top})
			}
		}
	}
	return tops
}
