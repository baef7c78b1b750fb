package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
)

// entry is the element a write names, as read with its sequence number:
// the element (if it exists), its tombstone version and the versions the
// writes asked for (sqlstore.Reads.Base). A write's changes to it are kept
// here; in a batch the dirty flags, saved and drop say which to send.
type entry struct {
	id     string
	el     roomfeed.Element
	exists bool
	tomb   int64
	// versions are the versions read (found ones of asked) followed by the
	// saved versions the writes added; drop is the highest version they
	// deleted (0 = none).
	versions           []sqlstore.Version
	asked              []int64
	saved              int
	drop               int64
	elDirty, tombDirty bool
}

func (e *entry) check(what, id string) error {
	if id != e.id {
		return fmt.Errorf("%s %q was not read with the sequence number", what, id)
	}
	return nil
}

// keyEntry is the idempotency key a write names, as read with its
// sequence number, and the record a write saved for it (dirty).
type keyEntry struct {
	key    string
	rec    sqlstore.KeyRecord
	exists bool
	dirty  bool
}

// state is what a write knows in either transaction: its sequence
// number, time and the room's element count, all read with the room's
// lock, and the entries of the element and the key it names (k is nil
// when it names none). Both Tx types embed it.
type state struct {
	seq   int64
	at    time.Time
	count int64
	e     *entry
	k     *keyEntry
}

func (s *state) Seq() int64      { return s.seq }
func (s *state) Time() time.Time { return s.at }
func (s *state) Elements() int64 { return s.count }

func (s *state) Element(_ context.Context, id string) (roomfeed.Element, bool, error) {
	if err := s.e.check("element", id); err != nil {
		return roomfeed.Element{}, false, err
	}
	return s.e.el, s.e.exists, nil
}

func (s *state) Tombstone(_ context.Context, id string) (int64, error) {
	if err := s.e.check("tombstone", id); err != nil {
		return 0, err
	}
	return s.e.tomb, nil
}

// Version answers from the versions read and saved; a version deleted
// since (at or below drop) is missing.
func (s *state) Version(_ context.Context, id string, version int64) (sqlstore.Version, bool, error) {
	if err := s.e.check("version of element", id); err != nil {
		return sqlstore.Version{}, false, err
	}
	if version <= s.e.drop {
		return sqlstore.Version{}, false, nil
	}
	for _, v := range slices.Backward(s.e.versions) {
		if v.Version == version {
			return v, true, nil
		}
	}
	if !slices.Contains(s.e.asked, version) {
		return sqlstore.Version{}, false, fmt.Errorf("version %d of %q was not read with the sequence number", version, id)
	}
	return sqlstore.Version{}, false, nil
}

func (s *state) Key(_ context.Context, key string) (sqlstore.KeyRecord, bool, error) {
	if err := s.checkKey(key); err != nil {
		return sqlstore.KeyRecord{}, false, err
	}
	return s.k.rec, s.k.exists, nil
}

func (s *state) checkKey(key string) error {
	if s.k == nil || s.k.key != key {
		return fmt.Errorf("idempotency key %q was not read with the sequence number", key)
	}
	return nil
}

func (s *state) save(el roomfeed.Element) error {
	if err := s.e.check("element", el.ID); err != nil {
		return err
	}
	s.e.el, s.e.exists, s.e.elDirty = el, true, true
	return nil
}

func (s *state) remove(id string) error {
	if err := s.e.check("element", id); err != nil {
		return err
	}
	s.e.el, s.e.exists, s.e.elDirty = roomfeed.Element{}, false, true
	return nil
}

func (s *state) setTomb(id string, version int64) error {
	if err := s.e.check("tombstone", id); err != nil {
		return err
	}
	s.e.tomb, s.e.tombDirty = version, true
	return nil
}

func (s *state) addVersion(v sqlstore.Version, drop int64) error {
	if err := s.e.check("version of element", v.ID); err != nil {
		return err
	}
	s.e.versions = append(s.e.versions, v)
	s.e.saved++
	s.e.drop = max(s.e.drop, drop)
	return nil
}

func (s *state) setKey(k sqlstore.KeyRecord) error {
	if err := s.checkKey(k.Key); err != nil {
		return err
	}
	s.k.rec, s.k.exists, s.k.dirty = k, true, true
	return nil
}

// singleTx is a write alone in its transaction: its statements are queued
// to be sent with COMMIT (see DB.runAlone), so their errors surface there.
type singleTx struct {
	state
	room   string
	q      *statements
	queued *pgx.Batch
}

func (t *singleTx) SaveElement(_ context.Context, el roomfeed.Element) error {
	if err := t.save(el); err != nil {
		return err
	}
	t.queued.Queue(t.q.saveElement, t.room, el.ID, el.Kind, el.Version, string(el.Data), timeArg(el.UpdatedAt))
	return nil
}

func (t *singleTx) DeleteElement(_ context.Context, id string) error {
	if err := t.remove(id); err != nil {
		return err
	}
	t.queued.Queue(t.q.deleteElement, t.room, id)
	return nil
}

func (t *singleTx) SaveTombstone(_ context.Context, id string, version int64) error {
	if err := t.setTomb(id, version); err != nil {
		return err
	}
	t.queued.Queue(t.q.saveTomb, t.room, id, version)
	return nil
}

func (t *singleTx) InsertEvent(_ context.Context, ev roomfeed.Event) error {
	t.queued.Queue(t.q.insertEvent, ev.Room, ev.Seq, ev.Type, string(ev.Data), timeArg(ev.At))
	return nil
}

func (t *singleTx) SaveVersion(_ context.Context, v sqlstore.Version, drop int64) error {
	if err := t.addVersion(v, drop); err != nil {
		return err
	}
	t.queued.Queue(t.q.saveVersion, t.room, v.ID, v.Version, v.Seq, v.Type, v.Kind,
		sqlstore.VersionData(v), v.Actor, v.OpID, timeArg(v.At))
	if drop > 0 {
		t.queued.Queue(t.q.dropVersions, t.room, v.ID, drop)
	}
	return nil
}

func (t *singleTx) SaveKey(_ context.Context, k sqlstore.KeyRecord) error {
	if err := t.setKey(k); err != nil {
		return err
	}
	t.queued.Queue(t.q.saveKey, t.room, k.Key, k.Fingerprint, k.Status, k.Header, k.Body, k.Seq, timeArg(k.At))
	return nil
}

// batchTx is a write of a batch: its changes stay in its entries and
// events, and the batch sends those of all its writes at once (see
// batch.changes).
type batchTx struct {
	state
	events []roomfeed.Event
}

func (t *batchTx) SaveElement(_ context.Context, el roomfeed.Element) error { return t.save(el) }
func (t *batchTx) DeleteElement(_ context.Context, id string) error         { return t.remove(id) }

func (t *batchTx) SaveTombstone(_ context.Context, id string, version int64) error {
	return t.setTomb(id, version)
}

func (t *batchTx) InsertEvent(_ context.Context, ev roomfeed.Event) error {
	t.events = append(t.events, ev)
	return nil
}

func (t *batchTx) SaveVersion(_ context.Context, v sqlstore.Version, drop int64) error {
	return t.addVersion(v, drop)
}

func (t *batchTx) SaveKey(_ context.Context, k sqlstore.KeyRecord) error { return t.setKey(k) }
