package sqlite

import (
	"path/filepath"
	"testing"
)

// TestWriteCheckpointBound: the write connection checkpoints by itself only
// past commitCheckpointPages (the checkpointer does it before), unless the
// database URL sets its own wal_autocheckpoint.
func TestWriteCheckpointBound(t *testing.T) {
	for _, tc := range []struct {
		name, query string
		want        int
	}{
		{"default", "", commitCheckpointPages},
		{"set by the URL", "?_pragma=wal_autocheckpoint(500)", 500},
		{"other pragmas in the URL", "?_pragma=cache_size(-4000)", commitCheckpointPages},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := Open(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "rf.db")+tc.query, Options{})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			t.Cleanup(func() { db.Close() })
			var got int
			if err := db.write.QueryRowContext(t.Context(), `PRAGMA wal_autocheckpoint`).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("wal_autocheckpoint of the write connection: got %d, want %d", got, tc.want)
			}
		})
	}
}

// TestCheckpointerStops: Close stops the checkpointer (it returns, and a
// kick after it blocks nothing).
func TestCheckpointerStops(t *testing.T) {
	db, err := Open(t.Context(), "sqlite://"+filepath.Join(t.TempDir(), "rf.db"), Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	db.ckpt.committed()
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-db.ckpt.done:
	default:
		t.Fatal("the checkpointer still runs after Close")
	}
	db.ckpt.committed()
	db.ckpt.committed()
}
