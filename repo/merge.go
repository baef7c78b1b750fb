package repo

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/internal/jsonmerge"
	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
)

// ConflictError is the error of a stale write whose merge found paths both
// sides changed differently. errors.Is(err, ErrConflict) holds for it.
type ConflictError struct {
	// Conflicts are the paths; Theirs is the current version's side, Mine
	// the write's.
	Conflicts []jsonmerge.Conflict
	Current   roomfeed.Element // the element's current version
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("conflict: %d paths changed differently since version %d", len(e.Conflicts), e.Current.Version)
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

// merge writes a Put or Patch whose If-Match, version base, is stale: the
// element cur has moved on. mine returns the write's kind and data as the
// write meant them on base. The change from base to mine is merged three
// ways onto cur (jsonmerge.Merge3: objects member by member, anything else
// a leaf) and written as the next version (element.updated, a version of
// type merged, Outcome.MergedFrom = base). The kind is the side's that
// changed it.
//
// A base that is not kept, or belongs to an earlier life of the id (before
// a delete), or a kind both sides changed differently, is
// ErrVersionMismatch; paths both sides changed differently are a
// *ConflictError. Both write nothing.
func (s *Store) merge(ctx context.Context, tx sqlstore.Tx, room string, cur roomfeed.Element, base int64, meta Meta,
	mine func(base sqlstore.Version) (kind string, data json.RawMessage, err error)) (Outcome, error) {
	b, err := mergeBase(ctx, tx, cur.ID, base)
	if err != nil {
		return Outcome{}, err
	}
	kind, data, err := mine(b)
	if err != nil {
		return Outcome{}, err
	}
	if kind, err = mergeKind(b.Kind, cur.Kind, kind); err != nil {
		return Outcome{}, err
	}
	merged, conflicts, err := jsonmerge.Merge3(b.Data, cur.Data, data)
	if err != nil {
		return Outcome{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(conflicts) > 0 {
		return Outcome{}, &ConflictError{Conflicts: conflicts, Current: cur}
	}
	el := roomfeed.Element{ID: cur.ID, Kind: kind, Version: cur.Version + 1, Data: merged, UpdatedAt: tx.Time()}
	out, err := s.saveElement(ctx, tx, room, el, versionMerged, meta)
	out.MergedFrom = base
	return out, err
}

// mergeBase reads version n of element id to merge from: a kept version
// with data, of the id's current life (above its tombstone).
func mergeBase(ctx context.Context, tx sqlstore.Tx, id string, n int64) (sqlstore.Version, error) {
	tomb, err := tx.Tombstone(ctx, id)
	if err != nil {
		return sqlstore.Version{}, err
	}
	if n <= tomb {
		return sqlstore.Version{}, ErrVersionMismatch
	}
	v, found, err := tx.Version(ctx, id, n)
	if err != nil {
		return sqlstore.Version{}, err
	}
	if !found || v.Data == nil {
		return sqlstore.Version{}, ErrVersionMismatch
	}
	return v, nil
}

// mergeKind is the kind of a merged write: the side's that changed it from
// base, either's if both changed it alike; both changing it differently
// is ErrVersionMismatch.
func mergeKind(base, theirs, mine string) (string, error) {
	switch {
	case mine == base, mine == theirs:
		return theirs, nil
	case theirs == base:
		return mine, nil
	}
	return "", ErrVersionMismatch
}
