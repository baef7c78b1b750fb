package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/client"
	"github.com/roomfeed/roomfeed/internal/testenv"
	"github.com/roomfeed/roomfeed/sse"
)

// heldSource is a backend's log as the feed engine reads it, whose reads
// of events first call hold (when set) with their number: a slow
// database, on which every resuming stream piles up.
type heldSource struct {
	sse.Source
	reads atomic.Int64
	hold  func(call int64)
}

func (s *heldSource) EventsAfter(ctx context.Context, room string, after int64, limit int) ([]roomfeed.Event, error) {
	call := s.reads.Add(1)
	if s.hold != nil {
		s.hold(call)
	}
	return s.Source.EventsAfter(ctx, room, after, limit)
}

// gathered returns the value of the counter or gauge name{label="value"}
// in reg, 0 when it has none.
func gathered(t *testing.T, reg *prometheus.Registry, name, label, value string) float64 {
	families, err := reg.Gather()
	if err != nil {
		t.Errorf("gather: %v", err)
		return 0
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
			if label == "" {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// untilJoined waits until the streams took want answers of reads of
// events from other streams' reads. It may run on the engine's goroutines:
// it reports a failure without ending the test there.
func untilJoined(t *testing.T, reg *prometheus.Registry, want int) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := gathered(t, reg, "roomfeed_catchup_reads_joined_total", "kind", sse.ReadEvents)
		if int(got) >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("timed out waiting for %d joined reads (got %v)", want, got)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// follow opens url from cursor and reads it until the event with id last
// (readIDs); it sends the outcome on the channel returned. dials, when not
// nil, bounds the dials in progress at once (a slot each): hundreds of TLS
// handshakes at once on a busy 2-core machine can outlast HTTP/2's 2 s wait
// for a client's SETTINGS, and the server then drops the connection.
func follow(ctx context.Context, url string, cursor, last int64, dials chan struct{}) chan error {
	done := make(chan error, 1)
	go func() {
		if dials != nil {
			dials <- struct{}{}
		}
		st, err := (&client.Client{}).Dial(ctx, url, strconv.FormatInt(cursor, 10))
		if dials != nil {
			<-dials
		}
		if err != nil {
			done <- err
			return
		}
		done <- <-readIDs(st, cursor, last)
	}()
	return done
}

// readIDs reads st until the event with id last, checking that ids follow
// each other from cursor+1, then closes it; it sends the outcome on the
// channel returned.
func readIDs(st *client.Stream, cursor, last int64) chan error {
	done := make(chan error, 1)
	go func() {
		defer st.Close()
		for want := cursor + 1; want <= last; {
			ev, err := st.Next()
			if err != nil {
				done <- fmt.Errorf("waiting for id %d: %w", want, err)
				return
			}
			if !ev.HasID {
				continue
			}
			if ev.ID != strconv.FormatInt(want, 10) {
				done <- fmt.Errorf("got id %s, want %d (gap or duplicate)", ev.ID, want)
				return
			}
			want++
		}
		done <- nil
	}()
	return done
}

// TestFeedCatchUpStorm: 400 subscribers of one room resume from the same
// cursor at once, 10 pages behind, on a database slow enough that they all
// pile up: the log is read once per page, not once per subscriber and
// page, and every subscriber gets every event once, in order, then the
// live ones.
func TestFeedCatchUpStorm(t *testing.T) {
	const subscribers, history, page, live = 400, 500, 50, 5
	forEachBackend(t, func(t *testing.T, be backend) {
		reg := prometheus.NewRegistry()
		src := &heldSource{}
		ts := newServer(t, be, serverOpts{
			cfg:    api.Config{Metrics: api.NewMetrics(reg, nil, nil), Limits: api.Limits{StreamsPerIP: 2 * subscribers}},
			feed:   sse.Config{ReplayPage: page},
			source: func(log sse.Source) sse.Source { src.Source = log; return src },
		})
		room := testenv.UniqueName("storm")
		messages(t, ts, room, history)
		src.hold = func(call int64) { untilJoined(t, reg, int(call)*(subscribers-1)) }
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		outcomes := make([]chan error, subscribers)
		dials := make(chan struct{}, 16)
		for i := range outcomes {
			outcomes[i] = follow(ctx, ts.URL+"/rooms/"+room+"/events", 0, history+live, dials)
		}
		// Every subscriber is catching up (all joined the first read):
		// what is written now comes live.
		untilJoined(t, reg, subscribers-1)
		for i := range live {
			mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/"+room+"/messages", `{"event":"tick","data":`+strconv.Itoa(i)+`}`), http.StatusCreated)
		}
		for i, c := range outcomes {
			if err := <-c; err != nil {
				t.Fatalf("subscriber %d: %v", i, err)
			}
		}
		wantReads := history / page
		if got := src.reads.Load(); got != int64(wantReads) {
			t.Errorf("got %d reads of the log, want %d (one per page)", got, wantReads)
		}
		reads := gathered(t, reg, "roomfeed_catchup_reads_total", "kind", sse.ReadEvents)
		joined := gathered(t, reg, "roomfeed_catchup_reads_joined_total", "kind", sse.ReadEvents)
		if int(reads) != wantReads || int(joined) != wantReads*(subscribers-1) {
			t.Errorf("metrics: got %v reads and %v joined, want %d and %d", reads, joined, wantReads, wantReads*(subscribers-1))
		}
		if ended := gathered(t, reg, "roomfeed_streams_ended_total", "reason", "error"); ended != 0 {
			t.Errorf("got %v streams ended by an error, want 0", ended)
		}
	})
}

// TestFeedCatchUpBusy: with room for one stream catching up, a second
// stream with events to replay is refused with 503 catch_up_busy and
// Retry-After while the first waits for its read; a stream that starts
// live is served; once the first has caught up, the second is admitted.
func TestFeedCatchUpBusy(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		reg := prometheus.NewRegistry()
		release := make(chan struct{})
		var once sync.Once
		src := &heldSource{hold: func(int64) { <-release }}
		ts := newServer(t, be, serverOpts{
			cfg:    api.Config{Metrics: api.NewMetrics(reg, nil, nil)},
			feed:   sse.Config{CatchUpQueue: 1},
			source: func(log sse.Source) sse.Source { src.Source = log; return src },
		})
		t.Cleanup(func() { once.Do(func() { close(release) }) })
		room := testenv.UniqueName("busy")
		messages(t, ts, room, 20)
		url := ts.URL + "/rooms/" + room + "/events"
		first := follow(t.Context(), url, 0, 20, nil)
		eventually(t, "the first stream's read", func() bool { return src.reads.Load() > 0 })

		r := do(t, http.MethodGet, url, "", "Last-Event-ID", "3")
		if r.Status != http.StatusServiceUnavailable || r.errorCode(t) != "catch_up_busy" || r.Header.Get("Retry-After") == "" {
			t.Fatalf("second stream: got %d %s (Retry-After %q), want 503 catch_up_busy with Retry-After", r.Status, r.Body, r.Header.Get("Retry-After"))
		}
		st, err := (&client.Client{}).Dial(t.Context(), url, "20") // at the head: nothing to replay
		if err != nil {
			t.Fatalf("stream at the head: %v", err)
		}
		liveOnly := readIDs(st, 20, 21)
		mustStatus(t, do(t, http.MethodPost, url[:len(url)-len("/events")]+"/messages", `{"event":"tick","data":21}`), http.StatusCreated)
		if err := <-liveOnly; err != nil {
			t.Fatalf("stream at the head: %v", err)
		}

		if admitted := gathered(t, reg, "roomfeed_catchup_streams", "", ""); admitted != 1 {
			t.Errorf("got %v streams catching up, want 1", admitted)
		}
		once.Do(func() { close(release) })
		if err := <-first; err != nil {
			t.Fatalf("first stream: %v", err)
		}
		// Its last event is sent just before its place is given back.
		eventually(t, "the first stream's place given back", func() bool {
			return gathered(t, reg, "roomfeed_catchup_streams", "", "") == 0
		})
		if err := <-follow(t.Context(), url, 3, 21, nil); err != nil {
			t.Fatalf("second stream, retried: %v", err)
		}
		if refused := gathered(t, reg, "roomfeed_catchup_refused_total", "", ""); refused != 1 {
			t.Errorf("got %v refused, want 1", refused)
		}
	})
}
