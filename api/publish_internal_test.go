package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/repo"
	"github.com/roomfeed/roomfeed/sse"
)

// gatedLog is a MemLog whose Publish waits for gate to close.
type gatedLog struct {
	*feed.MemLog
	gate      chan struct{}
	started   chan int64
	published atomic.Int64
}

func (l *gatedLog) Publish(ctx context.Context, ev roomfeed.Event) error {
	l.started <- ev.Seq
	<-l.gate
	defer l.published.Add(1)
	return l.MemLog.Publish(ctx, ev)
}

// TestWriteAnsweredBeforePublish: a write is answered once committed, while
// its publish still waits on the log; WaitPublishes waits for it.
func TestWriteAnsweredBeforePublish(t *testing.T) {
	store, err := repo.Open(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "rf.db"), repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	hub := sse.NewHub(64)
	t.Cleanup(hub.Close)
	log := &gatedLog{MemLog: feed.NewMemLog(hub, store), gate: make(chan struct{}), started: make(chan int64, 8)}
	srv := New(Config{}, store, log, sse.New(hub, log, sse.Config{}, nil, nil), nil)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPut, ts.URL+"/rooms/r1/elements/a", strings.NewReader(`{"kind":"item","data":{}}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: got status %d, want 201", resp.StatusCode)
	}
	select {
	case seq := <-log.started:
		if seq != 1 {
			t.Fatalf("publish: got seq %d, want 1", seq)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the publish of the answered write did not start")
	}

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	srv.WaitPublishes(ctx) // gives up: the publish is still gated
	if got := log.published.Load(); got != 0 {
		t.Fatalf("published before the gate opened: got %d, want 0", got)
	}
	close(log.gate)
	srv.WaitPublishes(t.Context())
	if got := log.published.Load(); got != 1 {
		t.Errorf("published after WaitPublishes: got %d, want 1", got)
	}
}

// TestPublisherBounds: beyond its slots, and once wait began, a publish
// runs in its caller.
func TestPublisherBounds(t *testing.T) {
	p := &publisher{slots: make(chan struct{}, 2)}
	gate := make(chan struct{})
	var ran atomic.Int64
	blocked := func() { <-gate; ran.Add(1) }
	for i, want := range []bool{true, true, false} {
		if got := p.start(blocked); got != want {
			t.Fatalf("start %d: got %v, want %v", i, got, want)
		}
	}
	close(gate)
	p.wait(t.Context())
	if got := ran.Load(); got != 2 {
		t.Errorf("ran in the background: got %d, want 2", got)
	}
	if p.start(func() { t.Error("started after wait") }) {
		t.Error("start after wait: got true, want false")
	}
}
