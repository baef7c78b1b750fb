package api_test

import (
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/repo"
	"github.com/roomfeed/roomfeed/sse"
)

// TestStorageFull fills a SQLite database capped by max_page_count (SQLite
// answers SQLITE_FULL as on a full disk): writes then answer 507
// storage_full with Retry-After, for every kind of write, and what was
// written before is still read back.
func TestStorageFull(t *testing.T) {
	full := backend{name: "sqlite-capped", open: func(t *testing.T, hub *sse.Hub, _ int64) (*repo.Store, eventLog) {
		store := openStore(t, "sqlite://"+filepath.Join(t.TempDir(), "rf.db")+"?_pragma=max_page_count(160)")
		return store, feed.NewMemLog(hub, store)
	}}
	ts := newServer(t, full, serverOpts{})
	el := func(id string) string { return ts.URL + "/rooms/w1/elements/" + id }
	body := `{"kind":"item","data":{"s":"` + strings.Repeat("x", 20000) + `"}}`
	var r response
	written := 0
	for ; written < 1000; written++ {
		if r = do(t, http.MethodPut, el("e"+strconv.Itoa(written)), body); r.Status != http.StatusCreated {
			break
		}
	}
	if written == 0 || written == 1000 {
		t.Fatalf("got %d writes before the database filled, want some and then a failure", written)
	}
	for _, r := range []response{
		r,
		do(t, http.MethodPut, el("more"), body),
		do(t, http.MethodPost, ts.URL+"/rooms/w1/elements", body),
		do(t, http.MethodPatch, el("e0"), `{"t":"`+strings.Repeat("y", 20000)+`"}`, "Content-Type", "application/merge-patch+json"),
	} {
		mustStatus(t, r, http.StatusInsufficientStorage)
		if code := r.errorCode(t); code != "storage_full" {
			t.Errorf("got code %q, want storage_full", code)
		}
		if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 {
			t.Errorf("got Retry-After %q, want a number of seconds", r.Header.Get("Retry-After"))
		}
	}
	for i := range written {
		mustStatus(t, do(t, http.MethodGet, el("e"+strconv.Itoa(i)), ""), http.StatusOK)
	}
	r = do(t, http.MethodGet, ts.URL+"/rooms/w1/elements", "")
	mustStatus(t, r, http.StatusOK)
	if got := r.json(t)["cursor"]; got != strconv.Itoa(written) {
		t.Errorf("snapshot cursor after the failed writes: got %v, want %d", got, written)
	}
}
