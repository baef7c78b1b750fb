package main

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/roomfeed/roomfeed/internal/testenv"
)

// The testdata files are pgbench 15's output, captured on the bench machine.
func TestParsePgBench(t *testing.T) {
	tests := []struct {
		file    string
		want    PgBenchPoint
		wantErr bool
	}{
		{file: "pgbench-15-ok.txt", want: PgBenchPoint{TPS: 5137.3, LatencyAvg: 0.779, Processed: 10288, Seconds: 2}},
		{file: "pgbench-15-aborted.txt", want: PgBenchPoint{Seconds: 1}, wantErr: true},
		{file: "pgbench-15-no-connection.txt", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			out, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := parsePgBench(string(out))
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestFirstError(t *testing.T) {
	tests := []struct{ file, want string }{
		{"pgbench-15-aborted.txt", `pgbench: error: ERROR:  relation "rfbench_missing_pgbench.rooms" does not exist`},
		{"pgbench-15-no-connection.txt", `pgbench: error: connection to server at "127.0.0.1", port 5432 failed: FATAL:  database "nosuchdb" does not exist`},
	}
	for _, tt := range tests {
		out, err := os.ReadFile(filepath.Join("testdata", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		if got := firstError(string(out)); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.file, got, tt.want)
		}
	}
}

func TestPgBenchPlans(t *testing.T) {
	tests := []struct {
		writers []int
		want    []pgbenchPlan
	}{
		{[]int{1, 16, 64}, []pgbenchPlan{{16, true}, {64, true}, {64, false}}},
		{[]int{64, 16}, []pgbenchPlan{{64, true}, {16, true}, {64, false}}},
		{[]int{32}, []pgbenchPlan{{32, true}, {32, false}}},
		{[]int{1, 8}, nil},
	}
	for _, tt := range tests {
		if got := pgbenchPlans(tt.writers); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("pgbenchPlans(%v): got %+v, want %+v", tt.writers, got, tt.want)
		}
	}
}

func TestPgBenchArgs(t *testing.T) {
	const u = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	tests := []struct {
		plan pgbenchPlan
		secs int
		want string
	}{
		{pgbenchPlan{16, true}, 3, "--no-vacuum -M prepared -f s.sql -c 16 -j 2 -T 3 " + u},
		{pgbenchPlan{64, false}, 10, "--no-vacuum -M prepared -f s.sql -c 64 -j 2 -T 10 " + u},
	}
	for _, tt := range tests {
		if got := strings.Join(pgbenchArgs(u, "s.sql", tt.plan, tt.secs), " "); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.plan, got, tt.want)
		}
	}
}

func TestPgBenchLiteral(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"a":"b","hp":10}`, `'{"a":"b","hp":10}'`},
		{`{"a":b,"c":_d,"e":` + "\u00e9" + `}`, `'{"a": b,"c": _d,"e": ` + "\u00e9" + `}'`},
		{`it's`, `'it''s'`},
		{`12:00:00`, `'12:00:00'`},
	}
	for _, tt := range tests {
		if got := pgbenchLiteral(tt.in); got != tt.want {
			t.Errorf("pgbenchLiteral(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}

// pgbenchVars returns the variables pgbench substitutes in script, read as
// pgbench's parseQuery reads them: a colon, a letter, underscore or
// non-ASCII byte, then those or digits; a colon followed by anything else
// is skipped with the colons right after it (so "::text" is a cast).
func pgbenchVars(script string) map[string]bool {
	vars := map[string]bool{}
	for i := 0; i < len(script); i++ {
		if script[i] != ':' {
			continue
		}
		if i+1 == len(script) || !isVarStart(script[i+1]) {
			for i+1 < len(script) && script[i+1] == ':' {
				i++
			}
			continue
		}
		j := i + 2
		for j < len(script) && (isVarStart(script[j]) || '0' <= script[j] && script[j] <= '9') {
			j++
		}
		vars[script[i+1:j]] = true
		i = j - 1
	}
	return vars
}

func TestPgBenchScript(t *testing.T) {
	const schema = "rfbench_42_7_pgbench"
	s := pgbenchScript(schema)
	for _, want := range []string{
		"\nBEGIN;\n", "\nCOMMIT;\n", `RETURNING seq \gset`,
		`INSERT INTO "rfbench_42_7_pgbench".rooms `, `INSERT INTO "rfbench_42_7_pgbench".elements `, `INSERT INTO "rfbench_42_7_pgbench".events `,
		"ON CONFLICT (room) DO UPDATE SET seq = rooms.seq + 1", "ON CONFLICT (room, id) DO UPDATE",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
	if n := strings.Count(s, "INSERT INTO "); n != 3 {
		t.Errorf("got %d INSERTs, want 3 (each naming the schema):\n%s", n, s)
	}
	wantVars := map[string]bool{"r": true, "n": true, "seq": true, "client_id": true}
	if got := pgbenchVars(s); !reflect.DeepEqual(got, wantVars) {
		t.Errorf("pgbench variables: got %v, want %v", got, wantVars)
	}
}

func TestPgBenchRoomsSQL(t *testing.T) {
	s := pgbenchRoomsSQL("rfbench_42_7_pgbench")
	for _, want := range []string{`INSERT INTO "rfbench_42_7_pgbench".rooms`, "generate_series(0, 999)", `ANALYZE "rfbench_42_7_pgbench".rooms`} {
		if !strings.Contains(s, want) {
			t.Errorf("rooms SQL lacks %q:\n%s", want, s)
		}
	}
}

// TestPgBenchScriptRuns runs the script with pgbench on real PostgreSQL, a
// fixed number of transactions, and checks what they wrote.
func TestPgBenchScriptRuns(t *testing.T) {
	base := libpqURL(t, testenv.PostgresURL(t))
	bin, err := findPgBench()
	if err != nil {
		testenv.Missing(t, err.Error()+" (Debian: the postgresql package has it)")
	}
	ctx := t.Context()
	schema := testenv.UniqueName("rf_test_pgbench_")
	if err := createPgBenchSchema(ctx, base, schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dropSchema(ctx, base, schema) })
	script := filepath.Join(t.TempDir(), "script.sql")
	if err := os.WriteFile(script, []byte(pgbenchScript(schema)), 0o644); err != nil {
		t.Fatal(err)
	}
	const clients, each = 3, 40
	cmd := exec.CommandContext(ctx, bin, "--no-vacuum", "-M", "prepared", "-f", script, "-c", "3", "-j", "2", "-t", "40", base)
	cmd.Env = append(os.Environ(), "PGOPTIONS=-c synchronous_commit=off")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pgbench: %v\n%s", err, out)
	}
	p, err := parsePgBench(string(out))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if p.Processed != clients*each || p.Failed != 0 || p.TPS <= 0 {
		t.Errorf("got %d processed, %d failed, %.1f tps; want %d, 0, > 0", p.Processed, p.Failed, p.TPS, clients*each)
	}

	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	s := pgx.Identifier{schema}.Sanitize()
	var rooms, seqs, events, gaps, versions, badPayloads, counted, elements int64
	err = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM `+s+`.rooms), (SELECT sum(seq) FROM `+s+`.rooms),
		(SELECT count(*) FROM `+s+`.events),
		(SELECT count(*) FROM (SELECT room FROM `+s+`.events GROUP BY room HAVING count(*) <> max(seq)) AS g),
		(SELECT sum(version) FROM `+s+`.elements),
		(SELECT count(*) FROM `+s+`.events WHERE (payload::json ->> 'id')::bigint <> seq OR payload::json -> 'element' ->> 'id' NOT LIKE 'e_-%'),
		(SELECT sum(elements) FROM `+s+`.rooms), (SELECT count(*) FROM `+s+`.elements)`).
		Scan(&rooms, &seqs, &events, &gaps, &versions, &badPayloads, &counted, &elements)
	if err != nil {
		t.Fatal(err)
	}
	want := int64(clients * each)
	if rooms != pgbenchRooms || seqs != want || events != want || gaps != 0 || versions != want || badPayloads != 0 {
		t.Errorf("got %d rooms, seqs summing to %d, %d events, %d rooms with gaps, versions summing to %d, %d bad payloads; want %d, %d, %d, 0, %d, 0",
			rooms, seqs, events, gaps, versions, badPayloads, pgbenchRooms, want, want, want)
	}
	// roomfeed's migrations made the tables: their trigger counted the elements.
	if counted != elements || elements == 0 {
		t.Errorf("rooms count %d elements, the table holds %d; want the same, above 0", counted, elements)
	}

	dropSchema(ctx, base, schema)
	var left bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left {
		t.Errorf("schema %s still there after dropSchema", schema)
	}
}

// libpqURL returns testenv's URL without its search_path parameter, which
// libpq (pgbench) does not take.
func libpqURL(tb testing.TB, raw string) string {
	tb.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Del("search_path")
	u.RawQuery = q.Encode()
	return u.String()
}
