package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/roomfeed/roomfeed/client"
	"github.com/roomfeed/roomfeed/internal/testenv"
)

// runHistoryCmd runs `roomfeed history args...` through run, as main
// would, and returns its output and result.
func runHistoryCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	stderr := &testenv.SyncBuffer{}
	err := run(t.Context(), append([]string{"history"}, args...), func(string) string { return "" }, &out, stderr)
	return out.String(), err
}

// TestHistoryEndToEnd: through the real server on a loopback port, the Go
// client reverts, reads an element's versions and the room as of a seq,
// and `roomfeed history` prints the versions with what each changed.
func TestHistoryEndToEnd(t *testing.T) {
	for _, be := range backendsArgs {
		t.Run(be.name, func(t *testing.T) {
			n := startNode(t, be.args(t)...)
			ctx := t.Context()
			put(t, n.URL, "h1", "c1", "Aria")   // v1, seq 1
			put(t, n.URL, "h1", "c1", "Aria B") // v2, seq 2
			if status, _, body := call(t, http.MethodDelete, n.URL+"/rooms/h1/elements/c1", ""); status != http.StatusOK {
				t.Fatalf("DELETE: got %d %s", status, body) // v3, seq 3
			}
			c := &client.Client{Server: n.URL}
			r, err := c.Revert(ctx, "h1", "c1", 1, client.RevertOptions{IfMatch: 3, IdempotencyKey: "undo-1"}) // v4, seq 4
			if err != nil || !r.Created || r.Seq != 4 || r.Element.Version != 4 || string(r.Element.Data) != `{"name":"Aria"}` {
				t.Fatalf("Revert: got %+v, %v, want c1 re-created as Aria at version 4 by event 4", r, err)
			}
			if again, err := c.Revert(ctx, "h1", "c1", 1, client.RevertOptions{IfMatch: 3, IdempotencyKey: "undo-1"}); err != nil || again.Seq != 4 {
				t.Errorf("the revert retried: got %+v, %v, want the first answer", again, err)
			}
			_, err = c.Revert(ctx, "h1", "c1", 3, client.RevertOptions{})
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Status != 422 || ce.Code != "version_deleted" {
				t.Errorf("revert to the deletion: got %v, want 422 version_deleted", err)
			}

			h, err := c.History(ctx, "h1", "c1", 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, v := range h.Versions {
				types = append(types, v.Type)
			}
			if got := strings.Join(types, ","); got != "reverted,deleted,updated,created" || h.Next != 0 {
				t.Errorf("History: got %s (next %d), want reverted,deleted,updated,created", got, h.Next)
			}
			for at, want := range map[int64]string{0: "", 1: "Aria", 2: "Aria B", 3: "", 4: "Aria"} {
				snap, err := c.SnapshotAt(ctx, "h1", at)
				if err != nil {
					t.Fatalf("SnapshotAt(%d): %v", at, err)
				}
				got := ""
				if len(snap.Elements) == 1 {
					var d struct{ Name string }
					_ = json.Unmarshal(snap.Elements[0].Data, &d)
					got = d.Name
				}
				if snap.Cursor != at || got != want || len(snap.Elements) > 1 {
					t.Errorf("SnapshotAt(%d): got cursor %d, %d elements, name %q; want name %q", at, snap.Cursor, len(snap.Elements), got, want)
				}
			}
			if _, err := c.SnapshotAt(ctx, "h1", 5); !errors.As(err, &ce) || ce.Code != "cursor_ahead" {
				t.Errorf("SnapshotAt beyond the head: got %v, want cursor_ahead", err)
			}

			out, err := runHistoryCmd(t, "--server", n.URL, "h1", "c1")
			if err != nil {
				t.Fatalf("roomfeed history: %v", err)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 5 || !strings.HasPrefix(lines[0], "VERSION") {
				t.Fatalf("got\n%s\nwant a header and 4 versions", out)
			}
			for i, want := range []string{
				`4 reverted [{"op":"add","path":"","to":{"kind":"character","data":{"name":"Aria"}}}]`,
				`3 deleted [{"op":"remove","path":"","from":{"kind":"character","data":{"name":"Aria B"}}}]`,
				`2 updated [{"op":"replace","path":"/data/name","from":"Aria","to":"Aria B"}]`,
				`1 created [{"op":"add","path":"","to":{"kind":"character","data":{"name":"Aria"}}}]`,
			} {
				f := strings.Fields(lines[i+1])
				if got := f[0] + " " + f[3] + " " + strings.Join(f[4:], " "); got != want {
					t.Errorf("line %d: got %q, want %q", i+1, got, want)
				}
				if f[2] != "-" || !strings.HasSuffix(f[1], "Z") {
					t.Errorf("line %d: got when %q who %q, want a UTC time and - (no token)", i+1, f[1], f[2])
				}
			}

			out, err = runHistoryCmd(t, "--server", n.URL, "--format", "json", "--limit", "2", "h1", "c1")
			if err != nil {
				t.Fatal(err)
			}
			lines = strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 2 {
				t.Fatalf("--limit 2: got\n%s\nwant two lines", out)
			}
			var l versionLine
			if err := json.Unmarshal([]byte(lines[1]), &l); err != nil {
				t.Fatal(err)
			}
			if l.Version != 3 || l.Seq != 3 || l.Type != "deleted" || len(l.Changes) != 1 || l.Changes[0].Op != "remove" || l.Unknown {
				t.Errorf("--limit 2, second line: got %+v, want the deletion diffed with version 2", l)
			}

			_, err = runHistoryCmd(t, "--server", n.URL, "h1", "nobody")
			if !errors.As(err, &ce) || ce.Status != 404 {
				t.Errorf("an element that never existed: got %v, want a 404", err)
			}
		})
	}
}

// TestHistoryOldestNotKept: the oldest kept version is printed without a
// diff when the one before it is gone.
func TestHistoryOldestNotKept(t *testing.T) {
	n := startNode(t, "--database-url", "sqlite://"+t.TempDir()+"/rf.db", "--versions-keep", "2")
	for _, name := range []string{"a", "b", "c"} {
		put(t, n.URL, "h1", "c1", name)
	}
	out, err := runHistoryCmd(t, "--server", n.URL, "--limit", "0", "h1", "c1")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], `"from":"b","to":"c"`) || !strings.Contains(lines[2], "(the version before is not kept)") {
		t.Errorf("got\n%s\nwant versions 3 (b to c) and 2 (its predecessor not kept)", out)
	}
}

func TestHistoryArgs(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
		want    string
	}{
		{args: []string{"w1", "c1"}, want: "http://127.0.0.1:8080 w1 c1 50 text"},
		{args: []string{"--limit", "0", "w1", "--format", "json", "c1", "--server", "https://feed.example/"}, want: "https://feed.example w1 c1 0 json"},
		{args: []string{"w1"}, wantErr: "a room and an element"},
		{args: []string{"w1", "c1", "c2"}, wantErr: "a room and an element"},
		{args: []string{"w1", "bad/id"}, wantErr: "must match"},
		{args: []string{"--limit", "-1", "w1", "c1"}, wantErr: "--limit"},
		{args: []string{"--format", "yaml", "w1", "c1"}, wantErr: "--format"},
		{args: []string{"--server", "ftp://x", "w1", "c1"}, wantErr: "--server"},
		{args: []string{"--nope", "w1", "c1"}, wantErr: "usage"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			c, err := parseHistoryConfig(tt.args, func(string) string { return "" }, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join([]string{c.Server.String(), c.Room, c.ID, strconv.Itoa(c.Limit), c.Format}, " ")
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
