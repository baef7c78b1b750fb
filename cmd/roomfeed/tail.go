package main

// `roomfeed tail`: follow a room's feed from the terminal like tail -f.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
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

var tailRoomPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

const tailUsage = `usage: roomfeed tail [flags] ROOM

Prints the room's events as they happen, one line each: the event's JSON
(--format json, the default) or a short human form (--format text). It
resumes from --from, else from the cursor stored in --cursor-file, else from
the room's current position; it reconnects after a dropped or closed stream
with capped, jittered backoff (following the server's retry: hint) and sends
the last printed id as Last-Event-ID, so nothing is missed or printed twice.

Exit status: 0 on interrupt, 1 on error (bad flags, refused request,
unwritable output), 3 when the server resets the cursor because the history
after it was trimmed (with --resnapshot it prints the current snapshot as
"snapshot" lines instead and goes on).

flags:
`

// tailConfig is the configuration of one `roomfeed tail`.
type tailConfig struct {
	Server      *url.URL
	Room        string
	From        string
	CursorFile  string
	Format      string
	Resnapshot  bool
	Token       string
	MaxBackoff  time.Duration
	IdleTimeout time.Duration
}

func parseTailConfig(args []string, getenv func(string) string, stderr io.Writer) (tailConfig, error) {
	var cfg tailConfig
	fs := flag.NewFlagSet("roomfeed tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), tailUsage)
		fs.PrintDefaults()
	}
	server := getenv("ROOMFEED_SERVER")
	if server == "" {
		server = "http://127.0.0.1:8080"
	}
	fs.StringVar(&server, "server", server, "base URL of a roomfeed node or of the proxy in front of them ($ROOMFEED_SERVER)")
	fs.StringVar(&cfg.From, "from", "", "start after this event id (0 = the whole retained history); overrides --cursor-file")
	fs.StringVar(&cfg.CursorFile, "cursor-file", "", "file holding the last printed id: read at start, rewritten atomically after each event")
	fs.StringVar(&cfg.Format, "format", "json", "json (the event's data, one line each) or text")
	fs.BoolVar(&cfg.Resnapshot, "resnapshot", false, "on reset, print the room's snapshot and go on instead of exiting with status 3")
	fs.StringVar(&cfg.Token, "token", getenv("ROOMFEED_TOKEN"), "bearer token sent as Authorization ($ROOMFEED_TOKEN)")
	fs.DurationVar(&cfg.MaxBackoff, "max-backoff", 30*time.Second, "longest wait between reconnection attempts")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", 60*time.Second, "reconnect when nothing (not even a ping) arrives for this long")

	// Flags may come before or after the room.
	var rooms []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return cfg, errUsage
			}
			return cfg, fmt.Errorf("%w: %w", errUsage, err)
		}
		if fs.NArg() == 0 {
			break
		}
		rooms = append(rooms, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(rooms) != 1 {
		fmt.Fprintf(stderr, "roomfeed tail: want exactly one room, got %d\n", len(rooms))
		fs.Usage()
		return cfg, fmt.Errorf("%w: want exactly one room, got %d", errUsage, len(rooms))
	}
	cfg.Room = rooms[0]
	var errs []error
	if !tailRoomPattern.MatchString(cfg.Room) {
		errs = append(errs, fmt.Errorf("room %q must match %s", cfg.Room, tailRoomPattern))
	}
	u, err := url.Parse(strings.TrimRight(server, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("--server %q: want http://host:port or https://host:port", server))
	}
	cfg.Server = u
	if cfg.From != "" {
		if _, err := parseSeq(cfg.From); err != nil {
			errs = append(errs, fmt.Errorf("--from %q: %w", cfg.From, err))
		}
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

// parseSeq reads a cursor: a decimal seq, or the Redis form "42-0".
func parseSeq(s string) (int64, error) {
	s = strings.TrimSuffix(strings.TrimSpace(s), "-0")
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("want an event id such as 42")
	}
	return n, nil
}

// runTail is `roomfeed tail`: it returns nil when ctx is cancelled.
func runTail(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseTailConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	t := &tailer{
		cfg:    cfg,
		out:    stdout,
		stderr: stderr,
		retry:  time.Second,
		transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
			IdleConnTimeout:       90 * time.Second,
		},
	}
	defer t.transport.CloseIdleConnections()
	switch {
	case cfg.From != "":
		t.cursor, _ = parseSeq(cfg.From)
		t.hasCursor = true
	case cfg.CursorFile != "":
		raw, err := os.ReadFile(cfg.CursorFile)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return fmt.Errorf("cursor file: %w", err)
		case len(bytes.TrimSpace(raw)) > 0:
			if t.cursor, err = parseSeq(string(raw)); err != nil {
				return fmt.Errorf("cursor file %s: %w", cfg.CursorFile, err)
			}
			t.hasCursor = true
		}
	}
	return t.run(ctx)
}

// tailer follows one room.
type tailer struct {
	cfg       tailConfig
	out       io.Writer
	stderr    io.Writer
	transport *http.Transport

	cursor    int64 // id of the last event printed (or the start position)
	hasCursor bool
	retry     time.Duration // the server's retry: hint
}

// errPermanent marks answers that reconnecting cannot fix.
var errPermanent = errors.New("permanent")

func (t *tailer) run(ctx context.Context) error {
	failures := 0
	for {
		connected, wait, err := t.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var ee *exitError
		if errors.As(err, &ee) || errors.Is(err, errPermanent) {
			return err
		}
		if connected {
			failures = 0
		}
		delay := t.retry
		if err != nil {
			failures++
			delay = t.retry << min(failures-1, 16)
		}
		delay = max(jitter(min(delay, t.cfg.MaxBackoff), t.cfg.MaxBackoff), wait)
		why := "stream closed"
		if err != nil {
			why = err.Error()
		}
		t.note("%s; reconnecting in %v%s", why, delay.Round(time.Millisecond), t.fromText())
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

// jitter moves d by up to a quarter either way, never above limit, so the
// clients of a node that went away do not all come back at once.
func jitter(d, limit time.Duration) time.Duration {
	j := rand.N(d/4 + 1)
	if d+j > limit {
		return d - j
	}
	return d + j
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

// follow opens the feed once and prints its events until it ends. connected
// reports that the server accepted the stream; wait is the least delay the
// server asked for (Retry-After).
func (t *tailer) follow(ctx context.Context) (connected bool, wait time.Duration, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	u := *t.cfg.Server
	u.Path += "/rooms/" + url.PathEscape(t.cfg.Room) + "/events"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, 0, fmt.Errorf("%w: %w", errPermanent, err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if t.hasCursor {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(t.cursor, 10))
	}
	t.authorize(req)
	resp, err := t.transport.RoundTrip(req)
	if err != nil {
		return false, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, retryAfter(resp.Header), statusError(resp)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		return false, 0, fmt.Errorf("%w: %s answered Content-Type %q, not an event stream", errPermanent, u.Redacted(), ct)
	}

	// A stream that goes silent (no event, no ping) is a dead connection.
	idle := time.AfterFunc(t.cfg.IdleTimeout, func() {
		cancel(fmt.Errorf("nothing received for %v", t.cfg.IdleTimeout))
	})
	defer idle.Stop()
	r := newSSEReader(resp.Body)
	r.onComment = func(c string) {
		// The server's first comment names the start position of a stream
		// opened without a cursor; adopting it means a reconnection before
		// the first event misses nothing.
		if t.hasCursor {
			return
		}
		if rest, ok := strings.CutPrefix(c, "roomfeed "+t.cfg.Room+" from "); ok {
			if n, err := strconv.ParseInt(rest, 10, 64); err == nil && n >= 0 {
				t.cursor, t.hasCursor = n, true
				_ = t.saveCursor()
			}
		}
	}
	r.onLine = func() { idle.Reset(t.cfg.IdleTimeout) }
	for {
		ev, err := r.next()
		if r.retry > 0 {
			t.retry = r.retry
		}
		if err != nil {
			if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil && !errors.Is(cause, context.Canceled) {
				return true, 0, cause
			}
			if errors.Is(err, io.EOF) {
				return true, 0, nil // a clean close: reconnect after the retry delay
			}
			return true, 0, err
		}
		if err := t.handle(ctx, ev); err != nil {
			return true, 0, err
		}
	}
}

func (t *tailer) authorize(req *http.Request) {
	if t.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+t.cfg.Token)
	}
}

// statusError describes a refused request; 4xx answers other than 408 and
// 429 are permanent.
func statusError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Error.Code != "" {
		msg = e.Error.Code + ": " + e.Error.Message
	}
	err := fmt.Errorf("server answered %s: %s", resp.Status, msg)
	if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
		return fmt.Errorf("%w: %w", errPermanent, err)
	}
	return err
}

func retryAfter(h http.Header) time.Duration {
	if n, err := strconv.Atoi(h.Get("Retry-After")); err == nil && n > 0 {
		return min(time.Duration(n)*time.Second, 5*time.Minute)
	}
	return 0
}

// handle prints one event, skipping ids already printed.
func (t *tailer) handle(ctx context.Context, ev sseEvent) error {
	switch ev.Type {
	case "reset":
		return t.reset(ctx, ev)
	case "error", "auth_expired":
		// The server ends the stream after these; the reconnection tells
		// whether it can go on (an expired token gets a final 401).
		t.note("%s: %s", ev.Type, ev.Data)
		return nil
	}
	if !ev.HasID || ev.ID == "" {
		// Ephemeral events (presence) carry no id: printed, never a cursor.
		return t.print(formatEvent(t.cfg.Format, ev.Type, []byte(ev.Data)))
	}
	seq, err := parseSeq(ev.ID)
	if err != nil {
		return fmt.Errorf("event id %q: %w", ev.ID, err)
	}
	if t.hasCursor && seq <= t.cursor {
		return nil
	}
	if err := t.print(formatEvent(t.cfg.Format, ev.Type, []byte(ev.Data))); err != nil {
		return err
	}
	t.cursor, t.hasCursor = seq, true
	return t.saveCursor()
}

// reset handles `event: reset`: the history after the cursor is gone.
func (t *tailer) reset(ctx context.Context, ev sseEvent) error {
	var r struct{ Cursor, Reason string }
	_ = json.Unmarshal([]byte(ev.Data), &r)
	if !t.cfg.Resnapshot {
		return &exitError{exitReset, fmt.Errorf("room %s was reset (%s): the events after %d are no longer retained and the room is at %s; reload a snapshot or rerun with --resnapshot",
			t.cfg.Room, r.Reason, t.cursor, r.Cursor)}
	}
	snap, err := t.snapshot(ctx)
	if err != nil {
		return err
	}
	cursor, err := parseSeq(snap.Cursor)
	if err != nil {
		return fmt.Errorf("snapshot cursor %q: %w", snap.Cursor, err)
	}
	t.note("room reset (%s); printing the snapshot at %d", r.Reason, cursor)
	for _, el := range snap.Elements {
		line, _ := json.Marshal(struct {
			Room    string          `json:"room"`
			Type    string          `json:"type"`
			Cursor  string          `json:"cursor"`
			Element json.RawMessage `json:"element"`
		}{t.cfg.Room, "snapshot", snap.Cursor, el})
		if err := t.print(formatEvent(t.cfg.Format, "snapshot", line)); err != nil {
			return err
		}
	}
	// The stream goes on after the reset; events already in the snapshot
	// (seq <= its cursor) are skipped.
	t.cursor, t.hasCursor = cursor, true
	return t.saveCursor()
}

type snapshotBody struct {
	Cursor   string            `json:"cursor"`
	Elements []json.RawMessage `json:"elements"`
}

func (t *tailer) snapshot(ctx context.Context) (snapshotBody, error) {
	var snap snapshotBody
	u := *t.cfg.Server
	u.Path += "/rooms/" + url.PathEscape(t.cfg.Room) + "/elements"
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return snap, err
	}
	req.Header.Set("Accept", "application/json")
	t.authorize(req)
	resp, err := t.transport.RoundTrip(req)
	if err != nil {
		return snap, fmt.Errorf("snapshot: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return snap, fmt.Errorf("snapshot: %w", statusError(resp))
	}
	if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil {
		return snap, fmt.Errorf("snapshot: %w", err)
	}
	return snap, nil
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

// sseEvent is one dispatched Server-Sent Event.
type sseEvent struct {
	ID    string // the last event id in effect when it was dispatched
	HasID bool   // the event set its own id (ephemeral events have none)
	Type  string // "message" when the stream gave none
	Data  string
}

// sseReader parses an event stream by the WHATWG rules: lines end with
// CRLF, LF or CR; "field: value" with one optional space; comments start
// with ':'; an event is dispatched at a blank line when it has data.
type sseReader struct {
	br        *bufio.Reader
	lastID    string
	retry     time.Duration // the latest retry: hint, 0 if none
	onComment func(string)
	onLine    func()

	started bool // the optional byte-order mark has been checked
	skipLF  bool // the previous line ended with CR: a following LF belongs to it
	line    []byte
	maxLine int
	data    strings.Builder
	typ     string
	hasData bool
	hasID   bool
}

func newSSEReader(r io.Reader) *sseReader {
	return &sseReader{br: bufio.NewReaderSize(r, 64<<10), maxLine: 16 << 20}
}

var errLineTooLong = errors.New("event stream line longer than 16 MiB")

// readLine returns the next line without its ending. It never waits for
// input past a line's end, so a CR-terminated event dispatches at once.
func (r *sseReader) readLine() (string, error) {
	r.line = r.line[:0]
	for {
		c, err := r.br.ReadByte()
		if err != nil {
			return "", err
		}
		if r.skipLF {
			r.skipLF = false
			if c == '\n' {
				continue
			}
		}
		switch c {
		case '\n':
			return string(r.line), nil
		case '\r':
			r.skipLF = true
			return string(r.line), nil
		}
		if len(r.line) >= r.maxLine {
			return "", errLineTooLong
		}
		r.line = append(r.line, c)
	}
}

// next returns the next event; io.EOF when the stream ended cleanly (an
// event cut off by the end is discarded, as a browser does).
func (r *sseReader) next() (sseEvent, error) {
	for {
		line, err := r.readLine()
		if err != nil {
			return sseEvent{}, err
		}
		if r.onLine != nil {
			r.onLine()
		}
		if !r.started {
			r.started = true
			line = strings.TrimPrefix(line, "\ufeff")
		}
		if line == "" {
			if !r.hasData {
				r.typ, r.hasID = "", false
				continue
			}
			ev := sseEvent{ID: r.lastID, HasID: r.hasID, Type: r.typ, Data: r.data.String()}
			if ev.Type == "" {
				ev.Type = "message"
			}
			r.data.Reset()
			r.typ, r.hasData, r.hasID = "", false, false
			return ev, nil
		}
		if line[0] == ':' {
			if r.onComment != nil {
				r.onComment(strings.TrimPrefix(line[1:], " "))
			}
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			r.typ = value
		case "data":
			if r.hasData {
				r.data.WriteByte('\n')
			}
			r.data.WriteString(value)
			r.hasData = true
		case "id":
			if !strings.ContainsRune(value, 0) {
				r.lastID, r.hasID = value, true
			}
		case "retry":
			if n, err := strconv.ParseInt(value, 10, 64); err == nil && n >= 0 && strings.Trim(value, "0123456789") == "" {
				r.retry = max(time.Duration(n)*time.Millisecond, time.Millisecond)
			}
		}
	}
}
