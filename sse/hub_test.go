package sse

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed"
)

func recv(t *testing.T, s *Subscription) *Message {
	t.Helper()
	m, ok := recvWithin(s, 5*time.Second)
	if !ok {
		t.Fatal("no message within 5s")
	}
	return m
}

// pop takes the oldest queued message of s, if any: a consumer that reads
// one message at a time.
func pop(s *Subscription) (*Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return nil, false
	}
	m := s.queue[0]
	s.queue = s.queue[1:]
	return m, true
}

// queued returns how many messages s has queued.
func queued(s *Subscription) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue)
}

// readyChan is a test consumer's wake-up: it receives (coalesced) when s
// has something to drain or has ended.
func readyChan(s *Subscription) <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.Notify(func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	})
	return ch
}

// recvWithin returns the next message of s, waiting up to d; false when
// none came in time or the subscription ended with nothing queued.
func recvWithin(s *Subscription, d time.Duration) (*Message, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	ready := readyChan(s)
	for {
		if m, ok := pop(s); ok {
			return m, true
		}
		select {
		case <-ready:
		case <-s.Done():
			return pop(s)
		case <-t.C:
			return nil, false
		}
	}
}

func TestHubDeliversToRoomSubscribersOnly(t *testing.T) {
	h := NewHub(8)
	a1, _ := h.Subscribe("a")
	a2, _ := h.Subscribe("a")
	b, _ := h.Subscribe("b")
	defer a1.Close()
	defer a2.Close()
	defer b.Close()

	h.Deliver(roomfeed.Event{Room: "a", Seq: 1, Type: "x", Data: []byte(`{}`)})
	for i, s := range []*Subscription{a1, a2} {
		m := recv(t, s)
		if m.Seq != 1 || m.Room != "a" {
			t.Errorf("subscriber %d: got %s/%d, want a/1", i, m.Room, m.Seq)
		}
		if want := "id: 1\nevent: x\ndata: {}\n\n"; string(m.Frame) != want {
			t.Errorf("frame: got %q, want %q", m.Frame, want)
		}
	}
	if m, ok := pop(b); ok {
		t.Errorf("room b got %v, want nothing", m.Event)
	}
	if got, want := h.Rooms(), []string{"a", "b"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("rooms: got %v, want %v", got, want)
	}
}

func TestHubDropsSlowSubscriberWithoutBlocking(t *testing.T) {
	h := NewHub(4)
	slow, _ := h.Subscribe("r")
	fast, _ := h.Subscribe("r")
	defer slow.Close()
	defer fast.Close()

	received := make(chan int64, 100)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			m, ok := recvWithin(fast, 10*time.Second)
			if !ok {
				return
			}
			received <- m.Seq
			if m.Seq == 100 {
				return
			}
		}
	})
	done := make(chan struct{})
	go func() {
		for i := int64(1); i <= 100; i++ {
			h.Deliver(roomfeed.Event{Room: "r", Seq: i})
			// Give the fast reader a chance, as a real network would.
			for queued(fast) > 2 {
				time.Sleep(time.Millisecond)
			}
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Deliver blocked on a slow subscriber")
	}
	wg.Wait()
	select {
	case <-slow.Done():
	default:
		t.Fatal("slow subscriber not dropped")
	}
	if !errors.Is(slow.Err(), ErrSlowConsumer) {
		t.Errorf("slow err: got %v, want %v", slow.Err(), ErrSlowConsumer)
	}
	if got := queued(slow); got != 4 {
		t.Errorf("slow buffer: got %d buffered, want 4 (the buffer size)", got)
	}
	close(received)
	var want int64 = 1
	for seq := range received {
		if seq != want {
			t.Fatalf("fast subscriber: got seq %d, want %d", seq, want)
		}
		want++
	}
	if want != 101 {
		t.Errorf("fast subscriber got %d events, want 100", want-1)
	}
	if got := h.Dropped(); got != 1 {
		t.Errorf("dropped: got %d, want 1", got)
	}
	if fast.Err() != nil {
		t.Errorf("fast subscriber err: got %v, want nil", fast.Err())
	}
}

func TestHubCloseEndsSubscriptions(t *testing.T) {
	h := NewHub(1)
	s, _ := h.Subscribe("r")
	h.Close()
	select {
	case <-s.Done():
	default:
		t.Fatal("subscription not ended by Close")
	}
	if !errors.Is(s.Err(), ErrClosed) {
		t.Errorf("got %v, want %v", s.Err(), ErrClosed)
	}
	if _, err := h.Subscribe("r"); !errors.Is(err, ErrClosed) {
		t.Errorf("subscribe after close: got %v, want %v", err, ErrClosed)
	}
	s.Close() // safe after the hub ended it
	if got := h.Subscribers(); got != 0 {
		t.Errorf("subscribers: got %d, want 0", got)
	}
}

func TestHubRoomsChanged(t *testing.T) {
	h := NewHub(1)
	s, _ := h.Subscribe("r")
	select {
	case <-h.RoomsChanged():
	default:
		t.Fatal("no signal after first subscriber of a room")
	}
	s2, _ := h.Subscribe("r")
	select {
	case <-h.RoomsChanged():
		t.Fatal("signal after second subscriber of the same room")
	default:
	}
	s.Close()
	s2.Close()
	select {
	case <-h.RoomsChanged():
	default:
		t.Fatal("no signal after last subscriber left")
	}
	if h.HasRoom("r") {
		t.Error("room still listed after its last subscriber left")
	}
}

// TestSubscriptionQueue: an idle subscription holds no queue memory; a
// burst is drained in order in one call and its memory is given back.
func TestSubscriptionQueue(t *testing.T) {
	h := NewHub(1024)
	s, _ := h.Subscribe("r")
	defer s.Close()
	if got := cap(s.queue); got != 0 {
		t.Fatalf("idle queue capacity: got %d, want 0", got)
	}
	for i := int64(1); i <= 200; i++ {
		h.Deliver(roomfeed.Event{Room: "r", Seq: i})
	}
	if got := queued(s); got != 200 {
		t.Fatalf("queued: got %d, want 200", got)
	}
	msgs := s.Drain(nil)
	for i, m := range msgs {
		if m.Seq != int64(i+1) {
			t.Fatalf("drained[%d]: got seq %d, want %d", i, m.Seq, i+1)
		}
	}
	if len(msgs) != 200 {
		t.Fatalf("drained: got %d, want 200", len(msgs))
	}
	if got := cap(s.queue); got != 0 {
		t.Errorf("queue capacity after draining a burst: got %d, want 0 (given back)", got)
	}
	h.Deliver(roomfeed.Event{Room: "r", Seq: 201})
	h.Deliver(roomfeed.Event{Room: "r", Seq: 202})
	s.Drain(nil)
	if got := cap(s.queue); got == 0 || got > queueKeep {
		t.Errorf("queue capacity after a small batch: got %d, want kept (1..%d)", got, queueKeep)
	}
}

// TestSubscriptionNotify: the callback runs when messages arrive on an
// empty queue (not for every message), at once when set on a non-empty
// queue, and when the hub ends the subscription.
func TestSubscriptionNotify(t *testing.T) {
	h := NewHub(3)
	s, _ := h.Subscribe("r")
	defer s.Close()
	h.Deliver(roomfeed.Event{Room: "r", Seq: 1})
	calls := 0
	s.Notify(func() { calls++ })
	if calls != 1 {
		t.Fatalf("Notify on a non-empty queue: got %d calls, want 1", calls)
	}
	h.Deliver(roomfeed.Event{Room: "r", Seq: 2})
	if calls != 1 {
		t.Errorf("second message on a non-empty queue: got %d calls, want 1", calls)
	}
	s.Drain(nil)
	h.Deliver(roomfeed.Event{Room: "r", Seq: 3})
	if calls != 2 {
		t.Errorf("message on a drained queue: got %d calls, want 2", calls)
	}
	h.Deliver(roomfeed.Event{Room: "r", Seq: 4})
	h.Deliver(roomfeed.Event{Room: "r", Seq: 5})
	h.Deliver(roomfeed.Event{Room: "r", Seq: 6}) // the 4th queued: dropped
	if calls != 3 || !errors.Is(s.Err(), ErrSlowConsumer) {
		t.Errorf("dropped: got %d calls and err %v, want 3 and %v", calls, s.Err(), ErrSlowConsumer)
	}
	if got := len(s.Drain(nil)); got != 3 {
		t.Errorf("after the drop: got %d queued, want the 3 delivered before it", got)
	}
}

func BenchmarkHubDeliver1000(b *testing.B) {
	h := NewHub(1 << 20)
	subs := make([]*Subscription, 1000)
	for i := range subs {
		subs[i], _ = h.Subscribe("r")
	}
	ev := roomfeed.Event{Room: "r", Type: "element.updated", Data: []byte(`{"id":"1","room":"r","type":"element.updated","element":{"id":"c1","kind":"character","version":1,"data":{"name":"Aria"}}}`)}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev.Seq = int64(i)
		h.Deliver(ev)
		if i%1000 == 999 {
			for _, s := range subs {
				s.Drain(nil)
			}
		}
	}
}
