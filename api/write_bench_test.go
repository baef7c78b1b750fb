package api_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/repo"
	"github.com/roomfeed/roomfeed/sse"
)

// BenchmarkWriteHandler measures one element write through the handler,
// in process, on SQLite: a PUT of about 1 KiB of data, with and without an
// idempotency key. Its allocations per write count the passes over the
// write's JSON (the store's commit dominates its time).
func BenchmarkWriteHandler(b *testing.B) {
	for _, keyed := range []bool{false, true} {
		b.Run("keyed="+strconv.FormatBool(keyed), func(b *testing.B) {
			store, err := repo.Open(b.Context(), "sqlite://"+filepath.Join(b.TempDir(), "rf.db"), repo.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { store.Close() })
			hub := sse.NewHub(1024)
			log := feed.NewMemLog(hub, store)
			logger := slog.New(slog.NewTextHandler(io.Discard, nil))
			feeds := sse.New(hub, log, sse.Config{}, nil, logger)
			b.Cleanup(func() { feeds.Close(b.Context()) })
			h := api.New(api.Config{}, store, log, feeds, logger)
			body := `{"kind":"character","data":{"name":"Aria","notes":"` + strings.Repeat("lorem ipsum ", 85) + `","hp":3}}`
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				req := httptest.NewRequest(http.MethodPut, "/rooms/w1/elements/c"+strconv.Itoa(i%100), strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.RemoteAddr = "127.0.0.1:1234"
				if keyed {
					req.Header.Set("Idempotency-Key", "k"+strconv.Itoa(i))
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK && w.Code != http.StatusCreated {
					b.Fatalf("got %d %s", w.Code, w.Body)
				}
			}
		})
	}
}
