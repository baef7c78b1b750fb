package redis

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/roomfeed/roomfeed"
)

// BenchmarkPublish publishes the events of one room one at a time: each is
// a lone Publish, one script call.
func BenchmarkPublish(b *testing.B) {
	client, opts, hist := setup(b)
	l := newTestNode(b, client, hist, opts, 16).log
	for b.Loop() {
		if err := l.Publish(b.Context(), hist.commit("r1")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishParallel has 16 writers publish into their own rooms at
// once: their Publishes share pipelines.
func BenchmarkPublishParallel(b *testing.B) {
	client, opts, hist := setup(b)
	l := newTestNode(b, client, hist, opts, 16).log
	var next atomic.Int64
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		room := fmt.Sprint("room", next.Add(1))
		for pb.Next() {
			if err := l.Publish(b.Context(), hist.commit(room)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkAppendPipelined appends one pipeline of 256 events, 16 to each of
// 16 rooms, as coalesced Publishes do.
func BenchmarkAppendPipelined(b *testing.B) {
	const rooms, perRoom = 16, 16
	client, opts, hist := setup(b)
	l := newTestNode(b, client, hist, opts, 16).log
	data := []byte(`{"id":"1","room":"r","type":"element.updated","element":{"id":"e1","kind":"item","version":1,"data":{}}}`)
	batch := make([]*publishReq, rooms*perRoom)
	var seq int64
	for b.Loop() {
		for i := range batch {
			room, k := i%rooms, int64(i/rooms)
			ev := roomfeed.Event{Room: fmt.Sprint("room", room), Seq: seq + k + 1, Type: roomfeed.TypeUpdated, Data: data}
			batch[i] = &publishReq{ev: ev}
		}
		l.appendPipelined(b.Context(), batch)
		for _, r := range batch {
			if r.err != nil || !r.ok {
				b.Fatalf("%s/%d: got ok=%v err=%v, want ok", r.ev.Room, r.ev.Seq, r.ok, r.err)
			}
		}
		seq += perRoom
	}
}
