package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/roomfeed/roomfeed"
)

// The statements of a write that both dialects run as they are (after
// Bind); each dialect takes the sequence number its own way.
const (
	SelectElement = `SELECT id, kind, version, data, updated_at FROM elements WHERE room = ? AND id = ?`
	SelectTomb    = `SELECT version FROM tombstones WHERE room = ? AND id = ?`
	SaveElement   = `INSERT INTO elements (room, id, kind, version, data, updated_at)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (room, id) DO UPDATE SET kind = excluded.kind, version = excluded.version,
			data = excluded.data, updated_at = excluded.updated_at`
	DeleteElement = `DELETE FROM elements WHERE room = ? AND id = ?`
	SaveTomb      = `INSERT INTO tombstones (room, id, version) VALUES (?, ?, ?)
			ON CONFLICT (room, id) DO UPDATE SET version = excluded.version`
	InsertEvent = `INSERT INTO events (room, seq, type, payload, at) VALUES (?, ?, ?, ?, ?)`

	SelectVersion = `SELECT seq, type, kind, data, actor, op_id, at FROM element_versions
		WHERE room = ? AND id = ? AND version = ?`
	SaveVersion = `INSERT INTO element_versions (room, id, version, seq, type, kind, data, actor, op_id, at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (room, id, version) DO UPDATE SET seq = excluded.seq, type = excluded.type,
			kind = excluded.kind, data = excluded.data, actor = excluded.actor, op_id = excluded.op_id,
			at = excluded.at`
	// Deletes the versions of an element at or below a version: a range of
	// the primary key.
	DropVersions = `DELETE FROM element_versions WHERE room = ? AND id = ? AND version <= ?`
	SelectKey    = `SELECT fingerprint, status, header, body, seq, created_at FROM idempotency_keys
		WHERE room = ? AND key = ?`
	SaveKey = `INSERT INTO idempotency_keys (room, key, fingerprint, status, header, body, seq, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
)

// Dialect is how a dialect writes what DB runs.
type Dialect struct {
	// Bind rewrites the ? placeholders of a query for the dialect.
	Bind func(query string) string
	// Time converts a time into a query argument.
	Time func(time.Time) any
	// Snapshot opens the transaction of a snapshot read.
	Snapshot sql.TxOptions
}

// Bind rewrites the ? placeholders of query into PostgreSQL's $1, $2, ...
// The store's queries never contain a literal question mark.
func Bind(query string) string {
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

// DB runs what reads the same on every dialect: the reads of elements,
// snapshots and events, retention, ping and close. Its methods return the
// driver's errors; the caller classifies them.
type DB struct {
	read, write *sql.DB // the same pool, or a pool for reads and one for writes
	d           Dialect
}

// NewDB returns a DB that reads from read and trims and pings with write.
func NewDB(read, write *sql.DB, d Dialect) *DB {
	return &DB{read: read, write: write, d: d}
}

// Scanner is a row to scan: *sql.Row, *sql.Rows or a pgx row.
type Scanner interface{ Scan(dest ...any) error }

// ScanElement scans the columns of SelectElement.
func ScanElement(row Scanner) (roomfeed.Element, error) {
	var (
		el   roomfeed.Element
		data []byte
		at   dbTime
	)
	if err := row.Scan(&el.ID, &el.Kind, &el.Version, &data, &at); err != nil {
		return roomfeed.Element{}, err
	}
	el.Data = data
	el.UpdatedAt = at.t
	return el, nil
}

// ScanVersion scans the columns of SelectVersion into a version of id.
func ScanVersion(row Scanner, id string, version int64) (Version, error) {
	v := Version{ID: id, Version: version}
	var (
		data []byte
		at   dbTime
	)
	if err := row.Scan(&v.Seq, &v.Type, &v.Kind, &data, &v.Actor, &v.OpID, &at); err != nil {
		return Version{}, err
	}
	if data != nil {
		v.Data = data
	}
	v.At = at.t
	return v, nil
}

// ScanKey scans the columns of SelectKey into the record of key.
func ScanKey(row Scanner, key string) (KeyRecord, error) {
	k := KeyRecord{Key: key}
	var at dbTime
	if err := row.Scan(&k.Fingerprint, &k.Status, &k.Header, &k.Body, &k.Seq, &at); err != nil {
		return KeyRecord{}, err
	}
	k.At = at.t
	return k, nil
}

// VersionData is the data argument of SaveVersion: NULL for a deletion.
func VersionData(v Version) any {
	if v.Data == nil {
		return nil
	}
	return string(v.Data)
}

// Get reads one element; a missing one is sql.ErrNoRows.
func (db *DB) Get(ctx context.Context, room, id string) (roomfeed.Element, error) {
	return ScanElement(db.read.QueryRowContext(ctx, db.d.Bind(SelectElement), room, id))
}

// Snapshot reads the room's sequence number and its elements, sorted by
// id, in one transaction. An unknown room has cursor 0 and no elements.
func (db *DB) Snapshot(ctx context.Context, room string) (cursor int64, els []roomfeed.Element, err error) {
	tx, err := db.read.BeginTx(ctx, &db.d.Snapshot)
	if err != nil {
		return 0, nil, err
	}
	defer tx.Rollback()

	els = []roomfeed.Element{}
	err = tx.QueryRowContext(ctx, db.d.Bind(`SELECT seq FROM rooms WHERE room = ?`), room).Scan(&cursor)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, els, nil
	}
	if err != nil {
		return 0, nil, err
	}
	rows, err := tx.QueryContext(ctx,
		db.d.Bind(`SELECT id, kind, version, data, updated_at FROM elements WHERE room = ? ORDER BY id`), room)
	if err != nil {
		return 0, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		el, err := ScanElement(rows)
		if err != nil {
			return 0, nil, err
		}
		els = append(els, el)
	}
	if err := rows.Err(); err != nil {
		return 0, nil, err
	}
	return cursor, els, tx.Commit()
}

// Head returns the room's sequence number, 0 for an unknown room.
func (db *DB) Head(ctx context.Context, room string) (int64, error) {
	var seq int64
	err := db.read.QueryRowContext(ctx, db.d.Bind(`SELECT seq FROM rooms WHERE room = ?`), room).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return seq, err
}

// Oldest returns the seq of the room's oldest event still in the history,
// 0 when it has none.
func (db *DB) Oldest(ctx context.Context, room string) (int64, error) {
	var seq int64
	err := db.read.QueryRowContext(ctx,
		db.d.Bind(`SELECT COALESCE(MIN(seq), 0) FROM events WHERE room = ?`), room).Scan(&seq)
	return seq, err
}

// OldestTime returns the time of the room's oldest event still in the
// history; ok is false when it has none.
func (db *DB) OldestTime(ctx context.Context, room string) (at time.Time, ok bool, err error) {
	var t dbTime
	err = db.read.QueryRowContext(ctx,
		db.d.Bind(`SELECT at FROM events WHERE room = ? ORDER BY seq LIMIT 1`), room).Scan(&t)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	return t.t, err == nil, err
}

// EventsAfter returns at most limit (> 0) of the room's events with seq >
// after (>= 0), in order, or roomfeed.ErrTrimmed when event after+1 was
// removed.
func (db *DB) EventsAfter(ctx context.Context, room string, after int64, limit int) ([]roomfeed.Event, error) {
	// The head is read first: every event up to it was committed before the
	// events query starts, and retention only ever deletes, so finding none
	// of them below means they were trimmed.
	head, err := db.Head(ctx, room)
	if err != nil {
		return nil, err
	}
	if head <= after {
		return []roomfeed.Event{}, nil
	}
	rows, err := db.read.QueryContext(ctx,
		db.d.Bind(`SELECT seq, type, payload, at FROM events WHERE room = ? AND seq > ? ORDER BY seq LIMIT ?`),
		room, after, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	evs := make([]roomfeed.Event, 0, min(limit, 64))
	for rows.Next() {
		var (
			ev      = roomfeed.Event{Room: room}
			payload []byte
			at      dbTime
		)
		if err := rows.Scan(&ev.Seq, &ev.Type, &payload, &at); err != nil {
			return nil, err
		}
		ev.Data = payload
		ev.At = at.t
		evs = append(evs, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Sequence numbers are gap-free, so a first event above after+1 means
	// the ones before it were removed.
	if len(evs) == 0 || evs[0].Seq != after+1 {
		return nil, roomfeed.ErrTrimmed
	}
	return evs, nil
}

// RoomHeads returns the rooms written at or after since (the zero time:
// all rooms) with their sequence numbers, sorted by room.
func (db *DB) RoomHeads(ctx context.Context, since time.Time) ([]roomfeed.RoomHead, error) {
	query, args := `SELECT room, seq FROM rooms ORDER BY room`, []any(nil)
	if !since.IsZero() {
		query, args = `SELECT room, seq FROM rooms WHERE updated_at >= ? ORDER BY room`, []any{db.d.Time(since)}
	}
	rows, err := db.read.QueryContext(ctx, db.d.Bind(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	heads := []roomfeed.RoomHead{}
	for rows.Next() {
		var h roomfeed.RoomHead
		if err := rows.Scan(&h.Room, &h.Seq); err != nil {
			return nil, err
		}
		heads = append(heads, h)
	}
	return heads, rows.Err()
}

// Trim deletes the room's events older than the newest keep (keep <= 0: no
// count limit) or older than maxAge (0: no age limit), but never one with
// seq > below, and returns how many it deleted.
func (db *DB) Trim(ctx context.Context, room string, keep int64, maxAge time.Duration, below int64) (int64, error) {
	var conds []string
	args := []any{room, below}
	if keep > 0 {
		conds = append(conds, `seq <= (SELECT seq FROM rooms WHERE room = ?) - ?`)
		args = append(args, room, keep)
	}
	if maxAge > 0 {
		conds = append(conds, `at < ?`)
		args = append(args, db.d.Time(Now().Add(-maxAge)))
	}
	if len(conds) == 0 || below <= 0 {
		return 0, nil
	}
	query := `DELETE FROM events WHERE room = ? AND seq <= ? AND (` + conds[0]
	if len(conds) == 2 {
		query += ` OR ` + conds[1]
	}
	query += `)`
	res, err := db.write.ExecContext(ctx, db.d.Bind(query), args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// trimKeysBatch bounds the idempotency keys one statement of TrimKeys
// deletes, so that writers never wait long behind it.
const trimKeysBatch = 1000

// TrimKeys deletes the idempotency keys created before before, a batch at
// a time, and returns how many it deleted.
func (db *DB) TrimKeys(ctx context.Context, before time.Time) (int64, error) {
	q := db.d.Bind(`DELETE FROM idempotency_keys WHERE (room, key) IN
		(SELECT room, key FROM idempotency_keys WHERE created_at < ? LIMIT ?)`)
	var total int64
	for {
		res, err := db.write.ExecContext(ctx, q, db.d.Time(before), trimKeysBatch)
		if err != nil {
			return total, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += n
		if n < trimKeysBatch {
			return total, nil
		}
	}
}

// Ping checks that the database answers on every pool.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.read.PingContext(ctx); err != nil {
		return err
	}
	if db.write != db.read {
		return db.write.PingContext(ctx)
	}
	return nil
}

// Close closes the pools.
func (db *DB) Close() error {
	if db.write == db.read {
		return db.write.Close()
	}
	return errors.Join(db.write.Close(), db.read.Close())
}
