package repo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
)

// pgReads holds what a PostgreSQL write read in its first round trip,
// together with its sequence number: the element it writes and its
// tombstone.
type pgReads struct {
	id     string
	el     roomfeed.Element
	exists bool
	tomb   int64
	// In a batch: el (with exists) or tomb was changed by a write.
	elDirty, tombDirty bool
}

// tryPostgresWrite runs one write alone on PostgreSQL (the writes of a
// batch that PostgreSQL rejected run this way, see runPostgresBatch) in two
// round trips while the room row is locked:
//
//  1. BEGIN; take the next seq (locking the room row) and set updated_at;
//     read the element id and its tombstone (when id is not empty).
//  2. fn has queued its statements (element upsert or delete, tombstone,
//     event insert); they are sent with COMMIT.
//
// fn computes everything in Go between the two, so the event payload is
// built exactly as on SQLite. Any failure rolls back, sequence number
// included.
func (s *Store) tryPostgresWrite(ctx context.Context, room, id string, fn writeFunc) error {
	return s.withPgConn(ctx, func(c *pgx.Conn) error { return s.pgWrite(ctx, c, room, id, fn) })
}

// withPgConn runs fn on a pgx connection of the pool, for pipelined batches.
func (s *Store) withPgConn(ctx context.Context, fn func(*pgx.Conn) error) error {
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("unexpected driver connection %T", dc)
		}
		return fn(c.Conn())
	})
}

func (s *Store) pgWrite(ctx context.Context, c *pgx.Conn, room, id string, fn writeFunc) (err error) {
	defer func() {
		if err != nil {
			pgRollback(ctx, c)
		}
	}()
	w := &writeTx{s: s, room: room, pg: &pgReads{id: id}, queued: &pgx.Batch{}}
	if err := w.pgBegin(ctx, c, sqlstore.Now()); err != nil {
		return err
	}
	if err := fn(ctx, w); err != nil {
		return err
	}
	b := w.queued
	b.Queue(`COMMIT`)
	br := c.SendBatch(ctx, b)
	for range b.Len() {
		if _, err := br.Exec(); err != nil {
			br.Close()
			return err
		}
	}
	if err := br.Close(); err != nil {
		return err
	}
	// A COMMIT of a transaction that failed answers ROLLBACK without an
	// error; the statements above would have failed first, but make sure.
	if st := c.PgConn().TxStatus(); st != 'I' {
		return fmt.Errorf("commit: transaction status %q after COMMIT", st)
	}
	return nil
}

// pgBegin sends the first round trip of a write: BEGIN, the sequence
// number and the write time (never earlier than the room's previous
// write), and the reads of w.pg.id.
func (w *writeTx) pgBegin(ctx context.Context, c *pgx.Conn, t time.Time) error {
	s := w.s
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(s.pgq[qNextSeqPostgres], w.room, t)
	if w.pg.id != "" {
		b.Queue(s.pgq[qElement], w.room, w.pg.id)
		b.Queue(s.pgq[qTombstone], w.room, w.pg.id)
	}
	br := c.SendBatch(ctx, b)
	if err := w.pgReadBegin(br); err != nil {
		br.Close()
		return err
	}
	return br.Close()
}

func (w *writeTx) pgReadBegin(br pgx.BatchResults) error {
	if _, err := br.Exec(); err != nil {
		return err
	}
	var at time.Time
	if err := br.QueryRow().Scan(&w.seq, &at, &w.count); err != nil {
		return err
	}
	w.now = at.UTC()
	if w.pg.id == "" {
		return nil
	}
	el, err := sqlstore.ScanElement(br.QueryRow())
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return err
	default:
		w.pg.el, w.pg.exists = el, true
	}
	err = br.QueryRow().Scan(&w.pg.tomb)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	return err
}

// pgRollback ends the failed write's transaction so the connection can be
// reused. When that is not possible (the context is done, the connection
// is broken), database/sql discards the connection: the pgx driver refuses
// to reset a session that is still in a transaction.
func pgRollback(ctx context.Context, c *pgx.Conn) {
	if c.IsClosed() || c.PgConn().TxStatus() == 'I' || ctx.Err() != nil {
		return
	}
	c.Exec(ctx, `ROLLBACK`)
}

// element returns the prefetched element id.
func (r *pgReads) element(id string) (roomfeed.Element, bool, error) {
	if id != r.id {
		return roomfeed.Element{}, false, fmt.Errorf("element %q was not read with the sequence number", id)
	}
	return r.el, r.exists, nil
}

// tombstone returns the prefetched tombstone version of id.
func (r *pgReads) tombstone(id string) (int64, error) {
	if id != r.id {
		return 0, fmt.Errorf("tombstone %q was not read with the sequence number", id)
	}
	return r.tomb, nil
}

// save records that el (of the prefetched id) was written.
func (r *pgReads) save(el roomfeed.Element) error {
	if el.ID != r.id {
		return fmt.Errorf("element %q was not read with the sequence number", el.ID)
	}
	r.el, r.exists, r.elDirty = el, true, true
	return nil
}

// remove records that the prefetched element was deleted.
func (r *pgReads) remove(id string) error {
	if id != r.id {
		return fmt.Errorf("element %q was not read with the sequence number", id)
	}
	r.el, r.exists, r.elDirty = roomfeed.Element{}, false, true
	return nil
}

// setTombstone records the prefetched element's new tombstone version.
func (r *pgReads) setTombstone(id string, version int64) error {
	if id != r.id {
		return fmt.Errorf("tombstone %q was not read with the sequence number", id)
	}
	r.tomb, r.tombDirty = version, true
	return nil
}
