package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/roomfeed/roomfeed/repo"
)

// PgBenchRun is what pgbench measured beside scenario 6 on PostgreSQL: the
// transaction of a roomfeed write (lock the room row bumping its seq, upsert
// the element, insert the event, commit), one per pgbench transaction, over
// pgbenchRooms rooms in a schema of its own. Error says why it did not run
// or where it stopped; the scenario goes on either way.
type PgBenchRun struct {
	Version string         `json:"version,omitempty"`
	Rooms   int            `json:"rooms"`
	Script  string         `json:"script,omitempty"`
	Points  []PgBenchPoint `json:"points,omitempty"`
	Error   string         `json:"error,omitempty"`
}

// PgBenchPoint is one pgbench run: TPS is pgbench's "without initial
// connection time" figure.
type PgBenchPoint struct {
	Clients    int     `json:"clients"`
	Threads    int     `json:"threads"`
	SyncCommit bool    `json:"synchronous_commit"`
	TPS        float64 `json:"tps"`
	LatencyAvg float64 `json:"latency_avg_ms"`
	Processed  int64   `json:"transactions"`
	Failed     int64   `json:"failed"`
	Seconds    float64 `json:"seconds"`
	Load1      float64 `json:"load1"`
	Error      string  `json:"error,omitempty"`
}

// pgbenchRooms is the number of rooms pgbench writes into, as scenario 6's
// many-rooms points.
const pgbenchRooms = 1000

// pgbenchPlan is one pgbench invocation of the scenario.
type pgbenchPlan struct {
	clients    int
	syncCommit bool
}

// pgbenchPlans returns the points to run: each writer count of at least 16
// with synchronous_commit on, then the largest with it off. None when no
// count reaches 16.
func pgbenchPlans(writers []int) []pgbenchPlan {
	var ps []pgbenchPlan
	top := 0
	for _, n := range writers {
		if n >= 16 {
			ps = append(ps, pgbenchPlan{clients: n, syncCommit: true})
			top = max(top, n)
		}
	}
	if top > 0 {
		ps = append(ps, pgbenchPlan{clients: top, syncCommit: false})
	}
	return ps
}

// pgbench runs pgbench's points after scenario 6's writes on the postgres
// backend, in a schema it creates and drops.
func (b *bench) pgbench(ctx context.Context, be *backend) *PgBenchRun {
	r := &PgBenchRun{Rooms: pgbenchRooms}
	plans := pgbenchPlans(b.cfg.writers)
	if len(plans) == 0 {
		r.Error = "not run: no --writers count of 16 or more"
		return r
	}
	bin, err := findPgBench()
	if err != nil {
		r.Error = "not run: " + err.Error()
		logf("pgbench %-8s %s", be.name, r.Error)
		return r
	}
	if out, err := exec.CommandContext(ctx, bin, "--version").Output(); err == nil {
		r.Version = strings.TrimSpace(string(out))
	}
	runSeq++
	schema := fmt.Sprintf("rfbench_%d_%d_pgbench", os.Getpid(), runSeq)
	defer dropSchema(ctx, be.pgURL, schema)
	if err := createPgBenchSchema(ctx, be.pgURL, schema); err != nil {
		r.Error = "not run: " + err.Error()
		logf("pgbench %-8s %s", be.name, r.Error)
		return r
	}
	r.Script = pgbenchScript(schema)
	script := filepath.Join(b.dir, schema+".sql")
	if err := os.WriteFile(script, []byte(r.Script), 0o644); err != nil {
		r.Error = "not run: " + err.Error()
		return r
	}
	defer os.Remove(script)
	secs := max(1, int(math.Ceil(b.cfg.writeDur.Seconds())))
	for _, pl := range plans {
		if ctx.Err() != nil {
			r.Error = ctx.Err().Error()
			break
		}
		p := runPgBench(ctx, bin, be.pgURL, script, pl, secs)
		r.Points = append(r.Points, p)
		logf("pgbench %-8s clients=%-3d sync_commit=%-3s %.0f tps latency avg %.2fms failed=%d load=%.2f %s",
			be.name, p.Clients, onOff(p.SyncCommit), p.TPS, p.LatencyAvg, p.Failed, p.Load1, p.Error)
		if p.TPS == 0 && p.Error != "" {
			r.Error = "stopped after a failed run"
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	return r
}

// findPgBench looks pgbench up on PATH, then in the newest
// /usr/lib/postgresql/*/bin.
func findPgBench() (string, error) {
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	if len(found) == 0 {
		return "", errors.New("pgbench not found on PATH or in /usr/lib/postgresql/*/bin (install postgresql-client or the server package)")
	}
	major := func(p string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(p))))
		return v
	}
	slices.SortFunc(found, func(a, b string) int { return major(a) - major(b) })
	return found[len(found)-1], nil
}

// pgbenchArgs returns pgbench's command line for one point of secs seconds
// against pgURL (a libpq connection string).
func pgbenchArgs(pgURL, script string, pl pgbenchPlan, secs int) []string {
	return []string{
		"--no-vacuum", "-M", "prepared", "-f", script,
		"-c", strconv.Itoa(pl.clients), "-j", strconv.Itoa(min(pl.clients, 2)),
		"-T", strconv.Itoa(secs), pgURL,
	}
}

// runPgBench runs one point. synchronous_commit is set for pgbench's
// sessions through PGOPTIONS, so "on" holds whatever the server's default.
func runPgBench(ctx context.Context, bin, pgURL, script string, pl pgbenchPlan, secs int) PgBenchPoint {
	cmd := exec.CommandContext(ctx, bin, pgbenchArgs(pgURL, script, pl, secs)...)
	cmd.Env = append(os.Environ(), "PGOPTIONS="+strings.TrimSpace(os.Getenv("PGOPTIONS")+" -c synchronous_commit="+onOff(pl.syncCommit)))
	out, err := cmd.CombinedOutput()
	p, perr := parsePgBench(string(out))
	p.Clients, p.Threads, p.SyncCommit, p.Load1 = pl.clients, min(pl.clients, 2), pl.syncCommit, loadAvg()
	switch {
	case err != nil: // with or without a report: clients aborted, or none connected
		p.Error = fmt.Sprintf("pgbench: %v: %s", err, firstError(string(out)))
	case perr != nil:
		p.Error = fmt.Sprintf("%v: %s", perr, lastLines(strings.TrimSpace(string(out)), 3))
	}
	return p
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// parsePgBench reads the summary pgbench (PostgreSQL 14 or later) prints
// after a run: the tps without initial connection time, the average
// latency, the transactions processed and failed (PostgreSQL 15 on; 0
// before) and the duration.
func parsePgBench(out string) (PgBenchPoint, error) {
	var p PgBenchPoint
	haveTPS := false
	num := func(s string) float64 {
		f := strings.Fields(s)
		if len(f) == 0 {
			return 0
		}
		v, _ := strconv.ParseFloat(strings.SplitN(f[0], "/", 2)[0], 64)
		return v
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "tps = ") && strings.HasSuffix(line, "(without initial connection time)"):
			p.TPS, haveTPS = round1(num(strings.TrimPrefix(line, "tps = "))), true
		case strings.HasPrefix(line, "latency average = "):
			p.LatencyAvg = round3(num(strings.TrimPrefix(line, "latency average = ")))
		case strings.HasPrefix(line, "number of transactions actually processed: "):
			p.Processed = int64(num(strings.TrimPrefix(line, "number of transactions actually processed: ")))
		case strings.HasPrefix(line, "number of failed transactions: "):
			p.Failed = int64(num(strings.TrimPrefix(line, "number of failed transactions: ")))
		case strings.HasPrefix(line, "duration: "):
			p.Seconds = num(strings.TrimPrefix(line, "duration: "))
		}
	}
	if !haveTPS {
		return p, errors.New("pgbench printed no tps")
	}
	return p, nil
}

// firstError returns pgbench's first "error:" line of out, or its last line.
func firstError(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "error: ") {
			return strings.TrimSpace(line)
		}
	}
	return lastLines(strings.TrimSpace(out), 1)
}

// pgbenchRoomsSQL fills the rooms table of schema with pgbenchRooms rooms
// at seq 0.
func pgbenchRoomsSQL(schema string) string {
	return fmt.Sprintf(`INSERT INTO %[1]s.rooms (room, seq, updated_at)
    SELECT 'wm' || i, 0, now() FROM generate_series(0, %[2]d) AS i;
ANALYZE %[1]s.rooms;`, pgx.Identifier{schema}.Sanitize(), pgbenchRooms-1)
}

// pgbenchScript returns pgbench's custom script: one transaction per write,
// the shape of roomfeed's (repo/postgres), on a random one of the rooms and
// element ids e<client>-<0..15> as scenario 6's writers use; the element's
// data and the event's payload are about the size of the bench's PUT body
// and of the event roomfeed stores for it. The tables are named with their
// schema, so the script touches nothing else whatever the search_path.
func pgbenchScript(schema string) string {
	s := pgx.Identifier{schema}.Sanitize()
	room := `'wm' || :r::text`
	id := `'e' || :client_id::text || '-' || :n::text`
	data := pgbenchLiteral(elementData[:len(elementData)-1]+`,"n":`) + ` || :seq::text || '}'`
	payload := pgbenchLiteral(`{"id":"`) + ` || :seq::text || ` + pgbenchLiteral(`","room":"`) + ` || ` + room +
		` || ` + pgbenchLiteral(`","type":"element.updated","element":{"id":"`) + ` || ` + id +
		` || ` + pgbenchLiteral(`","kind":"item","version":1,"data":`) + ` || ` + data +
		` || ` + pgbenchLiteral(`,"updated_at":"`) + ` || now()::text || ` + pgbenchLiteral(`"},"at":"`) + ` || now()::text || '"}'`
	return fmt.Sprintf(`\set r random(0, %[2]d)
\set n random(0, 15)
BEGIN;
INSERT INTO %[1]s.rooms AS rooms (room, seq, updated_at) VALUES (%[3]s, 1, now())
    ON CONFLICT (room) DO UPDATE SET seq = rooms.seq + 1, updated_at = GREATEST(rooms.updated_at, excluded.updated_at)
    RETURNING seq \gset
INSERT INTO %[1]s.elements AS elements (room, id, kind, version, data, updated_at)
    VALUES (%[3]s, %[4]s, 'item', 1, (%[5]s)::json, now())
    ON CONFLICT (room, id) DO UPDATE SET kind = excluded.kind, version = elements.version + 1,
        data = excluded.data, updated_at = excluded.updated_at;
INSERT INTO %[1]s.events (room, seq, type, payload, at)
    VALUES (%[3]s, :seq, 'element.updated', %[6]s, now());
COMMIT;
`, s, pgbenchRooms-1, room, id, data, payload)
}

// pgbenchLiteral quotes s as an SQL string literal for a pgbench script:
// pgbench reads ":name" as a variable even inside quotes, so a colon
// followed by a letter or underscore gets a space after it (the JSON stays
// valid and one byte longer). The bench's JSON has none.
func pgbenchLiteral(s string) string {
	var b strings.Builder
	b.WriteByte('\'')
	for i := 0; i < len(s); i++ {
		c := s[i]
		b.WriteByte(c)
		switch {
		case c == '\'':
			b.WriteByte('\'')
		case c == ':' && i+1 < len(s) && isVarStart(s[i+1]):
			b.WriteByte(' ')
		}
	}
	b.WriteByte('\'')
	return b.String()
}

// isVarStart reports whether pgbench takes c as the first byte of a
// variable name (the next ones may also be digits).
func isVarStart(c byte) bool {
	return c >= 0x80 || c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// createPgBenchSchema makes schema with roomfeed's own tables, by its
// migrations (keys, types, the json column, the element-count trigger), and
// fills its rooms.
func createPgBenchSchema(ctx context.Context, pgURL, schema string) error {
	if err := createSchema(ctx, pgURL, schema); err != nil {
		return err
	}
	store, err := repo.Open(ctx, inSchema(pgURL, schema), repo.Options{})
	if err != nil {
		return fmt.Errorf("migrate pgbench schema: %w", err)
	}
	if err := store.Close(); err != nil {
		return fmt.Errorf("migrate pgbench schema: %w", err)
	}
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, pgbenchRoomsSQL(schema)); err != nil {
		return fmt.Errorf("fill pgbench rooms: %w", err)
	}
	return nil
}
