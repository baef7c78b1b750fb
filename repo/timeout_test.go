package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
)

// busyTimeout is the busy_timeout sqlite.Open sets: without the batch
// bound a write would wait that long for another process's write lock.
const busyTimeout = 10 * time.Second

// TestSQLiteWriteLockHeld: while another connection holds the database's
// write lock, writes fail with ErrUnavailable once Options.QueryTimeout
// has passed (the batch stops waiting for the lock), well before SQLite's
// busy timeout; when the lock is released the store writes on, gap-free.
func TestSQLiteWriteLockHeld(t *testing.T) {
	t.Parallel()
	url := "sqlite://" + filepath.Join(t.TempDir(), "rf.db")
	s, err := Open(t.Context(), url, Options{QueryTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	mustPut(t, s, "h", "before", "thing", `{}`)

	conn, err := openRaw(t, url).Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), `BEGIN IMMEDIATE`); err != nil {
		t.Fatalf("take the write lock: %v", err)
	}

	start := time.Now()
	var wg sync.WaitGroup
	for i := range 4 { // one in the stuck batch, the others queued behind it
		wg.Go(func() {
			_, err := s.Put(t.Context(), "h", fmt.Sprint("x", i), "thing", json.RawMessage(`{}`), Precondition{}, Meta{})
			if !errors.Is(err, ErrUnavailable) {
				t.Errorf("Put %d while the write lock is held elsewhere: got %v, want %v", i, err, ErrUnavailable)
			}
		})
	}
	wg.Wait()
	if took := time.Since(start); took >= busyTimeout*3/4 {
		t.Errorf("writes took %v to fail, want well under the %v busy timeout", took, busyTimeout)
	}

	if _, err := conn.ExecContext(t.Context(), `ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "h", "after", "thing", `{}`)
	checkGapFree(t, s, "h", 2)
}

// TestStuckBatch: a batch that does not finish (a write stuck where no
// statement can be interrupted, as in a hung disk's fsync) fails the
// writes waiting for it with ErrUnavailable once Options.QueryTimeout has
// passed, instead of holding their callers until it ends (a write behind
// the stuck one in its batch runs later, apart from its caller, without a
// data race); the store writes on once the batch ends.
func TestStuckBatch(t *testing.T) {
	forEachURL(t, func(t *testing.T, url string) {
		s, err := Open(t.Context(), url, Options{QueryTimeout: time.Second, Committers: 1})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		mustPut(t, s, "h", "before", "thing", `{}`)

		// The stuck write and a Put queue behind a blocker, so that they
		// go into one batch.
		unblock := blockCommitter(t, s)
		release := make(chan struct{})
		stuck, put := make(chan error, 1), make(chan error, 1)
		go func() {
			stuck <- s.write(t.Context(), "h", sqlstore.Reads{}, func(context.Context, sqlstore.Tx) (roomfeed.Event, error) {
				<-release
				return roomfeed.Event{}, errUndone // whether or not its batch is still alive
			})
		}()
		waitQueued(t, s, 1)
		go func() {
			_, err := s.Put(t.Context(), "h", "x", "thing", json.RawMessage(`{}`), Precondition{}, Meta{})
			put <- err
		}()
		waitQueued(t, s, 2)
		// Their callers' bounds started now, their batch's starts later: it
		// outlives them, and runs the Put after they have answered.
		time.Sleep(500 * time.Millisecond)
		unblock()
		if err := <-stuck; !errors.Is(err, ErrUnavailable) {
			t.Errorf("stuck write: got %v, want %v", err, ErrUnavailable)
		}
		// The Put's caller is answered at its own bound, while its batch is
		// still stuck; only then does the batch go on and run the Put, apart
		// from its caller. (Released before that answer, the batch could
		// commit the Put within the moments between the two callers' bounds,
		// and the Put would rightly succeed.)
		if err := <-put; !errors.Is(err, ErrUnavailable) {
			t.Errorf("Put behind the stuck write: got %v, want %v", err, ErrUnavailable)
		}
		close(release)
		var last error
		for range 100 { // a batch that ran out of time may cost a connection
			if _, last = s.Put(t.Context(), "h", "after", "thing", json.RawMessage(`{}`), Precondition{}, Meta{}); last == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if last != nil {
			t.Fatalf("Put once the stuck batch ended: %v", last)
		}
		checkGapFree(t, s, "h", mustHead(t, s, "h")) // the Put behind the stuck write may have committed
	})
}

var errUndone = errors.New("the stuck write is undone")
