package sqlstore

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
)

// The store's errors; package repo exports them with their contracts.
var (
	ErrNotFound        = errors.New("not found")
	ErrVersionMismatch = errors.New("version mismatch")
	ErrExists          = errors.New("element exists")
	ErrUnavailable     = errors.New("database unavailable")
	ErrInvalid         = errors.New("invalid json")
	ErrRoomFull        = errors.New("room full")
	// ErrStorageFull is the database's disk (or its quota) being full: a
	// kind of unavailability that lasts until space is freed.
	ErrStorageFull = fmt.Errorf("%w: storage full", ErrUnavailable)
)

// ErrNoAnswer is the cause of a context the store bounded itself
// (Options.QueryTimeout, a PostgreSQL batch) when it ran out.
var ErrNoAnswer = fmt.Errorf("%w: the database did not answer in time", ErrUnavailable)

// SQLite primary result codes (the low byte of an extended code).
const (
	sqliteBusy     = 5
	sqliteLocked   = 6
	sqliteReadOnly = 8
	sqliteIOErr    = 10
	sqliteFull     = 13
	sqliteCantOpen = 14
)

// Classify marks a full disk with ErrStorageFull and other connection-level
// failures with ErrUnavailable, keeping the original error in the chain.
// Other errors are returned unchanged.
func Classify(err error) error {
	switch {
	case err == nil || errors.Is(err, ErrUnavailable):
		return err // nil, or already marked
	case storageFull(err):
		return fmt.Errorf("%w: %w", ErrStorageFull, err)
	case unavailable(err):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// storageFull reports whether err says the database's disk is full:
// SQLITE_FULL (SQLite's answer to ENOSPC), PostgreSQL's disk_full (53100),
// or ENOSPC itself.
func storageFull(err error) bool {
	var sqliteErr *sqlite.Error
	if errors.As(err, &sqliteErr) && sqliteErr.Code()&0xff == sqliteFull {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "53100" {
		return true
	}
	return errors.Is(err, syscall.ENOSPC)
}

// ClassifyBounded is Classify for an error of a call made with a context
// whose cause is ErrNoAnswer once it runs out: an error after that is
// ErrUnavailable (ErrNoAnswer).
func ClassifyBounded(ctx context.Context, err error) error {
	err = Classify(err)
	if err != nil && !errors.Is(err, ErrUnavailable) && context.Cause(ctx) == ErrNoAnswer {
		return fmt.Errorf("%w: %w", ErrNoAnswer, err)
	}
	return err
}

func unavailable(err error) bool {
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	// A connection the server or the network closed under the pool ("conn
	// closed", PostgreSQL cut off mid-read), and failures pgx marks safe to
	// retry: they happen before the connection was used.
	if errors.Is(err, pgconn.ErrConnClosed) || pgconn.SafeToRetry(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"): // connection exception
			return true
		case pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03": // shutdown, cannot connect now
			return true
		case pgErr.Code == "53300": // too many connections
			return true
		}
		return false
	}
	var sqliteErr *sqlite.Error
	if errors.As(err, &sqliteErr) {
		switch sqliteErr.Code() & 0xff {
		case sqliteBusy, sqliteLocked, sqliteReadOnly, sqliteIOErr, sqliteCantOpen:
			return true
		}
		return false
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	return errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE)
}
