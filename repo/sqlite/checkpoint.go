package sqlite

import (
	"context"
	"database/sql"
	"time"
)

// SQLite in WAL mode appends every commit to the WAL, and a checkpoint
// copies the WAL's pages back into the database file. By default the
// COMMIT that takes the WAL past 1,000 pages runs that checkpoint itself,
// on the one write connection, while the writers of the next batch wait:
// about a sixth of the committer's time in a write benchmark over 1,000
// rooms (docs/performance.md, sixth round). The checkpointer runs it beside
// the committer instead, on a connection of the read pool, so the writes
// go on while the pages are copied.

// checkpointEvery is the least time between two of the checkpointer's
// checkpoints: a busy node checkpoints about this often, a quiet one
// after each of its rare batches. Longer lets the WAL grow larger between
// checkpoints (fewer copies of a page written often, a longer copy each
// time); 20 ms kept the write p99 where it was (docs/performance.md).
const checkpointEvery = 20 * time.Millisecond

// commitCheckpointPages is the WAL size, in pages, at which a COMMIT still
// checkpoints by itself (SQLite's wal_autocheckpoint; its default is
// 1,000): the bound on the WAL when the checkpointer falls behind or a long
// read holds the WAL's pages. A database URL may set its own
// (?_pragma=wal_autocheckpoint(N)).
const commitCheckpointPages = 10000

// checkpointer runs PASSIVE checkpoints beside the writer: one after a
// batch commits, at most one per checkpointEvery. A PASSIVE checkpoint
// never waits for a reader or the writer; it copies what it can, and the
// writer restarts the WAL from its beginning once a checkpoint has copied
// all of it. Its errors are not reported: a failed checkpoint (a full
// disk, say) leaves the pages in the WAL, the next one tries again, and
// the writes report the disk themselves.
type checkpointer struct {
	db      *sql.DB
	timeout time.Duration // bounds one checkpoint
	kick    chan struct{} // capacity 1: "a batch committed"
	stop    context.CancelFunc
	done    chan struct{} // closed when run returns
}

// startCheckpointer starts the checkpointer of the database db reads;
// close stops it.
func startCheckpointer(db *sql.DB, timeout time.Duration) *checkpointer {
	ctx, stop := context.WithCancel(context.Background())
	c := &checkpointer{db: db, timeout: timeout, kick: make(chan struct{}, 1), stop: stop, done: make(chan struct{})}
	go c.run(ctx)
	return c
}

// committed tells the checkpointer that a batch committed. It never
// blocks.
func (c *checkpointer) committed() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// close stops the checkpointer, interrupting a checkpoint in progress, and
// waits for it.
func (c *checkpointer) close() {
	c.stop()
	<-c.done
}

func (c *checkpointer) run(ctx context.Context) {
	defer close(c.done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		}
		c.checkpoint(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(checkpointEvery):
		}
	}
}

// checkpoint runs one PASSIVE checkpoint within c.timeout.
func (c *checkpointer) checkpoint(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var busy, frames, copied int
	_ = c.db.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied)
}
