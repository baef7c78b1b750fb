// Package client is roomfeed's Go client. Subscribe follows one room or
// several from a cursor and delivers every recorded event once and in order
// per room, reconnecting with the server's retry: hint and capped, jittered
// backoff, surfacing reset and ephemeral (presence) events; SubscribeFiltered
// follows only the events that pass a Filter. Snapshot reads a room's
// elements and cursor, Page one page of its history. Dial opens one event
// stream without reconnecting, for tools and tests that look at the wire.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/sse"
)

// Defaults of the Client fields left zero.
const (
	DefaultMaxBackoff  = 30 * time.Second
	DefaultIdleTimeout = 60 * time.Second
)

// Client is a client of one roomfeed server. Only Server is required; set
// the fields before first use and leave them alone after. A Client is safe
// for use by several goroutines.
type Client struct {
	// Server is the base URL of a node, or of the proxy in front of the
	// nodes: "https://feed.example".
	Server string
	// HTTPClient makes the requests; nil means http.DefaultClient. Its
	// Timeout must be 0, since a feed is one long response.
	HTTPClient *http.Client
	// Token, when set, returns the bearer token sent as Authorization. It
	// is called before every request, so it can hand out a fresh token
	// after the server ended a feed with auth_expired.
	Token func(ctx context.Context) (string, error)
	// Name, when set, is sent as ?client= on feeds and writes: without a
	// token, the presence name of a subscriber and the actor of a write.
	Name string
	// MaxBackoff is the longest wait between reconnections
	// (DefaultMaxBackoff when 0).
	MaxBackoff time.Duration
	// IdleTimeout: a feed on which nothing, not even a ": ping", arrives
	// for this long is reconnected (DefaultIdleTimeout when 0, never when
	// negative).
	IdleTimeout time.Duration
}

// Error is a request the server refused: a status other than 200, with the
// code and message of its {"error":{"code","message"}} body.
type Error struct {
	Status     int
	Code       string        // "cursor_ahead", "unauthorized", ...; empty when the body is not a roomfeed error
	Message    string        // the error's message, else the body's text
	Body       string        // the body as received, at most 4 KiB
	RetryAfter time.Duration // the answer's Retry-After, 0 without one
}

// Error says the status, and the code and message when the server gave them.
func (e *Error) Error() string {
	msg := e.Message
	if e.Code != "" {
		msg = e.Code + ": " + e.Message
	}
	return fmt.Sprintf("server answered %d %s: %s", e.Status, http.StatusText(e.Status), msg)
}

// Temporary reports whether the same request may succeed later: 408, 429
// and 5xx answers. Subscriptions retry those and give up on the others.
func (e *Error) Temporary() bool {
	return e.Status >= 500 || e.Status == http.StatusRequestTimeout || e.Status == http.StatusTooManyRequests
}

// permanent marks errors that asking again cannot fix: a bad Server or
// room, an answer that is not an event stream.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// final reports whether a Subscription must give up on err.
func final(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return !e.Temporary()
	}
	return errors.As(err, new(permanent))
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return http.DefaultClient
}

// endpoint returns the URL of a path below Server.
func (c *Client) endpoint(elem ...string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(c.Server, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, permanent{fmt.Errorf("client: server %q: want http://host:port or https://host:port", c.Server)}
	}
	return u.JoinPath(elem...), nil
}

// get sends a GET with the client's token and returns the 200 answer; any
// other answer is an *Error.
func (c *Client) get(ctx context.Context, u string, h http.Header) (*http.Response, error) {
	resp, err := c.send(ctx, http.MethodGet, u, nil, h)
	if err == nil && resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	return resp, err
}

// send sends a request with the client's token and returns the answer
// when it is a success (2xx); any other answer is an *Error.
func (c *Client) send(ctx context.Context, method, u string, body io.Reader, h http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, permanent{err}
	}
	if q := req.URL.Query(); method != http.MethodGet && c.Name != "" && !q.Has("client") {
		q.Set("client", c.Name)
		req.URL.RawQuery = q.Encode()
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if c.Token != nil {
		tok, err := c.Token(ctx)
		if err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, readError(resp)
	}
	return resp, nil
}

// readError reads a refused answer into an *Error.
func readError(resp *http.Response) *Error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	e := &Error{Status: resp.StatusCode, Body: string(body), Message: strings.TrimSpace(string(body)),
		RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	var v struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(body, &v) == nil && v.Error.Code != "" {
		e.Code, e.Message = v.Error.Code, v.Error.Message
	}
	return e
}

// retryAfter reads a Retry-After header (seconds or an HTTP date), at most
// five minutes.
func retryAfter(h string) time.Duration {
	var d time.Duration
	if n, err := strconv.Atoi(h); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = time.Until(t)
	}
	return min(max(d, 0), 5*time.Minute)
}

// Snapshot is a room's elements at one position of its feed.
type Snapshot struct {
	Room     string
	Cursor   int64 // the events after it are exactly the changes not in Elements
	Elements []roomfeed.Element
}

// Snapshot reads a room's elements and their cursor (GET
// /rooms/{room}/elements). A refused request is an *Error.
func (c *Client) Snapshot(ctx context.Context, room string) (Snapshot, error) {
	u, err := c.endpoint("rooms", room, "elements")
	if err != nil {
		return Snapshot{}, err
	}
	snap, err := c.readSnapshot(ctx, u.String())
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot: %w", err)
	}
	return snap, nil
}

// readSnapshot reads the snapshot at u.
func (c *Client) readSnapshot(ctx context.Context, u string) (Snapshot, error) {
	resp, err := c.get(ctx, u, http.Header{"Accept": {"application/json"}})
	if err != nil {
		return Snapshot{}, err
	}
	defer resp.Body.Close()
	var body struct {
		Room     string             `json:"room"`
		Cursor   string             `json:"cursor"`
		Elements []roomfeed.Element `json:"elements"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return Snapshot{}, err
	}
	cursor, err := sse.ParseCursor(body.Cursor)
	if err != nil {
		return Snapshot{}, fmt.Errorf("cursor %q: %w", body.Cursor, err)
	}
	return Snapshot{Room: body.Room, Cursor: cursor, Elements: body.Elements}, nil
}

// goneOldest returns the "oldest" of a 410 answer with the error code code
// (history_trimmed, versions_trimmed), and whether err is one.
func goneOldest(err error, code string) (string, bool) {
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusGone || e.Code != code {
		return "", false
	}
	var body struct {
		Error struct{ Oldest string } `json:"error"`
	}
	_ = json.Unmarshal([]byte(e.Body), &body)
	return body.Error.Oldest, true
}
