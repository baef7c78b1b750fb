package repo

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/roomfeed/roomfeed"
)

// hookLog records what the OnCommit hook receives.
type hookLog struct {
	mu      sync.Mutex
	batches [][]roomfeed.Event
}

func (h *hookLog) add(evs []roomfeed.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.batches = append(h.batches, evs)
}

// seqs returns the seqs announced per room, in the order announced.
func (h *hookLog) seqs() map[string][]int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string][]int64)
	for _, b := range h.batches {
		for _, ev := range b {
			out[ev.Room] = append(out[ev.Room], ev.Seq)
		}
	}
	return out
}

func (h *hookLog) has(ev roomfeed.Event) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, b := range h.batches {
		for _, e := range b {
			if e.Room == ev.Room && e.Seq == ev.Seq {
				return string(e.Data) == string(ev.Data)
			}
		}
	}
	return false
}

// TestOnCommit: every committed write's event reaches the hook once, before
// the write is answered, in seq order per room; writes that failed or were
// replayed announce nothing.
func TestOnCommit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		var h hookLog
		s.OnCommit(h.add)
		const writers, each = 8, 25
		rooms := []string{"a", "b", "c"}
		var wg sync.WaitGroup
		errc := make(chan error, writers*each)
		for w := range writers {
			wg.Go(func() {
				for i := range each {
					room := rooms[(w+i)%len(rooms)]
					out, err := s.Put(t.Context(), room, fmt.Sprintf("e%d", i%4), "item", json.RawMessage(`{"n":1}`), Precondition{}, Meta{})
					if err != nil {
						errc <- err
						continue
					}
					if !h.has(out.Event) {
						errc <- fmt.Errorf("%s/%d answered before the hook had its event", room, out.Event.Seq)
					}
				}
			})
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Error(err)
		}

		// A stale If-Match on a deleted element fails; a key's replay is
		// not a second commit.
		if _, err := s.Delete(t.Context(), "a", "e0", Precondition{}, Meta{}); err != nil {
			t.Fatal(err)
		}
		_, err := s.Patch(t.Context(), "a", "e0", json.RawMessage(`{"n":2}`), Precondition{IfMatch: ptr(int64(1))}, Meta{})
		if err == nil {
			t.Fatal("patch of a deleted element: got no error")
		}
		idem := &Idempotency{Key: "k1", Fingerprint: "f", Answer: testAnswer}
		for range 2 {
			if _, err := s.Message(t.Context(), "b", "ping", json.RawMessage(`{}`), Meta{Idem: idem}); err != nil {
				t.Fatal(err)
			}
		}

		got := h.seqs()
		for _, room := range rooms {
			head := mustHead(t, s, room)
			seqs := got[room]
			if int64(len(seqs)) != head {
				t.Errorf("room %s: got %d events announced, want %d (the head)", room, len(seqs), head)
			}
			for i, seq := range seqs {
				if seq != int64(i+1) {
					t.Errorf("room %s: announced seq %d at position %d, want %d", room, seq, i, i+1)
					break
				}
			}
		}
	})
}
