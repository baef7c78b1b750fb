package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
)

// The statements of a batch. Rooms and ids are "C" collated, so Go's
// string order is the database's.
//
// pgx prepares them, and PostgreSQL soon runs a prepared statement with a
// generic plan, made without the arrays' sizes and perhaps while the tables
// were still empty. So no statement joins a table to an array: that plan can
// be a hash join over the whole table. The reads join each key to a
// subquery that OFFSET 0 keeps apart, which can only be a primary key
// lookup; the writes are inserts whose conflicts the primary key finds, or
// one statement per row.
const (
	// Locks the batch's rooms in the order given (sorted), creating the
	// missing ones at seq 0. An existing room is locked, not rewritten (the
	// DO UPDATE's WHERE is false: PostgreSQL locks the row and writes no
	// new version of it). It writes nothing else: the seqs and the element
	// counts are set in the second round trip (qUpdateRooms).
	qLockRooms = `INSERT INTO rooms (room, seq, updated_at)
		SELECT r, 0, $2::timestamptz FROM unnest($1::text[]) AS r
		ON CONFLICT (room) DO UPDATE SET seq = rooms.seq WHERE false`
	// Tells the trigger of migration 5 that this transaction counts the
	// elements of its rooms itself (qUpdateRooms), until it ends.
	qCountsElements = `SELECT set_config('roomfeed.counts_elements', 'on', true)`
	// Each locked room's seq, time and element count.
	qReadRooms = `SELECT r.room, r.seq, r.updated_at, r.elements
		FROM unnest($1::text[]) AS k (room)
		JOIN LATERAL (SELECT * FROM rooms WHERE rooms.room = k.room OFFSET 0) AS r ON true`
	// The element and the tombstone of each key; NULLs where there is none.
	qReadElements = `SELECT k.room, k.id, e.kind, e.version, e.data, e.updated_at, t.version
		FROM unnest($1::text[], $2::text[]) AS k (room, id)
		LEFT JOIN LATERAL (SELECT * FROM elements
			WHERE elements.room = k.room AND elements.id = k.id OFFSET 0) AS e ON true
		LEFT JOIN LATERAL (SELECT * FROM tombstones
			WHERE tombstones.room = k.room AND tombstones.id = k.id OFFSET 0) AS t ON true`
	qSaveElements = `INSERT INTO elements (room, id, kind, version, data, updated_at)
		SELECT room, id, kind, version, data::json, updated_at
		FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[])
			AS v (room, id, kind, version, data, updated_at)
		ON CONFLICT (room, id) DO UPDATE SET kind = excluded.kind, version = excluded.version,
			data = excluded.data, updated_at = excluded.updated_at`
	qSaveTombs = `INSERT INTO tombstones (room, id, version)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
		ON CONFLICT (room, id) DO UPDATE SET version = excluded.version`
	qInsertEvents = `INSERT INTO events (room, seq, type, payload, at)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[])`
	// The versions the writes name as their bases (If-Match), found ones only.
	qReadVersions = `SELECT k.room, k.id, k.version, v.seq, v.type, v.kind, v.data, v.actor, v.op_id, v.at
		FROM unnest($1::text[], $2::text[], $3::bigint[]) AS k (room, id, version)
		JOIN LATERAL (SELECT * FROM element_versions WHERE element_versions.room = k.room
			AND element_versions.id = k.id AND element_versions.version = k.version OFFSET 0) AS v ON true`
	// The idempotency keys the writes name, found ones only.
	qReadKeys = `SELECT k.room, k.key, i.fingerprint, i.status, i.header, i.body, i.seq, i.created_at
		FROM unnest($1::text[], $2::text[]) AS k (room, key)
		JOIN LATERAL (SELECT * FROM idempotency_keys WHERE idempotency_keys.room = k.room
			AND idempotency_keys.key = k.key OFFSET 0) AS i ON true`
	// An empty data is a deletion's NULL.
	qSaveVersions = `INSERT INTO element_versions (room, id, version, seq, type, kind, data, actor, op_id, at)
		SELECT room, id, version, seq, type, kind, NULLIF(data, '')::json, actor, op_id, at
		FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[],
			$8::text[], $9::text[], $10::timestamptz[])
			AS v (room, id, version, seq, type, kind, data, actor, op_id, at)
		ON CONFLICT (room, id, version) DO UPDATE SET seq = excluded.seq, type = excluded.type,
			kind = excluded.kind, data = excluded.data, actor = excluded.actor, op_id = excluded.op_id,
			at = excluded.at`
	qSaveKeys = `INSERT INTO idempotency_keys (room, key, fingerprint, status, header, body, seq, created_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::bytea[],
			$7::bigint[], $8::timestamptz[])`
	// Sets the seqs, times and element counts of rooms the batch locked (so
	// they exist): one new version of each room row per batch.
	qUpdateRooms = `INSERT INTO rooms (room, seq, updated_at, elements)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::bigint[])
		ON CONFLICT (room) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at,
			elements = excluded.elements`
	// Removes a room the batch created for writes that all failed.
	qDropRoom = `DELETE FROM rooms WHERE room = $1 AND seq = 0`
)

// RunBatch runs the writes of batch in one transaction of two round trips
// (see batch) and sets errs[i] to the outcome of batch[i] (see
// sqlstore.Write). A write whose context ends before its turn (while
// queued, or while the batch locks its rooms) is skipped.
//
// A batch of one write runs it alone (writeAlone), whose statements are
// cheaper. If PostgreSQL rejects a batch (an error of one write's
// statements, a failed COMMIT, a deadlock), nothing of it committed: every
// write then runs again alone, as its own transaction, so one bad write
// cannot fail the others. Any other error (the connection is lost, the
// batch timed out) is returned and fails every write of the batch, since
// the COMMIT may have been applied.
func (db *DB) RunBatch(batch []sqlstore.Write, errs []error) error {
	live := 0
	for i := range batch {
		if !sqlstore.SkipDone(batch, i) {
			live++
		}
	}
	if live == 0 {
		return nil
	}
	if live > 1 {
		ctx, cancel := context.WithTimeoutCause(context.Background(), db.batchTimeout, sqlstore.ErrNoAnswer)
		defer cancel()
		err := db.withConn(ctx, func(c *pgx.Conn) error { return runBatch(ctx, c, &db.q, batch, errs) })
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || context.Cause(ctx) == sqlstore.ErrNoAnswer {
			// Also a batch that ran out of time (PostgreSQL may have
			// answered the cancel with an error of its own): running its
			// writes alone would wait as long again for each.
			return sqlstore.ClassifyBounded(ctx, err)
		}
		db.log.LogAttrs(ctx, slog.LevelDebug, "batch failed, running its writes alone",
			slog.Int("writes", live), slog.String("error", err.Error()))
	}
	for i, w := range batch {
		if w == nil {
			continue
		}
		var p *sqlstore.Panic
		if errors.As(errs[i], &p) {
			continue // it panics alone too
		}
		ctx, cancel := context.WithTimeoutCause(context.WithoutCancel(w.Context()), db.batchTimeout, sqlstore.ErrNoAnswer)
		errs[i] = sqlstore.ClassifyBounded(ctx, db.writeAlone(ctx, w))
		cancel()
	}
	return nil
}

// key names an element of a batch, or (id being the key) an idempotency
// key.
type key struct{ room, id string }

// versionKey names a version of an element of a batch.
type versionKey struct {
	key
	version int64
}

// room is a room locked by a batch.
type room struct {
	seq      int64     // the last seq taken
	at       time.Time // the time of the batch's writes in the room
	elements int64     // the element count after the writes so far
	fresh    bool      // created by the batch (seq 0)
	wrote    bool
}

// batch is one transaction of several writes:
//
//  1. BEGIN; say the batch counts elements itself (qCountsElements); lock
//     the batch's rooms in sorted order (creating missing ones) and read
//     their seqs, times and element counts; read the elements, tombstones,
//     base versions and idempotency keys the writes name (lock).
//  2. Go runs every write's Func in queue order against those reads, each
//     seeing the changes of the writes before it; a write that fails leaves
//     no change and takes no seq (run). The changes of the others
//     (elements, tombstones, versions, events, keys, room seqs and element
//     counts) are sent as a few multi-row statements with COMMIT (changes).
//
// Rooms are locked in the same order by every batch of every node, and a
// single write locks one room, so batches do not deadlock each other.
//
// The element count of a room is kept by the batch, not by the trigger of
// migration 5 (which would write a second version of the room row per
// element created or deleted): it is read with the room's lock, follows
// each successful write's creation or deletion, and is set with the seq. A
// writer that does not set roomfeed.counts_elements (a write alone, an
// older roomfeed, psql) is counted by the trigger, whose UPDATE of the room
// row waits for the batch's lock and sees the count it committed; and the
// batch reads the count only once it holds the lock, after such a writer
// committed. So both ways of counting serialize on the room row.
type batch struct {
	rooms    map[string]*room
	names    []string // of rooms, sorted
	entries  map[key]*entry
	keys     []key // of entries, in the order the writes name them
	versions []versionKey
	idem     map[key]*keyEntry
	idemKeys []key // of idem, in the order the writes name them
	events   []roomfeed.Event
}

// runBatch runs the writes of batch (nil entries skipped) on c; see batch.
func runBatch(ctx context.Context, c *pgx.Conn, q *statements, writes []sqlstore.Write, errs []error) (err error) {
	defer func() {
		if err != nil {
			rollback(ctx, c)
		}
	}()
	b := newBatch(writes)
	if err := b.lock(ctx, c); err != nil {
		return err
	}
	if !b.run(writes, errs) {
		// Nothing succeeded: leave no trace, not even a new room.
		_, err := c.Exec(ctx, `ROLLBACK`)
		return err
	}
	return commit(ctx, c, b.changes(q))
}

func newBatch(writes []sqlstore.Write) *batch {
	b := &batch{
		rooms:   make(map[string]*room, 8),
		names:   make([]string, 0, 8),
		entries: make(map[key]*entry, len(writes)),
		keys:    make([]key, 0, len(writes)),
		idem:    make(map[key]*keyEntry),
	}
	for _, w := range writes {
		if w == nil {
			continue
		}
		if b.rooms[w.Room()] == nil {
			b.rooms[w.Room()] = &room{}
			b.names = append(b.names, w.Room())
		}
		r := w.Reads()
		if k := (key{w.Room(), r.ID}); k.id != "" {
			if b.entries[k] == nil {
				b.entries[k] = &entry{id: k.id}
				b.keys = append(b.keys, k)
			}
			if v := (versionKey{k, r.Base}); v.version > 0 && !slices.Contains(b.versions, v) {
				b.versions = append(b.versions, v)
				b.entries[k].asked = append(b.entries[k].asked, v.version)
			}
		}
		if k := (key{w.Room(), r.Key}); k.id != "" && b.idem[k] == nil {
			b.idem[k] = &keyEntry{key: k.id}
			b.idemKeys = append(b.idemKeys, k)
		}
	}
	slices.Sort(b.names)
	return b
}

// lock sends the first round trip and reads its answers.
func (b *batch) lock(ctx context.Context, c *pgx.Conn) error {
	t := sqlstore.Now()
	q := &pgx.Batch{}
	q.Queue(`BEGIN`)
	q.Queue(qCountsElements)
	q.Queue(qLockRooms, b.names, t)
	q.Queue(qReadRooms, b.names)
	if len(b.keys) > 0 {
		rooms, ids := columns(b.keys)
		q.Queue(qReadElements, rooms, ids)
	}
	if len(b.versions) > 0 {
		rooms, ids, versions := make([]string, len(b.versions)), make([]string, len(b.versions)), make([]int64, len(b.versions))
		for i, v := range b.versions {
			rooms[i], ids[i], versions[i] = v.room, v.id, v.version
		}
		q.Queue(qReadVersions, rooms, ids, versions)
	}
	if len(b.idemKeys) > 0 {
		rooms, keys := columns(b.idemKeys)
		q.Queue(qReadKeys, rooms, keys)
	}
	br := c.SendBatch(ctx, q)
	err := b.readLocks(br, t)
	for _, read := range []struct {
		queued bool
		read   func(pgx.BatchResults) error
	}{{len(b.keys) > 0, b.readEntries}, {len(b.versions) > 0, b.readVersions}, {len(b.idemKeys) > 0, b.readKeys}} {
		if err == nil && read.queued {
			err = read.read(br)
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// columns returns the rooms and the ids of keys as two arguments.
func columns(keys []key) (rooms, ids []string) {
	rooms, ids = make([]string, len(keys)), make([]string, len(keys))
	for i, k := range keys {
		rooms[i], ids[i] = k.room, k.id
	}
	return rooms, ids
}

// readLocks reads the answers of BEGIN, of the setting, of the room locks
// and of the rooms' reads. A room's time is the batch's time t, or the
// room's previous write time if that is later, so times follow seq order.
func (b *batch) readLocks(br pgx.BatchResults, t time.Time) error {
	for range 3 { // BEGIN, the setting, the locks
		if _, err := br.Exec(); err != nil {
			return err
		}
	}
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var (
			name     string
			seq, els int64
			at       time.Time
		)
		if err := rows.Scan(&name, &seq, &at, &els); err != nil {
			return err
		}
		rm := b.rooms[name]
		if rm == nil {
			return fmt.Errorf("lock rooms: unexpected room %q", name)
		}
		at = at.UTC()
		rm.seq, rm.elements, rm.fresh, rm.at = seq, els, seq == 0, t
		if at.After(t) {
			rm.at = at
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if n != len(b.rooms) {
		return fmt.Errorf("lock rooms: got %d rooms, want %d", n, len(b.rooms))
	}
	return nil
}

// readEntries reads the elements and tombstones the writes name.
func (b *batch) readEntries(br pgx.BatchResults) error {
	return eachRow(br, func(row pgx.Rows) error {
		var (
			room, id string
			kind     *string
			version  *int64
			data     []byte
			at       *time.Time
			tomb     *int64
		)
		if err := row.Scan(&room, &id, &kind, &version, &data, &at, &tomb); err != nil {
			return err
		}
		e := b.entries[key{room, id}]
		if e == nil {
			return fmt.Errorf("read elements: unexpected element %q of room %q", id, room)
		}
		if version != nil && kind != nil && at != nil {
			e.el = roomfeed.Element{ID: id, Kind: *kind, Version: *version, Data: data, UpdatedAt: at.UTC()}
			e.exists = true
		}
		if tomb != nil {
			e.tomb = *tomb
		}
		return nil
	})
}

// readVersions reads the base versions the writes name that exist.
func (b *batch) readVersions(br pgx.BatchResults) error {
	return eachRow(br, func(row pgx.Rows) error {
		var (
			room, id string
			version  int64
		)
		v, err := sqlstore.ScanVersion(prefixed{row, []any{&room, &id, &version}}, "", 0)
		if err != nil {
			return err
		}
		e := b.entries[key{room, id}]
		if e == nil {
			return fmt.Errorf("read versions: unexpected element %q of room %q", id, room)
		}
		v.ID, v.Version = id, version
		e.versions = append(e.versions, v)
		return nil
	})
}

// readKeys reads the idempotency keys the writes name that exist.
func (b *batch) readKeys(br pgx.BatchResults) error {
	return eachRow(br, func(row pgx.Rows) error {
		var room, name string
		rec, err := sqlstore.ScanKey(prefixed{row, []any{&room, &name}}, "")
		if err != nil {
			return err
		}
		k := b.idem[key{room, name}]
		if k == nil {
			return fmt.Errorf("read keys: unexpected key %q of room %q", name, room)
		}
		rec.Key = name
		k.rec, k.exists = rec, true
		return nil
	})
}

// eachRow calls fn with each row of the next result of br.
func eachRow(br pgx.BatchResults, fn func(pgx.Rows) error) error {
	rows, err := br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// prefixed scans a row whose first columns go to dest and the rest to
// what Scan is given.
type prefixed struct {
	row  sqlstore.Scanner
	dest []any
}

func (p prefixed) Scan(dest ...any) error { return p.row.Scan(append(p.dest, dest...)...) }

// run runs the writes in Go, in queue order, and reports whether one
// succeeded. A write runs on copies of its entries (element and key), kept
// only if it succeeds; the room's element count follows its element's
// existence (changes sends it).
func (b *batch) run(writes []sqlstore.Write, errs []error) (wrote bool) {
	for i, w := range writes {
		if w == nil || sqlstore.SkipDone(writes, i) {
			continue
		}
		rm, r := b.rooms[w.Room()], w.Reads()
		cur, curKey := b.entries[key{w.Room(), r.ID}], b.idem[key{w.Room(), r.Key}]
		t := &batchTx{state: state{seq: rm.seq + 1, at: rm.at, count: rm.elements, e: &entry{id: r.ID}}}
		if cur != nil {
			*t.e = *cur
			t.e.versions = slices.Clip(t.e.versions) // appends go to the copy
		}
		if curKey != nil {
			k := *curKey
			t.k = &k
		}
		if errs[i] = w.Run(context.WithoutCancel(w.Context()), t); errs[i] != nil {
			continue
		}
		rm.seq, rm.wrote, wrote = t.seq, true, true
		if cur != nil {
			switch {
			case t.e.exists && !cur.exists:
				rm.elements++
			case !t.e.exists && cur.exists:
				rm.elements--
			}
			*cur = *t.e
		}
		if curKey != nil {
			*curKey = *t.k
		}
		b.events = append(b.events, t.events...)
	}
	return wrote
}

// changes queues the second round trip but for its COMMIT: the final
// state of the elements and tombstones the writes changed, their versions,
// events and keys, the rooms' seqs, times and element counts, and the
// removal of the rooms the batch created for nothing. Only a room with a
// successful write can have a new count, and every such room is updated.
func (b *batch) changes(q *statements) *pgx.Batch {
	qb := &pgx.Batch{}
	b.queueEntries(qb, q.deleteElement)
	b.queueVersions(qb, q.dropVersions)
	b.queueKeys(qb)
	if len(b.events) > 0 {
		var (
			rooms    = make([]string, len(b.events))
			seqs     = make([]int64, len(b.events))
			types    = make([]string, len(b.events))
			payloads = make([]string, len(b.events))
			ats      = make([]time.Time, len(b.events))
		)
		for i, ev := range b.events {
			rooms[i], seqs[i], types[i], payloads[i], ats[i] = ev.Room, ev.Seq, ev.Type, string(ev.Data), ev.At
		}
		qb.Queue(qInsertEvents, rooms, seqs, types, payloads, ats)
	}
	var (
		upd           []string
		updSeqs, updN []int64
		updAts        []time.Time
	)
	for _, name := range b.names {
		rm := b.rooms[name]
		switch {
		case rm.wrote:
			upd, updSeqs, updAts = append(upd, name), append(updSeqs, rm.seq), append(updAts, rm.at)
			updN = append(updN, rm.elements)
		case rm.fresh:
			qb.Queue(qDropRoom, name)
		}
	}
	if len(upd) > 0 {
		qb.Queue(qUpdateRooms, upd, updSeqs, updAts, updN)
	}
	return qb
}

// queueEntries queues the final state of the elements and tombstones the
// writes changed: one upsert of elements and one of tombstones for the
// whole batch, and a delete per deleted element. An element written twice
// is written once, as it ended.
func (b *batch) queueEntries(qb *pgx.Batch, deleteElement string) {
	var (
		saveRooms, saveIDs, kinds, datas []string
		versions                         []int64
		ats                              []time.Time
		tombRooms, tombIDs               []string
		tombs                            []int64
	)
	for _, k := range b.keys {
		e := b.entries[k]
		if e.elDirty {
			if e.exists {
				saveRooms, saveIDs = append(saveRooms, k.room), append(saveIDs, k.id)
				kinds, datas = append(kinds, e.el.Kind), append(datas, string(e.el.Data))
				versions, ats = append(versions, e.el.Version), append(ats, e.el.UpdatedAt)
			} else {
				qb.Queue(deleteElement, k.room, k.id)
			}
		}
		if e.tombDirty {
			tombRooms, tombIDs, tombs = append(tombRooms, k.room), append(tombIDs, k.id), append(tombs, e.tomb)
		}
	}
	if len(saveRooms) > 0 {
		qb.Queue(qSaveElements, saveRooms, saveIDs, kinds, versions, datas, ats)
	}
	if len(tombRooms) > 0 {
		qb.Queue(qSaveTombs, tombRooms, tombIDs, tombs)
	}
}

// queueVersions queues the versions the writes saved, in one insert, then
// the deletion of each element's versions its writes dropped.
func (b *batch) queueVersions(qb *pgx.Batch, dropVersions string) {
	var (
		rooms, ids, types, kinds, datas, actors, ops []string
		versions, seqs                               []int64
		ats                                          []time.Time
	)
	for _, k := range b.keys {
		e := b.entries[k]
		for _, v := range e.versions[len(e.versions)-e.saved:] {
			rooms, ids, versions, seqs = append(rooms, k.room), append(ids, k.id), append(versions, v.Version), append(seqs, v.Seq)
			types, kinds, datas = append(types, v.Type), append(kinds, v.Kind), append(datas, string(v.Data))
			actors, ops, ats = append(actors, v.Actor), append(ops, v.OpID), append(ats, v.At)
		}
	}
	if len(rooms) > 0 {
		qb.Queue(qSaveVersions, rooms, ids, versions, seqs, types, kinds, datas, actors, ops, ats)
	}
	for _, k := range b.keys {
		if e := b.entries[k]; e.drop > 0 && e.saved > 0 {
			qb.Queue(dropVersions, k.room, k.id, e.drop)
		}
	}
}

// queueKeys queues the idempotency keys the writes saved, in one insert.
func (b *batch) queueKeys(qb *pgx.Batch) {
	var (
		rooms, keys, fingerprints, headers []string
		statuses                           []int32
		bodies                             [][]byte
		seqs                               []int64
		ats                                []time.Time
	)
	for _, name := range b.idemKeys {
		k := b.idem[name]
		if !k.dirty {
			continue
		}
		rooms, keys, fingerprints = append(rooms, name.room), append(keys, k.key), append(fingerprints, k.rec.Fingerprint)
		statuses, headers, bodies = append(statuses, int32(k.rec.Status)), append(headers, k.rec.Header), append(bodies, k.rec.Body)
		seqs, ats = append(seqs, k.rec.Seq), append(ats, k.rec.At)
	}
	if len(rooms) > 0 {
		qb.Queue(qSaveKeys, rooms, keys, fingerprints, statuses, headers, bodies, seqs, ats)
	}
}
