package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/sse"
)

// Page is one page of a room's history.
type Page struct {
	Room   string
	Events []Event // the events after the cursor that pass the filter, in order
	Next   int64   // the next page's cursor: the last event read, passed or not
	Head   int64   // the room's head when the page was read; Next == Head: all read
}

// TrimmedError is Page's answer to a cursor older than the room's retained
// history (410 history_trimmed). Oldest is the oldest event still retained
// (the head + 1 when none is): a Page after Oldest-1 is served; the events
// between are lost, so a program that keeps state reloads the snapshot.
// errors.Is(err, roomfeed.ErrTrimmed) holds.
type TrimmedError struct {
	Room   string
	Oldest int64
}

func (e *TrimmedError) Error() string {
	return fmt.Sprintf("the history of room %s is trimmed: the oldest event retained is %d", e.Room, e.Oldest)
}

func (e *TrimmedError) Unwrap() error { return roomfeed.ErrTrimmed }

// Page reads one page of room's history (GET /rooms/{room}/events as
// JSON): the events after the cursor that pass f, at most limit of them (0:
// the server's default, 500; at most 5,000). A filtered page may hold fewer
// events than limit, even none, and still move Next: read pages from Next
// until it reaches Head. A cursor older than the retained history is a
// *TrimmedError; any other refusal an *Error.
func (c *Client) Page(ctx context.Context, room string, after int64, limit int, f Filter) (Page, error) {
	if !roomfeed.ValidName(room) {
		return Page{}, permanent{fmt.Errorf("client: room %q must match %s", room, roomfeed.NamePattern)}
	}
	u, err := c.endpoint("rooms", room, "events")
	if err != nil {
		return Page{}, err
	}
	q := url.Values{"format": {"json"}, "after": {strconv.FormatInt(after, 10)}}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	f.AddTo(q)
	u.RawQuery = q.Encode()
	resp, err := c.get(ctx, u.String(), http.Header{"Accept": {"application/json"}})
	if err != nil {
		return Page{}, fmt.Errorf("page: %w", trimmed(room, err))
	}
	defer resp.Body.Close()
	var body struct {
		Room   string            `json:"room"`
		Events []json.RawMessage `json:"events"`
		Next   string            `json:"next"`
		Head   string            `json:"head"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return Page{}, fmt.Errorf("page: %w", err)
	}
	p := Page{Room: body.Room, Events: make([]Event, 0, len(body.Events))}
	p.Next, err = sse.ParseCursor(body.Next)
	if err == nil {
		p.Head, err = sse.ParseCursor(body.Head)
	}
	if err != nil {
		return Page{}, fmt.Errorf("page: next %q, head %q: %w", body.Next, body.Head, err)
	}
	for _, data := range body.Events {
		var ev struct{ ID, Type string }
		_ = json.Unmarshal(data, &ev)
		seq, err := sse.ParseCursor(ev.ID)
		if err != nil {
			return Page{}, fmt.Errorf("page: event %s: %w", data, err)
		}
		p.Events = append(p.Events, Event{Room: room, Seq: seq, Type: ev.Type, Data: data})
	}
	return p, nil
}

// trimmed turns a 410 history_trimmed answer into a *TrimmedError; other
// errors pass as they are.
func trimmed(room string, err error) error {
	raw, ok := goneOldest(err, "history_trimmed")
	if !ok {
		return err
	}
	oldest, perr := sse.ParseCursor(raw)
	if perr != nil {
		return err
	}
	return &TrimmedError{Room: room, Oldest: oldest}
}
