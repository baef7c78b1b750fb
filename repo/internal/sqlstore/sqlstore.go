// Package sqlstore holds what the SQLite and PostgreSQL stores share: the
// contract between repo and a dialect's writer (Tx, Func, Write), the
// store's errors and their classification, the statements and reads that
// are the same on both dialects, times as both store them, and the
// migration runner.
package sqlstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/roomfeed/roomfeed"
)

// Tx is one write inside its transaction: the room row is locked and the
// write's sequence number taken. An error of the write's Func undoes all
// it did, sequence number included. A dialect may hold the changes back
// and send them at COMMIT, where their errors then surface; PostgreSQL
// reads and writes only what the write named (Write.Reads): its element,
// that element's base version and versions written before it in the same
// transaction, and its idempotency key.
type Tx interface {
	// Seq is the sequence number the write takes.
	Seq() int64
	// Time is the write's time: UTC, microseconds, never before the
	// room's previous write.
	Time() time.Time
	// Elements is the number of elements in the room before the write.
	Elements() int64
	// Element reads an element; a missing one is exists == false.
	Element(ctx context.Context, id string) (el roomfeed.Element, exists bool, err error)
	// Tombstone returns the version a deleted element ended at, 0 if it
	// never existed.
	Tombstone(ctx context.Context, id string) (int64, error)
	SaveElement(ctx context.Context, el roomfeed.Element) error
	DeleteElement(ctx context.Context, id string) error
	SaveTombstone(ctx context.Context, id string, version int64) error
	// InsertEvent records ev, the write's event (ev.Seq == Seq()).
	InsertEvent(ctx context.Context, ev roomfeed.Event) error
	// Version reads a kept version of an element; a missing one is found
	// == false.
	Version(ctx context.Context, id string, version int64) (v Version, found bool, err error)
	// SaveVersion records v and deletes the versions of its element at or
	// below drop (drop < 1: none).
	SaveVersion(ctx context.Context, v Version, drop int64) error
	// Key reads the record of an idempotency key in the room; a missing one
	// is found == false.
	Key(ctx context.Context, key string) (k KeyRecord, found bool, err error)
	// SaveKey records the write's idempotency key.
	SaveKey(ctx context.Context, k KeyRecord) error
}

// Version is one version of an element, as element_versions keeps it.
type Version struct {
	ID      string
	Version int64
	Seq     int64  // of the write's event; 0 when unknown (migrated)
	Type    string // created, updated, merged, deleted
	Kind    string
	Data    json.RawMessage // nil for a deletion
	Actor   string
	OpID    string
	At      time.Time
}

// KeyRecord is an idempotency key of a room and the answer of the write
// applied with it.
type KeyRecord struct {
	Key         string
	Fingerprint string // of the request that used the key first
	Status      int
	Header      string // the answer's headers, a JSON object of strings
	Body        []byte
	Seq         int64 // of the write's event
	At          time.Time
}

// Reads are what a write reads besides its room, which PostgreSQL fetches
// together with the sequence number.
type Reads struct {
	ID   string // the element ("" for none) and its tombstone
	Base int64  // a version of ID to read too (a write's If-Match), 0 = none
	Key  string // the idempotency key to look up, "" = none
}

// Func is the body of a write, run with its Tx; it returns the event it
// recorded.
type Func func(context.Context, Tx) (roomfeed.Event, error)

// Write is a queued write as the batch that runs it sees it. A dialect's
// RunBatch(batch []Write, errs []error) error runs the writes of batch,
// in one transaction where it can, and sets errs[i] to the outcome of
// batch[i]; an error it returns fails every write of the batch instead
// (a lost transaction, a COMMIT that failed or may have applied). A write
// it skips (SkipDone) is set to nil in batch.
type Write interface {
	// Context is the caller's context; a batch runs the write with its
	// values but not its cancellation.
	Context() context.Context
	Room() string
	// Reads are what the write reads besides its room.
	Reads() Reads
	// Run runs the write's Func on tx; a panic in it is returned as a
	// *Panic.
	Run(ctx context.Context, tx Tx) error
	// Skip answers the write with err at once; the batch does not run it.
	Skip(err error)
}

// SkipDone skips batch[i] with its context's error, and sets it to nil, if
// its context is done before its turn; it reports whether it did.
func SkipDone(batch []Write, i int) bool {
	err := batch[i].Context().Err()
	if err == nil {
		return false
	}
	batch[i].Skip(err)
	batch[i] = nil
	return true
}

// Panic is the error of a write whose Func panicked; the write's caller
// raises Value again.
type Panic struct{ Value any }

func (p *Panic) Error() string { return fmt.Sprintf("write panicked: %v", p.Value) }
