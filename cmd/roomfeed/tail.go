package main

// `roomfeed tail`: follow a room's feed from the terminal like tail -f.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/client"
	"github.com/roomfeed/roomfeed/sse"
)

// exitReset is the exit status of `roomfeed tail` when the server answers
// the cursor with `event: reset` (history trimmed) and --resnapshot is not
// given.
const exitReset = 3

// exitError is an error with its own exit status; main exits with ExitCode.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }
func (e *exitError) ExitCode() int { return e.code }

const tailUsage = `usage: roomfeed tail [flags] ROOM

Prints the room's events as they happen, one line each: the event's JSON
(--format json, the default) or a short human form (--format text). It
resumes from --from, else from the cursor stored in --cursor-file, else from
the room's current position; it reconnects after a dropped or closed stream
with capped, jittered backoff (following the server's retry: hint) and sends
the last printed id as Last-Event-ID, so nothing is missed or printed twice.
--type, --kind and --element (each repeatable) print only the matching
events. --until-head prints the history up to the room's head (from 0
without a cursor) and exits.

Exit status: 0 on interrupt or, with --until-head, at the head; 1 on error
(bad flags, refused request, unwritable output); 3 when the server resets
the cursor because the history after it was trimmed (with --resnapshot it
prints the current snapshot as "snapshot" lines instead and goes on).

flags:
`

// tailConfig is the configuration of one `roomfeed tail`.
type tailConfig struct {
	remote
	Room        string
	From        string
	CursorFile  string
	Format      string
	Resnapshot  bool
	UntilHead   bool
	Filter      client.Filter
	MaxBackoff  time.Duration
	IdleTimeout time.Duration
}

func parseTailConfig(args []string, getenv func(string) string, stderr io.Writer) (tailConfig, error) {
	var cfg tailConfig
	fs := newRemoteFlags("tail", tailUsage, getenv, stderr)
	fs.StringVar(&cfg.From, "from", "", "start after this event id (0 = the whole retained history); overrides --cursor-file")
	fs.StringVar(&cfg.CursorFile, "cursor-file", "", "file holding the last printed id: read at start, rewritten atomically after each event")
	fs.StringVar(&cfg.Format, "format", "json", "json (the event's data, one line each) or text")
	fs.BoolVar(&cfg.Resnapshot, "resnapshot", false, "on reset, print the room's snapshot and go on instead of exiting with status 3")
	fs.BoolVar(&cfg.UntilHead, "until-head", false, "print the history up to the room's head (from 0 without a cursor), then exit 0")
	filter := filterFlags(fs.FlagSet)
	fs.DurationVar(&cfg.MaxBackoff, "max-backoff", client.DefaultMaxBackoff, "longest wait between reconnection attempts")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", client.DefaultIdleTimeout, "reconnect when nothing (not even a ping) arrives for this long")

	rooms, err := fs.parse(args, 1, "exactly one room")
	if err != nil {
		return cfg, err
	}
	cfg.Room = rooms[0]
	var errs []error
	if !roomfeed.ValidName(cfg.Room) {
		errs = append(errs, fmt.Errorf("room %q must match %s", cfg.Room, roomfeed.NamePattern))
	}
	if cfg.remote, err = fs.remote(); err != nil {
		errs = append(errs, err)
	}
	if cfg.From != "" {
		if _, err := sse.ParseCursor(cfg.From); err != nil {
			errs = append(errs, fmt.Errorf("--from %q: want an event id such as 42", cfg.From))
		}
	}
	if cfg.Filter, err = filter(); err != nil {
		errs = append(errs, err)
	}
	if cfg.Format != "json" && cfg.Format != "text" {
		errs = append(errs, fmt.Errorf("--format %q: want json or text", cfg.Format))
	}
	if cfg.MaxBackoff < 10*time.Millisecond {
		errs = append(errs, errors.New("--max-backoff must be at least 10ms"))
	}
	if cfg.IdleTimeout < 100*time.Millisecond {
		errs = append(errs, errors.New("--idle-timeout must be at least 100ms"))
	}
	return cfg, errors.Join(errs...)
}

// filterFlags registers --type, --kind and --element (each repeatable) on
// fs; the function it returns reads them as a filter once fs is parsed.
func filterFlags(fs *flag.FlagSet) func() (client.Filter, error) {
	q := url.Values{}
	for _, param := range []string{"type", "kind", "element"} {
		fs.Func(param, "print only events of this "+param+" (repeatable: any of them)", func(v string) error {
			q.Add(param, v)
			return nil
		})
	}
	return func() (client.Filter, error) {
		f, err := sse.ParseFilter(q)
		if err != nil {
			return f, fmt.Errorf("--%w", err)
		}
		return f, nil
	}
}

// runTail is `roomfeed tail`: it returns nil when ctx is cancelled.
func runTail(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseTailConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       90 * time.Second,
	}
	defer transport.CloseIdleConnections()
	t := &tailer{cfg: cfg, out: stdout, stderr: stderr, client: cfg.client(&http.Client{Transport: transport})}
	t.client.MaxBackoff, t.client.IdleTimeout = cfg.MaxBackoff, cfg.IdleTimeout
	if t.cursor, t.hasCursor, err = startCursor(cfg); err != nil {
		return err
	}
	if cfg.UntilHead {
		return t.untilHead(ctx)
	}
	return t.run(ctx)
}

// startCursor is where the tail starts: --from, else the cursor file, else
// none (the room's current position).
func startCursor(cfg tailConfig) (int64, bool, error) {
	if cfg.From != "" {
		n, err := sse.ParseCursor(cfg.From)
		return n, err == nil, err
	}
	if cfg.CursorFile == "" {
		return 0, false, nil
	}
	raw, err := os.ReadFile(cfg.CursorFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("cursor file: %w", err)
	case len(bytes.TrimSpace(raw)) == 0:
		return 0, false, nil
	}
	n, err := sse.ParseCursor(string(raw))
	if err != nil {
		return 0, false, fmt.Errorf("cursor file %s: want an event id such as 42", cfg.CursorFile)
	}
	return n, true, nil
}

// tailer follows one room and prints it.
type tailer struct {
	cfg    tailConfig
	out    io.Writer
	stderr io.Writer
	client *client.Client

	cursor    int64 // id of the last event printed (or the start position)
	hasCursor bool
}

func (t *tailer) run(ctx context.Context) error {
	var from client.Cursor
	if t.hasCursor {
		from = client.Cursor{t.cfg.Room: t.cursor}
	}
	sub := t.client.SubscribeFiltered(from, t.cfg.Filter, t.cfg.Room)
	defer sub.Close()
	for {
		m, err := sub.Next(ctx)
		if err == nil {
			err = t.handle(ctx, sub, m)
		}
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// handle prints one message of the subscription and keeps the cursor file.
func (t *tailer) handle(ctx context.Context, sub *client.Subscription, m client.Message) error {
	switch m := m.(type) {
	case client.Event:
		if err := t.print(formatEvent(t.cfg.Format, m.Type, m.Data)); err != nil {
			return err
		}
		if m.Seq == 0 {
			return nil // ephemeral events (presence) are printed, never a cursor
		}
		t.cursor, t.hasCursor = m.Seq, true
		return t.saveCursor()
	case client.Start:
		// The server's first comment names the start position of a stream
		// opened without a cursor: stored, a restart misses nothing.
		t.cursor, t.hasCursor = m.Cursor[t.cfg.Room], true
		return t.saveCursor()
	case client.Progress:
		// The filter left events out: a restart need not read them again.
		t.cursor, t.hasCursor = m.Cursor[t.cfg.Room], true
		return t.saveCursor()
	case client.Reset:
		return t.reset(ctx, sub, m)
	case client.Reconnect:
		why := "stream closed"
		if m.Err != nil {
			why = m.Err.Error()
		}
		t.note("%s; reconnecting in %v%s", why, m.Wait.Round(time.Millisecond), t.fromText())
	}
	return nil
}

func (t *tailer) fromText() string {
	if !t.hasCursor {
		return ""
	}
	return " from " + strconv.FormatInt(t.cursor, 10)
}

func (t *tailer) note(format string, args ...any) {
	fmt.Fprintf(t.stderr, "roomfeed tail: "+format+"\n", args...)
}

// reset handles `event: reset`: the history after the cursor is gone.
func (t *tailer) reset(ctx context.Context, sub *client.Subscription, r client.Reset) error {
	if !t.cfg.Resnapshot {
		return &exitError{exitReset, fmt.Errorf("room %s was reset (%s): the events after %d are no longer retained and the room is at %d; reload a snapshot or rerun with --resnapshot",
			t.cfg.Room, r.Reason, t.cursor, r.Cursor)}
	}
	if err := t.resnapshot(ctx, r.Reason); err != nil {
		return err
	}
	// The stream goes on after the reset; events already in the snapshot
	// (seq <= its cursor) are skipped.
	sub.Advance(t.cfg.Room, t.cursor)
	return nil
}

// resnapshot prints the room's snapshot as "snapshot" lines and moves the
// cursor (and its file) to the snapshot's.
func (t *tailer) resnapshot(ctx context.Context, reason string) error {
	snap, err := retrying(ctx, t, func(ctx context.Context) (client.Snapshot, error) {
		return t.client.Snapshot(ctx, t.cfg.Room)
	})
	if err != nil {
		return err
	}
	t.note("room reset (%s); printing the snapshot at %d", reason, snap.Cursor)
	cursor := strconv.FormatInt(snap.Cursor, 10)
	for _, el := range snap.Elements {
		line, _ := json.Marshal(struct {
			Room    string           `json:"room"`
			Type    string           `json:"type"`
			Cursor  string           `json:"cursor"`
			Element roomfeed.Element `json:"element"`
		}{t.cfg.Room, "snapshot", cursor, el})
		if err := t.print(formatEvent(t.cfg.Format, "snapshot", line)); err != nil {
			return err
		}
	}
	t.cursor, t.hasCursor = snap.Cursor, true
	return t.saveCursor()
}

// untilHead is --until-head: it prints the room's history from the cursor
// (0 without one) up to the head the first page names, a page at a time,
// keeping the cursor file at the end of each page, and returns.
func (t *tailer) untilHead(ctx context.Context) error {
	head := int64(-1)
	for head < 0 || t.cursor < head {
		after := t.cursor
		p, err := retrying(ctx, t, func(ctx context.Context) (client.Page, error) {
			return t.client.Page(ctx, t.cfg.Room, after, sse.MaxPageLimit, t.cfg.Filter)
		})
		var trimmed *client.TrimmedError
		if errors.As(err, &trimmed) && t.cfg.Resnapshot {
			if err := t.resnapshot(ctx, "history_trimmed"); err != nil {
				return err
			}
			continue
		}
		if trimmed != nil {
			return &exitError{exitReset, fmt.Errorf("room %s was trimmed: the events after %d are no longer retained, the oldest is %d; rerun with --from %d or --resnapshot",
				t.cfg.Room, after, trimmed.Oldest, trimmed.Oldest-1)}
		}
		if err != nil {
			return err
		}
		if head < 0 {
			head = p.Head
		}
		for _, ev := range p.Events {
			if ev.Seq > head {
				break
			}
			if err := t.print(formatEvent(t.cfg.Format, ev.Type, ev.Data)); err != nil {
				return err
			}
		}
		t.cursor, t.hasCursor = min(p.Next, head), true
		if err := t.saveCursor(); err != nil {
			return err
		}
	}
	return nil
}

// retrying calls fn until it succeeds or fails for good (a refusal that
// asking again cannot fix, or ctx done), waiting after a failure that may
// pass (a 503 while the database is down) twice as long each time, from
// 1s up to --max-backoff.
func retrying[T any](ctx context.Context, t *tailer, fn func(context.Context) (T, error)) (T, error) {
	for wait := min(time.Second, t.cfg.MaxBackoff); ; wait = min(2*wait, t.cfg.MaxBackoff) {
		reqCtx, cancel := context.WithTimeout(ctx, time.Minute)
		v, err := fn(reqCtx)
		cancel()
		var refused *client.Error
		if err == nil || ctx.Err() != nil || (errors.As(err, &refused) && !refused.Temporary()) ||
			errors.Is(err, roomfeed.ErrTrimmed) {
			return v, err
		}
		t.note("%v; trying again in %v", err, wait)
		select {
		case <-ctx.Done():
			return v, ctx.Err()
		case <-time.After(wait):
		}
	}
}

func (t *tailer) print(line []byte) error {
	if _, err := t.out.Write(append(line, '\n')); err != nil {
		return &exitError{1, fmt.Errorf("write output: %w", err)}
	}
	return nil
}

// saveCursor replaces the cursor file atomically (a temporary file renamed
// over it), so a reader or a crash never sees a partial id.
func (t *tailer) saveCursor() error {
	if t.cfg.CursorFile == "" || !t.hasCursor {
		return nil
	}
	dir, base := filepath.Split(t.cfg.CursorFile)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".*")
	if err != nil {
		return &exitError{1, fmt.Errorf("cursor file: %w", err)}
	}
	_, werr := f.WriteString(strconv.FormatInt(t.cursor, 10) + "\n")
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(f.Name())
		return &exitError{1, fmt.Errorf("cursor file: %w", err)}
	}
	if err := os.Rename(f.Name(), t.cfg.CursorFile); err != nil {
		os.Remove(f.Name())
		return &exitError{1, fmt.Errorf("cursor file: %w", err)}
	}
	return nil
}

// formatEvent renders one event's data as a line: compact JSON, or the
// human form "TIME #ID TYPE [ELEMENT KIND vVERSION] DATA".
func formatEvent(format, typ string, data []byte) []byte {
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		b, _ := json.Marshal(string(data))
		compact.Reset()
		compact.Write(b)
	}
	if format != "text" {
		return compact.Bytes()
	}
	var ev struct {
		ID      string `json:"id"`
		Type    string `json:"type"`
		Cursor  string `json:"cursor"`
		At      string `json:"at"`
		OpID    string `json:"op_id"`
		Person  string `json:"person"`
		Element *struct {
			ID        string          `json:"id"`
			Kind      string          `json:"kind"`
			Version   int64           `json:"version"`
			Data      json.RawMessage `json:"data"`
			UpdatedAt string          `json:"updated_at"`
		} `json:"element"`
		Data json.RawMessage `json:"data"`
	}
	if json.Unmarshal(compact.Bytes(), &ev) != nil {
		return compact.Bytes()
	}
	if ev.Type == "" {
		ev.Type = typ
	}
	id := ev.ID
	if id == "" {
		id = ev.Cursor
	}
	at := ev.At
	if at == "" && ev.Element != nil {
		at = ev.Element.UpdatedAt
	}
	if ts, err := time.Parse(time.RFC3339Nano, at); err == nil {
		at = ts.UTC().Format("2006-01-02T15:04:05.000Z")
	}
	var b []byte
	if at != "" {
		b = append(b, at...)
		b = append(b, ' ')
	}
	if id != "" {
		b = append(b, '#')
		b = append(b, id...)
		b = append(b, ' ')
	}
	b = append(b, ev.Type...)
	if ev.Person != "" {
		b = append(b, ' ')
		b = append(b, ev.Person...)
	}
	payload := ev.Data
	if ev.Element != nil {
		b = fmt.Appendf(b, " %s %s v%d", ev.Element.ID, ev.Element.Kind, ev.Element.Version)
		payload = ev.Element.Data
	}
	if len(payload) > 0 {
		b = append(b, ' ')
		b = append(b, payload...)
	}
	if ev.OpID != "" {
		b = append(b, " op="...)
		b = append(b, ev.OpID...)
	}
	return b
}

// parseArgs parses a subcommand's flags, which may come before or after
// its positional arguments, and returns the positional arguments.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errUsage
			}
			return nil, fmt.Errorf("%w: %w", errUsage, err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
