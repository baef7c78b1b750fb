package api_test

import (
	"database/sql"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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

// TestSQLiteWriteLockHeld: while another process holds the SQLite write
// lock (as a hung disk holds a batch), a write answers 503
// database_unavailable with Retry-After once the store's query timeout has
// passed, not after SQLite's 10s busy timeout or never; once the lock is
// released writes succeed again.
func TestSQLiteWriteLockHeld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rf.db")
	locked := backend{name: "sqlite-bounded", open: func(t *testing.T, hub *sse.Hub, _ int64) (*repo.Store, eventLog) {
		store, err := repo.Open(t.Context(), "sqlite://"+path, repo.Options{QueryTimeout: 500 * time.Millisecond})
		if err != nil {
			t.Fatalf("open store: %v", err)
		}
		t.Cleanup(func() { store.Close() })
		return store, feed.NewMemLog(hub, store)
	}}
	ts := newServer(t, locked, serverOpts{})
	el := ts.URL + "/rooms/w1/elements/a"
	mustStatus(t, do(t, http.MethodPut, el, `{"kind":"item","data":{}}`), http.StatusCreated)

	db, err := sql.Open("sqlite", path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), `BEGIN IMMEDIATE`); err != nil {
		t.Fatalf("take the write lock: %v", err)
	}
	start := time.Now()
	r := do(t, http.MethodPut, el, `{"kind":"item","data":{"v":2}}`)
	mustStatus(t, r, http.StatusServiceUnavailable)
	if code := r.errorCode(t); code != "database_unavailable" || r.Header.Get("Retry-After") == "" {
		t.Errorf("got code %q, Retry-After %q; want database_unavailable with Retry-After", code, r.Header.Get("Retry-After"))
	}
	if took := time.Since(start); took > 7*time.Second {
		t.Errorf("the write answered after %v, want well under the 10s busy timeout", took)
	}
	if _, err := conn.ExecContext(t.Context(), `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	mustStatus(t, do(t, http.MethodPut, el, `{"kind":"item","data":{"v":3}}`), http.StatusOK)
}
