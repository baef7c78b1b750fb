package faults

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/testenv"
)

// TestSQLiteDiskFull runs the embedded node (SQLite, in-process log) on a
// small tmpfs the test mounts, fills the filesystem under writes and frees
// space again. While the disk is full every write answers 507 storage_full
// with Retry-After (never a 500, never another error), the database stays
// sound (PRAGMA integrity_check) and every acknowledged write is in it;
// once a filler file is deleted the node writes again by itself, without a
// restart; and the subscribers receive every committed event exactly once,
// in order, throughout.
func TestSQLiteDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	dir := mountTmpfs(t, 16<<20)
	filler := filepath.Join(dir, "filler")
	// Leave 1.5 MiB: the migrations fit, and the WAL fills it within a
	// few hundred small commits.
	fill(t, filler, freeBytes(t, dir)-1536<<10)
	dbURL := "sqlite://" + filepath.Join(dir, "rf.db")
	n := startNode(t, "A", "--database-url", dbURL)
	room := testenv.UniqueName("full")
	subs := []*subscriber{
		startSubscriber(t, "sub1", room, func(int) *node { return n }),
		startSubscriber(t, "sub2", room, func(int) *node { return n }),
	}
	hc := newClient(t, 10*time.Second)
	l := newLedger()
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var wg sync.WaitGroup
	for _, name := range []string{"w1", "w2", "w3"} {
		wg.Go(func() { writer(ctx, hc, l, name, room, func(int) *node { return n }, 0) })
	}

	eventually(t, 30*time.Second, "a write answers 507 (the disk fills)", func() error {
		if _, _, st := l.snapshot(); st["507"] == 0 {
			return fmt.Errorf("%w: failures %v", errNotYet, st)
		}
		return nil
	})
	acksAtFull, _, _ := l.snapshot()
	time.Sleep(1500 * time.Millisecond) // the writers keep trying on the full disk
	// A small write may still fit where a failed one had grown the WAL:
	// probe until one is refused, and look at the refusal.
	eventually(t, 10*time.Second, "a write on the full disk answers 507 storage_full with Retry-After", func() error {
		return probeError(ctx, hc, n.URL(), room, http.StatusInsufficientStorage, "storage_full")
	})
	_, _, st := l.snapshot()
	for status, count := range st {
		if status != "507" {
			t.Errorf("%d writes answered %s on the full disk, want only 507 storage_full", count, status)
		}
	}
	checkIntegrity(t, dbURL)

	freed := time.Now()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "writes succeed once space returns", func() error {
		r := putElement(ctx, hc, n.URL(), room, "after", "", `{}`)
		if !r.acked() {
			return fmt.Errorf("%w: %d %s %v", errNotYet, r.Status, r.Body, r.Err)
		}
		return nil
	})
	t.Logf("writes acknowledged again %v after the filler was deleted", time.Since(freed).Round(time.Millisecond))
	acksAtFree, _, _ := l.snapshot()
	time.Sleep(time.Second)
	stop()
	wg.Wait()

	rep := checkFeed(t, dbURL, room, l, subs, 30*time.Second)
	checkIntegrity(t, dbURL)
	_, _, st = l.snapshot()
	t.Logf("acknowledged %d (%d before the disk filled, %d after it was freed), failed %v, committed %d, events checked %d (2 subscribers)",
		rep.Acked, len(acksAtFull), rep.Acked-len(acksAtFree), st, rep.Committed, rep.Checked)
	if len(acksAtFull) == 0 || rep.Acked <= len(acksAtFree) {
		t.Errorf("too few writes to mean anything: %d before the disk filled, %d in all, %d when it was freed",
			len(acksAtFull), rep.Acked, len(acksAtFree))
	}
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory and unmounts
// it when the test ends (after the nodes, which are stopped by cleanups
// registered later). Mounting needs root (CAP_SYS_ADMIN): without it the
// test fails and says so.
func mountTmpfs(tb testing.TB, size int64) string {
	tb.Helper()
	dir := tb.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0755", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		tb.Fatalf("cannot mount a %d-byte tmpfs on %s for the full-disk test (it needs root or CAP_SYS_ADMIN): %v: %s",
			size, dir, err, out)
	}
	tb.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			tb.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// freeBytes returns the bytes available on the filesystem of dir.
func freeBytes(tb testing.TB, dir string) int64 {
	tb.Helper()
	var fs syscall.Statfs_t
	if err := syscall.Statfs(dir, &fs); err != nil {
		tb.Fatal(err)
	}
	return int64(fs.Bavail) * int64(fs.Bsize)
}

// fill writes a file of size bytes.
func fill(tb testing.TB, path string, size int64) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(f, zeros{}, size); err != nil {
		tb.Fatalf("fill %s: %v", path, err)
	}
}

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// checkIntegrity runs PRAGMA integrity_check on the SQLite database of
// dbURL and fails the test unless it answers ok.
func checkIntegrity(tb testing.TB, dbURL string) {
	tb.Helper()
	db := openTruth(tb, dbURL)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rows, err := db.QueryContext(ctx, `PRAGMA integrity_check`)
	if err != nil {
		tb.Fatalf("integrity_check: %v", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			tb.Fatal(err)
		}
		problems = append(problems, line)
	}
	if err := rows.Err(); err != nil {
		tb.Fatalf("integrity_check: %v", err)
	}
	if len(problems) != 1 || problems[0] != "ok" {
		tb.Errorf("integrity_check: got %q, want ok", problems)
	}
}

// probeError makes one write without an Op-ID and wants an error answer of
// status and code, with a Retry-After header.
func probeError(ctx context.Context, hc *http.Client, base, room string, status int, code string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/rooms/"+room+"/elements/probe",
		strings.NewReader(`{"kind":"item","data":{}}`))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if err := wantError(resp.StatusCode, string(body), status, code); err != nil {
		return err
	}
	if resp.Header.Get("Retry-After") == "" {
		return fmt.Errorf("%d without Retry-After", status)
	}
	return nil
}
