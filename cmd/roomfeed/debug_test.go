package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDebugProfiles: with --debug-addr the node serves the runtime's
// profiles on that address only, and stops serving them when it stops.
func TestDebugProfiles(t *testing.T) {
	n := startNode(t, "--debug-addr", "127.0.0.1:0")
	debugURL := debugLine(t, n)

	tests := []struct {
		name, url string
		status    int
		want      func(body []byte) bool
	}{
		{"index", debugURL + "/debug/pprof/", http.StatusOK, func(b []byte) bool { return bytes.Contains(b, []byte("goroutine")) }},
		{"heap", debugURL + "/debug/pprof/heap", http.StatusOK, isGzip},
		{"cpu", debugURL + "/debug/pprof/profile?seconds=1", http.StatusOK, isGzip},
		{"not on the API's listener", n.URL + "/debug/pprof/", http.StatusNotFound, func([]byte) bool { return true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, _, body := call(t, http.MethodGet, tt.url, "")
			if status != tt.status || !tt.want(body) {
				t.Errorf("GET %s: got %d %.80q, want %d and a profile", tt.url, status, body, tt.status)
			}
		})
	}

	n.stop()
	c := &http.Client{Timeout: 5 * time.Second}
	if resp, err := c.Get(debugURL + "/debug/pprof/"); err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		t.Errorf("after stop: got %s, want the debug address closed", resp.Status)
	}
}

// debugLine waits for the "debug on URL" line run prints after its first
// one, and returns the URL.
func debugLine(t *testing.T, n *process) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for line := range strings.Lines(n.stdout.String()) {
			if u, ok := strings.CutPrefix(strings.TrimSpace(line), "debug on "); ok {
				return u
			}
		}
	}
	t.Fatalf("no debug line within 10 s; stdout %q", n.stdout.String())
	return ""
}

// isGzip reports whether b starts as a gzip stream does (a pprof profile).
func isGzip(b []byte) bool { return len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b }

// TestDebugPortBusy: a debug address already taken fails the start before
// the node announces itself.
func TestDebugPortBusy(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	var stdout, stderr strings.Builder
	args := []string{"--addr", "127.0.0.1:0", "--web-dir", t.TempDir(), "--debug-addr", held.Addr().String(),
		"--database-url", "sqlite://" + filepath.Join(t.TempDir(), "rf.db")}
	err = run(t.Context(), args, func(string) string { return "" }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "debug listen") || stdout.Len() != 0 {
		t.Errorf("got error %v and stdout %q, want a debug listen error and nothing printed", err, stdout.String())
	}
}
