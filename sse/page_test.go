package sse

import (
	"errors"
	"slices"
	"testing"

	"github.com/roomfeed/roomfeed"
)

// pageSeqs pages room from after until Next reaches the head and returns
// the seqs of the events and the number of pages.
func pageSeqs(t *testing.T, e *Engine, room string, after int64, limit int, f Filter) ([]int64, int) {
	t.Helper()
	var seqs []int64
	for pages := 1; ; pages++ {
		p, err := e.Page(t.Context(), room, after, limit, f)
		if err != nil {
			t.Fatalf("page after %d: %v", after, err)
		}
		if p.Next < after || p.Next > p.Head || (p.Next == after && after < p.Head) {
			t.Fatalf("page after %d: next %d, head %d: want after < next <= head", after, p.Next, p.Head)
		}
		for _, ev := range p.Events {
			if ev.Seq <= after || ev.Seq > p.Next || !f.Match(ev) {
				t.Fatalf("page after %d, next %d: event %d does not belong", after, p.Next, ev.Seq)
			}
			seqs = append(seqs, ev.Seq)
		}
		if after = p.Next; after == p.Head {
			return seqs, pages
		}
	}
}

func TestPage(t *testing.T) {
	e, src := filterEngine(t, 1000)
	var chats []int64
	for i := range 12000 {
		typ := roomfeed.TypeUpdated
		if i%1000 == 999 {
			typ = "chat"
		}
		ev := src.addTyped("r", typ, map[bool]string{true: "", false: "c1/character"}[typ == "chat"])
		if typ == "chat" {
			chats = append(chats, ev.Seq)
		}
	}
	all, pages := pageSeqs(t, e, "r", 0, 0, Filter{})
	if len(all) != 12000 || pages != 24 || all[0] != 1 || all[11999] != 12000 {
		t.Errorf("default pages: got %d events in %d pages, want 12000 in 24 of 500", len(all), pages)
	}
	if _, pages := pageSeqs(t, e, "r", 0, 99999, Filter{}); pages != 3 {
		t.Errorf("limit above the maximum: got %d pages, want 3 of %d", pages, MaxPageLimit)
	}
	// A sparse filter reads up to MaxPageLimit events per page.
	got, pages := pageSeqs(t, e, "r", 100, 10, Filter{Types: []string{"chat"}})
	if !slices.Equal(got, chats) || pages != 3 {
		t.Errorf("type=chat: got %v in %d pages, want %v in 3", got, pages, chats)
	}
	// A dense one stops at the limit, and Next at its last event.
	p, err := e.Page(t.Context(), "r", 0, 3, Filter{Kinds: []string{"character"}})
	if err != nil || len(p.Events) != 3 || p.Next != 3 || p.Head != 12000 {
		t.Errorf("kind=character, limit 3: got %d events, next %d, head %d, %v; want 3, 3, 12000", len(p.Events), p.Next, p.Head, err)
	}
	p, err = e.Page(t.Context(), "r", 12000, 0, Filter{})
	if err != nil || len(p.Events) != 0 || p.Events == nil || p.Next != 12000 {
		t.Errorf("at the head: got %+v, %v; want an empty page, next 12000", p, err)
	}

	var ahead *CursorAheadError
	if _, err := e.Page(t.Context(), "r", 12001, 0, Filter{}); !errors.As(err, &ahead) || ahead.Head != 12000 {
		t.Errorf("cursor ahead: got %v, want a CursorAheadError at head 12000", err)
	}
	src.trim("r", 5000)
	if _, err := e.Page(t.Context(), "r", 4999, 0, Filter{}); !errors.Is(err, roomfeed.ErrTrimmed) {
		t.Errorf("trimmed: got %v, want ErrTrimmed", err)
	}
	if p, err := e.Page(t.Context(), "r", 5000, 1, Filter{}); err != nil || p.Next != 5001 {
		t.Errorf("at the oldest cursor: got %+v, %v; want event 5001", p, err)
	}
}
