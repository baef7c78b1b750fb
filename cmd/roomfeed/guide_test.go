package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/client"
)

// rollBot is the Go snippet of docs/from-socketio.md, line for line between
// the markers (TestGuideGoSnippet compares them and runs it).
func rollBot(ctx context.Context) error {
	// guide:begin
	c := &client.Client{Server: os.Getenv("ROOMFEED_URL")} // e.g. http://127.0.0.1:8080
	sub := c.Subscribe(nil, "w1")                          // nil: from now; keep sub.Cursor() to resume after a restart
	defer sub.Close()
	for {
		m, err := sub.Next(ctx)
		if err != nil {
			return err
		}
		ev, ok := m.(client.Event)
		if !ok || ev.Type != "roll_request" {
			continue
		}
		var req struct{ Data struct{ Sides int } }
		if err := json.Unmarshal(ev.Data, &req); err != nil || req.Data.Sides < 1 {
			continue
		}
		body := fmt.Sprintf(`{"event":"roll_result","data":{"value":%d}}`, 1+rand.IntN(req.Data.Sides))
		resp, err := http.Post(c.Server+"/rooms/w1/messages", "application/json", strings.NewReader(body))
		if err != nil {
			return err
		}
		resp.Body.Close()
	}
	// guide:end
}

// snippetLines returns the non-blank lines of code with their white space
// folded (indentation and gofmt's alignment of comments aside).
func snippetLines(code string) []string {
	var out []string
	for _, l := range strings.Split(code, "\n") {
		if l = strings.Join(strings.Fields(l), " "); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// TestGuideGoSnippet checks that the guide's Go snippet is rollBot, and runs
// it against a real server: a roll_request message gets a roll_result.
func TestGuideGoSnippet(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "from-socketio.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```go\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/from-socketio.md has no Go snippet")
	}
	src, err := os.ReadFile("guide_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := strings.Cut(string(src), "// guide:"+"begin\n")
	body, _, _ = strings.Cut(body, "// guide:"+"end")
	if got, want := snippetLines(block), snippetLines(body); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("the guide's Go snippet differs from rollBot:\n--- guide\n%s\n--- rollBot\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	p := startNode(t, "--database-url", "sqlite://"+filepath.Join(t.TempDir(), "rf.db"))
	t.Setenv("ROOMFEED_URL", p.URL)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- rollBot(ctx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("rollBot: got %v, want context.Canceled", err)
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		// The bot follows w1 from the moment its stream opens: ask until it answers.
		if status, _, b := call(t, http.MethodPost, p.URL+"/rooms/w1/messages", `{"event":"roll_request","data":{"sides":6}}`); status != http.StatusCreated {
			t.Fatalf("roll_request: got %d %s, want 201", status, b)
		}
		time.Sleep(200 * time.Millisecond)
		_, _, page := call(t, http.MethodGet, p.URL+"/rooms/w1/events?format=json&after=0&limit=5000", "")
		var events struct {
			Events []struct {
				Type string
				Data struct{ Value int }
			}
		}
		if err := json.Unmarshal(page, &events); err != nil {
			t.Fatalf("events page %s: %v", page, err)
		}
		for _, e := range events.Events {
			if e.Type == "roll_result" {
				if e.Data.Value < 1 || e.Data.Value > 6 {
					t.Fatalf("roll_result value %d, want 1..6", e.Data.Value)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no roll_result in %d events after 20s", len(events.Events))
		}
	}
}
