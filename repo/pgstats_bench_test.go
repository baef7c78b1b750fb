package repo

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pgWriteStats measures, around a PostgreSQL benchmark run, what its writes
// cost the server: new versions of room rows (updates of the schema's rooms
// table), WAL bytes (of the whole cluster: other sessions' WAL counts too)
// and the CPU time of the store's backends (found by application_name, read
// from /proc, so only when the server runs on this machine).
type pgWriteStats struct {
	db  *sql.DB
	app string
	upd int64
	lsn string
	cpu time.Duration
}

// startPgWriteStats reads the figures before a run on url, whose sessions
// carry application_name app.
func startPgWriteStats(b *testing.B, url, app string) *pgWriteStats {
	b.Helper()
	db, err := sql.Open("pgx", url)
	if err != nil {
		b.Fatalf("open %s: %v", url, err)
	}
	b.Cleanup(func() { db.Close() })
	st := &pgWriteStats{db: db, app: app}
	st.upd, st.lsn, st.cpu = st.read(b)
	return st
}

// report reports the figures per write. It reads the CPU time of the
// backends, then closes the store (closeStore) so that they exit: an idle
// backend may hold its table statistics for up to 10s, one that exits
// flushes them (after it left pg_stat_activity).
func (st *pgWriteStats) report(b *testing.B, writes int, closeStore func()) {
	b.Helper()
	ctx := context.Background()
	var lsn string
	if err := st.db.QueryRowContext(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&lsn); err != nil {
		b.Fatal(err)
	}
	cpu := st.backendsCPU(b)
	closeStore()
	for start := time.Now(); time.Since(start) < 15*time.Second; time.Sleep(100 * time.Millisecond) {
		var n int
		if err := st.db.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, st.app).Scan(&n); err != nil {
			b.Fatal(err)
		}
		if n == 0 {
			break
		}
	}
	// Until the figure stops changing for 1s (at most 15s).
	upd, _, _ := st.read(b)
	for stable, start := 0, time.Now(); stable < 4 && time.Since(start) < 15*time.Second; {
		time.Sleep(250 * time.Millisecond)
		next, _, _ := st.read(b)
		if stable++; next != upd {
			upd, stable = next, 0
		}
	}
	var wal int64
	if err := st.db.QueryRowContext(ctx, `SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::bigint`, lsn, st.lsn).Scan(&wal); err != nil {
		b.Fatal(err)
	}
	n := float64(writes)
	b.ReportMetric(float64(upd-st.upd)/n, "room-upd/write")
	b.ReportMetric(float64(wal)/n, "WAL-B/write")
	if cpu > 0 {
		b.ReportMetric(float64((cpu-st.cpu).Microseconds())/n, "pg-cpu-µs/write")
	}
}

func (st *pgWriteStats) read(b *testing.B) (upd int64, lsn string, cpu time.Duration) {
	b.Helper()
	err := st.db.QueryRowContext(context.Background(), `SELECT
		coalesce((SELECT n_tup_upd FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname = 'rooms'), 0),
		pg_current_wal_lsn()::text`).Scan(&upd, &lsn)
	if err != nil {
		b.Fatal(err)
	}
	return upd, lsn, st.backendsCPU(b)
}

// backendsCPU sums the user and system time of the backends named app that
// /proc shows.
func (st *pgWriteStats) backendsCPU(b *testing.B) time.Duration {
	b.Helper()
	rows, err := st.db.QueryContext(context.Background(), `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, st.app)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	var ticks int64
	for rows.Next() {
		var pid int
		if err := rows.Scan(&pid); err != nil {
			b.Fatal(err)
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command's closing parenthesis: state is
		// field 3, utime 14, stime 15.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}
