package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"modernc.org/sqlite"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/repo/internal/sqlstore"
)

// The statements of a write besides sqlstore's.
const (
	// The sequence number and the write's time, set in one upsert that
	// locks the room (the batch holds the only write connection).
	// updated_at never goes below the room's previous write, so times
	// follow seq order even if the clock steps back.
	qNextSeq = `INSERT INTO rooms (room, seq, updated_at) VALUES (?, 1, ?)
		ON CONFLICT (room) DO UPDATE SET seq = rooms.seq + 1,
			updated_at = max(rooms.updated_at, excluded.updated_at)
		RETURNING seq, updated_at, elements`

	// The savepoint of each write in a batch.
	qSavepoint  = `SAVEPOINT w`
	qRelease    = `RELEASE w`
	qRollbackTo = `ROLLBACK TO w`
)

// prepare prepares the write statements on the write connection; a
// statement that fails to prepare is run unprepared.
func (db *DB) prepare(ctx context.Context) {
	qs := []string{qNextSeq, sqlstore.SelectElement, sqlstore.SelectTomb, sqlstore.SaveElement,
		sqlstore.DeleteElement, sqlstore.SaveTomb, sqlstore.InsertEvent, sqlstore.SelectVersion,
		sqlstore.SaveVersion, sqlstore.DropVersions, sqlstore.SelectKey, sqlstore.SaveKey,
		qSavepoint, qRelease, qRollbackTo}
	db.stmts = make(map[string]*sql.Stmt, len(qs))
	for _, q := range qs {
		if st, err := db.write.PrepareContext(ctx, q); err == nil {
			db.stmts[q] = st
		}
	}
}

// RunBatch runs the writes of batch in one transaction, each in its own
// savepoint, so a write that fails is undone alone (its sequence number
// included) while the others commit; one COMMIT, so one fsync, covers the
// batch (see sqlstore.Write). If the COMMIT or the transaction around the
// savepoints fails, that error fails every write that ran. The batch has
// QueryTimeout: a batch that runs out (the write lock held elsewhere, a
// slow disk) is rolled back and fails with ErrNoAnswer.
func (db *DB) RunBatch(batch []sqlstore.Write, errs []error) error {
	ctx, cancel := context.WithTimeoutCause(context.Background(), db.batchTimeout, sqlstore.ErrNoAnswer)
	defer cancel()
	if err := db.runBatch(ctx, batch, errs); err != nil {
		return sqlstore.ClassifyBounded(ctx, err)
	}
	db.ckpt.committed()
	return nil
}

// runBatch is RunBatch within ctx, the batch's bound.
func (db *DB) runBatch(ctx context.Context, batch []sqlstore.Write, errs []error) error {
	sqlTx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	stmts := make(map[string]*sql.Stmt, len(db.stmts))
	for i, w := range batch {
		if sqlstore.SkipDone(batch, i) {
			continue
		}
		t := &tx{db: db, ctx: ctx, sqlTx: sqlTx, stmts: stmts, room: w.Room()}
		var fatal error
		if errs[i], fatal = t.runSavepoint(w); fatal != nil {
			sqlTx.Rollback()
			return fatal
		}
	}
	if err := sqlTx.Commit(); err != nil {
		// A COMMIT that failed (SQLITE_BUSY, an I/O error) can leave the
		// transaction open on the connection; end it so the next batch can
		// begin. Without a transaction this fails harmlessly. (When ctx ran
		// out, database/sql has rolled back and discarded the connection.)
		rctx, cancel := context.WithTimeout(context.Background(), db.batchTimeout)
		defer cancel()
		db.write.ExecContext(rctx, `ROLLBACK`)
		return err
	}
	return nil
}

// tx is one write of a batch, inside its savepoint: its statements run at
// once. count is the room's element count read with the sequence number
// (triggers keep rooms.elements).
type tx struct {
	db    *DB
	ctx   context.Context // the batch's: bounds every statement
	sqlTx *sql.Tx
	stmts map[string]*sql.Stmt // db.stmts bound to sqlTx, shared by the batch
	room  string
	seq   int64
	at    time.Time
	count int64
}

// runSavepoint runs w inside SAVEPOINT w: it takes the room's next
// sequence number, then runs w's Func (with w's context values; its
// statements run within the batch's bound). An error from either undoes
// the write alone (ROLLBACK TO w). fatal is set when the transaction
// itself is lost; then the batch must not commit.
func (t *tx) runSavepoint(w sqlstore.Write) (err, fatal error) {
	ctx := context.WithoutCancel(w.Context())
	if err := t.exec(qSavepoint); err != nil {
		return err, err
	}
	err = t.nextSeq()
	if err == nil {
		err = w.Run(ctx, t)
	}
	if err == nil {
		if err := t.exec(qRelease); err != nil {
			return err, err
		}
		return nil, nil
	}
	if rerr := t.exec(qRollbackTo); rerr != nil {
		// SQLite rolls the whole transaction back after some errors (disk
		// full, I/O error), and the savepoint with it: report the cause.
		var sqliteErr *sqlite.Error
		if errors.As(err, &sqliteErr) {
			return err, err
		}
		return rerr, rerr
	}
	if rerr := t.exec(qRelease); rerr != nil {
		return rerr, rerr
	}
	return err, nil
}

// nextSeq takes the room's next sequence number, the write's time and the
// room's element count.
func (t *tx) nextSeq() error {
	now := sqlstore.Now()
	arg := now.Format(timeFormat)
	var at string
	if err := t.queryRow(qNextSeq, t.room, arg).Scan(&t.seq, &at, &t.count); err != nil {
		return err
	}
	t.at = now
	if at != arg {
		var err error
		if t.at, err = sqlstore.ParseTime(at); err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) Seq() int64      { return t.seq }
func (t *tx) Time() time.Time { return t.at }
func (t *tx) Elements() int64 { return t.count }

func (t *tx) Element(ctx context.Context, id string) (roomfeed.Element, bool, error) {
	el, err := sqlstore.ScanElement(t.queryRow(sqlstore.SelectElement, t.room, id))
	if errors.Is(err, sql.ErrNoRows) {
		return roomfeed.Element{}, false, nil
	}
	if err != nil {
		return roomfeed.Element{}, false, err
	}
	return el, true, nil
}

func (t *tx) Tombstone(ctx context.Context, id string) (int64, error) {
	var v int64
	err := t.queryRow(sqlstore.SelectTomb, t.room, id).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return v, err
}

func (t *tx) SaveElement(ctx context.Context, el roomfeed.Element) error {
	return t.exec(sqlstore.SaveElement,
		t.room, el.ID, el.Kind, el.Version, string(el.Data), timeArg(el.UpdatedAt))
}

func (t *tx) DeleteElement(ctx context.Context, id string) error {
	return t.exec(sqlstore.DeleteElement, t.room, id)
}

func (t *tx) SaveTombstone(ctx context.Context, id string, version int64) error {
	return t.exec(sqlstore.SaveTomb, t.room, id, version)
}

func (t *tx) InsertEvent(ctx context.Context, ev roomfeed.Event) error {
	return t.exec(sqlstore.InsertEvent, ev.Room, ev.Seq, ev.Type, string(ev.Data), timeArg(ev.At))
}

func (t *tx) Version(ctx context.Context, id string, version int64) (sqlstore.Version, bool, error) {
	v, err := sqlstore.ScanVersion(t.queryRow(sqlstore.SelectVersion, t.room, id, version), id, version)
	if errors.Is(err, sql.ErrNoRows) {
		return sqlstore.Version{}, false, nil
	}
	return v, err == nil, err
}

func (t *tx) SaveVersion(ctx context.Context, v sqlstore.Version, drop int64) error {
	err := t.exec(sqlstore.SaveVersion, t.room, v.ID, v.Version, v.Seq, v.Type, v.Kind,
		sqlstore.VersionData(v), v.Actor, v.OpID, timeArg(v.At))
	if err != nil || drop < 1 {
		return err
	}
	return t.exec(sqlstore.DropVersions, t.room, v.ID, drop)
}

func (t *tx) Key(ctx context.Context, key string) (sqlstore.KeyRecord, bool, error) {
	k, err := sqlstore.ScanKey(t.queryRow(sqlstore.SelectKey, t.room, key), key)
	if errors.Is(err, sql.ErrNoRows) {
		return sqlstore.KeyRecord{}, false, nil
	}
	return k, err == nil, err
}

func (t *tx) SaveKey(ctx context.Context, k sqlstore.KeyRecord) error {
	return t.exec(sqlstore.SaveKey, t.room, k.Key, k.Fingerprint, k.Status, k.Header, k.Body, k.Seq, timeArg(k.At))
}

// exec runs a write statement in the transaction, prepared when it can be.
func (t *tx) exec(q string, args ...any) error {
	if st := t.stmt(q); st != nil {
		_, err := st.ExecContext(t.ctx, args...)
		return err
	}
	_, err := t.sqlTx.ExecContext(t.ctx, q, args...)
	return err
}

// queryRow runs a query of the write in the transaction, prepared when it
// can be.
func (t *tx) queryRow(q string, args ...any) *sql.Row {
	if st := t.stmt(q); st != nil {
		return st.QueryRowContext(t.ctx, args...)
	}
	return t.sqlTx.QueryRowContext(t.ctx, q, args...)
}

// stmt returns the prepared statement q bound to the transaction, nil if
// q could not be prepared.
func (t *tx) stmt(q string) *sql.Stmt {
	if st := t.stmts[q]; st != nil {
		return st
	}
	st := t.db.stmts[q]
	if st == nil {
		return nil
	}
	st = t.sqlTx.StmtContext(t.ctx, st)
	t.stmts[q] = st
	return st
}
