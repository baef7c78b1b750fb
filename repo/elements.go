package repo

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

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
	err = s.inWriteTx(ctx, room, id, func(ctx context.Context, w *writeTx) error {
		cur, exists, err := w.element(ctx, id)
		if err != nil {
			return err
		}
		if err := pre.check(exists, cur.Version); err != nil {
			return err
		}
		created = !exists
		if created {
			if pre.MaxElements > 0 && w.count >= int64(pre.MaxElements) {
				return ErrRoomFull
			}
			w.count++
			// A re-created element goes on from its tombstone's version.
			if cur.Version, err = w.tombstone(ctx, id); err != nil {
				return err
			}
		}
		el = roomfeed.Element{ID: id, Kind: kind, Version: cur.Version + 1, Data: data, UpdatedAt: w.now}
		if err := w.saveElement(ctx, el); err != nil {
			return err
		}
		typ := roomfeed.TypeUpdated
		if created {
			typ = roomfeed.TypeCreated
		}
		ev, err = w.elementEvent(ctx, typ, el, meta)
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
	err := s.inWriteTx(ctx, room, id, func(ctx context.Context, w *writeTx) error {
		cur, err := w.existing(ctx, id, pre)
		if err != nil {
			return err
		}
		data, err := mergePatch(cur.Data, patch)
		if err != nil {
			return err
		}
		el = roomfeed.Element{ID: id, Kind: cur.Kind, Version: cur.Version + 1, Data: data, UpdatedAt: w.now}
		if err := w.saveElement(ctx, el); err != nil {
			return err
		}
		ev, err = w.elementEvent(ctx, roomfeed.TypeUpdated, el, meta)
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
	err := s.inWriteTx(ctx, room, id, func(ctx context.Context, w *writeTx) error {
		cur, err := w.existing(ctx, id, pre)
		if err != nil {
			return err
		}
		if err := w.deleteElement(ctx, id); err != nil {
			return err
		}
		w.count--
		tomb := roomfeed.Element{ID: id, Kind: cur.Kind, Version: cur.Version + 1, UpdatedAt: w.now}
		if err := w.saveTombstone(ctx, id, tomb.Version); err != nil {
			return err
		}
		ev, err = w.elementEvent(ctx, roomfeed.TypeDeleted, tomb, meta)
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
	err = s.inWriteTx(ctx, room, "", func(ctx context.Context, w *writeTx) error {
		payload, err := encodeJSON(messagePayload{
			ID: strconv.FormatInt(w.seq, 10), Room: w.room, Type: name, Data: data,
			OpID: meta.OpID, Actor: meta.Actor, At: formatTime(w.now),
		})
		if err != nil {
			return err
		}
		ev, err = w.insertEvent(ctx, name, payload)
		return err
	})
	if err != nil {
		return roomfeed.Event{}, fmt.Errorf("record message: %w", err)
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

// writeTx is the state of one write: the room row is locked, seq is the
// sequence number this write takes, now is its time and count the number
// of elements in the room (read with the lock, then kept by Put and Delete
// for the writes after it in a batch; triggers keep rooms.elements).
//
// On SQLite the write runs in a savepoint of the committer's batch
// transaction and its statements run at once. On PostgreSQL the element
// and tombstone of the write's id were read with the sequence number, and
// the statements are queued to be sent with COMMIT (see tryPostgresWrite),
// so their errors surface there; in a batch (batched, see pgcommit.go) the
// element, tombstone and event changes are kept in pg and events and
// written for the whole batch at once.
type writeTx struct {
	s     *Store
	room  string
	seq   int64
	now   time.Time
	count int64

	// SQLite
	tx    *sql.Tx
	stmts map[string]*sql.Stmt // s.stmts bound to tx, shared by the batch

	// PostgreSQL
	pg      *pgReads
	queued  *pgx.Batch
	batched bool
	events  []pgEvent // batched: the events this write records
}

// inWriteTx runs fn as one write on room, with the room row locked and the
// next sequence number taken, and commits it. An error from fn undoes the
// write, including the sequence number. id is the element fn reads (""
// for none): PostgreSQL reads it together with the sequence number.
//
// Writes go through a committer (group commit): SQLite's one, or the
// PostgreSQL committer of the room.
func (s *Store) inWriteTx(ctx context.Context, room, id string, fn writeFunc) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if s.commits != nil {
		return sqlstore.ClassifyBounded(ctx, s.commits.do(ctx, room, id, fn))
	}
	return sqlstore.ClassifyBounded(ctx, s.pgCommitter(room).do(ctx, room, id, fn))
}

// writeAlone runs one PostgreSQL write in its own transaction;
// serialization failures and deadlocks are retried a few times.
func (s *Store) writeAlone(ctx context.Context, room, id string, fn writeFunc) error {
	for attempt := 1; ; attempt++ {
		err := s.tryPostgresWrite(ctx, room, id, fn)
		if err == nil || !retryable(err) || attempt == writeAttempts {
			return sqlstore.Classify(err)
		}
		s.log.LogAttrs(ctx, slog.LevelDebug, "retrying write transaction",
			slog.String("room", room), slog.Int("attempt", attempt), slog.String("error", err.Error()))
		t := time.NewTimer(time.Duration(attempt) * 5 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// nextSeq takes the room's next sequence number and the write's time on
// SQLite. The upsert locks the room (the committer holds the only write
// connection) and sets updated_at, never below the room's previous write,
// so times follow seq order even if the clock steps back.
func (w *writeTx) nextSeq(ctx context.Context) error {
	t := sqlstore.Now()
	arg := t.Format(sqliteTime)
	var at string
	if err := w.queryRow(ctx, qNextSeqSQLite, w.room, arg).Scan(&w.seq, &at, &w.count); err != nil {
		return err
	}
	w.now = t
	if at != arg {
		var err error
		if w.now, err = sqlstore.ParseTime(at); err != nil {
			return err
		}
	}
	return nil
}

// element reads the current element; a missing one is exists == false.
func (w *writeTx) element(ctx context.Context, id string) (el roomfeed.Element, exists bool, err error) {
	if w.pg != nil {
		return w.pg.element(id)
	}
	el, err = sqlstore.ScanElement(w.queryRow(ctx, qElement, w.room, id))
	if errors.Is(err, sql.ErrNoRows) {
		return roomfeed.Element{}, false, nil
	}
	if err != nil {
		return roomfeed.Element{}, false, err
	}
	return el, true, nil
}

// existing reads an element that must exist and pass pre: a failed
// precondition is its error, then a missing element is ErrNotFound.
func (w *writeTx) existing(ctx context.Context, id string, pre Precondition) (roomfeed.Element, error) {
	cur, exists, err := w.element(ctx, id)
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

// tombstone returns the version a deleted element ended at, 0 if it never
// existed.
func (w *writeTx) tombstone(ctx context.Context, id string) (int64, error) {
	if w.pg != nil {
		return w.pg.tombstone(id)
	}
	var v int64
	err := w.queryRow(ctx, qTombstone, w.room, id).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

func (w *writeTx) saveElement(ctx context.Context, el roomfeed.Element) error {
	if w.pg != nil {
		if err := w.pg.save(el); err != nil || w.batched {
			return err
		}
	}
	return w.exec(ctx, qSaveElement,
		w.room, el.ID, el.Kind, el.Version, string(el.Data), w.s.timeArg(el.UpdatedAt))
}

func (w *writeTx) deleteElement(ctx context.Context, id string) error {
	if w.pg != nil {
		if err := w.pg.remove(id); err != nil || w.batched {
			return err
		}
	}
	return w.exec(ctx, qDeleteElement, w.room, id)
}

func (w *writeTx) saveTombstone(ctx context.Context, id string, version int64) error {
	if w.pg != nil {
		if err := w.pg.setTombstone(id, version); err != nil || w.batched {
			return err
		}
	}
	return w.exec(ctx, qSaveTombstone, w.room, id, version)
}

func (w *writeTx) elementEvent(ctx context.Context, typ string, el roomfeed.Element, meta Meta) (roomfeed.Event, error) {
	payload, err := encodeJSON(elementPayload{
		ID: strconv.FormatInt(w.seq, 10), Room: w.room, Type: typ, Element: el,
		OpID: meta.OpID, Actor: meta.Actor, At: formatTime(w.now),
	})
	if err != nil {
		return roomfeed.Event{}, err
	}
	return w.insertEvent(ctx, typ, payload)
}

func (w *writeTx) insertEvent(ctx context.Context, typ string, payload []byte) (roomfeed.Event, error) {
	if w.batched {
		w.events = append(w.events, pgEvent{seq: w.seq, typ: typ, payload: string(payload), at: w.now})
		return roomfeed.Event{Room: w.room, Seq: w.seq, Type: typ, Data: payload, At: w.now}, nil
	}
	err := w.exec(ctx, qInsertEvent,
		w.room, w.seq, typ, string(payload), w.s.timeArg(w.now))
	if err != nil {
		return roomfeed.Event{}, err
	}
	return roomfeed.Event{Room: w.room, Seq: w.seq, Type: typ, Data: payload, At: w.now}, nil
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

// The statements of a write, prepared once per store.
const (
	// The sequence number and the write's time, set in one upsert that
	// locks the room row until commit, so commit order is seq order.
	// updated_at never goes below the room's previous write.
	qNextSeqSQLite = `INSERT INTO rooms (room, seq, updated_at) VALUES (?, 1, ?)
		ON CONFLICT (room) DO UPDATE SET seq = rooms.seq + 1,
			updated_at = max(rooms.updated_at, excluded.updated_at)
		RETURNING seq, updated_at, elements`
	qNextSeqPostgres = `INSERT INTO rooms (room, seq, updated_at) VALUES (?, 1, ?)
		ON CONFLICT (room) DO UPDATE SET seq = rooms.seq + 1,
			updated_at = GREATEST(rooms.updated_at, excluded.updated_at)
		RETURNING seq, updated_at, elements`
	qElement       = sqlstore.SelectElement
	qTombstone     = sqlstore.SelectTomb
	qSaveElement   = sqlstore.SaveElement
	qDeleteElement = sqlstore.DeleteElement
	qSaveTombstone = sqlstore.SaveTomb
	qInsertEvent   = sqlstore.InsertEvent

	// The savepoint of each write in a SQLite batch.
	qSavepoint  = `SAVEPOINT w`
	qRelease    = `RELEASE w`
	qRollbackTo = `ROLLBACK TO w`
)

// prepareWrites prepares the SQLite write statements on the write
// connection; a statement that fails to prepare is run unprepared. For
// PostgreSQL it rewrites the placeholders once: pgx prepares and caches
// the statements per connection itself.
func (s *Store) prepareWrites(ctx context.Context) {
	if s.dialect == dialectPostgres {
		qs := []string{qNextSeqPostgres, qElement, qTombstone, qSaveElement, qDeleteElement, qSaveTombstone, qInsertEvent}
		s.pgq = make(map[string]string, len(qs))
		for _, q := range qs {
			s.pgq[q] = sqlstore.Bind(q)
		}
		return
	}
	qs := []string{qNextSeqSQLite, qElement, qTombstone, qSaveElement, qDeleteElement, qSaveTombstone, qInsertEvent,
		qSavepoint, qRelease, qRollbackTo}
	s.stmts = make(map[string]*sql.Stmt, len(qs))
	for _, q := range qs {
		if st, err := s.write.PrepareContext(ctx, q); err == nil {
			s.stmts[q] = st
		}
	}
}

// exec runs a write statement: on SQLite at once in the transaction,
// prepared when it can be; on PostgreSQL it is queued for the commit.
func (w *writeTx) exec(ctx context.Context, q string, args ...any) error {
	if w.queued != nil {
		text, ok := w.s.pgq[q]
		if !ok {
			text = sqlstore.Bind(q)
		}
		w.queued.Queue(text, args...)
		return nil
	}
	if st := w.stmt(ctx, q); st != nil {
		_, err := st.ExecContext(ctx, args...)
		return err
	}
	_, err := w.tx.ExecContext(ctx, q, args...)
	return err
}

// queryRow runs a SQLite write-path query in the transaction, prepared when
// it can be.
func (w *writeTx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if st := w.stmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return w.tx.QueryRowContext(ctx, q, args...)
}

// stmt returns the prepared statement q bound to the transaction, nil if
// q could not be prepared.
func (w *writeTx) stmt(ctx context.Context, q string) *sql.Stmt {
	if st := w.stmts[q]; st != nil {
		return st
	}
	st := w.s.stmts[q]
	if st == nil {
		return nil
	}
	st = w.tx.StmtContext(ctx, st)
	w.stmts[q] = st
	return st
}
