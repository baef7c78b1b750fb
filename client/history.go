package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/sse"
)

// Version is one kept version of an element.
type Version struct {
	Version int64
	Seq     int64 // the event that wrote it; 0 when unknown
	At      time.Time
	Actor   string
	OpID    string
	Type    string // created, updated, merged, deleted or reverted
	Kind    string
	Data    json.RawMessage // nil for a deletion
}

// History is a page of an element's kept versions, newest first.
type History struct {
	Room, ID string
	Versions []Version
	Next     int64 // the before of the next page; 0 when this page holds the oldest kept
}

// VersionsTrimmedError is the answer to a version older than the element's
// kept versions (410 versions_trimmed). Oldest is the oldest version kept.
type VersionsTrimmedError struct {
	Room, ID string
	Oldest   int64
}

func (e *VersionsTrimmedError) Error() string {
	return fmt.Sprintf("the versions of %s in room %s are trimmed: the oldest kept is %d", e.ID, e.Room, e.Oldest)
}

// History reads one page of an element's versions (GET
// /rooms/{room}/elements/{id}/history), newest first: those below version
// before (0: from the newest), at most limit of them (0: the server's
// default, 50; at most 500). Page with before = Next until Next is 0. A
// before older than the kept versions is a *VersionsTrimmedError; any
// other refusal an *Error.
func (c *Client) History(ctx context.Context, room, id string, before int64, limit int) (History, error) {
	u, err := c.elementURL(room, id, "history")
	if err != nil {
		return History{}, err
	}
	q := url.Values{}
	if before > 0 {
		q.Set("before", strconv.FormatInt(before, 10))
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	u.RawQuery = q.Encode()
	resp, err := c.get(ctx, u.String(), http.Header{"Accept": {"application/json"}})
	if err != nil {
		return History{}, fmt.Errorf("history: %w", versionsTrimmed(room, id, err))
	}
	defer resp.Body.Close()
	var body struct {
		Room     string `json:"room"`
		ID       string `json:"id"`
		Versions []struct {
			Version           int64
			Seq               string
			At                time.Time
			Actor, Type, Kind string
			OpID              string `json:"op_id"`
			Data              json.RawMessage
		} `json:"versions"`
		Next *int64 `json:"next"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return History{}, fmt.Errorf("history: %w", err)
	}
	h := History{Room: body.Room, ID: body.ID, Versions: make([]Version, 0, len(body.Versions))}
	if body.Next != nil {
		h.Next = *body.Next
	}
	for _, v := range body.Versions {
		seq, err := sse.ParseCursor(v.Seq)
		if err != nil {
			return History{}, fmt.Errorf("history: version %d: seq %q: %w", v.Version, v.Seq, err)
		}
		data := v.Data
		if string(data) == "null" {
			data = nil
		}
		h.Versions = append(h.Versions, Version{Version: v.Version, Seq: seq, At: v.At, Actor: v.Actor,
			OpID: v.OpID, Type: v.Type, Kind: v.Kind, Data: data})
	}
	return h, nil
}

// SnapshotAt reads the room as of seq at (GET /rooms/{room}/elements?at=):
// its elements after event at, with Cursor at. A seq the kept versions no
// longer reach is a *TrimmedError whose Oldest is the oldest seq the room
// can be read at; a seq beyond the head an *Error with code cursor_ahead.
func (c *Client) SnapshotAt(ctx context.Context, room string, at int64) (Snapshot, error) {
	if !roomfeed.ValidName(room) {
		return Snapshot{}, permanent{fmt.Errorf("client: room %q must match %s", room, roomfeed.NamePattern)}
	}
	u, err := c.endpoint("rooms", room, "elements")
	if err != nil {
		return Snapshot{}, err
	}
	u.RawQuery = url.Values{"at": {strconv.FormatInt(at, 10)}}.Encode()
	snap, err := c.readSnapshot(ctx, u.String())
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot at %d: %w", at, trimmed(room, err))
	}
	return snap, nil
}

// RevertOptions are the optional headers of a revert.
type RevertOptions struct {
	IfMatch        int64  // > 0: only if this is the element's newest version (If-Match)
	IdempotencyKey string // makes the revert safe to retry (Idempotency-Key)
}

// Reverted is what a revert wrote.
type Reverted struct {
	Element roomfeed.Element
	Seq     int64 // its event
	Created bool  // it re-created a deleted element
}

// Revert writes version to of an element again as its newest version (POST
// /rooms/{room}/elements/{id}/revert), re-creating a deleted element. A
// version no longer kept is a *VersionsTrimmedError; any other refusal an
// *Error (404 version_not_found, 412 version_mismatch, 422
// version_deleted, ...).
func (c *Client) Revert(ctx context.Context, room, id string, to int64, opts RevertOptions) (Reverted, error) {
	u, err := c.elementURL(room, id, "revert")
	if err != nil {
		return Reverted{}, err
	}
	body, _ := json.Marshal(map[string]int64{"to_version": to})
	h := http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json"}}
	if opts.IfMatch > 0 {
		h.Set("If-Match", `"`+strconv.FormatInt(opts.IfMatch, 10)+`"`)
	}
	if opts.IdempotencyKey != "" {
		h.Set("Idempotency-Key", opts.IdempotencyKey)
	}
	resp, err := c.send(ctx, http.MethodPost, u.String(), bytes.NewReader(body), h)
	if err != nil {
		return Reverted{}, fmt.Errorf("revert: %w", versionsTrimmed(room, id, err))
	}
	defer resp.Body.Close()
	r := Reverted{Created: resp.StatusCode == http.StatusCreated}
	if err := json.NewDecoder(resp.Body).Decode(&r.Element); err != nil {
		return Reverted{}, fmt.Errorf("revert: %w", err)
	}
	r.Seq, _ = sse.ParseCursor(resp.Header.Get("Event-ID"))
	return r, nil
}

// elementURL is the URL of a route below an element.
func (c *Client) elementURL(room, id, route string) (*url.URL, error) {
	if !roomfeed.ValidName(room) || !roomfeed.ValidName(id) {
		return nil, permanent{fmt.Errorf("client: room %q and element %q must match %s", room, id, roomfeed.NamePattern)}
	}
	return c.endpoint("rooms", room, "elements", id, route)
}

// versionsTrimmed turns a 410 versions_trimmed answer into a
// *VersionsTrimmedError; other errors pass as they are.
func versionsTrimmed(room, id string, err error) error {
	raw, ok := goneOldest(err, "versions_trimmed")
	if !ok {
		return err
	}
	oldest, perr := strconv.ParseInt(raw, 10, 64)
	if perr != nil {
		return err
	}
	return &VersionsTrimmedError{Room: room, ID: id, Oldest: oldest}
}
