package faults

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/testenv"
)

// keyedOp is one write a retrying client makes under one Idempotency-Key:
// every attempt sends the same request.
type keyedOp struct {
	Key, Method, Path, Type, Body string
	Header                        map[string]string // If-Match etc., the same on every attempt
}

// keyedAnswer is one answer to an attempt.
type keyedAnswer struct {
	Status   int
	Header   http.Header
	Body     string
	Err      error
	Node     string
	Replayed bool
}

// final reports whether a retrying client stops at this answer: it has an
// answer that is neither a failure of the service (5xx), nor "later" (429,
// 409 idempotency_in_progress).
func (a keyedAnswer) final() bool {
	if a.Err != nil || a.Status/100 == 5 || a.Status == http.StatusTooManyRequests {
		return false
	}
	return !a.inProgress()
}

func (a keyedAnswer) inProgress() bool {
	return a.Status == http.StatusConflict && strings.Contains(a.Body, `"idempotency_in_progress"`)
}

// seq is the answer's Event-ID, 0 without one.
func (a keyedAnswer) seq() int64 {
	n, _ := strconv.ParseInt(a.Header.Get("Event-ID"), 10, 64)
	return n
}

// target is where an attempt goes: a node, or a proxy in front of one.
type target struct{ name, url string }

func (n *node) target() target { return target{n.name, n.URL()} }

// sendKeyed sends one attempt of op to n.
func sendKeyed(ctx context.Context, hc *http.Client, n target, room string, op keyedOp) keyedAnswer {
	req, err := http.NewRequestWithContext(ctx, op.Method, n.url+"/rooms/"+room+op.Path, strings.NewReader(op.Body))
	if err != nil {
		return keyedAnswer{Err: err, Node: n.name}
	}
	if op.Body != "" {
		req.Header.Set("Content-Type", op.Type)
	}
	// Set under a name Go's transport does not recognize (header names are
	// case-insensitive on the wire), or it would replay the request on a
	// fresh connection by itself when a reused one breaks: each attempt
	// here is one request, so a replay on the first one means the key was
	// applied before.
	req.Header["idempotency-key"] = []string{op.Key}
	for k, v := range op.Header {
		req.Header.Set(k, v)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return keyedAnswer{Err: err, Node: n.name}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return keyedAnswer{Status: resp.StatusCode, Header: resp.Header, Body: string(b), Err: err, Node: n.name,
		Replayed: resp.Header.Get("Idempotent-Replayed") == "true"}
}

// retryAfter is how long an answer asks to wait, capped at max.
func retryAfter(a keyedAnswer, def, max time.Duration) time.Duration {
	if a.Header == nil {
		return def
	}
	s, err := strconv.Atoi(a.Header.Get("Retry-After"))
	if err != nil || s < 0 {
		return def
	}
	return min(time.Duration(s)*time.Second, max)
}

// keyedResult is what a retrying client got for one key in the end.
type keyedResult struct {
	Op         keyedOp
	Final      keyedAnswer // zero when the key never got a final answer
	Done       bool
	Attempts   int
	Unanswered int // attempts without an answer: they may have been applied
	Failed     int // attempts answered 5xx: they may have been applied too
	InFlight   int // 409 idempotency_in_progress answers
}

// retryKeyed sends op until it gets a final answer or ctx ends: attempt a
// goes to pick(a) (another node on every retry when there are several).
// 429 and 409 idempotency_in_progress are retried after their Retry-After
// (which they must send); an attempt without an answer or with a 5xx at
// once, on the next node.
func retryKeyed(ctx context.Context, tb testing.TB, hc *http.Client, room string, op keyedOp, pick func(attempt int) target) keyedResult {
	res := keyedResult{Op: op}
	for a := 0; ctx.Err() == nil; a++ {
		ans := sendKeyed(ctx, hc, pick(a), room, op)
		res.Attempts++
		if ans.final() {
			res.Final, res.Done = ans, true
			return res
		}
		pause := 50 * time.Millisecond
		switch {
		case ans.Err != nil:
			res.Unanswered++
		case ans.Status/100 == 5:
			res.Failed++
		default: // 429, 409 idempotency_in_progress
			if ans.inProgress() {
				res.InFlight++
			}
			if ans.Header.Get("Retry-After") == "" {
				tb.Errorf("key %s on %s: %d without Retry-After: %s", op.Key, ans.Node, ans.Status, ans.Body)
			}
			pause = retryAfter(ans, pause, time.Second)
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
	return res
}

// keyedWriter is a client that writes op after op into a room, each
// under its own key, and retries every one until it has its final answer.
type keyedWriter struct {
	name string
	room string
	via  []target // the nodes, through proxies that can lose answers
	mu   sync.Mutex
	res  []keyedResult
}

// op returns the writer's i-th write: a PUT of one of a few elements, a
// POST of a new element, or a message.
func (w *keyedWriter) op(i int) keyedOp {
	key := w.name + "-" + strconv.Itoa(i)
	data := `{"w":"` + w.name + `","i":` + strconv.Itoa(i) + `}`
	switch i % 3 {
	case 0:
		return keyedOp{Key: key, Method: http.MethodPut, Path: "/elements/" + w.name + "-e" + strconv.Itoa(i%4),
			Type: "application/json", Body: `{"kind":"item","data":` + data + `}`}
	case 1:
		return keyedOp{Key: key, Method: http.MethodPost, Path: "/elements", Type: "application/json",
			Body: `{"kind":"note","data":` + data + `}`}
	}
	return keyedOp{Key: key, Method: http.MethodPost, Path: "/messages", Type: "application/json",
		Body: `{"event":"chat","data":` + data + `}`}
}

// run writes until stop is closed, then finishes the key in hand (within
// ctx) and returns. Write i starts on node i+offset; every retry goes to
// the next node.
func (w *keyedWriter) run(ctx context.Context, tb testing.TB, hc *http.Client, stop <-chan struct{}, offset int) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		r := retryKeyed(ctx, tb, hc, w.room, w.op(i), func(a int) target { return w.via[(i+offset+a)%len(w.via)] })
		w.mu.Lock()
		w.res = append(w.res, r)
		w.mu.Unlock()
		if !r.Done {
			return
		}
	}
}

func (w *keyedWriter) results() []keyedResult {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.res)
}

// keyedTally counts the writers' results: keys, attempts, keys retried,
// and keys answered as a replay after an attempt without an answer or
// after a 5xx.
type keyedTally struct {
	Keys, Attempts, Retried, Failed, ReplayedUnanswered, ReplayedFailed int
}

func tally(writers []*keyedWriter) keyedTally {
	var t keyedTally
	for _, w := range writers {
		for _, r := range w.results() {
			t.Keys++
			t.Attempts += r.Attempts
			t.Failed += r.Failed
			if r.Attempts > 1 {
				t.Retried++
			}
			switch {
			case !r.Final.Replayed:
			case r.Unanswered > 0:
				t.ReplayedUnanswered++
			case r.Failed > 0:
				t.ReplayedFailed++
			}
		}
	}
	return t
}

// waitKeys waits until the writers have n final answers in all.
func waitKeys(tb testing.TB, writers []*keyedWriter, n int, timeout time.Duration) {
	tb.Helper()
	eventually(tb, timeout, fmt.Sprintf("%d keyed writes answered", n), func() error {
		if got := tally(writers).Keys; got < n {
			return fmt.Errorf("%d answered", got)
		}
		return nil
	})
}

// checkKeysOnce checks the writers' keys against the room's history in
// SQL (dbURL) and its feed: every key got a final 2xx answer, a replay
// only after an attempt that may have been applied; every key is the
// op_id of exactly one event, the one its answer names; no event has
// another op_id; and every subscriber received the history exactly once,
// in order (checkFeed).
func checkKeysOnce(tb testing.TB, dbURL, room string, writers []*keyedWriter, subs []*subscriber) checkReport {
	tb.Helper()
	l := newLedger()
	keys := map[string]bool{}
	for _, w := range writers {
		for _, r := range w.results() {
			keys[r.Op.Key] = true
			switch {
			case !r.Done:
				tb.Errorf("key %s: no final answer after %d attempts", r.Op.Key, r.Attempts)
			case r.Final.Status/100 != 2 || r.Final.seq() < 1:
				tb.Errorf("key %s: final answer %d %s (Event-ID %q) on %s, want 2xx with an Event-ID",
					r.Op.Key, r.Final.Status, r.Final.Body, r.Final.Header.Get("Event-ID"), r.Final.Node)
			case r.Final.Replayed && r.Attempts == 1:
				tb.Errorf("key %s: the first attempt was answered as a replay", r.Op.Key)
			}
			l.record(room, r.Op.Key, writeResult{Status: r.Final.Status, Seq: r.Final.seq(), Err: r.Final.Err})
		}
	}
	rep := checkFeed(tb, dbURL, room, l, subs, 60*time.Second)
	applied := map[string][]int64{}
	for _, e := range sqlHistory(tb, dbURL, room) {
		op := opID(e.Payload)
		applied[op] = append(applied[op], e.Seq)
	}
	for op, seqs := range applied {
		switch {
		case !keys[op]:
			tb.Errorf("event %v has op_id %q, which no writer sent", seqs, op)
		case len(seqs) != 1:
			tb.Errorf("key %s applied %d times: events %v", op, len(seqs), seqs)
		}
	}
	for k := range keys {
		if len(applied[k]) == 0 {
			tb.Errorf("key %s was never applied", k)
		}
	}
	return rep
}

// TestIdempotentRetriesUnderFaults: writers on two nodes over PostgreSQL
// (through a proxy the test cuts) and Redis retry every write that got no
// answer, a 5xx or a 429 with the same Idempotency-Key on the other node,
// while nodes are SIGKILLed under load, their answers are lost on the way
// (the request committed, the connection reset before the answer: the
// window a kill between commit and answer hits only now and then), and
// PostgreSQL is cut off (some commits then answer 503). Every key must be
// applied exactly once, in the events table and in every subscriber's
// stream, and retries after a lost answer must have been answered as a
// replay: the test proves the committed-but-unanswered case happened.
func TestIdempotentRetriesUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	b := newBackend(t)
	pgURL, pgProxy := proxiedPostgres(t, b.pgURL)
	args := []string{"--database-url", pgURL, "--redis-url", b.redisURL, "--redis-prefix", b.prefix,
		"--relay-interval", "200ms", "--db-timeout", "2s"}
	nodes := []*node{startNode(t, "A", args...), startNode(t, "B", args...)}
	runKeyedFaults(t, b.pgURL, nodes, pgProxy)
}

// TestIdempotentRetriesEmbedded is TestIdempotentRetriesUnderFaults on the
// embedded default: one node on SQLite with the in-process log, SIGKILLed
// under load and restarted; the writers retry on it once it is back.
func TestIdempotentRetriesEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	dbURL := "sqlite://" + filepath.Join(t.TempDir(), "roomfeed.db")
	runKeyedFaults(t, dbURL, []*node{startNode(t, "A", "--database-url", dbURL)}, nil)
}

// keyedFaults runs keyed writers through nodes and injects the faults.
type keyedFaults struct {
	t       *testing.T
	nodes   []*node
	fronts  []*proxy // one per node: the writers' way in
	writers []*keyedWriter
	rng     *rand.Rand
	kills   int
}

// runKeyedFaults runs keyed writers through nodes while it kills nodes at
// random moments, loses answers for a while and, with pgProxy, cuts
// PostgreSQL off twice (once together with a kill), then checks every key
// was applied once.
func runKeyedFaults(t *testing.T, dbURL string, nodes []*node, pgProxy *proxy) {
	room := testenv.UniqueName("idem")
	var subs []*subscriber
	for _, n := range nodes {
		subs = append(subs, startSubscriber(t, "sub@"+n.name, room, func(int) *node { return n }))
	}
	if len(nodes) > 1 {
		subs = append(subs, startSubscriber(t, "sub@any", room, func(i int) *node { return nodes[i%len(nodes)] }))
	}
	f := &keyedFaults{t: t, nodes: nodes, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 15))}
	var via []target
	for _, n := range nodes {
		p := testenv.StartProxy(t, strings.TrimPrefix(n.URL(), "http://"))
		f.fronts = append(f.fronts, p)
		via = append(via, target{n.name + " via proxy", "http://" + p.Addr()})
	}
	hc := newClient(t, 10*time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 8 {
		w := &keyedWriter{name: "w" + strconv.Itoa(i), room: room, via: via}
		f.writers = append(f.writers, w)
		wg.Go(func() { w.run(ctx, t, hc, stop, i) })
	}
	var stopped atomic.Bool
	finish := func() {
		if stopped.CompareAndSwap(false, true) {
			close(stop)
			wg.Wait()
		}
	}
	t.Cleanup(finish)
	waitKeys(t, f.writers, 100, 30*time.Second)

	for range 6 {
		f.killRestart()
	}
	f.loseAnswers()
	if pgProxy != nil {
		f.cutDatabase(pgProxy)
	}
	finish()

	rep := checkKeysOnce(t, dbURL, room, f.writers, subs)
	tl := tally(f.writers)
	t.Logf("%d kills; %d keys in %d attempts (%d answered 5xx), %d retried; answered as a replay: %d after an attempt without an answer, %d after a 5xx; committed %d, events checked %d (%d subscribers)",
		f.kills, tl.Keys, tl.Attempts, tl.Failed, tl.Retried, tl.ReplayedUnanswered, tl.ReplayedFailed, rep.Committed, rep.Checked, len(subs))
	if tl.ReplayedUnanswered == 0 {
		t.Errorf("no retry after a lost answer was answered as a replay: no write was committed but unanswered, the test proved nothing")
	}
	if pgProxy != nil && tl.Failed == 0 {
		t.Errorf("no attempt was answered 5xx: the writers did not meet PostgreSQL cut off")
	}
}

// killRestart SIGKILLs a node under load, restarts it, and waits for 20
// more answered keys.
func (f *keyedFaults) killRestart() {
	before := tally(f.writers).Keys
	n := f.nodes[f.rng.IntN(len(f.nodes))]
	time.Sleep(time.Duration(150+f.rng.IntN(500)) * time.Millisecond)
	n.kill()
	f.kills++
	time.Sleep(time.Duration(f.rng.IntN(300)) * time.Millisecond)
	n.start()
	waitKeys(f.t, f.writers, before+20, 30*time.Second)
}

// loseAnswers loses every answer for a while: the writes in flight are
// committed and their writers see a reset connection, then retry.
func (f *keyedFaults) loseAnswers() {
	before := tally(f.writers).Keys
	for _, p := range f.fronts {
		p.SetDropAnswers(true)
	}
	time.Sleep(time.Duration(200+f.rng.IntN(300)) * time.Millisecond)
	for _, p := range f.fronts {
		p.SetDropAnswers(false)
	}
	waitKeys(f.t, f.writers, before+20, 30*time.Second)
}

// cutDatabase cuts PostgreSQL off twice under load, killing a node while
// it is away the second time.
func (f *keyedFaults) cutDatabase(pgProxy *proxy) {
	for round := range 2 {
		before := tally(f.writers).Keys
		time.Sleep(time.Duration(100+f.rng.IntN(400)) * time.Millisecond)
		pgProxy.SetCut(true)
		var dead *node
		if round == 1 { // a node dies while the database is away
			time.Sleep(time.Duration(f.rng.IntN(500)) * time.Millisecond)
			dead = f.nodes[f.rng.IntN(len(f.nodes))]
			dead.kill()
			f.kills++
		}
		time.Sleep(1500 * time.Millisecond)
		pgProxy.SetCut(false)
		if dead != nil {
			dead.start()
		}
		waitKeys(f.t, f.writers, before+40, 30*time.Second)
	}
}

// TestIdempotentConcurrentRetries sends 50 copies of one keyed write at
// once, spread over two nodes (PostgreSQL + Redis), for each kind of write
// (a stale PATCH merged, too), and once more while a node is SIGKILLed with
// copies in flight to it: each key is applied once, and every copy gets the one
// recorded answer (a 409 idempotency_in_progress is retried after its
// Retry-After).
func TestIdempotentConcurrentRetries(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	b := newBackend(t)
	nodes := []*node{startNode(t, "A", b.args()...), startNode(t, "B", b.args()...)}
	runConcurrentKeys(t, b.pgURL, nodes)
}

// TestIdempotentConcurrentRetriesEmbedded is TestIdempotentConcurrentRetries
// on one SQLite node with the in-process log.
func TestIdempotentConcurrentRetriesEmbedded(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	dbURL := "sqlite://" + filepath.Join(t.TempDir(), "roomfeed.db")
	runConcurrentKeys(t, dbURL, []*node{startNode(t, "A", "--database-url", dbURL)})
}

// replayedHeaders are the headers of an answer a replay repeats.
var replayedHeaders = []string{"Content-Type", "ETag", "Event-ID", "Location", "Merged-From"}

func runConcurrentKeys(t *testing.T, dbURL string, nodes []*node) {
	room := testenv.UniqueName("idem50")
	subs := []*subscriber{startSubscriber(t, "sub", room, func(i int) *node { return nodes[i%len(nodes)] })}
	hc := newClient(t, 20*time.Second)
	ctx, cancel := context.WithTimeout(t.Context(), 120*time.Second)
	defer cancel()
	setup := func(op keyedOp) {
		r := retryKeyed(ctx, t, hc, room, op, func(int) target { return nodes[0].target() })
		if !r.Done || r.Final.Status/100 != 2 {
			t.Fatalf("setup %s %s: got %d %s", op.Method, op.Path, r.Final.Status, r.Final.Body)
		}
	}
	// c1 at version 2, its name changed since version 1: a PATCH of hp from
	// version 1 is merged.
	setup(keyedOp{Key: "setup-1", Method: "PUT", Path: "/elements/c1", Type: "application/json", Body: `{"kind":"character","data":{"name":"Aria","hp":3}}`})
	setup(keyedOp{Key: "setup-2", Method: "PATCH", Path: "/elements/c1", Type: "application/merge-patch+json", Body: `{"name":"Aria B"}`})
	rounds := []struct {
		op     keyedOp
		status int
		kill   bool
	}{
		{keyedOp{Key: "msg", Method: "POST", Path: "/messages", Type: "application/json", Body: `{"event":"chat","data":{"text":"once"}}`}, 201, false},
		{keyedOp{Key: "post", Method: "POST", Path: "/elements", Type: "application/json", Body: `{"kind":"note","data":{"text":"once"}}`}, 201, false},
		{keyedOp{Key: "put", Method: "PUT", Path: "/elements/p1", Type: "application/json", Body: `{"kind":"note","data":{"n":1}}`}, 201, false},
		{keyedOp{Key: "merge", Method: "PATCH", Path: "/elements/c1", Type: "application/merge-patch+json", Body: `{"hp":4}`,
			Header: map[string]string{"If-Match": `"1"`}}, 200, false},
		{keyedOp{Key: "delete", Method: "DELETE", Path: "/elements/p1"}, 200, false},
		{keyedOp{Key: "killed", Method: "POST", Path: "/elements", Type: "application/json", Body: `{"kind":"note","data":{"text":"killed"}}`}, 201, true},
	}
	l := newLedger()
	inFlight := 0
	for _, rd := range rounds {
		answers := concurrentKeyed(ctx, t, hc, room, rd.op, nodes, rd.kill)
		inFlight += checkOneAnswer(t, rd.op.Key, answers, rd.status, rd.kill)
		if rd.kill {
			attempts, unanswered := 0, 0
			for _, r := range answers {
				attempts += r.Attempts
				unanswered += r.Unanswered
			}
			t.Logf("key %s: the kill cost %d retries (%d attempts without an answer)", rd.op.Key, attempts-len(answers), unanswered)
			if attempts == len(answers) {
				t.Errorf("key %s: no copy was retried: the kill interrupted nothing", rd.op.Key)
			}
		}
		l.record(room, rd.op.Key, writeResult{Status: answers[0].Final.Status, Seq: answers[0].Final.seq()})
	}
	rep := checkFeed(t, dbURL, room, l, subs, 60*time.Second)
	counts := map[string]int{}
	for _, e := range sqlHistory(t, dbURL, room) {
		counts[opID(e.Payload)]++
	}
	for _, rd := range rounds {
		if counts[rd.op.Key] != 1 {
			t.Errorf("key %s: applied %d times, want once", rd.op.Key, counts[rd.op.Key])
		}
	}
	if got, want := rep.Committed, len(rounds)+2; got != want {
		t.Errorf("%d events committed, want %d (the setup and one per key)", got, want)
	}
	t.Logf("%d keys, 50 copies each: %d events, %d answers 409 idempotency_in_progress on the way", len(rounds), rep.Committed, inFlight)
}

// concurrentKeyed sends 50 copies of op at once, copy i to node i, and
// retries each until it has its final answer. With kill, the last node is
// frozen (SIGSTOP) before the copies go, SIGKILLed once every copy whose
// first attempt goes to it has been sent, and restarted: those copies are
// certainly in flight when it dies (killed after the first answer instead,
// a fast machine had sometimes answered every copy already).
func concurrentKeyed(ctx context.Context, t *testing.T, hc *http.Client, room string, op keyedOp, nodes []*node, kill bool) []keyedResult {
	t.Helper()
	const copies = 50
	var victim *node
	aimed := 0 // copies whose first attempt goes to victim
	if kill {
		victim = nodes[len(nodes)-1]
		for i := range copies {
			if nodes[i%len(nodes)] == victim {
				aimed++
			}
		}
		victim.freeze()
	}
	var sent atomic.Int64
	allSent := make(chan struct{})
	out := make([]keyedResult, copies)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range copies {
		wg.Go(func() {
			<-start
			out[i] = retryKeyed(ctx, t, hc, room, op, func(a int) target {
				n := nodes[(i+a)%len(nodes)]
				if a == 0 && n == victim && sent.Add(1) == int64(aimed) {
					close(allSent)
				}
				return n.target()
			})
		})
	}
	close(start)
	if kill {
		select {
		case <-allSent:
		case <-ctx.Done():
		}
		victim.kill()
		victim.start()
	}
	wg.Wait()
	return out
}

// checkOneAnswer checks the 50 results of one key: every copy got a final
// answer, the same one (status, body, the replayed headers), all but at
// most one marked Idempotent-Replayed (with a node killed, the first may
// be lost). It returns how many 409 idempotency_in_progress were seen.
func checkOneAnswer(t *testing.T, key string, rs []keyedResult, status int, killed bool) int {
	t.Helper()
	first, inFlight := -1, 0
	for i, r := range rs {
		inFlight += r.InFlight
		if !r.Done {
			t.Errorf("key %s copy %d: no final answer in %d attempts", key, i, r.Attempts)
			continue
		}
		if !r.Final.Replayed {
			if first >= 0 {
				t.Errorf("key %s: copies %d and %d both got an answer not marked Idempotent-Replayed", key, first, i)
			}
			first = i
		}
	}
	if first < 0 && !killed {
		t.Errorf("key %s: every copy got a replay; none the first answer", key)
	}
	want := rs[0].Final
	if want.Status != status {
		t.Errorf("key %s: got %d %s, want %d", key, want.Status, want.Body, status)
	}
	for i, r := range rs[1:] {
		got := r.Final
		if got.Status != want.Status || got.Body != want.Body {
			t.Errorf("key %s copy %d: got %d %s, want %d %s (copy 0's)", key, i+1, got.Status, got.Body, want.Status, want.Body)
			continue
		}
		for _, h := range replayedHeaders {
			if g, w := got.Header.Get(h), want.Header.Get(h); g != w {
				t.Errorf("key %s copy %d: %s %q, want %q (copy 0's)", key, i+1, h, g, w)
			}
		}
	}
	return inFlight
}
