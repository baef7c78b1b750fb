package repo

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSQLiteCheckpointsBesideCommits: on SQLite the committed pages reach
// the database file while writes go on, well before the WAL is large
// enough for a COMMIT to checkpoint by itself (SQLite's own default is
// 1,000 pages; these writes stay far below it). The checkpointer does it.
func TestSQLiteCheckpointsBesideCommits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rf.db")
	s := openStore(t, "sqlite://"+path)
	size := func() int64 {
		t.Helper()
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	data := json.RawMessage(`{"s":"` + strings.Repeat("x", 3000) + `"}`)
	const writes = 40 // each stores the 3,000 bytes three times: the element, its event, its version
	for i := range writes {
		if _, err := s.Put(t.Context(), "r", "e"+strconv.Itoa(i), "item", data, Precondition{}, Meta{}); err != nil {
			t.Fatalf("Put %d: %v", i, err)
		}
	}
	want := before + writes*3*3000/2 // at least half of the data written, in the database file
	deadline := time.Now().Add(10 * time.Second)
	for size() < want {
		if time.Now().After(deadline) {
			t.Fatalf("database file: got %d bytes 10 s after %d writes, want at least %d (it had %d): nothing was checkpointed",
				size(), writes, want, before)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// What the checkpoint copied is what was committed.
	evs, err := s.EventsAfter(t.Context(), "r", 0, 0)
	if err != nil || len(evs) != writes {
		t.Errorf("events: got %d, %v; want %d", len(evs), err, writes)
	}
}
