package feed

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func recv(t *testing.T, s *Subscription) *Message {
	t.Helper()
	select {
	case m := <-s.C():
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
		return nil
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

	h.Deliver(Event{Room: "a", Seq: 1, Type: "x", Data: []byte(`{}`)})
	for i, s := range []*Subscription{a1, a2} {
		m := recv(t, s)
		if m.Seq != 1 || m.Room != "a" {
			t.Errorf("subscriber %d: got %s/%d, want a/1", i, m.Room, m.Seq)
		}
		if want := "id: 1\nevent: x\ndata: {}\n\n"; string(m.Frame) != want {
			t.Errorf("frame: got %q, want %q", m.Frame, want)
		}
	}
	select {
	case m := <-b.C():
		t.Errorf("room b got %v, want nothing", m.Event)
	default:
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
			select {
			case m := <-fast.C():
				received <- m.Seq
				if m.Seq == 100 {
					return
				}
			case <-fast.Done():
				return
			}
		}
	})
	done := make(chan struct{})
	go func() {
		for i := int64(1); i <= 100; i++ {
			h.Deliver(Event{Room: "r", Seq: i})
			// Give the fast reader a chance, as a real network would.
			for len(fast.C()) > 2 {
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
	if got := len(slow.C()); got != 4 {
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

func BenchmarkHubDeliver1000(b *testing.B) {
	h := NewHub(1 << 20)
	subs := make([]*Subscription, 1000)
	for i := range subs {
		subs[i], _ = h.Subscribe("r")
	}
	ev := Event{Room: "r", Type: "element.updated", Data: []byte(`{"id":"1","room":"r","type":"element.updated","element":{"id":"c1","kind":"character","version":1,"data":{"name":"Aria"}}}`)}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev.Seq = int64(i)
		h.Deliver(ev)
		if i%1000 == 999 {
			for _, s := range subs {
				for len(s.C()) > 0 {
					<-s.C()
				}
			}
		}
	}
}
