// Command roomfeed-bench measures roomfeed on this machine: fan-out latency,
// saturation against a bare net/http SSE broadcaster, many rooms, catch-up,
// idle memory per subscriber and write throughput, on SQLite and on
// PostgreSQL + Redis. It starts the server itself (or targets one with
// --target), prints a table, and writes a JSON file and an SVG plot.
//
//	go run ./cmd/roomfeed-bench                    # quick run
//	go run ./cmd/roomfeed-bench --full             # longer phases, more points
//	go run ./cmd/roomfeed-bench --target http://127.0.0.1:8080 --scenarios 1,4,6
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Report is the JSON file.
type Report struct {
	Tool      string       `json:"tool"`
	Started   time.Time    `json:"started"`
	Seconds   float64      `json:"seconds"`
	Mode      string       `json:"mode"`
	Machine   Machine      `json:"machine"`
	Load      LoadInfo     `json:"load"`
	Runs      []BackendRun `json:"runs"`
	Targets   []Target     `json:"targets"`
	Notes     []string     `json:"notes,omitempty"`
	Broken    []string     `json:"broken_deliveries,omitempty"` // see brokenDeliveries
	NoFile    uint64       `json:"rlimit_nofile"`
	BenchCPU  float64      `json:"loadgen_cpu_s"`
	ServerBin string       `json:"server_bin,omitempty"`
	Label     string       `json:"server_label,omitempty"`
	Target    string       `json:"target,omitempty"`
}

type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	MemMiB    int64  `json:"mem_mib"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go"`
	Hostname  string `json:"hostname"`
}

type LoadInfo struct {
	Before  float64   `json:"load1_before"`
	After   float64   `json:"load1_after"`
	Max     float64   `json:"load1_max_seen"`
	Samples []float64 `json:"load1_per_scenario"`
	Warning string    `json:"warning,omitempty"`
}

type Target struct {
	Name     string `json:"name"`
	Backend  string `json:"backend"`
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Pass     bool   `json:"pass"`
}

// main runs the tool, or one of its hidden subcommands (bare-sse, the
// saturation scenario's ceiling; subscribers, scenario 10's load
// generators), and exits once.
func main() {
	name, cmd, args := "roomfeed-bench", run, os.Args[1:]
	if len(args) > 0 {
		switch args[0] {
		case "bare-sse":
			name, cmd, args = "bare-sse", bareMain, args[1:]
		case "subscribers":
			name, cmd, args = "subscribers", subscribersMain, args[1:]
		}
	}
	if err := cmd(args); err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// run measures what the flags select, prints the table and writes the JSON
// and the SVG; with --replot it only redraws an earlier JSON file. Once
// interrupted it starts no further scenario, writes what was measured and
// returns the context's error.
func run(args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	if o.replot != "" {
		return replot(o)
	}
	nofile := raiseNoFileFor(o)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rep := newReport(o, nofile)
	rep.Load = startLoad(ctx, o.maxLoad, o.waitLoad)
	dir := o.dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "roomfeed-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
	}
	b, err := prepare(ctx, o, dir, rep)
	if err != nil {
		return err
	}
	b.runBackends(ctx, rep)
	finish(rep)

	printTable(os.Stdout, rep)
	if err := writeOutputs(o, rep); err != nil {
		return err
	}
	if len(rep.Broken) > 0 {
		return fmt.Errorf("deliveries broke the feed's promise: %s", strings.Join(rep.Broken, "; "))
	}
	return ctx.Err()
}

// replot prints the table of the JSON file named by --replot and writes its
// SVG to --svg, if set and the file has fan-out points.
func replot(o *options) error {
	data, err := os.ReadFile(o.replot)
	if err != nil {
		return err
	}
	rep := &Report{}
	if err := json.Unmarshal(data, rep); err != nil {
		return fmt.Errorf("%s: %w", o.replot, err)
	}
	printTable(os.Stdout, rep)
	if o.svg != "" && hasFanOut(rep) {
		return os.WriteFile(o.svg, []byte(plotSVG(rep)), 0o644)
	}
	return nil
}

// raiseNoFileFor raises RLIMIT_NOFILE as far as it goes (raiseNoFile) and
// returns it, with a warning on stderr when that fails or when the limit is
// below what the many-rooms scenario needs.
func raiseNoFileFor(o *options) uint64 {
	nofile, err := raiseNoFile()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: raising RLIMIT_NOFILE:", err)
	}
	if need := uint64(o.manySubs + 200); (o.scenarios[3] || o.scenarios[5]) && nofile < need {
		fmt.Fprintf(os.Stderr, "bench: RLIMIT_NOFILE is %d, below the %d the many-rooms scenario needs; raise the hard limit (ulimit -Hn / prlimit / LimitNOFILE=) or lower --many-subs\n", nofile, need)
	}
	if need := uint64(o.fullSubs + 200); (o.scenarios[7] || o.scenarios[8]) && nofile < need {
		fmt.Fprintf(os.Stderr, "bench: RLIMIT_NOFILE is %d, below the %d the full-node scenario needs; raise the hard limit or lower --full-subs\n", nofile, need)
	}
	if need := uint64((o.scaleSubs+o.scaleNodes-1)/max(1, o.scaleNodes) + 1000); o.scenarios[10] && nofile < need {
		fmt.Fprintf(os.Stderr, "bench: RLIMIT_NOFILE is %d, below the %d each node and load generator of scenario 10 needs (a node keeps a tenth, at most 1,000, in reserve); raise --scale-nodes or lower --scale-subs\n", nofile, need)
	}
	return nofile
}

// newReport starts the report of a run that starts now.
func newReport(o *options, nofile uint64) *Report {
	rep := &Report{Tool: "roomfeed-bench", Started: time.Now().UTC(), Mode: "quick", Machine: machine(), NoFile: nofile, Target: o.target, Label: o.label}
	if o.full {
		rep.Mode = "full"
	}
	return rep
}

// startLoad waits up to wait for the load average to fall to limit
// (waitForLoad) and returns the load at the start, with a warning, also
// printed on stderr, when it is still above the limit.
func startLoad(ctx context.Context, limit float64, wait time.Duration) LoadInfo {
	l := LoadInfo{Before: waitForLoad(ctx, limit, wait)}
	if l.Before > limit {
		l.Warning = fmt.Sprintf("load average %.2f above %.2f at start: figures may be pessimistic; rerun when the machine is quieter", l.Before, limit)
		fmt.Fprintln(os.Stderr, "bench: WARNING:", l.Warning)
	}
	l.Max = l.Before
	return l
}

// prepare readies the working directory dir and the binaries the scenarios
// start. Without --target the server is --server-bin, or ./cmd/roomfeed
// built into dir; rep records which, and the git revision built when no
// --label names it.
func prepare(ctx context.Context, o *options, dir string, rep *Report) (*bench, error) {
	if err := os.MkdirAll(filepath.Join(dir, "no-web"), 0o755); err != nil {
		return nil, err
	}
	b := &bench{cfg: o, dir: dir}
	var err error
	if b.selfBin, err = os.Executable(); err != nil {
		return nil, err
	}
	if o.target != "" {
		return b, nil
	}
	b.serverBin = o.serverBin
	if b.serverBin == "" {
		b.serverBin = filepath.Join(dir, "roomfeed")
		if err := buildServer(ctx, b.serverBin); err != nil {
			return nil, err
		}
		if rep.Label == "" {
			rep.Label = gitLabel()
		}
	}
	rep.ServerBin = b.serverBin
	return b, nil
}

// buildServer builds ./cmd/roomfeed into bin; the go tool's output goes to
// stderr.
func buildServer(ctx context.Context, bin string) error {
	logf("building ./cmd/roomfeed into %s", bin)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/roomfeed")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build roomfeed (run from the repository root or pass --server-bin): %w", err)
	}
	return nil
}

// gitLabel names the server built from the working tree by its git
// revision; it is empty outside a git checkout.
func gitLabel() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return ""
	}
	return "./cmd/roomfeed at " + strings.TrimSpace(string(out))
}

// runBackends runs the scenarios on each backend in turn, or once on the
// --target, and appends the results to rep. An unreachable postgres backend
// is skipped with a note. Nothing more starts once ctx is done.
func (b *bench) runBackends(ctx context.Context, rep *Report) {
	o := b.cfg
	for _, name := range o.backends {
		be := &backend{name: name, pgURL: o.pgURL, redisURL: o.redisURL}
		if name == "postgres" && o.target == "" {
			if err := be.available(ctx); err != nil {
				note := "postgres backend skipped: " + err.Error()
				rep.Notes = append(rep.Notes, note)
				fmt.Fprintln(os.Stderr, "bench:", note)
				continue
			}
		}
		rep.Runs = append(rep.Runs, b.runBackend(ctx, be, &rep.Load))
		if o.target != "" {
			break
		}
	}
}

// runBackend runs the selected scenarios of one backend in order, each under
// its own time limit, and returns what they measured. A failed scenario is
// recorded in the result and the next one runs; after each, load gets a
// sample of the load average.
func (b *bench) runBackend(ctx context.Context, be *backend, load *LoadInfo) BackendRun {
	res := BackendRun{Backend: be.name}
	if b.cfg.target != "" {
		res.Backend = "target"
	}
	sc := b.cfg.scenariosFor(be.name)
	step := func(n int, what string, limit time.Duration, fn func(context.Context) error) {
		if !sc[n] || ctx.Err() != nil {
			return
		}
		sctx, cancel := context.WithTimeout(ctx, limit)
		defer cancel()
		logf("== %s: scenario %d, %s (load %.2f)", be.name, n, what, loadAvg())
		if err := fn(sctx); err != nil {
			msg := fmt.Sprintf("scenario %d (%s): %v", n, what, err)
			res.Errors = append(res.Errors, msg)
			logf("%s", msg)
		}
		l := loadAvg()
		load.Samples = append(load.Samples, l)
		load.Max = max(load.Max, l)
	}
	step(1, "fan-out latency", 4*time.Minute, func(c context.Context) error { return b.fanOut(c, be, &res) })
	step(2, "saturation", 4*time.Minute, func(c context.Context) error { return b.saturation(c, be, &res) })
	if sc[3] || sc[5] {
		n := 3
		if !sc[3] {
			n = 5
		}
		step(n, "idle memory and many rooms", 4*time.Minute, func(c context.Context) error {
			return b.manyRooms(c, be, &res, sc[5], sc[3])
		})
	}
	step(4, "catch-up", 3*time.Minute, func(c context.Context) error { return b.catchUp(c, be, &res) })
	step(6, "writes", 3*time.Minute, func(c context.Context) error { return b.writes(c, be, &res) })
	step(7, "one node at its descriptor limit", 10*time.Minute, func(c context.Context) error { return b.fullNode(c, be, &res) })
	step(8, "reconnect storm", 15*time.Minute, func(c context.Context) error { return b.storm(c, be, &res) })
	if be.name == "postgres" { // nodes share PostgreSQL and Redis
		step(9, "two nodes", 3*time.Minute, func(c context.Context) error { return b.twoNodes(c, be, &res) })
		step(10, "scale-out across nodes", 30*time.Minute, func(c context.Context) error { return b.scale(c, be, &res) })
	}
	return res
}

// scenariosFor returns the scenarios to run on a backend: a quick run does
// only 1, 4, 6 and 9 on postgres unless --scenarios names them.
func (o *options) scenariosFor(backend string) map[int]bool {
	if backend == "postgres" && !o.full && !o.scenGiven {
		return map[int]bool{1: true, 4: true, 6: true, 9: true}
	}
	return o.scenarios
}

// finish records the end of the run in rep and checks the targets.
func finish(rep *Report) {
	rep.Load.After = loadAvg()
	rep.BenchCPU = round1(selfCPU())
	rep.Seconds = round1(time.Since(rep.Started).Seconds())
	rep.Targets = evaluate(rep)
	rep.Broken = brokenDeliveries(rep)
}

// writeOutputs writes the JSON file (--out) and the SVG (--svg, when there
// are fan-out points), making their directories, and names them on stdout.
func writeOutputs(o *options, rep *Report) error {
	if o.out != "" {
		if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
			return err
		}
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.out, append(data, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Println("JSON:", o.out)
	}
	if o.svg != "" && hasFanOut(rep) {
		if err := os.MkdirAll(filepath.Dir(o.svg), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(o.svg, []byte(plotSVG(rep)), 0o644); err != nil {
			return err
		}
		fmt.Println("SVG: ", o.svg)
	}
	return nil
}

// raiseNoFile raises the soft RLIMIT_NOFILE to the hard limit. The servers
// the tool starts inherit it (calling Setrlimit explicitly also stops Go
// from restoring the original soft limit in child processes).
func raiseNoFile() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return lim.Cur, err
		}
	} else if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return lim.Cur, err
	}
	return lim.Cur, nil
}

func waitForLoad(ctx context.Context, limit float64, wait time.Duration) float64 {
	deadline := time.Now().Add(wait)
	for {
		l := loadAvg()
		if l <= limit || time.Now().After(deadline) || ctx.Err() != nil {
			return l
		}
		logf("load average %.2f > %.2f, waiting", l, limit)
		time.Sleep(10 * time.Second)
	}
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	m.Hostname, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.SplitN(string(b), "\n", 2)[0], "MemTotal: %d kB", &kb)
		m.MemMiB = kb / 1024
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}
