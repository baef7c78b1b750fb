package postgres

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
)

// qNextSeq takes the next sequence number and sets the write's time, never
// below the room's previous write, in one upsert that locks the room row
// until commit, so commit order is seq order.
const qNextSeq = `INSERT INTO rooms (room, seq, updated_at) VALUES (?, 1, ?)
		ON CONFLICT (room) DO UPDATE SET seq = rooms.seq + 1,
			updated_at = GREATEST(rooms.updated_at, excluded.updated_at)
		RETURNING seq, updated_at, elements`

// writeAlone runs w in its own transaction (see runAlone); serialization
// failures and deadlocks are retried a few times.
func (db *DB) writeAlone(ctx context.Context, w sqlstore.Write) error {
	for attempt := 1; ; attempt++ {
		err := db.withConn(ctx, func(c *pgx.Conn) error { return db.runAlone(ctx, c, w) })
		if err == nil || !retryable(err) || attempt == writeAttempts {
			return sqlstore.Classify(err)
		}
		db.log.LogAttrs(ctx, slog.LevelDebug, "retrying write transaction",
			slog.String("room", w.Room()), slog.Int("attempt", attempt), slog.String("error", err.Error()))
		t := time.NewTimer(time.Duration(attempt) * 5 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// runAlone runs w alone in two round trips while the room row is locked:
//
//  1. BEGIN; take the next seq (locking the room row) and set updated_at;
//     read what w names (sqlstore.Reads): the element and its tombstone,
//     its base version, its idempotency key.
//  2. w's statements (element upsert or delete, tombstone, version, event
//     insert, key), queued by its Func in between, are sent with COMMIT.
//
// The Func computes everything in Go between the two, so the event payload
// is built exactly as on SQLite. Any failure rolls back, sequence number
// included.
func (db *DB) runAlone(ctx context.Context, c *pgx.Conn, w sqlstore.Write) (err error) {
	defer func() {
		if err != nil {
			rollback(ctx, c)
		}
	}()
	r := w.Reads()
	t := &singleTx{state: state{e: &entry{id: r.ID}}, room: w.Room(), q: &db.q, queued: &pgx.Batch{}}
	if r.Key != "" {
		t.k = &keyEntry{key: r.Key}
	}
	if err := t.begin(ctx, c, sqlstore.Now(), r.Base); err != nil {
		return err
	}
	if err := w.Run(ctx, t); err != nil {
		return err
	}
	return commit(ctx, c, t.queued)
}

// begin sends the first round trip of a write alone and reads its answers:
// BEGIN, the sequence number and the write's time (now, or the room's
// previous write time if that is later), the element the write names with
// its tombstone and version base (when > 0), and its key.
func (t *singleTx) begin(ctx context.Context, c *pgx.Conn, now time.Time, base int64) error {
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(t.q.nextSeq, t.room, now)
	if t.e.id != "" {
		b.Queue(t.q.element, t.room, t.e.id)
		b.Queue(t.q.tomb, t.room, t.e.id)
		if base > 0 {
			b.Queue(t.q.version, t.room, t.e.id, base)
		}
	}
	if t.k != nil {
		b.Queue(t.q.key, t.room, t.k.key)
	}
	br := c.SendBatch(ctx, b)
	if err := t.read(br, base); err != nil {
		br.Close()
		return err
	}
	return br.Close()
}

func (t *singleTx) read(br pgx.BatchResults, base int64) error {
	if _, err := br.Exec(); err != nil {
		return err
	}
	var at time.Time
	if err := br.QueryRow().Scan(&t.seq, &at, &t.count); err != nil {
		return err
	}
	t.at = at.UTC()
	if t.e.id != "" {
		if err := t.readElement(br, base); err != nil {
			return err
		}
	}
	if t.k == nil {
		return nil
	}
	k, err := sqlstore.ScanKey(br.QueryRow(), t.k.key)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return err
	}
	t.k.rec, t.k.exists = k, true
	return nil
}

// readElement reads the answers about the element: the element, its
// tombstone and its version base (when > 0).
func (t *singleTx) readElement(br pgx.BatchResults, base int64) error {
	el, err := sqlstore.ScanElement(br.QueryRow())
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return err
	default:
		t.e.el, t.e.exists = el, true
	}
	if err := br.QueryRow().Scan(&t.e.tomb); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	if base <= 0 {
		return nil
	}
	t.e.asked = []int64{base}
	v, err := sqlstore.ScanVersion(br.QueryRow(), t.e.id, base)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return err
	}
	t.e.versions = []sqlstore.Version{v}
	return nil
}
