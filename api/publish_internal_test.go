package api

import (
	"context"
	"log/slog"
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

// gatedLog is a MemLog whose PublishAll waits for gate to close.
type gatedLog struct {
	*feed.MemLog
	gate      chan struct{}
	started   chan int64 // the first seq of each PublishAll
	published atomic.Int64
}

func (l *gatedLog) PublishAll(ctx context.Context, evs []roomfeed.Event) error {
	l.started <- evs[0].Seq
	<-l.gate
	defer l.published.Add(int64(len(evs)))
	return l.MemLog.PublishAll(ctx, evs)
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

// orderLog records what it is handed, after gate closes.
type orderLog struct {
	EventLog
	gate  chan struct{}
	calls chan []roomfeed.Event
}

func (l *orderLog) PublishAll(_ context.Context, evs []roomfeed.Event) error {
	<-l.gate
	l.calls <- evs
	return nil
}

// queued returns the number of events waiting for the log.
func (p *publisher) queued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// TestPublisherOrderAndBound: the publisher hands the log every event once,
// in the order committed, and its queue is bounded: a committer waits while
// it is full.
func TestPublisherOrderAndBound(t *testing.T) {
	log := &orderLog{gate: make(chan struct{}), calls: make(chan []roomfeed.Event, 1024)}
	p := newPublisher(log, time.Second, nil, slog.New(slog.DiscardHandler))
	batch := func(from, n int) []roomfeed.Event {
		evs := make([]roomfeed.Event, n)
		for i := range evs {
			evs[i] = roomfeed.Event{Room: "r", Seq: int64(from + i)}
		}
		return evs
	}
	// The first batch starts the publishing goroutine, which waits on the
	// gate; then the queue fills up to its bound.
	p.committed(batch(1, 10))
	next := 11
	for p.queued() < maxQueuedEvents {
		p.committed(batch(next, 100))
		next += 100
	}
	over := make(chan struct{})
	go func() {
		p.committed(batch(next, 5))
		close(over)
	}()
	select {
	case <-over:
		t.Fatal("committed returned with the queue full")
	case <-time.After(50 * time.Millisecond):
	}
	close(log.gate)
	<-over
	p.wait(t.Context())
	want := int64(1)
	for len(log.calls) > 0 {
		for _, ev := range <-log.calls {
			if ev.Seq != want {
				t.Fatalf("published seq %d, want %d", ev.Seq, want)
			}
			want++
		}
	}
	if got := want - 1; got != int64(next+4) {
		t.Errorf("published %d events, want %d", got, next+4)
	}
}
