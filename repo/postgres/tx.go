package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/roomfeed/roomfeed"
)

// entry is the element a write names, as read with its sequence number:
// the element (if it exists) and its tombstone version. A write's changes
// to it are kept here; in a batch the dirty flags say which to send.
type entry struct {
	id                 string
	el                 roomfeed.Element
	exists             bool
	tomb               int64
	elDirty, tombDirty bool
}

func (e *entry) check(what, id string) error {
	if id != e.id {
		return fmt.Errorf("%s %q was not read with the sequence number", what, id)
	}
	return nil
}

// state is what a write knows in either transaction: its sequence
// number, time and the room's element count, all read with the room's
// lock, and the entry of the element it names. Both Tx types embed it.
type state struct {
	seq   int64
	at    time.Time
	count int64
	e     *entry
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

// batchTx is a write of a batch: its changes stay in its entry and events,
// and the batch sends those of all its writes at once (see batch.changes).
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
