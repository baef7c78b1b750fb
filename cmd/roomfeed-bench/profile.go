package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// profile takes a CPU profile of srv for about d, from now, into
// --profile/NAME.pprof (read with `go tool pprof`), and returns a function
// that waits for it. It takes none (and the function returns at once) when
// --profile is not set or srv serves no profiles (the bare broadcaster, a
// --target). A profile that fails is logged, not fatal: the run's figures
// do not depend on it.
func (b *bench) profile(ctx context.Context, srv *server, name string, d time.Duration) (wait func()) {
	if b.cfg.profileDir == "" || srv.debug == "" {
		return func() {}
	}
	secs := max(1, int(math.Round(d.Seconds())))
	path := filepath.Join(b.cfg.profileDir, name+".pprof")
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fetchProfile(ctx, srv.debug, secs, path); err != nil {
			logf("profile %s: %v", name, err)
		}
	}()
	return func() { <-done }
}

// fetchProfile asks the server at debugURL for a CPU profile of secs
// seconds and writes it to path.
func fetchProfile(ctx context.Context, debugURL string, secs int, path string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", debugURL, secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
