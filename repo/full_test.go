package repo

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestStorageFull fills a SQLite database capped by max_page_count, where
// SQLite answers SQLITE_FULL as on a full disk: the write fails with
// ErrStorageFull (an ErrUnavailable too), and every write acknowledged
// before it is intact.
func TestStorageFull(t *testing.T) {
	s := openStore(t, "sqlite://"+filepath.Join(t.TempDir(), "rf.db")+"?_pragma=max_page_count(160)")
	data := json.RawMessage(`{"s":"` + strings.Repeat("x", 20000) + `"}`)
	var err error
	n := 0
	for ; n < 1000; n++ {
		if _, err = s.Put(t.Context(), "r", "e"+strconv.Itoa(n), "item", data, Precondition{}, Meta{}); err != nil {
			break
		}
	}
	if n == 0 || !errors.Is(err, ErrStorageFull) || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after %d writes: got error %v, want ErrStorageFull (and ErrUnavailable)", n, err)
	}
	if got, err := s.Head(t.Context(), "r"); err != nil || got != int64(n) {
		t.Errorf("head after the failed write: got %d, %v; want %d", got, err, n)
	}
	evs, err := s.EventsAfter(t.Context(), "r", 0, 0)
	if err != nil || len(evs) != n {
		t.Errorf("events after the failed write: got %d, %v; want %d", len(evs), err, n)
	}
}
