package sse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed"
)

// heldSource is a memSource whose EventsAfter first calls hold, when set,
// with the number of the call: a test holds reads until the streams it
// expects have joined them.
type heldSource struct {
	*memSource
	calls atomic.Int64
	hold  func(call int64)
}

func (s *heldSource) EventsAfter(ctx context.Context, room string, after int64, limit int) ([]roomfeed.Event, error) {
	call := s.calls.Add(1)
	if s.hold != nil {
		s.hold(call)
	}
	return s.memSource.EventsAfter(ctx, room, after, limit)
}

// newTestGate returns a gate over a heldSource, closed at the end of the
// test, and the recorder it tells.
func newTestGate(t *testing.T, page int) (*gate, *heldSource, *recorder) {
	t.Helper()
	src := &heldSource{memSource: newMemSource(NewHub(16))}
	obs := &recorder{}
	quit := make(chan struct{})
	cfg := Config{ReplayPage: page}
	cfg.defaults()
	g := newGate(src, obs, quit, cfg)
	t.Cleanup(func() {
		close(quit)
		g.stop()
		g.waitWorkers()
	})
	return g, src, obs
}

// holdShared holds the k-th read of src until the streams have joined
// reads of events k*(n-1) times: n streams in step, each page read by one
// and joined by the others. It runs on the gate's workers, so it reports a
// failure without ending the test there.
func holdShared(t *testing.T, src *heldSource, obs *recorder, n int) {
	src.hold = func(call int64) { untilJoined(t, obs, int(call)*(n-1)) }
}

// untilJoined waits until the streams have joined reads of events want
// times.
func untilJoined(t *testing.T, obs *recorder, want int) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		reads, _, _, _ := obs.catchUp()
		if reads["joined "+ReadEvents] >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("timed out waiting for %d joined reads (got %d)", want, reads["joined "+ReadEvents])
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// catchUpResult is what one stream read through the gate.
type catchUpResult struct {
	seqs []int64
	err  error
}

// catchUpAll runs a catch-up of room from each cursor to until at once,
// and returns what each read. The first one starts alone: its read is
// queued before the others ask.
func catchUpAll(t *testing.T, g *gate, src *heldSource, room string, cursors []int64, until int64) []catchUpResult {
	t.Helper()
	out := make([]catchUpResult, len(cursors))
	var wg sync.WaitGroup
	run := func(i int) {
		wg.Go(func() {
			out[i].err = g.pages(t.Context(), room, cursors[i], until, false, nil, func(p histPage) error {
				for _, ev := range p.events {
					out[i].seqs = append(out[i].seqs, ev.Seq)
				}
				return nil
			})
		})
	}
	run(0)
	eventually(t, "the first read", func() bool { return src.calls.Load() > 0 })
	for i := 1; i < len(cursors); i++ {
		run(i)
	}
	wg.Wait()
	return out
}

// seqRange returns the seqs in (after, until].
func seqRange(after, until int64) []int64 {
	var s []int64
	for seq := after + 1; seq <= until; seq++ {
		s = append(s, seq)
	}
	return s
}

// TestGateSharesReads: many streams of one room catching up together,
// from one cursor or from several within a page, cost one read per page
// behind, not one per stream; each gets every event after its own cursor
// once, in order.
func TestGateSharesReads(t *testing.T) {
	const page, head = 10, 50
	sameCursor := make([]int64, 300)
	withinPage := make([]int64, 300)
	for i := range withinPage {
		withinPage[i] = int64(i % page)
	}
	tests := []struct {
		name      string
		cursors   []int64
		wantReads int
	}{
		{"one stream", []int64{0}, 5},
		{"300 streams, one cursor", sameCursor, 5},
		{"300 streams, cursors within a page", withinPage, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, src, obs := newTestGate(t, page)
			src.record("r", head)
			holdShared(t, src, obs, len(tt.cursors))
			got := catchUpAll(t, g, src, "r", tt.cursors, head)
			for i, res := range got {
				if res.err != nil {
					t.Fatalf("stream %d: %v", i, res.err)
				}
				if want := seqRange(tt.cursors[i], head); fmt.Sprint(res.seqs) != fmt.Sprint(want) {
					t.Fatalf("stream %d from %d: got %v, want %v", i, tt.cursors[i], res.seqs, want)
				}
			}
			reads, _, _, _ := obs.catchUp()
			if n := int(src.reads.Load()); n != tt.wantReads || reads[ReadEvents] != n {
				t.Errorf("got %d reads of the source (%d told), want %d", n, reads[ReadEvents], tt.wantReads)
			}
			if joined, want := reads["joined "+ReadEvents], sharedReads(tt.cursors, page, head)-tt.wantReads; joined != want {
				t.Errorf("got %d joined reads, want %d", joined, want)
			}
		})
	}
}

// sharedReads is the number of pages the streams from cursors need, all
// told: each stream's first page ends at the first read's end (a multiple
// of page here), then one per page.
func sharedReads(cursors []int64, page, head int64) int {
	n := 0
	for _, c := range cursors {
		n += int((head - c + page - 1) / page)
	}
	return n
}

// TestGateSharesTrimmedOnlyAtItsCursor: a read that finds the history
// trimmed after its cursor answers so only the streams at that cursor; a
// stream further on that joined it reads its own events.
func TestGateSharesTrimmedOnlyAtItsCursor(t *testing.T) {
	g, src, obs := newTestGate(t, 10)
	src.record("r", 20)
	src.trim("r", 5) // the events up to 5 are gone
	src.hold = func(call int64) {
		if call == 1 {
			untilJoined(t, obs, 2)
		}
	}
	got := catchUpAll(t, g, src, "r", []int64{3, 7, 3}, 20)
	for _, i := range []int{0, 2} {
		if !errors.Is(got[i].err, roomfeed.ErrTrimmed) {
			t.Errorf("stream %d from 3: got %v, want ErrTrimmed", i, got[i].err)
		}
	}
	if got[1].err != nil || fmt.Sprint(got[1].seqs) != fmt.Sprint(seqRange(7, 20)) {
		t.Errorf("stream from 7: got %v, %v; want %v", got[1].seqs, got[1].err, seqRange(7, 20))
	}
}

// TestGateRereadsStaleShortPage: a stream that joined a read started
// before the events it needs were there, and found nothing new in its
// answer, reads again instead of stopping short.
func TestGateRereadsStaleShortPage(t *testing.T) {
	g, src, obs := newTestGate(t, 10)
	src.record("r", 3)
	stale := &staleSource{heldSource: src, read: make(chan struct{}), release: make(chan struct{})}
	g.src = stale
	collect := func(after, until int64) chan catchUpResult {
		c := make(chan catchUpResult, 1)
		go func() {
			var res catchUpResult
			res.err = g.pages(t.Context(), "r", after, until, false, nil, func(p histPage) error {
				for _, ev := range p.events {
					res.seqs = append(res.seqs, ev.Seq)
				}
				return nil
			})
			c <- res
		}()
		return c
	}
	first := collect(0, 10) // its read answers 1..3, and is held
	<-stale.read
	src.record("r", 2)
	second := collect(3, 5) // joins it
	eventually(t, "the second stream to join", func() bool {
		reads, _, _, _ := obs.catchUp()
		return reads["joined "+ReadEvents] == 1
	})
	close(stale.release)
	for _, c := range []chan catchUpResult{first, second} {
		res := <-c
		if res.err != nil || len(res.seqs) == 0 || res.seqs[len(res.seqs)-1] != 5 {
			t.Errorf("got %v, %v; want the events up to 5", res.seqs, res.err)
		}
	}
}

// staleSource answers its first EventsAfter as read at once, but only
// once released: later events are missing from that answer.
type staleSource struct {
	*heldSource
	once          sync.Once
	read, release chan struct{}
}

func (s *staleSource) EventsAfter(ctx context.Context, room string, after int64, limit int) ([]roomfeed.Event, error) {
	evs, err := s.heldSource.EventsAfter(ctx, room, after, limit)
	s.once.Do(func() {
		close(s.read)
		<-s.release
	})
	return evs, err
}

// TestGateCoalescesHeads: streams asking a room's head while a head read
// is queued share it; none gets a head read before it asked.
func TestGateCoalescesHeads(t *testing.T) {
	g, src, obs := newTestGate(t, 10)
	src.record("r", 7)
	// Keep the only worker busy, so that the head reads queue.
	g.workers = 1
	src.hold = func(int64) {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if reads, _, _, _ := obs.catchUp(); reads["joined "+ReadHead] == 99 || time.Now().After(deadline) {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = g.pages(t.Context(), "r", 0, 7, false, nil, func(histPage) error { return nil }) })
	eventually(t, "the replay's read", func() bool { return src.calls.Load() > 0 })
	heads := make([]int64, 100)
	for i := range heads {
		wg.Go(func() {
			h, err := g.head(t.Context(), "r")
			if err != nil {
				t.Error(err)
			}
			heads[i] = h
		})
	}
	wg.Wait()
	for i, h := range heads {
		if h != 7 {
			t.Fatalf("head %d: got %d, want 7", i, h)
		}
	}
	if reads, _, _, _ := obs.catchUp(); reads[ReadHead] != 1 || reads["joined "+ReadHead] != 99 {
		t.Errorf("got %d head reads and %d joined, want 1 and 99", reads[ReadHead], reads["joined "+ReadHead])
	}
}

// TestEngineCatchUpQueue: Open admits at most CatchUpQueue streams that
// are behind, refuses the next with ErrBusy, admits streams that start at
// the head regardless, and frees a place when a stream ends.
func TestEngineCatchUpQueue(t *testing.T) {
	te := newTestEngine(t, Config{CatchUpQueue: 2}, 64, false)
	te.src.record("r", 5)
	open := func(cursor int64) (*Stream, error) {
		return te.Open(t.Context(), Request{Rooms: []string{"r"}, Cursors: map[string]int64{"r": cursor}})
	}
	a, err := open(1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := open(2)
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := open(3); !errors.Is(err, ErrBusy) {
		a.Close()
		t.Fatalf("third stream behind: got %v, want ErrBusy", err)
	}
	live, err := open(5)
	if err != nil {
		a.Close()
		t.Fatalf("stream at the head: got %v, want admitted", err)
	}
	live.Close()
	a.Close()
	c, err := open(3)
	if err != nil {
		t.Fatalf("after a stream ended: got %v, want admitted", err)
	}
	c.Close()
	if _, _, admitted, refused := te.obs.catchUp(); admitted != 1 || refused != 1 {
		t.Errorf("observer: got %d admitted, %d refused; want 1, 1", admitted, refused)
	}
	if n := te.hub.Subscribers(); n != 1 {
		t.Errorf("got %d subscribers, want 1 (the refused stream holds nothing)", n)
	}
}

// TestEngineStormCatchesUpEveryStream: many streams resuming one room from
// one cursor, several pages behind, on both paths, each get every event
// once and in order, then live ones; the source is read once per page.
func TestEngineStormCatchesUpEveryStream(t *testing.T) {
	const streams, page, head = 150, 20, 100
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			te := newTestEngine(t, Config{ReplayPage: page}, 64, p.tls)
			src := &heldSource{memSource: te.src}
			te.env.src, te.env.gate.src = src, src
			te.src.record("r", head)
			holdShared(t, src, te.obs, streams)
			ids := make([]chan []string, streams)
			for i := range ids {
				ids[i] = readIDs(t, te.dial(t, "/r", "0"), head+1)
			}
			te.src.publish("r", "")
			want := make([]string, head+1)
			for i := range want {
				want[i] = strconv.Itoa(i + 1)
			}
			for i, c := range ids {
				if got := <-c; fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("stream %d: got ids %v, want %v", i, got, want)
				}
			}
			if n := te.src.reads.Load(); n != head/page {
				t.Errorf("got %d reads of the source, want %d", n, head/page)
			}
			if _, _, admitted, _ := te.obs.catchUp(); admitted != 0 {
				t.Errorf("got %d streams admitted after their replay, want 0", admitted)
			}
		})
	}
}

// TestEnginePingsWhileWaiting: a stream whose replay waits for a read gets
// pings meanwhile, so that neither the client nor a proxy gives up.
func TestEnginePingsWhileWaiting(t *testing.T) {
	te := newTestEngine(t, Config{Heartbeat: 20 * time.Millisecond}, 64, false)
	pinged := make(chan struct{})
	src := &heldSource{memSource: te.src, hold: func(int64) { <-pinged }}
	te.env.src, te.env.gate.src = src, src
	te.src.record("r", 2)
	s := te.open(t, "/r", "0")
	s.expect(t, "retry: 2000", "", ": roomfeed r from 0", "", ": ping", "")
	close(pinged)
	if got := s.until(t, "id: "); got != "id: 1" {
		t.Fatalf("got %q, want id: 1", got)
	}
}

// dial GETs the stream of target from cursor and returns its body, closed
// at the end of the test.
func (te *testEngine) dial(t *testing.T, target, cursor string) io.ReadCloser {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, te.ts.URL+target, nil)
	req.Header.Set("Last-Event-ID", cursor)
	resp, err := te.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got status %d, want 200", target, resp.StatusCode)
	}
	return resp.Body
}

// readIDs reads the ids of the first n events of body, and sends them on
// the channel returned (fewer if the stream ends first).
func readIDs(t *testing.T, body io.Reader, n int) chan []string {
	c := make(chan []string, 1)
	go func() {
		d := NewDecoder(body)
		var ids []string
		for len(ids) < n {
			ev, err := d.Next()
			if err != nil {
				break
			}
			if ev.HasID {
				ids = append(ids, ev.ID)
			}
		}
		c <- ids
	}()
	return c
}

// TestHistPageFrames: the shared frames of any part of a read's answer are
// the frames of its events, one after the other.
func TestHistPageFrames(t *testing.T) {
	src := newMemSource(NewHub(16))
	src.record("r", 5)
	evs, _ := src.EventsAfter(t.Context(), "r", 0, 5)
	r := &read{events: evs}
	for lo := range len(evs) {
		for hi := lo + 1; hi <= len(evs); hi++ {
			var want []byte
			for _, ev := range evs[lo:hi] {
				want = AppendEvent(want, ev.ID(), ev.Type, ev.Data)
			}
			if got := (histPage{events: evs[lo:hi], r: r, lo: lo, hi: hi}).frames(); string(got) != string(want) {
				t.Errorf("frames of [%d:%d]: got %q, want %q", lo, hi, got, want)
			}
		}
	}
}

// failingSource fails its first fails reads of events.
type failingSource struct {
	*heldSource
	fails atomic.Int64
}

var errSourceDown = errors.New("source down")

func (s *failingSource) EventsAfter(ctx context.Context, room string, after int64, limit int) ([]roomfeed.Event, error) {
	if s.fails.Add(-1) >= 0 {
		if call := s.calls.Add(1); s.hold != nil {
			s.hold(call)
		}
		return nil, errSourceDown
	}
	return s.heldSource.EventsAfter(ctx, room, after, limit)
}

// TestGateRetriesFailedRead: a read that fails is read again once for all
// the streams that shared it, which then catch up; a second failure is
// theirs to report.
func TestGateRetriesFailedRead(t *testing.T) {
	tests := []struct {
		name    string
		fails   int64
		wantErr error
	}{
		{"fails once", 1, nil},
		{"fails twice", 2, errSourceDown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, src, obs := newTestGate(t, 10)
			src.record("r", 20)
			fs := &failingSource{heldSource: src}
			fs.fails.Store(tt.fails)
			g.src = fs
			holdShared(t, src, obs, 50) // every read, failed or not, shared by all
			got := catchUpAll(t, g, src, "r", make([]int64, 50), 20)
			for i, res := range got {
				if tt.wantErr != nil {
					if !errors.Is(res.err, tt.wantErr) {
						t.Fatalf("stream %d: got %v, want %v", i, res.err, tt.wantErr)
					}
					continue
				}
				if res.err != nil || fmt.Sprint(res.seqs) != fmt.Sprint(seqRange(0, 20)) {
					t.Fatalf("stream %d: got %v, %v; want %v", i, res.seqs, res.err, seqRange(0, 20))
				}
			}
		})
	}
}

// headFailingSource fails its first fails head reads.
type headFailingSource struct {
	*heldSource
	fails atomic.Int64
}

func (s *headFailingSource) Head(ctx context.Context, room string) (int64, error) {
	if s.fails.Add(-1) >= 0 {
		return 0, errSourceDown
	}
	return s.heldSource.Head(ctx, room)
}

// TestGateRetriesFailedHead: a head read that fails is read again once.
func TestGateRetriesFailedHead(t *testing.T) {
	tests := []struct {
		name     string
		fails    int64
		wantHead int64
		wantErr  error
	}{
		{"fails once", 1, 4, nil},
		{"fails twice", 2, 0, errSourceDown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, src, _ := newTestGate(t, 10)
			src.record("r", 4)
			fs := &headFailingSource{heldSource: src}
			fs.fails.Store(tt.fails)
			g.src = fs
			if head, err := g.head(t.Context(), "r"); head != tt.wantHead || !errors.Is(err, tt.wantErr) {
				t.Errorf("got %d, %v; want %d, %v", head, err, tt.wantHead, tt.wantErr)
			}
		})
	}
}
