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
	// IfMatch: nil = no check; else the element must exist with exactly
	// this version, or, for Put and Patch, this must be a kept version of
	// the element's current life to merge from (see Store.merge).
	IfMatch        *int64
	IfMatchAny     bool // true = the element must exist (If-Match: *)
	IfNoneMatchAny bool // true = the element must not exist
	// MaxElements > 0 refuses to create an element (ErrRoomFull) in a room
	// that holds this many already. Replacing an element is always allowed.
	MaxElements int
}

// Meta says who made a write and how it is recognised. OpID and Actor are
// echoed into its event payload and its version when non-empty; Idem, when
// set, makes the write idempotent (see Idempotency), and its key is the
// op_id when OpID is empty.
type Meta struct {
	OpID  string
	Actor string
	Idem  *Idempotency // nil = not idempotent
}

// opID is the op_id the write records.
func (m Meta) opID() string {
	if m.OpID == "" && m.Idem != nil {
		return m.Idem.Key
	}
	return m.OpID
}

// Outcome is what a write did, or, when Replayed is set, that it had been
// done before: then nothing was written and the other fields are zero.
type Outcome struct {
	Element    roomfeed.Element // the element written (Delete: its tombstone); zero for Message
	Event      roomfeed.Event
	Created    bool  // Put created the element
	MergedFrom int64 // the stale If-Match version merged onto the current one; 0 = none
	// RevertedFrom is the version a Revert wrote again; 0 = none.
	RevertedFrom int64
	// ElementJSON is Element as its event carries it (encoded once for the
	// event, the log and the answer); nil for a message.
	ElementJSON json.RawMessage
	// Answer is the answer recorded with the write's idempotency key (nil
	// without one): the caller sends these bytes rather than build them again.
	Answer   *Answer
	Replayed *Answer // the answer recorded by the first write with the key
}

// Snapshot is a room's elements (sorted by id) as of event Cursor.
type Snapshot struct {
	Room     string
	Cursor   int64
	Elements []roomfeed.Element
}

// The types of element versions (element_versions.type).
const (
	versionCreated  = "created"
	versionUpdated  = "updated"
	versionMerged   = "merged"
	versionDeleted  = "deleted"
	versionReverted = "reverted"
)

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

// checkExisting is check for a write to an element that must exist: a
// failed precondition is its error, then a missing element is ErrNotFound.
func (p Precondition) checkExisting(exists bool, version int64) error {
	if err := p.check(exists, version); err != nil {
		return err
	}
	if !exists {
		return ErrNotFound
	}
	return nil
}

// stale reports whether If-Match names another version than the existing
// element's: a PUT or PATCH is then merged from that version (merge.go).
func (p Precondition) stale(exists bool, cur roomfeed.Element) bool {
	return p.IfMatch != nil && exists && *p.IfMatch != cur.Version
}

// base is the version a write reads besides its element: If-Match's.
func (p Precondition) base() int64 {
	if p.IfMatch == nil {
		return 0
	}
	return *p.IfMatch
}

// Put creates the element (version 1, element.created) or replaces it
// (version+1, element.updated; the kind may change); Outcome.Created
// reports which. A stale If-Match is merged (see merge).
func (s *Store) Put(ctx context.Context, room, id, kind string, data json.RawMessage, pre Precondition, meta Meta) (Outcome, error) {
	data, err := compactJSON(data, "{}")
	if err != nil {
		return Outcome{}, fmt.Errorf("put element: data: %w", err)
	}
	if !isObject(data) {
		return Outcome{}, fmt.Errorf("put element: data is not a JSON object: %w", ErrInvalid)
	}
	out, err := s.apply(ctx, room, sqlstore.Reads{ID: id, Base: pre.base()}, meta, func(ctx context.Context, tx sqlstore.Tx) (Outcome, error) {
		cur, exists, err := tx.Element(ctx, id)
		if err != nil {
			return Outcome{}, err
		}
		if pre.stale(exists, cur) {
			return s.merge(ctx, tx, room, cur, *pre.IfMatch, meta, func(sqlstore.Version) (string, json.RawMessage, error) {
				return kind, data, nil
			})
		}
		if err := pre.check(exists, cur.Version); err != nil {
			return Outcome{}, err
		}
		vtype := versionUpdated
		if !exists {
			if pre.MaxElements > 0 && tx.Elements() >= int64(pre.MaxElements) {
				return Outcome{}, ErrRoomFull
			}
			// A re-created element goes on from its tombstone's version.
			if cur.Version, err = tx.Tombstone(ctx, id); err != nil {
				return Outcome{}, err
			}
			vtype = versionCreated
		}
		el := roomfeed.Element{ID: id, Kind: kind, Version: cur.Version + 1, Data: data, UpdatedAt: tx.Time()}
		out, err := s.saveElement(ctx, tx, room, el, vtype, meta)
		out.Created = !exists
		return out, err
	})
	if err != nil {
		return Outcome{}, fmt.Errorf("put element: %w", err)
	}
	return out, nil
}

// Patch applies an RFC 7386 JSON merge patch to the element's data and
// records element.updated. A missing element is ErrNotFound (or
// ErrVersionMismatch when If-Match was given). A stale If-Match is merged
// (see merge): the patch is applied to that version's data.
func (s *Store) Patch(ctx context.Context, room, id string, patch json.RawMessage, pre Precondition, meta Meta) (Outcome, error) {
	if !isObject(patch) {
		return Outcome{}, fmt.Errorf("patch element: patch is not a JSON object: %w", ErrInvalid)
	}
	out, err := s.apply(ctx, room, sqlstore.Reads{ID: id, Base: pre.base()}, meta, func(ctx context.Context, tx sqlstore.Tx) (Outcome, error) {
		cur, exists, err := tx.Element(ctx, id)
		if err != nil {
			return Outcome{}, err
		}
		if pre.stale(exists, cur) {
			return s.merge(ctx, tx, room, cur, *pre.IfMatch, meta, func(base sqlstore.Version) (string, json.RawMessage, error) {
				data, err := mergePatch(base.Data, patch)
				return base.Kind, data, err
			})
		}
		if err := pre.checkExisting(exists, cur.Version); err != nil {
			return Outcome{}, err
		}
		data, err := mergePatch(cur.Data, patch)
		if err != nil {
			return Outcome{}, err
		}
		el := roomfeed.Element{ID: id, Kind: cur.Kind, Version: cur.Version + 1, Data: data, UpdatedAt: tx.Time()}
		return s.saveElement(ctx, tx, room, el, versionUpdated, meta)
	})
	if err != nil {
		return Outcome{}, fmt.Errorf("patch element: %w", err)
	}
	return out, nil
}

// Delete removes the element and records element.deleted, whose element
// (Outcome.Element) has the id, kind and tombstone version (the deleted
// version + 1) and no data. A missing element is ErrNotFound (or
// ErrVersionMismatch when If-Match was given); a stale If-Match is never
// merged. The element's versions are kept.
func (s *Store) Delete(ctx context.Context, room, id string, pre Precondition, meta Meta) (Outcome, error) {
	out, err := s.apply(ctx, room, sqlstore.Reads{ID: id}, meta, func(ctx context.Context, tx sqlstore.Tx) (Outcome, error) {
		cur, exists, err := tx.Element(ctx, id)
		if err != nil {
			return Outcome{}, err
		}
		if err := pre.checkExisting(exists, cur.Version); err != nil {
			return Outcome{}, err
		}
		if err := tx.DeleteElement(ctx, id); err != nil {
			return Outcome{}, err
		}
		tomb := roomfeed.Element{ID: id, Kind: cur.Kind, Version: cur.Version + 1, UpdatedAt: tx.Time()}
		if err := tx.SaveTombstone(ctx, id, tomb.Version); err != nil {
			return Outcome{}, err
		}
		if err := s.saveVersion(ctx, tx, tomb, versionDeleted, meta); err != nil {
			return Outcome{}, err
		}
		return elementEvent(ctx, tx, room, roomfeed.TypeDeleted, tomb, meta, 0)
	})
	if err != nil {
		return Outcome{}, fmt.Errorf("delete element: %w", err)
	}
	return out, nil
}

// Message records a custom room message as an event of type name. It does
// not touch elements. Empty data is recorded as null.
func (s *Store) Message(ctx context.Context, room, name string, data json.RawMessage, meta Meta) (Outcome, error) {
	data, err := compactJSON(data, "null")
	if err != nil {
		return Outcome{}, fmt.Errorf("record message: data: %w", err)
	}
	out, err := s.apply(ctx, room, sqlstore.Reads{}, meta, func(ctx context.Context, tx sqlstore.Tx) (Outcome, error) {
		payload, err := encodeJSON(messagePayload{
			ID: strconv.FormatInt(tx.Seq(), 10), Room: room, Type: name, Data: data,
			OpID: meta.opID(), Actor: meta.Actor, At: formatTime(tx.Time()),
		})
		if err != nil {
			return Outcome{}, err
		}
		ev, err := recordEvent(ctx, tx, room, name, payload)
		return Outcome{Event: ev}, err
	})
	if err != nil {
		return Outcome{}, fmt.Errorf("record message: %w", err)
	}
	return out, nil
}

// saveElement writes el as its element's new version, of type vtype
// (created, updated or merged): the element, its version and its event.
func (s *Store) saveElement(ctx context.Context, tx sqlstore.Tx, room string, el roomfeed.Element, vtype string, meta Meta) (Outcome, error) {
	if err := tx.SaveElement(ctx, el); err != nil {
		return Outcome{}, err
	}
	if err := s.saveVersion(ctx, tx, el, vtype, meta); err != nil {
		return Outcome{}, err
	}
	typ := roomfeed.TypeUpdated
	if vtype == versionCreated {
		typ = roomfeed.TypeCreated
	}
	return elementEvent(ctx, tx, room, typ, el, meta, 0)
}

// saveVersion records el (a tombstone for a deletion) as a version of its
// element, and drops the versions beyond the newest s.keep.
func (s *Store) saveVersion(ctx context.Context, tx sqlstore.Tx, el roomfeed.Element, vtype string, meta Meta) error {
	return tx.SaveVersion(ctx, sqlstore.Version{
		ID: el.ID, Version: el.Version, Seq: tx.Seq(), Type: vtype, Kind: el.Kind, Data: el.Data,
		Actor: meta.Actor, OpID: meta.opID(), At: tx.Time(),
	}, el.Version-s.keep)
}

// elementEvent records the event of an element write, el; revertedFrom,
// when not 0, is the version a revert wrote again. The element is encoded
// once: the event's payload holds those bytes, and so does the Outcome's
// ElementJSON, which the answer sends.
func elementEvent(ctx context.Context, tx sqlstore.Tx, room, typ string, el roomfeed.Element, meta Meta, revertedFrom int64) (Outcome, error) {
	// {head...,"element":<el>,tail...}: the fields in the payload's order,
	// through one encoder into one buffer.
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(payloadHead{ID: strconv.FormatInt(tx.Seq(), 10), Room: room, Type: typ}); err != nil {
		return Outcome{}, err
	}
	b.Truncate(b.Len() - len("}\n"))
	b.WriteString(`,"element":`)
	start := b.Len()
	if err := enc.Encode(el); err != nil {
		return Outcome{}, err
	}
	end := b.Len() - len("\n")
	b.Truncate(end)
	if err := enc.Encode(payloadTail{RevertedFrom: revertedFrom, OpID: meta.opID(), Actor: meta.Actor, At: formatTime(tx.Time())}); err != nil {
		return Outcome{}, err
	}
	payload := b.Bytes()
	payload[end] = ',' // the tail's {
	payload = payload[:len(payload)-len("\n")]
	ev, err := recordEvent(ctx, tx, room, typ, payload)
	return Outcome{Element: el, Event: ev, ElementJSON: payload[start:end:end]}, err
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
// An element event's payload is {"id","room","type","element",
// "reverted_from","op_id","actor","at"}: payloadHead, the element, then
// payloadTail (see elementEvent).
type payloadHead struct {
	ID   string `json:"id"`
	Room string `json:"room"`
	Type string `json:"type"`
}

type payloadTail struct {
	// RevertedFrom: the version a revert wrote again (absent otherwise).
	RevertedFrom int64  `json:"reverted_from,omitempty"`
	OpID         string `json:"op_id,omitempty"`
	Actor        string `json:"actor,omitempty"`
	At           string `json:"at"`
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
