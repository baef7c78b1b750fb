package feed

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed"
)

// recordingSink is a Sink that keeps what it is given, for the rooms it
// has subscribers in.
type recordingSink struct {
	rooms map[string]bool

	mu  sync.Mutex
	got []roomfeed.Event
}

func (s *recordingSink) Deliver(ev roomfeed.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, ev)
}
func (s *recordingSink) HasRoom(room string) bool      { return s.rooms[room] }
func (s *recordingSink) Rooms() []string               { return nil }
func (s *recordingSink) RoomsChanged() <-chan struct{} { return nil }

func TestSignalEvent(t *testing.T) {
	at := time.Date(2026, 11, 25, 11, 41, 4, 500, time.FixedZone("x", 3600))
	ev, err := SignalEvent("w1", "cursor", "alice", json.RawMessage("{ \"x\" : 1,\n \"html\": \"<b>&</b>\" }"), at)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"room":"w1","type":"cursor","data":{"x":1,"html":"<b>&</b>"},"person":"alice","at":"2026-11-25T10:41:04.0000005Z"}`
	if string(ev.Data) != want {
		t.Errorf("data:\ngot  %s\nwant %s", ev.Data, want)
	}
	if ev.Room != "w1" || ev.Type != "cursor" || ev.Seq != 0 || !ev.At.Equal(at) {
		t.Errorf("got %+v, want room w1, type cursor, seq 0, at %v", ev, at)
	}
	back, ok := ParseSignalEvent(ev.Data)
	if !ok || back.Room != "w1" || back.Type != "cursor" || back.Seq != 0 || string(back.Data) != want {
		t.Errorf("parse: got %+v, %v; want the same event", back, ok)
	}
	if _, err := SignalEvent("w1", "cursor", "", json.RawMessage("{"), at); err == nil {
		t.Error("invalid data: got nil, want an error")
	}
}

func TestParseSignalEventRefuses(t *testing.T) {
	for _, data := range []string{
		``,
		`not json`,
		`[]`,
		`{"type":"cursor"}`,
		`{"room":"w1"}`,
		`{"room":"w1","type":"reset"}`,
		`{"room":"w1","type":"auth_expired"}`,
		`{"room":"w1","type":"element.updated"}`,
		`{"room":"w1","type":"presence.joined"}`,
		`{"room":"../w1","type":"cursor"}`,
		`{"room":"w1","type":"Cursor\nid: 9"}`,
	} {
		if ev, ok := ParseSignalEvent([]byte(data)); ok {
			t.Errorf("ParseSignalEvent(%q): got %+v, want refused", data, ev)
		}
	}
}

func TestMemLogSignal(t *testing.T) {
	sink := &recordingSink{rooms: map[string]bool{"here": true}}
	l := NewMemLog(sink, nil)
	here, _ := SignalEvent("here", "typing", "", json.RawMessage("true"), time.Now())
	away, _ := SignalEvent("away", "typing", "", json.RawMessage("true"), time.Now())
	for _, ev := range []roomfeed.Event{here, away} {
		if err := l.Signal(t.Context(), ev); err != nil {
			t.Fatalf("signal %s: %v", ev.Room, err)
		}
	}
	if len(sink.got) != 1 || sink.got[0].Room != "here" || sink.got[0].Seq != 0 {
		t.Errorf("delivered %+v, want the signal of the room with subscribers only", sink.got)
	}
	numbered := here
	numbered.Seq = 3
	if err := l.Signal(t.Context(), numbered); err == nil {
		t.Error("signal with a seq: got nil, want an error")
	}
}
