package repo

import (
	"context"
	"errors"
	"fmt"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
)

// Version is one kept version of an element (element_versions): its
// version, the seq of its event (0 when it was kept from before versions
// were recorded), type (VersionCreated, ...), kind, data (nil for a
// deletion), actor, op id and time.
type Version = sqlstore.Version

// The types of element versions (element_versions.type).
const (
	VersionCreated  = versionCreated
	VersionUpdated  = versionUpdated
	VersionMerged   = versionMerged
	VersionDeleted  = versionDeleted
	VersionReverted = versionReverted
)

// More errors of the history reads and of Revert.
var (
	// ErrVersionsTrimmed: the versions asked for are older than the ones
	// kept (VersionsKeep); the error is a *TrimmedError (HTTP 410).
	ErrVersionsTrimmed = errors.New("versions trimmed")
	// ErrSnapshotTrimmed: the room cannot be read as of a seq that old, the
	// versions of its elements back then being trimmed (events are not
	// read); the error is a *TrimmedError (HTTP 410 history_trimmed).
	ErrSnapshotTrimmed = errors.New("versions of that seq trimmed")
	// ErrAhead: a seq beyond the room's head (HTTP 400).
	ErrAhead = errors.New("seq ahead of the room's head")
	// ErrNoVersion: the element never had that version (HTTP 404).
	ErrNoVersion = errors.New("no such version")
	// ErrDeletedVersion: the version is a deletion, which has no data to
	// restore (HTTP 422).
	ErrDeletedVersion = errors.New("version is a deletion")
)

// TrimmedError is ErrVersionsTrimmed or ErrSnapshotTrimmed with the oldest
// version kept, or the oldest seq the room can be read at (0: unknown).
type TrimmedError struct {
	Err    error // ErrVersionsTrimmed or ErrSnapshotTrimmed
	Oldest int64
}

func (e *TrimmedError) Error() string {
	if e.Err == ErrSnapshotTrimmed {
		return fmt.Sprintf("%v: the oldest seq reachable is %d", e.Err, e.Oldest)
	}
	return fmt.Sprintf("%v: the oldest version kept is %d", e.Err, e.Oldest)
}

func (e *TrimmedError) Unwrap() error { return e.Err }

// History is a page of an element's kept versions, newest first.
type History struct {
	Room, ID string
	Versions []Version
	// Next is the version to pass as before for the next page, 0 when the
	// page holds the oldest version kept.
	Next int64
}

// History returns at most limit (> 0) of the kept versions of element id
// below version before (0: from the newest), deleted elements included.
// An element that never existed is ErrNotFound; a before at or below the
// oldest kept version, above 1, is a *TrimmedError (ErrVersionsTrimmed).
func (s *Store) History(ctx context.Context, room, id string, before int64, limit int) (History, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	h, err := s.db.History(ctx, room, id, before, limit)
	if err != nil {
		return History{}, fmt.Errorf("element history: %w", sqlstore.ClassifyBounded(ctx, err))
	}
	if !h.Existed {
		return History{}, fmt.Errorf("element history: %w", ErrNotFound)
	}
	if before > 1 && h.Oldest > 0 && before <= h.Oldest {
		return History{}, fmt.Errorf("element history: %w", &TrimmedError{ErrVersionsTrimmed, h.Oldest})
	}
	out := History{Room: room, ID: id, Versions: h.Versions}
	if n := len(h.Versions); n == limit && h.Versions[n-1].Version > h.Oldest {
		out.Next = h.Versions[n-1].Version
	}
	return out, nil
}

// SnapshotAt returns the room as of seq at: every element as it was after
// event at, sorted by id, with Cursor at; the fold of the room's events up
// to at. It is read from the kept versions, so it reaches back to the
// oldest seq at which every element of the room still has its version
// kept (see sqlstore.SnapshotAt); older is a *TrimmedError
// (ErrSnapshotTrimmed) with that seq. A seq beyond the head is ErrAhead.
func (s *Store) SnapshotAt(ctx context.Context, room string, at int64) (Snapshot, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	a, err := s.db.SnapshotAt(ctx, room, at)
	switch {
	case err != nil:
		return Snapshot{}, fmt.Errorf("snapshot at %d: %w", at, sqlstore.ClassifyBounded(ctx, err))
	case at > a.Head:
		return Snapshot{}, fmt.Errorf("snapshot at %d: head %d: %w", at, a.Head, ErrAhead)
	case a.Elements == nil:
		return Snapshot{}, fmt.Errorf("snapshot at %d: %w", at, &TrimmedError{ErrSnapshotTrimmed, a.Reachable})
	}
	return Snapshot{Room: room, Cursor: at, Elements: a.Elements}, nil
}

// Revert writes version to of element id again, as its next version (of
// type reverted): its kind and data. A deleted element is re-created
// (element.created, Outcome.Created), otherwise the event is
// element.updated; both carry "reverted_from": to. If-Match, when given,
// must name the element's newest version (a deleted element's: its
// deletion) and is never merged. An element that never existed is
// ErrNotFound, a version it never had ErrNoVersion, one no longer kept a
// *TrimmedError (ErrVersionsTrimmed), a deletion ErrDeletedVersion.
func (s *Store) Revert(ctx context.Context, room, id string, to int64, pre Precondition, meta Meta) (Outcome, error) {
	out, err := s.apply(ctx, room, sqlstore.Reads{ID: id, Base: to}, meta, func(ctx context.Context, tx sqlstore.Tx) (Outcome, error) {
		cur, exists, err := tx.Element(ctx, id)
		if err != nil {
			return Outcome{}, err
		}
		latest := cur.Version
		if !exists {
			if latest, err = tx.Tombstone(ctx, id); err != nil {
				return Outcome{}, err
			}
		}
		if err := revertable(pre, exists, latest, to); err != nil {
			return Outcome{}, err
		}
		v, found, err := tx.Version(ctx, id, to)
		switch {
		case err != nil:
			return Outcome{}, err
		case !found:
			return Outcome{}, &TrimmedError{Err: ErrVersionsTrimmed}
		case v.Data == nil:
			return Outcome{}, ErrDeletedVersion
		case !exists && pre.MaxElements > 0 && tx.Elements() >= int64(pre.MaxElements):
			return Outcome{}, ErrRoomFull
		}
		el := roomfeed.Element{ID: id, Kind: v.Kind, Version: latest + 1, Data: v.Data, UpdatedAt: tx.Time()}
		out, err := s.saveRevert(ctx, tx, room, el, !exists, to, meta)
		out.Created, out.RevertedFrom = !exists, to
		return out, err
	})
	var trimmed *TrimmedError
	if errors.As(err, &trimmed) && trimmed.Oldest == 0 {
		trimmed.Oldest = s.oldestVersion(ctx, room, id)
	}
	if err != nil {
		return Outcome{}, fmt.Errorf("revert element: %w", err)
	}
	return out, nil
}

// revertable checks a revert to version to of an element whose newest
// version (its deletion when it does not exist) is latest.
func revertable(pre Precondition, exists bool, latest, to int64) error {
	switch {
	case latest == 0 && (pre.IfMatch != nil || pre.IfMatchAny):
		return ErrVersionMismatch
	case latest == 0:
		return ErrNotFound
	case pre.IfMatch != nil && *pre.IfMatch != latest, pre.IfMatchAny && !exists, pre.IfNoneMatchAny && exists:
		return ErrVersionMismatch
	case to < 1 || to > latest:
		return ErrNoVersion
	}
	return nil
}

// saveRevert writes el, the revert of its element to version from: the
// element, its version (reverted) and its event, element.created when it
// re-creates the element.
func (s *Store) saveRevert(ctx context.Context, tx sqlstore.Tx, room string, el roomfeed.Element, created bool, from int64, meta Meta) (Outcome, error) {
	if err := tx.SaveElement(ctx, el); err != nil {
		return Outcome{}, err
	}
	if err := s.saveVersion(ctx, tx, el, versionReverted, meta); err != nil {
		return Outcome{}, err
	}
	typ := roomfeed.TypeUpdated
	if created {
		typ = roomfeed.TypeCreated
	}
	return elementEvent(ctx, tx, room, typ, el, meta, from)
}

// oldestVersion returns the oldest kept version of an element, 0 when
// none is or it cannot be read: a best-effort hint for an error.
func (s *Store) oldestVersion(ctx context.Context, room, id string) int64 {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	h, err := s.db.History(ctx, room, id, 0, 1)
	if err != nil {
		return 0
	}
	return h.Oldest
}
