package repo

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

// batchTimeout bounds one PostgreSQL batch (Options.QueryTimeout, or 30s
// without one), so a connection that hangs cannot stop its committer for
// good. The writes of a batch that ran out of time fail; like a write whose
// context ends during COMMIT, they may or may not have committed.
func (s *Store) batchTimeout() time.Duration {
	if s.timeout > 0 {
		return s.timeout
	}
	return 30 * time.Second
}

// The statements of a PostgreSQL batch. Rooms and ids are "C" collated, so
// Go's string order is the database's.
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
	// missing ones at seq 0, and returns each room's seq, time and element
	// count. It writes nothing else: the seqs are set in the second round
	// trip (the counts by triggers).
	pgLockRooms = `INSERT INTO rooms (room, seq, updated_at)
		SELECT r, 0, $2::timestamptz FROM unnest($1::text[]) AS r
		ON CONFLICT (room) DO UPDATE SET seq = rooms.seq
		RETURNING room, seq, updated_at, elements`
	// The element and the tombstone of each key; NULLs where there is none.
	pgReadElements = `SELECT k.room, k.id, e.kind, e.version, e.data, e.updated_at, t.version
		FROM unnest($1::text[], $2::text[]) AS k (room, id)
		LEFT JOIN LATERAL (SELECT * FROM elements
			WHERE elements.room = k.room AND elements.id = k.id OFFSET 0) AS e ON true
		LEFT JOIN LATERAL (SELECT * FROM tombstones
			WHERE tombstones.room = k.room AND tombstones.id = k.id OFFSET 0) AS t ON true`
	pgSaveElements = `INSERT INTO elements (room, id, kind, version, data, updated_at)
		SELECT room, id, kind, version, data::json, updated_at
		FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[])
			AS v (room, id, kind, version, data, updated_at)
		ON CONFLICT (room, id) DO UPDATE SET kind = excluded.kind, version = excluded.version,
			data = excluded.data, updated_at = excluded.updated_at`
	pgSaveTombstones = `INSERT INTO tombstones (room, id, version)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
		ON CONFLICT (room, id) DO UPDATE SET version = excluded.version`
	pgInsertEvents = `INSERT INTO events (room, seq, type, payload, at)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::timestamptz[])`
	// Sets the seqs and times of rooms the batch locked (so they exist).
	pgUpdateRooms = `INSERT INTO rooms (room, seq, updated_at)
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::timestamptz[])
		ON CONFLICT (room) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at`
	// Removes a room the batch created for writes that all failed.
	pgDropRoom = `DELETE FROM rooms WHERE room = $1 AND seq = 0`
)

// pgEvent is an event a batched write records.
type pgEvent struct {
	seq     int64
	typ     string
	payload string
	at      time.Time
}

// pgKey names an element of a batch.
type pgKey struct{ room, id string }

// pgRoom is a room locked by a batch.
type pgRoom struct {
	seq      int64     // the last seq taken
	at       time.Time // the time of the batch's writes in the room
	elements int64     // the element count after the writes so far
	fresh    bool      // created by the batch (seq 0)
	wrote    bool
}

// pgCommitter returns the committer of room: always the same one.
func (s *Store) pgCommitter(room string) *committer {
	n := uint32(len(s.pgCommits))
	if n == 1 {
		return s.pgCommits[0]
	}
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(room); i++ {
		h ^= uint32(room[i])
		h *= 16777619
	}
	return s.pgCommits[h%n]
}

// runPostgresBatch runs the writes of batch in one PostgreSQL transaction of
// two round trips (see pgBatchTx) and sets errs[i] to the outcome of
// batch[i]. A write whose context ended before its turn (while queued, or
// while the batch locked its rooms) is answered at once, not run, and set to
// nil in batch.
//
// A batch of one write runs it alone (tryPostgresWrite), whose statements
// are cheaper. If PostgreSQL rejects a batch (an error of one write's
// statements, a failed COMMIT, a deadlock), nothing of it committed: every
// write then runs again alone, as its own transaction, so one bad write
// cannot fail the others. Any other error (the connection is lost, the batch timed out) is
// returned and fails every write of the batch, since the COMMIT may have
// been applied.
func (s *Store) runPostgresBatch(batch []*writeReq, errs []error) error {
	live := 0
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err
			batch[i] = nil
			continue
		}
		live++
	}
	if live == 0 {
		return nil
	}
	if live > 1 {
		ctx, cancel := context.WithTimeoutCause(context.Background(), s.batchTimeout(), sqlstore.ErrNoAnswer)
		defer cancel()
		err := s.pgBatch(ctx, batch, errs)
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || context.Cause(ctx) == sqlstore.ErrNoAnswer {
			// Also a batch that ran out of time (PostgreSQL may have
			// answered the cancel with an error of its own): running its
			// writes alone would wait as long again for each.
			return sqlstore.ClassifyBounded(ctx, err)
		}
		s.log.LogAttrs(ctx, slog.LevelDebug, "batch failed, running its writes alone",
			slog.Int("writes", live), slog.String("error", err.Error()))
	}
	// A lone write runs alone: the statements of a single write are
	// cheaper than the batch's multi-row ones.
	for i, r := range batch {
		if r == nil {
			continue
		}
		var p *writePanic
		if errors.As(errs[i], &p) {
			continue // it panics alone too
		}
		ctx, cancel := context.WithTimeoutCause(context.WithoutCancel(r.ctx), s.batchTimeout(), sqlstore.ErrNoAnswer)
		errs[i] = sqlstore.ClassifyBounded(ctx, s.writeAlone(ctx, r.room, r.id, func(ctx context.Context, w *writeTx) error {
			return callWrite(ctx, w, r.fn)
		}))
		cancel()
	}
	return nil
}

func (s *Store) pgBatch(ctx context.Context, batch []*writeReq, errs []error) error {
	return s.withPgConn(ctx, func(c *pgx.Conn) error { return s.pgBatchTx(ctx, c, batch, errs) })
}

// pgBatchTx runs the writes of batch (nil entries skipped) in one transaction:
//
//  1. BEGIN; lock the batch's rooms in sorted order (creating missing ones)
//     and read their seqs and times; read the elements and tombstones the
//     writes name.
//  2. Go runs every write's fn in queue order against those reads, each
//     seeing the changes of the writes before it; a write that fails leaves
//     no change and takes no seq. The changes of the others (elements,
//     tombstones, events, room seqs) are sent as a few multi-row
//     statements with COMMIT.
//
// Rooms are locked in the same order by every batch of every node, and a
// single write locks one room, so batches do not deadlock each other.
func (s *Store) pgBatchTx(ctx context.Context, c *pgx.Conn, batch []*writeReq, errs []error) (err error) {
	defer func() {
		if err != nil {
			pgRollback(ctx, c)
		}
	}()
	rooms := make(map[string]*pgRoom, 8)
	names := make([]string, 0, 8)
	reads := make(map[pgKey]*pgReads, len(batch))
	keys := make([]pgKey, 0, len(batch))
	var keyRooms, keyIDs []string
	for _, r := range batch {
		if r == nil {
			continue
		}
		if rooms[r.room] == nil {
			rooms[r.room] = &pgRoom{}
			names = append(names, r.room)
		}
		if k := (pgKey{r.room, r.id}); r.id != "" && reads[k] == nil {
			reads[k] = &pgReads{id: r.id}
			keys = append(keys, k)
			keyRooms, keyIDs = append(keyRooms, r.room), append(keyIDs, r.id)
		}
	}
	slices.Sort(names)

	// Round trip 1.
	t := sqlstore.Now()
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(pgLockRooms, names, t)
	if len(keys) > 0 {
		b.Queue(pgReadElements, keyRooms, keyIDs)
	}
	br := c.SendBatch(ctx, b)
	err = pgReadBatch(br, t, rooms, reads, len(keys) > 0)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}

	// The writes, in Go.
	b = &pgx.Batch{}
	var (
		events  []pgEvent
		evRooms []string
		wrote   bool
	)
	for i, r := range batch {
		if r == nil {
			continue
		}
		if err := r.ctx.Err(); err != nil {
			// Cancelled before its turn, as on SQLite: answered, not run.
			r.done <- err
			batch[i] = nil
			continue
		}
		rm := rooms[r.room]
		w := &writeTx{s: s, room: r.room, seq: rm.seq + 1, now: rm.at, count: rm.elements, queued: &pgx.Batch{}, batched: true}
		cur := reads[pgKey{r.room, r.id}]
		if cur != nil {
			pg := *cur
			w.pg = &pg
		} else {
			w.pg = &pgReads{id: r.id}
		}
		if errs[i] = callWrite(context.WithoutCancel(r.ctx), w, r.fn); errs[i] != nil {
			continue
		}
		rm.seq, rm.elements, rm.wrote, wrote = w.seq, w.count, true, true
		if cur != nil {
			*cur = *w.pg
		}
		b.QueuedQueries = append(b.QueuedQueries, w.queued.QueuedQueries...)
		for _, ev := range w.events {
			events = append(events, ev)
			evRooms = append(evRooms, r.room)
		}
	}

	// Round trip 2.
	if !wrote {
		// Nothing succeeded: leave no trace, not even a new room.
		_, err := c.Exec(ctx, `ROLLBACK`)
		return err
	}
	s.queueBatchChanges(b, keys, reads)
	if len(events) > 0 {
		var (
			seqs     = make([]int64, len(events))
			types    = make([]string, len(events))
			payloads = make([]string, len(events))
			ats      = make([]time.Time, len(events))
		)
		for i, ev := range events {
			seqs[i], types[i], payloads[i], ats[i] = ev.seq, ev.typ, ev.payload, ev.at
		}
		b.Queue(pgInsertEvents, evRooms, seqs, types, payloads, ats)
	}
	var (
		upd     []string
		updSeqs []int64
		updAts  []time.Time
	)
	for _, name := range names {
		rm := rooms[name]
		switch {
		case rm.wrote:
			upd, updSeqs, updAts = append(upd, name), append(updSeqs, rm.seq), append(updAts, rm.at)
		case rm.fresh:
			b.Queue(pgDropRoom, name)
		}
	}
	if len(upd) > 0 {
		b.Queue(pgUpdateRooms, upd, updSeqs, updAts)
	}
	b.Queue(`COMMIT`)
	br = c.SendBatch(ctx, b)
	for range b.Len() {
		if _, err = br.Exec(); err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	// A COMMIT of a transaction that failed answers ROLLBACK without an
	// error; the statements above would have failed first, but make sure.
	if st := c.PgConn().TxStatus(); st != 'I' {
		return fmt.Errorf("commit: transaction status %q after COMMIT", st)
	}
	return nil
}

// pgReadBatch reads the answers of a batch's first round trip into rooms
// and reads. A room's time is the batch's time t, or the room's previous
// write time if that is later, so times follow seq order.
func pgReadBatch(br pgx.BatchResults, t time.Time, rooms map[string]*pgRoom, reads map[pgKey]*pgReads, elements bool) error {
	if _, err := br.Exec(); err != nil {
		return err
	}
	rows, err := br.Query()
	if err != nil {
		return err
	}
	n := 0
	for rows.Next() {
		var (
			name     string
			seq, els int64
			at       time.Time
		)
		if err := rows.Scan(&name, &seq, &at, &els); err != nil {
			rows.Close()
			return err
		}
		rm := rooms[name]
		if rm == nil {
			rows.Close()
			return fmt.Errorf("lock rooms: unexpected room %q", name)
		}
		at = at.UTC()
		rm.seq, rm.elements, rm.fresh, rm.at = seq, els, seq == 0, t
		if at.After(t) {
			rm.at = at
		}
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if n != len(rooms) {
		return fmt.Errorf("lock rooms: got %d rooms, want %d", n, len(rooms))
	}
	if !elements {
		return nil
	}

	rows, err = br.Query()
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			room, id string
			kind     *string
			version  *int64
			data     []byte
			at       *time.Time
			tomb     *int64
		)
		if err := rows.Scan(&room, &id, &kind, &version, &data, &at, &tomb); err != nil {
			return err
		}
		r := reads[pgKey{room, id}]
		if r == nil {
			return fmt.Errorf("read elements: unexpected element %q of room %q", id, room)
		}
		if version != nil && kind != nil && at != nil {
			r.el = roomfeed.Element{ID: id, Kind: *kind, Version: *version, Data: data, UpdatedAt: at.UTC()}
			r.exists = true
		}
		if tomb != nil {
			r.tomb = *tomb
		}
	}
	return rows.Err()
}

// queueBatchChanges queues the final state of the elements and tombstones
// the batch's writes changed: one upsert and one tombstone upsert for the
// whole batch, and a delete per deleted element. An element written twice is written once, as
// it ended.
func (s *Store) queueBatchChanges(b *pgx.Batch, keys []pgKey, reads map[pgKey]*pgReads) {
	var (
		saveRooms, saveIDs, kinds, datas []string
		versions                         []int64
		ats                              []time.Time
		tombRooms, tombIDs               []string
		tombs                            []int64
	)
	for _, k := range keys {
		r := reads[k]
		if r.elDirty {
			if r.exists {
				saveRooms, saveIDs = append(saveRooms, k.room), append(saveIDs, k.id)
				kinds, datas = append(kinds, r.el.Kind), append(datas, string(r.el.Data))
				versions, ats = append(versions, r.el.Version), append(ats, r.el.UpdatedAt)
			} else {
				b.Queue(s.pgq[qDeleteElement], k.room, k.id)
			}
		}
		if r.tombDirty {
			tombRooms, tombIDs, tombs = append(tombRooms, k.room), append(tombIDs, k.id), append(tombs, r.tomb)
		}
	}
	if len(saveRooms) > 0 {
		b.Queue(pgSaveElements, saveRooms, saveIDs, kinds, versions, datas, ats)
	}
	if len(tombRooms) > 0 {
		b.Queue(pgSaveTombstones, tombRooms, tombIDs, tombs)
	}
}
