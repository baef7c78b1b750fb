package main

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/r3labs/sse/v2"
	"gopkg.in/cenkalti/backoff.v1"

	"github.com/roomfeed/roomfeed/internal/testenv"
)

// TestIndependentClientResumesAcrossRestart uses r3labs/sse, an EventSource
// written by others, as the client: it stores the cursor of every event and
// sends it back as Last-Event-ID when it reconnects after the node restarts.
func TestIndependentClientResumesAcrossRestart(t *testing.T) {
	addr := testenv.FreeAddr(t)
	args := []string{"--database-url", "sqlite://" + filepath.Join(t.TempDir(), "rf.db")}
	n := startNode(t, append(args, "--addr", addr)...)

	client := sse.NewClient(n.URL+"/rooms/w4/events", sse.ClientMaxBufferSize(1<<20))
	client.LastEventID.Store([]byte("0"))
	ctx, cancel := context.WithCancel(context.Background())
	client.ReconnectStrategy = backoff.WithContext(backoff.NewConstantBackOff(100*time.Millisecond), ctx)
	events := make(chan *sse.Event, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// r3labs/sse retries failed connections itself but returns when the
		// server ends a stream cleanly (as a node does on shutdown), so
		// subscribe again; LastEventID carries the cursor across.
		for ctx.Err() == nil {
			subscribe(ctx, client, events)
			time.Sleep(50 * time.Millisecond)
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("r3labs client did not stop")
		}
	})

	next := func(want int64) {
		t.Helper()
		select {
		case ev := <-events:
			if got := string(ev.ID); got != strconv.FormatInt(want, 10) {
				t.Fatalf("got id %s, want %d", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no event %d within 10s", want)
		}
	}
	for i := range 10 {
		put(t, n.URL, "w4", "c"+strconv.Itoa(i), "first")
	}
	for i := int64(1); i <= 10; i++ {
		next(i)
	}
	n.stop()

	n2 := startNode(t, append(args, "--addr", addr)...)
	for i := range 5 {
		put(t, n2.URL, "w4", "d"+strconv.Itoa(i), "second")
	}
	for i := int64(11); i <= 15; i++ {
		next(i)
	}
	if got, _ := client.LastEventID.Load().([]byte); string(got) != "15" {
		t.Errorf("client cursor: got %s, want 15", got)
	}
	select {
	case ev := <-events:
		t.Errorf("got extra event %s, want none", ev.ID)
	case <-time.After(300 * time.Millisecond):
	}
}

func subscribe(ctx context.Context, client *sse.Client, events chan<- *sse.Event) {
	_ = client.SubscribeRawWithContext(ctx, func(msg *sse.Event) {
		// r3labs dispatches retry-only and comment blocks too, with the
		// last id; only events with data are events.
		if len(msg.Data) > 0 {
			events <- msg
		}
	})
}
