package sse

import (
	"context"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed"
)

// discardConn is a connection that takes every write at once and counts it
// down on wg.
type discardConn struct {
	net.Conn
	wg *sync.WaitGroup
}

func (c *discardConn) Write(b []byte) (int, error)      { c.wg.Done(); return len(b), nil }
func (c *discardConn) SetWriteDeadline(time.Time) error { return nil }
func (c *discardConn) Close() error                     { return nil }

// discardResponse is a ResponseWriter that does the same.
type discardResponse struct {
	h  http.Header
	wg *sync.WaitGroup
}

func (w *discardResponse) Header() http.Header         { return w.h }
func (w *discardResponse) Write(b []byte) (int, error) { w.wg.Done(); return len(b), nil }
func (w *discardResponse) WriteHeader(int)             {}
func (w *discardResponse) Flush()                      {}

var benchEvent = []byte(`{"id":"1","room":"r","type":"element.updated","element":{"id":"c1","kind":"character","version":3,"data":{"name":"Aria","title":"cartographer"}}}`)

// benchEngine is an engine whose pump runs, for streams added by hand.
func benchEngine(b *testing.B) *Engine {
	hub := NewHub(1024)
	e := New(hub, newMemSource(hub), Config{}, nil, nil)
	if !e.env.pump.start() {
		b.Skip("no pump on this platform")
	}
	b.Cleanup(func() { e.Close(context.Background()) })
	return e
}

// openLive opens a live stream of room on e, writing to out, with filter f.
func openLive(b *testing.B, e *Engine, room string, out writer, f ...Filter) *Stream {
	req := Request{Rooms: []string{room}, Path: "/rooms/" + room + "/events", Remote: "127.0.0.1"}
	if len(f) > 0 {
		req.Filter = f[0]
	}
	st, err := e.Open(b.Context(), req)
	if err != nil {
		b.Fatal(err)
	}
	st.out = out
	return st
}

// BenchmarkPumpDeliver1000: one event to 1,000 pumped streams of a room,
// from the hub to their connections.
func BenchmarkPumpDeliver1000(b *testing.B) { benchPumpDeliver(b) }

// BenchmarkPumpDeliver1000Filtered: the same with a kind filter on every
// stream (the event's element is parsed once, for all of them).
func BenchmarkPumpDeliver1000Filtered(b *testing.B) {
	benchPumpDeliver(b, Filter{Kinds: []string{"place", "character"}})
}

func benchPumpDeliver(b *testing.B, f ...Filter) {
	e := benchEngine(b)
	var wg sync.WaitGroup
	const n = 1000
	for range n {
		conn := &discardConn{wg: &wg}
		e.env.pump.add(openLive(b, e, "r", conn, f...), conn)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		wg.Add(n)
		e.hub.Deliver(roomfeed.Event{Room: "r", Seq: int64(i + 1), Type: "element.updated", Data: benchEvent})
		wg.Wait()
	}
}

// BenchmarkSoloDeliver100: one event to 100 streams of a room, each served
// by its own goroutine through a ResponseWriter.
func BenchmarkSoloDeliver100(b *testing.B) {
	e := benchEngine(b)
	ctx, cancel := context.WithCancel(b.Context())
	var wg, done sync.WaitGroup
	const n = 100
	for range n {
		w := &discardResponse{h: http.Header{}, wg: &wg}
		st := openLive(b, e, "r", &flushed{w: w, rc: http.NewResponseController(w)})
		done.Go(func() { st.runSolo(ctx) })
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		wg.Add(n)
		e.hub.Deliver(roomfeed.Event{Room: "r", Seq: int64(i + 1), Type: "element.updated", Data: benchEvent})
		wg.Wait()
	}
	cancel()
	done.Wait()
}

// BenchmarkIdlePumpedStream reports the heap an idle pumped stream holds
// (its connection aside): 10,000 streams over 1,000 rooms.
func BenchmarkIdlePumpedStream(b *testing.B) {
	e := benchEngine(b)
	var wg sync.WaitGroup
	const n = 10000
	conns := make([]*discardConn, n)
	for i := range conns {
		conns[i] = &discardConn{wg: &wg}
	}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i, conn := range conns {
		e.env.pump.add(openLive(b, e, "r"+strconv.Itoa(i%1000), conn), conn)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	for b.Loop() {
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/stream")
}
