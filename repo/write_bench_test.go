package repo

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/roomfeed/roomfeed/internal/testenv"
)

// BenchmarkWrite measures Put throughput through the store alone (no HTTP,
// no publishing): 1 and 16 writers, into one room or spread over 1,000
// rooms, on SQLite and PostgreSQL. Each writer replaces 16 elements of its
// own in turn, like roomfeed-bench scenario 6. The keyed runs give every
// write a new idempotency key, as a client sending an Op-ID with each
// write does. Besides ns/op it reports writes/s, and on PostgreSQL the
// server's cost per write (see pgWriteStats).
//
//	go test -run '^$' -bench Write -benchtime 2000x ./repo/
func BenchmarkWrite(b *testing.B) {
	backends := []struct {
		name string
		url  func(b *testing.B) string
	}{
		{"sqlite", func(b *testing.B) string { return "sqlite://" + filepath.Join(b.TempDir(), "rf.db") }},
		{"postgres", func(b *testing.B) string { return testenv.PostgresURL(b) }},
	}
	for _, be := range backends {
		for _, run := range []struct {
			writers, rooms int
			keyed          bool
		}{{1, 1, false}, {1, 1000, false}, {16, 1, false}, {16, 1000, false}, {16, 1, true}, {16, 1000, true}} {
			name := fmt.Sprintf("%s/writers=%d/rooms=%d", be.name, run.writers, run.rooms)
			if run.keyed {
				name += "/keyed"
			}
			b.Run(name, func(b *testing.B) {
				url, app := be.url(b), ""
				if isPostgres(url) {
					app = testenv.UniqueName("rf_bench_")
					url += "&application_name=" + app
				}
				s, err := Open(b.Context(), url, Options{})
				if err != nil {
					b.Fatalf("Open: %v", err)
				}
				var closeOnce sync.Once
				closeStore := func() { closeOnce.Do(func() { s.Close() }) }
				b.Cleanup(closeStore)
				var st *pgWriteStats
				if app != "" {
					st = startPgWriteStats(b, strings.TrimSuffix(url, "&application_name="+app), app)
				}
				benchmarkWrites(b, s, run.writers, run.rooms, run.keyed)
				if st != nil {
					st.report(b, b.N, closeStore)
				}
			})
		}
	}
}

func benchmarkWrites(b *testing.B, s *Store, writers, rooms int, keyed bool) {
	b.Helper()
	data := json.RawMessage(`{"name":"Aria","hp":12,"pos":{"x":1.5,"y":-3}}`)
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	b.ReportAllocs()
	b.ResetTimer()
	for w := range writers {
		wg.Go(func() {
			ctx := b.Context()
			for i := 0; ; i++ {
				n := next.Add(1)
				if n > int64(b.N) {
					return
				}
				room := "w1"
				if rooms > 1 {
					room = "w" + strconv.FormatInt(n%int64(rooms), 10)
				}
				id := "e" + strconv.Itoa(w) + "-" + strconv.Itoa(i%16)
				var meta Meta
				if keyed {
					meta.Idem = &Idempotency{Key: "k" + strconv.FormatInt(n, 10), Fingerprint: "fp", Answer: benchAnswer}
				}
				if _, err := s.Put(ctx, room, id, "thing", data, Precondition{}, meta); err != nil {
					errMu.Lock()
					first = err
					errMu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if first != nil {
		b.Fatalf("Put: %v", first)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "writes/s")
}

// benchAnswer records the element's version and event, as the API does.
func benchAnswer(out Outcome) (Answer, error) {
	return Answer{Status: 200, Body: out.Event.Data, Header: map[string]string{
		"ETag": strconv.FormatInt(out.Element.Version, 10), "Event-ID": out.Event.ID(),
	}}, nil
}
