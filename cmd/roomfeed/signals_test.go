package main

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/ssetest"
)

// sendSignal posts signals of type typ to room through base until s shows
// one, and checks it is the answer's JSON, without an id. A signal is at
// most once, and a node's signal subscriber may still be connecting just
// after start: like a client, the test sends again.
func sendSignal(t *testing.T, base, room, typ string, s *ssetest.Stream) {
	t.Helper()
	sent := map[string]bool{}
	deadline := time.Now().Add(10 * time.Second)
	for try := 0; time.Now().Before(deadline); try++ {
		status, h, body := call(t, http.MethodPost, base+"/rooms/"+room+"/signals", `{"event":"`+typ+`","data":{"try":`+strconv.Itoa(try)+`}}`)
		if status != http.StatusAccepted || h.Get("Event-ID") != "" {
			t.Fatalf("signal: got %d %s (Event-ID %q), want 202 without Event-ID", status, body, h.Get("Event-ID"))
		}
		sent[string(body)] = true
		for {
			ev, err := s.Next(500 * time.Millisecond)
			if errors.Is(err, ssetest.ErrTimeout) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.Type != typ {
				continue // presence, or signals of another type
			}
			if ev.ID != "" || !sent[ev.Data] {
				t.Fatalf("got id %q data %s, want no id and one of the signals sent", ev.ID, ev.Data)
			}
			return
		}
	}
	t.Fatalf("no %s signal reached the stream within 10s", typ)
}

// TestSignals runs each backend end to end: a signal reaches a feed of its
// room at once, without an id, and no replay holds it.
func TestSignals(t *testing.T) {
	for _, be := range backendsArgs {
		t.Run(be.name, func(t *testing.T) {
			n := startNode(t, append(be.args(t), "--signal-rate", "50", "--signal-burst", "50")...)
			s := ssetest.Open(t, n.URL+"/rooms/sig/events", "")
			sendSignal(t, n.URL, "sig", "cursor", s)
			seq := put(t, n.URL, "sig", "c1", "after the signal")
			replay := ssetest.Open(t, n.URL+"/rooms/sig/events", "0")
			expect(t, replay, 0, seq)
			if seq != 1 {
				t.Errorf("the first write after a signal has seq %d, want 1", seq)
			}
			if ev, err := replay.Next(200 * time.Millisecond); !errors.Is(err, ssetest.ErrTimeout) {
				t.Errorf("replay: got %+v, %v after the write; want nothing", ev, err)
			}
		})
	}
}
