package repo

import (
	"errors"

	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
)

// Errors returned by the store, wrapped with the operation's context.
var (
	// ErrNotFound: the element (or, for element routes, the room) does not exist.
	ErrNotFound = sqlstore.ErrNotFound
	// ErrVersionMismatch: If-Match did not match the current version and
	// could not be merged onto it (its version is not kept, or the write is
	// a Delete, or PUT and the current version changed the kind
	// differently), or If-Match was given for an element that does not
	// exist (HTTP 412).
	ErrVersionMismatch = sqlstore.ErrVersionMismatch
	// ErrExists: If-None-Match: * was given and the element exists.
	ErrExists = sqlstore.ErrExists
	// ErrUnavailable: the database could not be reached (best effort).
	ErrUnavailable = sqlstore.ErrUnavailable
	// ErrStorageFull: the database's disk is full (SQLITE_FULL, PostgreSQL's
	// disk_full, ENOSPC); nothing of the write was committed. It is an
	// ErrUnavailable too: the store works again once space is freed.
	ErrStorageFull = sqlstore.ErrStorageFull
	// ErrInvalid: data, patch or message data is not acceptable JSON.
	ErrInvalid = sqlstore.ErrInvalid
	// ErrRoomFull: creating the element would take the room above
	// Precondition.MaxElements.
	ErrRoomFull = sqlstore.ErrRoomFull
	// ErrConflict: a stale If-Match merged onto the current version
	// changed a path the current version changed too, differently; the
	// error is a *ConflictError (HTTP 409).
	ErrConflict = errors.New("conflict")
	// ErrKeyReused: the idempotency key was used in the room by a request
	// with another fingerprint (HTTP 422).
	ErrKeyReused = errors.New("idempotency key reused")
)
