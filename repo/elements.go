package repo

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
)

// Precondition is a write's HTTP precondition.
type Precondition struct {
	IfMatch        *int64 // nil = no check; else the element must exist with exactly this version
	IfMatchAny     bool   // true = the element must exist (If-Match: *)
	IfNoneMatchAny bool   // true = the element must not exist
	// MaxElements > 0 refuses to create an element (ErrRoomFull) in a room
	// that holds this many already. Replacing an element is always allowed.
	MaxElements int
}

// Meta is echoed into the event payload when non-empty.
type Meta struct {
	OpID  string
	Actor string
}

// Snapshot is a room's elements (sorted by id) as of event Cursor.
type Snapshot struct {
	Room     string
	Cursor   int64
	Elements []roomfeed.Element
}

func (p Precondition) check(exists bool, version int64) error {
	if p.IfNoneMatchAny && exists {
		return ErrExists
	}
	if p.IfMatchAny && !exists {
		return ErrVersionMismatch
	}
	if p.IfMatch != nil && (!exists || *p.IfMatch != version) {
		return ErrVersionMismatch
	}
	return nil
}

// Put creates the element (version 1, element.created) or replaces it
// (version+1, element.updated; the kind may change). created reports which.
func (s *Store) Put(ctx context.Context, room, id, kind string, data json.RawMessage, pre Precondition, meta Meta) (el roomfeed.Element, ev roomfeed.Event, created bool, err error) {
	data, err = compactJSON(data, "{}")
	if err != nil {
		return roomfeed.Element{}, roomfeed.Event{}, false, fmt.Errorf("put element: data: %w", err)
	}
	if !isObject(data) {
		return roomfeed.Element{}, roomfeed.Event{}, false, fmt.Errorf("put element: data is not a JSON object: %w", ErrInvalid)
	}
	err = s.write(ctx, room, id, func(ctx context.Context, tx sqlstore.Tx) error {
		cur, exists, err := tx.Element(ctx, id)
		if err != nil {
			return err
		}
		if err := pre.check(exists, cur.Version); err != nil {
			return err
		}
		created = !exists
		if created {
			if pre.MaxElements > 0 && tx.Elements() >= int64(pre.MaxElements) {
				return ErrRoomFull
			}
			// A re-created element goes on from its tombstone's version.
			if cur.Version, err = tx.Tombstone(ctx, id); err != nil {
				return err
			}
		}
		el = roomfeed.Element{ID: id, Kind: kind, Version: cur.Version + 1, Data: data, UpdatedAt: tx.Time()}
		if err := tx.SaveElement(ctx, el); err != nil {
			return err
		}
		typ := roomfeed.TypeUpdated
		if created {
			typ = roomfeed.TypeCreated
		}
		ev, err = elementEvent(ctx, tx, room, typ, el, meta)
		return err
	})
	if err != nil {
		return roomfeed.Element{}, roomfeed.Event{}, false, fmt.Errorf("put element: %w", err)
	}
	return el, ev, created, nil
}

// Patch applies an RFC 7386 JSON merge patch to the element's data and
// records element.updated. A missing element is ErrNotFound (or
// ErrVersionMismatch when If-Match was given).
func (s *Store) Patch(ctx context.Context, room, id string, patch json.RawMessage, pre Precondition, meta Meta) (roomfeed.Element, roomfeed.Event, error) {
	var (
		el roomfeed.Element
		ev roomfeed.Event
	)
	if !isObject(patch) {
		return roomfeed.Element{}, roomfeed.Event{}, fmt.Errorf("patch element: patch is not a JSON object: %w", ErrInvalid)
	}
	err := s.write(ctx, room, id, func(ctx context.Context, tx sqlstore.Tx) error {
		cur, err := existing(ctx, tx, id, pre)
		if err != nil {
			return err
		}
		data, err := mergePatch(cur.Data, patch)
		if err != nil {
			return err
		}
		el = roomfeed.Element{ID: id, Kind: cur.Kind, Version: cur.Version + 1, Data: data, UpdatedAt: tx.Time()}
		if err := tx.SaveElement(ctx, el); err != nil {
			return err
		}
		ev, err = elementEvent(ctx, tx, room, roomfeed.TypeUpdated, el, meta)
		return err
	})
	if err != nil {
		return roomfeed.Element{}, roomfeed.Event{}, fmt.Errorf("patch element: %w", err)
	}
	return el, ev, nil
}

// Delete removes the element and records element.deleted, whose element
// has the id, kind and tombstone version (the deleted version + 1) and no
// data. A missing element is ErrNotFound (or ErrVersionMismatch when
// If-Match was given).
func (s *Store) Delete(ctx context.Context, room, id string, pre Precondition, meta Meta) (roomfeed.Event, error) {
	var ev roomfeed.Event
	err := s.write(ctx, room, id, func(ctx context.Context, tx sqlstore.Tx) error {
		cur, err := existing(ctx, tx, id, pre)
		if err != nil {
			return err
		}
		if err := tx.DeleteElement(ctx, id); err != nil {
			return err
		}
		tomb := roomfeed.Element{ID: id, Kind: cur.Kind, Version: cur.Version + 1, UpdatedAt: tx.Time()}
		if err := tx.SaveTombstone(ctx, id, tomb.Version); err != nil {
			return err
		}
		ev, err = elementEvent(ctx, tx, room, roomfeed.TypeDeleted, tomb, meta)
		return err
	})
	if err != nil {
		return roomfeed.Event{}, fmt.Errorf("delete element: %w", err)
	}
	return ev, nil
}

// Message records a custom room message as an event of type name. It does
// not touch elements. Empty data is recorded as null.
func (s *Store) Message(ctx context.Context, room, name string, data json.RawMessage, meta Meta) (roomfeed.Event, error) {
	data, err := compactJSON(data, "null")
	if err != nil {
		return roomfeed.Event{}, fmt.Errorf("record message: data: %w", err)
	}
	var ev roomfeed.Event
	err = s.write(ctx, room, "", func(ctx context.Context, tx sqlstore.Tx) error {
		payload, err := encodeJSON(messagePayload{
			ID: strconv.FormatInt(tx.Seq(), 10), Room: room, Type: name, Data: data,
			OpID: meta.OpID, Actor: meta.Actor, At: formatTime(tx.Time()),
		})
		if err != nil {
			return err
		}
		ev, err = recordEvent(ctx, tx, room, name, payload)
		return err
	})
	if err != nil {
		return roomfeed.Event{}, fmt.Errorf("record message: %w", err)
	}
	return ev, nil
}

// existing reads an element that must exist and pass pre: a failed
// precondition is its error, then a missing element is ErrNotFound.
func existing(ctx context.Context, tx sqlstore.Tx, id string, pre Precondition) (roomfeed.Element, error) {
	cur, exists, err := tx.Element(ctx, id)
	if err != nil {
		return roomfeed.Element{}, err
	}
	if err := pre.check(exists, cur.Version); err != nil {
		return roomfeed.Element{}, err
	}
	if !exists {
		return roomfeed.Element{}, ErrNotFound
	}
	return cur, nil
}

func elementEvent(ctx context.Context, tx sqlstore.Tx, room, typ string, el roomfeed.Element, meta Meta) (roomfeed.Event, error) {
	payload, err := encodeJSON(elementPayload{
		ID: strconv.FormatInt(tx.Seq(), 10), Room: room, Type: typ, Element: el,
		OpID: meta.OpID, Actor: meta.Actor, At: formatTime(tx.Time()),
	})
	if err != nil {
		return roomfeed.Event{}, err
	}
	return recordEvent(ctx, tx, room, typ, payload)
}

// recordEvent records the write's event of type typ with payload.
func recordEvent(ctx context.Context, tx sqlstore.Tx, room, typ string, payload []byte) (roomfeed.Event, error) {
	ev := roomfeed.Event{Room: room, Seq: tx.Seq(), Type: typ, Data: payload, At: tx.Time()}
	if err := tx.InsertEvent(ctx, ev); err != nil {
		return roomfeed.Event{}, err
	}
	return ev, nil
}

// Get returns one element.
func (s *Store) Get(ctx context.Context, room, id string) (roomfeed.Element, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	el, err := s.db.Get(ctx, room, id)
	if errors.Is(err, sql.ErrNoRows) {
		return roomfeed.Element{}, fmt.Errorf("get element: %w", ErrNotFound)
	}
	if err != nil {
		return roomfeed.Element{}, fmt.Errorf("get element: %w", sqlstore.ClassifyBounded(ctx, err))
	}
	return el, nil
}

// Snapshot returns the room's elements and its sequence number read in one
// transaction, so the events after Cursor are exactly the changes the
// snapshot lacks. An unknown room is an empty snapshot with Cursor 0.
func (s *Store) Snapshot(ctx context.Context, room string) (Snapshot, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	cursor, els, err := s.db.Snapshot(ctx, room)
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot: %w", sqlstore.ClassifyBounded(ctx, err))
	}
	return Snapshot{Room: room, Cursor: cursor, Elements: els}, nil
}

// elementPayload and messagePayload fix the key order of event payloads.
type elementPayload struct {
	ID      string           `json:"id"`
	Room    string           `json:"room"`
	Type    string           `json:"type"`
	Element roomfeed.Element `json:"element"`
	OpID    string           `json:"op_id,omitempty"`
	Actor   string           `json:"actor,omitempty"`
	At      string           `json:"at"`
}

type messagePayload struct {
	ID    string          `json:"id"`
	Room  string          `json:"room"`
	Type  string          `json:"type"`
	Data  json.RawMessage `json:"data"`
	OpID  string          `json:"op_id,omitempty"`
	Actor string          `json:"actor,omitempty"`
	At    string          `json:"at"`
}

// formatTime formats t as the payloads do, like time.Time's MarshalJSON.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// encodeJSON marshals v without HTML escaping, so embedded raw JSON keeps
// its bytes.
func encodeJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// compactJSON validates and compacts raw; empty input becomes def.
func compactJSON(raw json.RawMessage, def string) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return json.RawMessage(def), nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return b.Bytes(), nil
}

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{' && json.Valid(raw)
}
