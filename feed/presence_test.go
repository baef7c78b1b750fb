package feed

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

type presenceLog struct {
	mu     sync.Mutex
	events []string
}

func (l *presenceLog) add(kind string) func(room, person string) {
	return func(room, person string) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.events = append(l.events, fmt.Sprintf("%s %s/%s", kind, room, person))
	}
}

func (l *presenceLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.events
	l.events = nil
	return out
}

// TestLocalPresenceGrace runs the grace timers in a synctest bubble, so the
// seconds are virtual and the test is exact.
func TestLocalPresenceGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log presenceLog
		p := NewLocalPresence(5*time.Second, log.add("join"), log.add("leave"))
		defer p.Close()
		check := func(step string, want ...string) {
			t.Helper()
			synctest.Wait()
			if got := log.take(); !slices.Equal(got, want) {
				t.Fatalf("%s: got %v, want %v", step, got, want)
			}
		}

		tab1 := p.Join("w1", "ann")
		check("first connection", "join w1/ann")
		tab2 := p.Join("w1", "ann")
		check("second tab")
		tab1()
		time.Sleep(10 * time.Second)
		check("one tab left")
		tab2()
		time.Sleep(4 * time.Second)
		check("within grace")
		back := p.Join("w1", "ann")
		time.Sleep(10 * time.Second)
		check("reconnected within grace")
		if got := p.Here("w1"); !slices.Equal(got, []string{"ann"}) {
			t.Fatalf("here: got %v, want [ann]", got)
		}
		back()
		back() // a second call is a no-op
		time.Sleep(4 * time.Second)
		if got := p.Here("w1"); !slices.Equal(got, []string{"ann"}) {
			t.Fatalf("here within grace: got %v, want [ann]", got)
		}
		time.Sleep(2 * time.Second)
		check("grace passed", "leave w1/ann")
		if got := p.Here("w1"); len(got) != 0 {
			t.Fatalf("here after leaving: got %v, want nobody", got)
		}

		p.Join("w2", "bo")()
		check("join then leave at once", "join w2/bo")
		p.Close()
		time.Sleep(10 * time.Second)
		check("closed: no more announcements")
	})
}
