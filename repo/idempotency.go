package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
)

// DefaultIdempotencyTTL is how long idempotency keys are kept unless the
// service says otherwise (see TrimIdempotency).
const DefaultIdempotencyTTL = 24 * time.Hour

// Idempotency makes a write idempotent. The first write with Key in a room
// is applied, and the key, Fingerprint and the answer Answer builds from
// the write's Outcome are recorded in the write's transaction. A later
// write with Key in that room, while the key is kept, is not applied: with
// the same Fingerprint its Outcome.Replayed is the recorded answer (no
// sequence number is taken, nothing is written), with another it fails
// with ErrKeyReused. Writes that fail record nothing.
//
// Writes to one room run one after the other (the room is locked, on every
// node), so a retry made while the first write is in flight waits for it
// and then replays it: a key is never applied twice.
type Idempotency struct {
	Key         string // also the event's op_id when Meta.OpID is empty
	Fingerprint string // of the request: a retry must have the same
	// Answer builds the answer to record from the write's outcome. It runs
	// inside the write, maybe more than once, so it must be pure and cheap;
	// its error fails the write. Must not be nil.
	Answer func(Outcome) (Answer, error)
}

// Answer is a recorded answer to a write, replayed byte for byte.
type Answer struct {
	Status int
	Header map[string]string
	Body   []byte
}

// errReplayed is the error of a write's Func that found its key recorded:
// the dialect undoes the write like a failed one (no sequence number is
// taken), and apply answers the replay.
var errReplayed = errors.New("idempotency key replayed: nothing written")

// apply runs body as one write on room (see write), reading reads, behind
// the idempotency key of meta, if any (see Idempotency).
func (s *Store) apply(ctx context.Context, room string, reads sqlstore.Reads, meta Meta,
	body func(context.Context, sqlstore.Tx) (Outcome, error)) (Outcome, error) {
	idem := meta.Idem
	if idem != nil {
		reads.Key = idem.Key
	}
	var out Outcome
	err := s.write(ctx, room, reads, func(ctx context.Context, tx sqlstore.Tx) (_ roomfeed.Event, err error) {
		if idem != nil {
			if out, err = replay(ctx, tx, idem); err != nil {
				return roomfeed.Event{}, err
			}
		}
		if out, err = body(ctx, tx); err != nil {
			return roomfeed.Event{}, err
		}
		if idem != nil {
			ans, err := record(ctx, tx, idem, out)
			if err != nil {
				return roomfeed.Event{}, err
			}
			out.Answer = &ans
		}
		return out.Event, nil
	})
	switch {
	case errors.Is(err, errReplayed):
		return out, nil
	case err != nil:
		// out is not read: a write answered before its batch ended
		// (ErrNoAnswer) may still be running the func that sets it.
		return Outcome{}, err
	}
	return out, nil
}

// replay looks the write's key up: a key the same request recorded is an
// Outcome with its answer and errReplayed; one another request recorded
// is ErrKeyReused.
func replay(ctx context.Context, tx sqlstore.Tx, idem *Idempotency) (Outcome, error) {
	rec, found, err := tx.Key(ctx, idem.Key)
	if err != nil || !found {
		return Outcome{}, err
	}
	if rec.Fingerprint != idem.Fingerprint {
		return Outcome{}, ErrKeyReused
	}
	ans := Answer{Status: rec.Status, Body: rec.Body}
	if err := json.Unmarshal([]byte(rec.Header), &ans.Header); err != nil {
		return Outcome{}, fmt.Errorf("idempotency key %q: recorded header: %w", idem.Key, err)
	}
	return Outcome{Replayed: &ans}, errReplayed
}

// record saves the write's key with the answer to its outcome, and
// returns that answer.
func record(ctx context.Context, tx sqlstore.Tx, idem *Idempotency, out Outcome) (Answer, error) {
	ans, err := idem.Answer(out)
	if err != nil {
		return Answer{}, fmt.Errorf("idempotency key %q: answer: %w", idem.Key, err)
	}
	header, err := json.Marshal(ans.Header)
	if err != nil {
		return Answer{}, fmt.Errorf("idempotency key %q: header: %w", idem.Key, err)
	}
	if ans.Body == nil {
		ans.Body = []byte{}
	}
	return ans, tx.SaveKey(ctx, sqlstore.KeyRecord{
		Key: idem.Key, Fingerprint: idem.Fingerprint, Status: ans.Status, Header: string(header),
		Body: ans.Body, Seq: tx.Seq(), At: tx.Time(),
	})
}

// TrimIdempotency deletes the idempotency keys recorded before before
// (their writes are no longer replayed; the same key applies anew) and
// returns how many it deleted.
func (s *Store) TrimIdempotency(ctx context.Context, before time.Time) (int64, error) {
	n, err := s.db.TrimKeys(ctx, before)
	if err != nil {
		return n, fmt.Errorf("trim idempotency keys: %w", sqlstore.Classify(err))
	}
	return n, nil
}
