package client

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/roomfeed/roomfeed/sse"
)

// Stream is one open event stream, read event by event without
// reconnecting.
type Stream struct {
	// Response is the server's answer, for its headers; its Body is the
	// stream and belongs to the Stream.
	Response *http.Response

	dec    *sse.Decoder
	cancel context.CancelFunc
}

// Dial GETs url as an event stream, with Last-Event-ID: lastEventID when
// that is not empty and the client's token. An answer other than 200 is an
// *Error, and a 200 that is not text/event-stream an error too. ctx bounds
// the whole stream; Close ends it.
func (c *Client) Dial(ctx context.Context, url, lastEventID string) (*Stream, error) {
	return c.dial(ctx, url, lastEventID, nil)
}

// dial is Dial; onRead, when set, is called whenever bytes arrive.
func (c *Client) dial(ctx context.Context, url, lastEventID string, onRead func()) (*Stream, error) {
	ctx, cancel := context.WithCancel(ctx)
	h := http.Header{"Accept": {"text/event-stream"}, "Cache-Control": {"no-cache"}}
	if lastEventID != "" {
		h.Set("Last-Event-ID", lastEventID)
	}
	resp, err := c.get(ctx, url, h)
	if err != nil {
		cancel()
		return nil, err
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		resp.Body.Close()
		cancel()
		return nil, permanent{fmt.Errorf("%s answered Content-Type %q, not an event stream", resp.Request.URL.Redacted(), ct)}
	}
	var body io.Reader = resp.Body
	if onRead != nil {
		body = watchedReader{resp.Body, onRead}
	}
	return &Stream{Response: resp, dec: sse.NewDecoder(body), cancel: cancel}, nil
}

// Next returns the stream's next event; io.EOF when the server ended it.
func (s *Stream) Next() (sse.Event, error) { return s.dec.Next() }

// Retry returns the stream's latest retry: hint, and whether it sent one.
func (s *Stream) Retry() (time.Duration, bool) { return s.dec.Retry() }

// Close ends the stream.
func (s *Stream) Close() error {
	s.cancel()
	return s.Response.Body.Close()
}

// watchedReader calls onRead whenever bytes arrive.
type watchedReader struct {
	r      io.Reader
	onRead func()
}

func (w watchedReader) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n > 0 {
		w.onRead()
	}
	return n, err
}
