package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/testenv"
)

// runWithEnv runs the service like startNode, but with an environment, and
// returns its base URL and its stderr. It stops when the test ends.
func runWithEnv(t *testing.T, env map[string]string, args ...string) (string, *testenv.SyncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	stderr := &testenv.SyncBuffer{}
	done := make(chan error, 1)
	go func() {
		err := run(ctx, append([]string{"--addr", "127.0.0.1:0", "--web-dir", t.TempDir()}, args...),
			func(k string) string { return env[k] }, pw, stderr)
		pw.Close()
		done <- err
	}()
	sc := bufio.NewScanner(pr)
	if !sc.Scan() {
		cancel()
		t.Fatalf("run ended before listening: %v\n%s", <-done, stderr)
	}
	url, ok := strings.CutPrefix(sc.Text(), "listening on ")
	if !ok {
		cancel()
		t.Fatalf("first line %q, want listening on ...", sc.Text())
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("run did not return within 15s of cancel")
		}
		http.DefaultClient.CloseIdleConnections()
	})
	return url, stderr
}

// TestLogFormats: text for terminals, JSON with ROOMFEED_LOG_FORMAT=json;
// one line per request, without the query string (tokens may travel there)
// or the JWT secret.
func TestLogFormats(t *testing.T) {
	const secret = "jwt-secret-that-must-never-be-logged-0123456789"
	const token = "query-token-that-must-never-be-logged"
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			base, stderr := runWithEnv(t, map[string]string{"ROOMFEED_LOG_FORMAT": format, "ROOMFEED_JWT_SECRET": secret},
				"--database-url", "sqlite://"+filepath.Join(t.TempDir(), "rf.db"))
			paths := []string{"/healthz", "/rooms/w1/elements?access_token=" + token, "/nope"}
			for _, p := range paths {
				resp, err := http.Get(base + p)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
			// The request line is written after the answer: wait for the last.
			deadline := time.Now().Add(5 * time.Second)
			for strings.Count(stderr.String(), "request") < len(paths) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			out := stderr.String()
			if strings.Contains(out, secret) || strings.Contains(out, token) {
				t.Fatalf("a secret reached the log:\n%s", out)
			}
			var requests []map[string]any
			for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
				var rec map[string]any
				isJSON := json.Unmarshal([]byte(line), &rec) == nil
				if isJSON != (format == "json") {
					t.Fatalf("%s log line %q: JSON = %v", format, line, isJSON)
				}
				if format == "text" {
					rec = parseLogfmt(line)
				}
				if rec["msg"] == "request" {
					requests = append(requests, rec)
				}
				if rec["level"] == nil || rec["time"] == nil {
					t.Errorf("line %q has no level or time", line)
				}
			}
			if len(requests) != len(paths) {
				t.Fatalf("got %d request lines, want one per request (%d):\n%s", len(requests), len(paths), out)
			}
			wantStatus := []string{"200", "401", "404"}
			for i, rec := range requests {
				path, _, _ := strings.Cut(paths[i], "?")
				if rec["method"] != "GET" || rec["path"] != path || toString(rec["status"]) != wantStatus[i] {
					t.Errorf("request line %d: got %v, want GET %s %s", i, rec, path, wantStatus[i])
				}
			}
		})
	}
}

// parseLogfmt reads the key=value pairs of a slog text line.
func parseLogfmt(line string) map[string]any {
	out := map[string]any{}
	for len(line) > 0 {
		line = strings.TrimLeft(line, " ")
		k, rest, ok := strings.Cut(line, "=")
		if !ok {
			break
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			end := 1
			for end < len(rest) && (rest[end] != '"' || rest[end-1] == '\\') {
				end++
			}
			v, rest = rest[1:min(end, len(rest))], rest[min(end+1, len(rest)):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
		}
		out[k] = v
		line = rest
	}
	return out
}

func toString(v any) string {
	b, _ := json.Marshal(v)
	return strings.Trim(string(b), `"`)
}

// TestStartLineRedactsURLs: the configuration logged at start hides the
// passwords in DATABASE_URL and REDIS_URL.
func TestStartLineRedactsURLs(t *testing.T) {
	cfg, err := parseConfig(nil, func(k string) string {
		return map[string]string{
			"DATABASE_URL": "postgres://rf:pg-password-s3cret@db.internal:5432/rf?sslmode=require",
			"REDIS_URL":    "redis://:redis-password-s3cret@redis.internal:6379/0",
		}[k]
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).LogAttrs(t.Context(), slog.LevelInfo, "starting", cfg.logAttrs()...)
	out := buf.String()
	if strings.Contains(out, "s3cret") {
		t.Fatalf("a password reached the start line: %s", out)
	}
	if !strings.Contains(out, "db.internal") || !strings.Contains(out, "redis.internal") {
		t.Errorf("start line %s: want the hosts, without the passwords", out)
	}
}
