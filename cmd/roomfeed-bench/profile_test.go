package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestProfile: with --profile the bench saves what the server's
// /debug/pprof/profile answers, for the phase's length; without it, or for a
// server that serves no profiles, it asks nothing.
func TestProfile(t *testing.T) {
	profile := []byte{0x1f, 0x8b, 'p', 'r', 'o', 'f'}
	asked := make(chan string, 4)
	debug := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked <- r.URL.String()
		_, _ = w.Write(profile)
	}))
	t.Cleanup(debug.Close)

	tests := []struct {
		name      string
		dir       bool
		debugURL  string
		wantAsked string // "" = nothing asked
	}{
		{"saved", true, debug.URL, "/debug/pprof/profile?seconds=3"},
		{"no --profile", false, debug.URL, ""},
		{"no debug address", true, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &bench{cfg: &options{}}
			if tt.dir {
				b.cfg.profileDir = t.TempDir()
			}
			b.profile(t.Context(), &server{url: "http://unused", debug: tt.debugURL}, "s6-x", 2600*time.Millisecond)()
			select {
			case got := <-asked:
				if got != tt.wantAsked {
					t.Errorf("asked %q, want %q", got, tt.wantAsked)
				}
			default:
				if tt.wantAsked != "" {
					t.Fatalf("asked nothing, want %q", tt.wantAsked)
				}
				return
			}
			got, err := os.ReadFile(filepath.Join(b.cfg.profileDir, "s6-x.pprof"))
			if err != nil || !bytes.Equal(got, profile) {
				t.Errorf("saved %q (%v), want the server's profile %q", got, err, profile)
			}
		})
	}
}

// TestStartProcessDebugLine: a server started with --debug-addr is ready
// once it printed both its address and its debug address.
func TestStartProcessDebugLine(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "fake-roomfeed")
	script := "#!/bin/sh\necho 'listening on http://127.0.0.1:1'\necho 'debug on http://127.0.0.1:2'\nexec sleep 60\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := startProcess(t.Context(), "fake", bin, []string{"--debug-addr", "127.0.0.1:0"}, filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.stop()
	if srv.url != "http://127.0.0.1:1" || srv.debug != "http://127.0.0.1:2" {
		t.Errorf("got url %q, debug %q; want http://127.0.0.1:1 and http://127.0.0.1:2", srv.url, srv.debug)
	}
}
