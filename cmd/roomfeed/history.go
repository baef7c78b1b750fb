package main

// `roomfeed history`: an element's versions as a table, with what each
// changed.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/client"
	"github.com/roomfeed/roomfeed/internal/jsonmerge"
)

const historyUsage = `usage: roomfeed history [flags] ROOM ELEMENT

Prints the element's kept versions, newest first, one line each: version,
when, who, type (created, updated, merged, deleted, reverted) and what it
changed from the version before, as a JSON diff of {"kind","data"} (a list
of {op, path, from, to} at JSON-pointer granularity; arrays and strings are
replaced whole). --format json prints one JSON object per version instead.

Exit status: 0 when printed; 1 on error (bad flags, refused request, an
element that never existed).

flags:
`

// historyConfig is the configuration of one `roomfeed history`.
type historyConfig struct {
	remote
	Room, ID string
	Limit    int
	Format   string
}

func parseHistoryConfig(args []string, getenv func(string) string, stderr io.Writer) (historyConfig, error) {
	var cfg historyConfig
	fs := newRemoteFlags("history", historyUsage, getenv, stderr)
	fs.IntVar(&cfg.Limit, "limit", 50, "print at most this many versions, the newest (0: every kept version)")
	fs.StringVar(&cfg.Format, "format", "text", "text (a table) or json (one object per version)")
	pos, err := fs.parse(args, 2, "a room and an element")
	if err != nil {
		return cfg, err
	}
	cfg.Room, cfg.ID = pos[0], pos[1]
	var errs []error
	for _, name := range pos {
		if !roomfeed.ValidName(name) {
			errs = append(errs, fmt.Errorf("%q must match %s", name, roomfeed.NamePattern))
		}
	}
	if cfg.remote, err = fs.remote(); err != nil {
		errs = append(errs, err)
	}
	if cfg.Limit < 0 {
		errs = append(errs, errors.New("--limit must be 0 or more"))
	}
	if cfg.Format != "json" && cfg.Format != "text" {
		errs = append(errs, fmt.Errorf("--format %q: want text or json", cfg.Format))
	}
	return cfg, errors.Join(errs...)
}

// runHistory is `roomfeed history`.
func runHistory(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseHistoryConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	c := cfg.client(&http.Client{Timeout: 30 * time.Second})
	versions, err := readVersions(ctx, c, cfg)
	if err != nil {
		return fmt.Errorf("roomfeed history %s %s: %w", cfg.Room, cfg.ID, err)
	}
	return printVersions(stdout, cfg.Format, versions, cfg.Limit)
}

// readVersions reads the newest cfg.Limit versions (every kept one for 0)
// and, when kept, the one before them, for the diff.
func readVersions(ctx context.Context, c *client.Client, cfg historyConfig) ([]client.Version, error) {
	var (
		vs     []client.Version
		before int64
	)
	for {
		page := 500
		if cfg.Limit > 0 {
			page = min(page, cfg.Limit+1-len(vs))
		}
		h, err := c.History(ctx, cfg.Room, cfg.ID, before, page)
		if err != nil {
			return nil, err
		}
		vs = append(vs, h.Versions...)
		if h.Next == 0 || (cfg.Limit > 0 && len(vs) > cfg.Limit) {
			return vs, nil
		}
		before = h.Next
	}
}

// versionLine is one version as printed.
type versionLine struct {
	Version int64              `json:"version"`
	Seq     int64              `json:"seq"`
	At      time.Time          `json:"at"`
	Actor   string             `json:"actor"`
	Type    string             `json:"type"`
	Changes []jsonmerge.Change `json:"changes"`
	// Unknown: the version before it is not kept, so Changes is empty.
	Unknown bool `json:"unknown,omitempty"`
}

// printVersions prints the newest limit of vs (newest first; 0: all),
// each diffed with the version after it in vs, its predecessor; the oldest
// of the element's versions (1) with nothing.
func printVersions(w io.Writer, format string, vs []client.Version, limit int) error {
	shown := len(vs)
	if limit > 0 && limit < shown {
		shown = limit
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if format == "text" {
		fmt.Fprintln(tw, "VERSION\tWHEN\tWHO\tTYPE\tCHANGES")
	}
	for i := range shown {
		v := vs[i]
		line := versionLine{Version: v.Version, Seq: v.Seq, At: v.At, Actor: v.Actor, Type: v.Type, Changes: []jsonmerge.Change{}}
		var prev *client.Version
		if i+1 < len(vs) {
			prev = &vs[i+1]
		}
		if prev == nil && v.Version > 1 {
			line.Unknown = true
		} else {
			changes, err := jsonmerge.Diff(document(prev), document(&v))
			if err != nil {
				return fmt.Errorf("version %d: %w", v.Version, err)
			}
			line.Changes = append(line.Changes, changes...)
		}
		if err := printVersion(tw, format, line); err != nil {
			return err
		}
	}
	return tw.Flush()
}

func printVersion(w io.Writer, format string, l versionLine) error {
	changes, err := json.Marshal(l.Changes)
	if err != nil {
		return err
	}
	if format == "json" {
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	what := string(changes)
	if l.Unknown {
		what = "(the version before is not kept)"
	}
	who := l.Actor
	if who == "" {
		who = "-"
	}
	_, err = fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", l.Version, l.At.UTC().Format("2006-01-02T15:04:05.000Z"), who, l.Type, what)
	return err
}

// document is what a version holds, as the diff compares it:
// {"kind","data"}, absent (nil) for a deletion or no version.
func document(v *client.Version) json.RawMessage {
	if v == nil || v.Data == nil {
		return nil
	}
	b, _ := json.Marshal(struct {
		Kind string          `json:"kind"`
		Data json.RawMessage `json:"data"`
	}{v.Kind, v.Data})
	return b
}
