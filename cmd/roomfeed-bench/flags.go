package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// options is the command line of a run with every default resolved: the
// phase lengths and counts that depend on --full are set and the list flags
// are parsed.
type options struct {
	target     string
	targetPID  int
	serverBin  string
	serverArgs []string
	label      string
	replot     string
	backends   []string
	scenarios  map[int]bool // scenarios to run, 1 to lastScenario
	scenGiven  bool         // --scenarios was set: run exactly those on every backend
	pgURL      string
	redisURL   string
	full       bool
	out        string
	svg        string
	maxLoad    float64
	waitLoad   time.Duration
	dir        string
	profileDir string // CPU profiles of the servers (profile.go); empty = none

	rate        float64
	fanSubs     []int
	fanDur      time.Duration
	satSubs     int
	satRates    []float64
	satPace     time.Duration
	satDur      time.Duration
	manySubs    int
	connectPar  int
	manyRate    float64
	manyDur     time.Duration
	catchEvents int
	catchTrials int
	writers     []int
	writeDur    time.Duration
	pgbench     bool

	fullSubs     int
	fullParallel []int
	fullRate     float64
	fullDur      time.Duration
	fullSettle   time.Duration
	stormRate    float64
	stormLimit   time.Duration
	twoSubs      int
	twoRate      float64
	scaleNodes   int
	scaleSubs    int
	scaleRate    float64
	scaleDur     time.Duration
}

// listFlags holds the flags that name lists, as typed, until parseLists
// reads them.
type listFlags struct {
	backends, scenarios, serverArgs string
	fanSubs, satRates, writers      string
	fullParallel                    string
}

// parseFlags reads the command line. A scenario flag left at its zero value
// takes the default of the mode (quick or --full); --target replaces
// --backends.
func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("roomfeed-bench", flag.ContinueOnError)
	o := &options{}
	var l listFlags
	o.registerRun(fs, &l)
	o.registerScenarios(fs, &l)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.resolveDefaults(&l)
	if err := o.parseLists(l); err != nil {
		return nil, err
	}
	return o, nil
}

// registerRun registers the flags that choose the server, the backends, the
// scenarios and the output files.
func (o *options) registerRun(fs *flag.FlagSet, l *listFlags) {
	fs.StringVar(&o.target, "target", "", "URL of a running roomfeed to measure instead of starting one (CPU and RSS need --target-pid)")
	fs.IntVar(&o.targetPID, "target-pid", 0, "pid of the --target server, for CPU and RSS")
	fs.StringVar(&o.serverBin, "server-bin", "", "roomfeed binary to start (default: go build ./cmd/roomfeed into a temporary directory)")
	fs.StringVar(&o.replot, "replot", "", "measure nothing: print the table and write the SVG (--svg) of an earlier JSON file")
	fs.StringVar(&o.label, "label", "", "what was measured, e.g. the commit of the server (recorded in the JSON)")
	fs.StringVar(&l.serverArgs, "server-args", "", "extra roomfeed flags, space-separated")
	fs.StringVar(&l.backends, "backends", "sqlite,postgres", "backends to run: sqlite, postgres (PostgreSQL + Redis; skipped with a note when unreachable)")
	fs.StringVar(&l.scenarios, "scenarios", "", "scenarios to run, e.g. 1,4,6 (default all on sqlite but 9 and 10; 1,4,6,9 on postgres unless --full; 10, heavy, only when named)")
	fs.StringVar(&o.pgURL, "postgres-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL database; each run makes and drops its own schema")
	fs.StringVar(&o.redisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis, or a Redis Cluster as roomfeed takes it (redis://h1:7000,h2:7001 or redis-cluster://h1:7000); each run uses its own key prefix and deletes its keys")
	fs.BoolVar(&o.full, "full", false, "longer phases and more points (about 15 minutes)")
	fs.StringVar(&o.out, "out", "docs/perf/results.json", "JSON output file (empty: none)")
	fs.StringVar(&o.svg, "svg", "docs/perf/fanout-latency.svg", "SVG plot of latency percentiles vs subscribers (empty: none)")
	fs.Float64Var(&o.maxLoad, "max-load", 1.5, "load average above which the run is flagged as disturbed")
	fs.DurationVar(&o.waitLoad, "wait-load", 0, "wait up to this long for the load average to fall below --max-load before starting")
	fs.StringVar(&o.profileDir, "profile", "", "directory for CPU profiles of every roomfeed it starts: each write point of scenario 6 and each saturation step of scenario 2 (the server runs with --debug-addr)")
	fs.StringVar(&o.dir, "dir", "", "working directory for databases and server logs (default: a temporary one, removed)")
}

// registerScenarios registers the flags that shape each scenario. Zero
// values stand for the defaults resolveDefaults fills in.
func (o *options) registerScenarios(fs *flag.FlagSet, l *listFlags) {
	fs.Float64Var(&o.rate, "rate", 100, "scenario 1: writes per second into the room")
	fs.StringVar(&l.fanSubs, "fan-subs", "", "scenario 1: subscriber counts (default 1,10,100,500,1000,2000; --full adds 250,5000)")
	fs.DurationVar(&o.fanDur, "fan-duration", 0, "scenario 1: writing time per point (default 5s, --full 15s)")
	fs.IntVar(&o.satSubs, "sat-subs", 1000, "scenario 2: subscribers of the saturated room")
	fs.StringVar(&l.satRates, "sat-rates", "25,50,75,100,150,200,250,300,400,500,600,800,1000,1300,1600,2000,2500,3000,4000,5000", "scenario 2: write rates tried in order")
	fs.DurationVar(&o.satPace, "sat-pace", 40*time.Millisecond, "scenario 2: also ramp a server run with --stream-pace set to this (0: skip)")
	fs.DurationVar(&o.satDur, "sat-duration", 0, "scenario 2: time per rate step (default 3s, --full 6s)")
	fs.IntVar(&o.manySubs, "many-subs", 10000, "scenarios 3 and 5: subscribers over 1,000 rooms")
	fs.IntVar(&o.connectPar, "connect-parallel", 64, "scenarios 3 and 5: subscribers connecting at a time")
	fs.Float64Var(&o.manyRate, "many-rate", 0, "scenario 3: writes per second spread over the rooms (default 200, --full 500)")
	fs.DurationVar(&o.manyDur, "many-duration", 0, "scenario 3: writing time (default 10s, --full 30s)")
	fs.IntVar(&o.catchEvents, "catchup-events", 20000, "scenario 4: events behind")
	fs.IntVar(&o.catchTrials, "catchup-trials", 0, "scenario 4: reconnections measured (default 3, --full 7)")
	fs.StringVar(&l.writers, "writers", "1,16,64", "scenario 6: concurrent writers")
	fs.DurationVar(&o.writeDur, "write-duration", 0, "scenario 6: time per point (default 4s, --full 10s)")
	fs.BoolVar(&o.pgbench, "pgbench", true, "scenario 6 (postgres): then run pgbench with the same transaction shape at each --writers count of 16 or more, and at the largest with synchronous_commit off")
	fs.IntVar(&o.fullSubs, "full-subs", 19000, "scenario 7: subscribers on one node (over a tenth as many rooms); needs that many descriptors in each process")
	fs.StringVar(&l.fullParallel, "full-parallel", "50,1000", "scenario 7: subscribers connecting at a time, one fresh server each")
	fs.Float64Var(&o.fullRate, "full-rate", 1000, "scenario 7: writes per second over the rooms once all are connected")
	fs.DurationVar(&o.fullDur, "full-duration", 0, "scenario 7: writing time (default 10s, --full 30s)")
	fs.Float64Var(&o.stormRate, "storm-rate", 200, "scenario 8: writes per second while the node is stopped and restarted (its --full-subs subscribers reconnect)")
	fs.DurationVar(&o.stormLimit, "storm-limit", 2*time.Minute, "scenario 8: how long after the restart every subscriber may take to be live again")
	fs.IntVar(&o.twoSubs, "two-subs", 1000, "scenario 9 (postgres): subscribers of one room on node B")
	fs.Float64Var(&o.twoRate, "two-rate", 100, "scenario 9 (postgres): writes per second through node A (for --fan-duration)")
	fs.DurationVar(&o.fullSettle, "full-settle", 8*time.Second, "scenarios 7 and 10: idle time between the last connection and reading the server's RSS")
	fs.IntVar(&o.scaleNodes, "scale-nodes", 6, "scenario 10 (postgres, only when --scenarios names it): nodes sharing PostgreSQL and Redis, one load-generator process each")
	fs.IntVar(&o.scaleSubs, "scale-subs", 100000, "scenario 10: subscribers in all, spread evenly over the nodes, 10 per room (each room's on several nodes)")
	fs.Float64Var(&o.scaleRate, "scale-rate", 1000, "scenario 10: writes per second over the rooms, round-robin through the nodes")
	fs.DurationVar(&o.scaleDur, "scale-duration", 0, "scenario 10: writing time once all are connected (default 20s, --full 60s)")
}

// resolveDefaults gives the scenario flags left at zero (or empty) the
// default of the mode, quick or --full.
func (o *options) resolveDefaults(l *listFlags) {
	pick := func(d *time.Duration, quick, full time.Duration) {
		if *d <= 0 {
			*d = quick
			if o.full {
				*d = full
			}
		}
	}
	pick(&o.fanDur, 5*time.Second, 15*time.Second)
	pick(&o.satDur, 3*time.Second, 6*time.Second)
	pick(&o.manyDur, 10*time.Second, 30*time.Second)
	pick(&o.writeDur, 4*time.Second, 10*time.Second)
	pick(&o.fullDur, 10*time.Second, 30*time.Second)
	pick(&o.scaleDur, 20*time.Second, 60*time.Second)
	if o.manyRate <= 0 {
		o.manyRate = 200
		if o.full {
			o.manyRate = 500
		}
	}
	if o.catchTrials <= 0 {
		o.catchTrials = 3
		if o.full {
			o.catchTrials = 7
		}
	}
	if l.fanSubs == "" {
		l.fanSubs = "1,10,100,500,1000,2000"
		if o.full {
			l.fanSubs = "1,10,100,250,500,1000,2000,5000"
		}
	}
}

// parseLists parses the list flags into o; an error names the flag.
func (o *options) parseLists(l listFlags) error {
	var err error
	if o.fanSubs, err = ints(l.fanSubs); err != nil {
		return fmt.Errorf("--fan-subs: %w", err)
	}
	if o.writers, err = ints(l.writers); err != nil {
		return fmt.Errorf("--writers: %w", err)
	}
	if o.fullParallel, err = ints(l.fullParallel); err != nil {
		return fmt.Errorf("--full-parallel: %w", err)
	}
	if o.satRates, err = rates(l.satRates); err != nil {
		return fmt.Errorf("--sat-rates: %w", err)
	}
	if o.satPace < 0 || o.satPace > time.Second {
		return fmt.Errorf("--sat-pace: %v: want 0 (no paced ramp) up to 1s, as roomfeed's --stream-pace", o.satPace)
	}
	o.scenGiven = l.scenarios != ""
	if o.scenarios, err = scenarioSet(l.scenarios); err != nil {
		return fmt.Errorf("--scenarios: %w", err)
	}
	if o.backends, err = backendList(l.backends); err != nil {
		return fmt.Errorf("--backends: %w", err)
	}
	if o.target != "" {
		o.backends = []string{"target"}
	}
	o.serverArgs = strings.Fields(l.serverArgs)
	return nil
}

// ints parses a comma-separated list of positive integers.
func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("bad number %q", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// rates parses a comma-separated list of positive rates.
func rates(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("bad rate %q", f)
		}
		out = append(out, v)
	}
	return out, nil
}

// lastScenario is the highest scenario number.
const lastScenario = 10

// onlyWhenNamed reports whether scenario n is too heavy for a default run:
// it runs only when --scenarios names it.
func onlyWhenNamed(n int) bool { return n == 10 }

// scenarioSet parses a comma-separated list of scenario numbers, 1 to
// lastScenario; empty means all of them but onlyWhenNamed.
func scenarioSet(s string) (map[int]bool, error) {
	set := map[int]bool{}
	if s == "" {
		for i := 1; i <= lastScenario; i++ {
			set[i] = !onlyWhenNamed(i)
		}
		return set, nil
	}
	ns, err := ints(s)
	if err != nil {
		return nil, err
	}
	for _, n := range ns {
		if n < 1 || n > lastScenario {
			return nil, fmt.Errorf("no scenario %d", n)
		}
		set[n] = true
	}
	return set, nil
}

// backendList parses a comma-separated list of backends, skipping empty
// entries.
func backendList(s string) ([]string, error) {
	var out []string
	for _, b := range strings.Split(s, ",") {
		switch b = strings.TrimSpace(b); b {
		case "sqlite", "postgres":
			out = append(out, b)
		case "":
		default:
			return nil, fmt.Errorf("unknown backend %q (sqlite, postgres)", b)
		}
	}
	return out, nil
}
