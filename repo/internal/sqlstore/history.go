package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"math"

	"github.com/roomfeed/roomfeed"
)

// The reads of an element's history and of a room as of a past seq.
const (
	selectHistory = `SELECT version, seq, type, kind, data, actor, op_id, at FROM element_versions
		WHERE room = ? AND id = ? AND version < ? ORDER BY version DESC LIMIT ?`
	selectOldestVersion = `SELECT COALESCE(MIN(version), 0) FROM element_versions WHERE room = ? AND id = ?`
	selectEverExisted   = `SELECT COUNT(*) FROM (SELECT id FROM elements WHERE room = ? AND id = ?
		UNION ALL SELECT id FROM tombstones WHERE room = ? AND id = ?) e`
	// selectReachable is the oldest seq the kept versions describe the room
	// at: over the room's elements, the highest of their floors. An element
	// whose versions go back to version 1 has floor 0; one that lost older
	// versions (VersionsKeep) has the seq of its oldest kept version. One
	// kept from before versions were recorded (migration 000004: a row of
	// seq 0), and a deleted one with no versions at all, are known from the
	// upgrade on, which is no later than the seq before the room's first
	// known version (only messages, which change no element, can come
	// between): the first argument (the head when there is none).
	selectReachable = `SELECT COALESCE(MAX(f), 0) FROM (
		SELECT CASE WHEN SUM(CASE WHEN seq = 0 THEN 1 ELSE 0 END) > 0 THEN CAST(? AS BIGINT)
			WHEN MIN(version) = 1 THEN 0 ELSE MIN(seq) END AS f
		FROM element_versions WHERE room = ? GROUP BY id
		UNION ALL
		SELECT CAST(? AS BIGINT) AS f FROM tombstones t WHERE t.room = ? AND NOT EXISTS
			(SELECT 1 FROM element_versions v WHERE v.room = t.room AND v.id = t.id)
	) floors`
	selectFirstKnown = `SELECT COALESCE(MIN(seq), 0) FROM element_versions WHERE room = ? AND seq > 0`
	// selectAt is each element's newest version written at or before a
	// seq (a version of seq 0 counts as the oldest: selectReachable made
	// sure the seq is past the upgrade), unless it is a deletion.
	selectAt = `SELECT v.id, v.kind, v.version, v.data, v.at FROM element_versions v
		JOIN (SELECT id, MAX(version) AS version FROM element_versions
			WHERE room = ? AND seq <= ? GROUP BY id) m ON m.id = v.id AND m.version = v.version
		WHERE v.room = ? AND v.type <> 'deleted' ORDER BY v.id`
)

// History is a page of an element's kept versions, newest first.
type History struct {
	Versions []Version
	// Oldest is the oldest version kept, 0 when none is.
	Oldest int64
	// Existed reports whether the element exists or ever did.
	Existed bool
}

// History reads, in one transaction, at most limit (> 0) of the kept
// versions of element id below version before (0: from the newest), and
// the oldest one kept.
func (db *DB) History(ctx context.Context, room, id string, before int64, limit int) (History, error) {
	tx, err := db.read.BeginTx(ctx, &db.d.Snapshot)
	if err != nil {
		return History{}, err
	}
	defer tx.Rollback()
	if before <= 0 {
		before = math.MaxInt64
	}
	h := History{Versions: []Version{}}
	rows, err := tx.QueryContext(ctx, db.d.Bind(selectHistory), room, id, before, limit)
	if err != nil {
		return History{}, err
	}
	defer rows.Close()
	for rows.Next() {
		v := Version{ID: id}
		var (
			data []byte
			at   dbTime
		)
		if err := rows.Scan(&v.Version, &v.Seq, &v.Type, &v.Kind, &data, &v.Actor, &v.OpID, &at); err != nil {
			return History{}, err
		}
		if data != nil {
			v.Data = data
		}
		v.At = at.t
		h.Versions = append(h.Versions, v)
	}
	if err := rows.Err(); err != nil {
		return History{}, err
	}
	if err := tx.QueryRowContext(ctx, db.d.Bind(selectOldestVersion), room, id).Scan(&h.Oldest); err != nil {
		return History{}, err
	}
	h.Existed = h.Oldest > 0
	if !h.Existed {
		var n int
		if err := tx.QueryRowContext(ctx, db.d.Bind(selectEverExisted), room, id, room, id).Scan(&n); err != nil {
			return History{}, err
		}
		h.Existed = n > 0
	}
	return h, tx.Commit()
}

// At is a room as of a seq, as SnapshotAt reads it.
type At struct {
	Head int64 // the room's head
	// Reachable is the oldest seq the room can be read at; a seq below it
	// was not read (Elements nil).
	Reachable int64
	Elements  []roomfeed.Element
}

// SnapshotAt reads, in one transaction, the room's head and, when at is
// at most the head and not below the oldest seq the kept versions reach,
// the room's elements as of seq at, sorted by id: the head's from the
// elements table, an older seq's from element_versions.
func (db *DB) SnapshotAt(ctx context.Context, room string, at int64) (At, error) {
	tx, err := db.read.BeginTx(ctx, &db.d.Snapshot)
	if err != nil {
		return At{}, err
	}
	defer tx.Rollback()
	var a At
	err = tx.QueryRowContext(ctx, db.d.Bind(`SELECT seq FROM rooms WHERE room = ?`), room).Scan(&a.Head)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return At{}, err
	}
	if at > a.Head {
		return a, tx.Commit()
	}
	query, args := `SELECT id, kind, version, data, updated_at FROM elements WHERE room = ? ORDER BY id`, []any{room}
	if at < a.Head {
		if a.Reachable, err = reachable(ctx, tx, db.d, room, a.Head); err != nil {
			return At{}, err
		}
		if at < a.Reachable {
			return a, tx.Commit()
		}
		query, args = selectAt, []any{room, at, room}
	}
	if a.Elements, err = scanElements(ctx, tx, db.d.Bind(query), args...); err != nil {
		return At{}, err
	}
	return a, tx.Commit()
}

// reachable is the oldest seq the kept versions describe the room at
// (selectReachable).
func reachable(ctx context.Context, tx *sql.Tx, d Dialect, room string, head int64) (int64, error) {
	var first, seq int64
	if err := tx.QueryRowContext(ctx, d.Bind(selectFirstKnown), room).Scan(&first); err != nil {
		return 0, err
	}
	upgrade := head
	if first > 0 {
		upgrade = first - 1
	}
	err := tx.QueryRowContext(ctx, d.Bind(selectReachable), upgrade, room, upgrade, room).Scan(&seq)
	return seq, err
}

func scanElements(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]roomfeed.Element, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	els := []roomfeed.Element{}
	for rows.Next() {
		el, err := ScanElement(rows)
		if err != nil {
			return nil, err
		}
		els = append(els, el)
	}
	return els, rows.Err()
}
