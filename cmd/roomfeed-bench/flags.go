package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

type options struct {
	target     string
	targetPID  int
	serverBin  string
	serverArgs []string
	label      string
	replot     string
	backends   []string
	scenarios  map[int]bool
	pgURL      string
	redisURL   string
	full       bool
	out        string
	svg        string
	maxLoad    float64
	waitLoad   time.Duration
	dir        string

	rate        float64
	fanSubs     []int
	fanDur      time.Duration
	satSubs     int
	satRates    []float64
	satDur      time.Duration
	manySubs    int
	manyRate    float64
	manyDur     time.Duration
	catchEvents int
	catchTrials int
	writers     []int
	writeDur    time.Duration
}

func (o *options) explicitScenarios() bool { return o.scenarios[0] }

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("roomfeed-bench", flag.ContinueOnError)
	o := &options{}
	var backends, scenarios, serverArgs, fanSubs, satRates, writers string
	fs.StringVar(&o.target, "target", "", "URL of a running roomfeed to measure instead of starting one (CPU and RSS need --target-pid)")
	fs.IntVar(&o.targetPID, "target-pid", 0, "pid of the --target server, for CPU and RSS")
	fs.StringVar(&o.serverBin, "server-bin", "", "roomfeed binary to start (default: go build ./cmd/roomfeed into a temporary directory)")
	fs.StringVar(&o.replot, "replot", "", "measure nothing: print the table and write the SVG (--svg) of an earlier JSON file")
	fs.StringVar(&o.label, "label", "", "what was measured, e.g. the commit of the server (recorded in the JSON)")
	fs.StringVar(&serverArgs, "server-args", "", "extra roomfeed flags, space-separated")
	fs.StringVar(&backends, "backends", "sqlite,postgres", "backends to run: sqlite, postgres (PostgreSQL + Redis; skipped with a note when unreachable)")
	fs.StringVar(&scenarios, "scenarios", "", "scenarios to run, e.g. 1,4,6 (default all on sqlite; 1,4,6 on postgres unless --full)")
	fs.StringVar(&o.pgURL, "postgres-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL database; each run makes and drops its own schema")
	fs.StringVar(&o.redisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis; each run uses its own key prefix and deletes its keys")
	fs.BoolVar(&o.full, "full", false, "longer phases and more points (about 15 minutes)")
	fs.StringVar(&o.out, "out", "docs/perf/results.json", "JSON output file (empty: none)")
	fs.StringVar(&o.svg, "svg", "docs/perf/fanout-latency.svg", "SVG plot of latency percentiles vs subscribers (empty: none)")
	fs.Float64Var(&o.maxLoad, "max-load", 1.5, "load average above which the run is flagged as disturbed")
	fs.DurationVar(&o.waitLoad, "wait-load", 0, "wait up to this long for the load average to fall below --max-load before starting")
	fs.StringVar(&o.dir, "dir", "", "working directory for databases and server logs (default: a temporary one, removed)")
	fs.Float64Var(&o.rate, "rate", 100, "scenario 1: writes per second into the room")
	fs.StringVar(&fanSubs, "fan-subs", "", "scenario 1: subscriber counts (default 1,10,100,500,1000,2000; --full adds 250,5000)")
	fs.DurationVar(&o.fanDur, "fan-duration", 0, "scenario 1: writing time per point (default 5s, --full 15s)")
	fs.IntVar(&o.satSubs, "sat-subs", 1000, "scenario 2: subscribers of the saturated room")
	fs.StringVar(&satRates, "sat-rates", "25,50,75,100,150,200,250,300,400,500,600,800,1000,1300,1600,2000,2500,3000,4000,5000", "scenario 2: write rates tried in order")
	fs.DurationVar(&o.satDur, "sat-duration", 0, "scenario 2: time per rate step (default 3s, --full 6s)")
	fs.IntVar(&o.manySubs, "many-subs", 10000, "scenarios 3 and 5: subscribers over 1,000 rooms")
	fs.Float64Var(&o.manyRate, "many-rate", 0, "scenario 3: writes per second spread over the rooms (default 200, --full 500)")
	fs.DurationVar(&o.manyDur, "many-duration", 0, "scenario 3: writing time (default 10s, --full 30s)")
	fs.IntVar(&o.catchEvents, "catchup-events", 20000, "scenario 4: events behind")
	fs.IntVar(&o.catchTrials, "catchup-trials", 0, "scenario 4: reconnections measured (default 3, --full 7)")
	fs.StringVar(&writers, "writers", "1,16,64", "scenario 6: concurrent writers")
	fs.DurationVar(&o.writeDur, "write-duration", 0, "scenario 6: time per point (default 4s, --full 10s)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
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
	if fanSubs == "" {
		fanSubs = "1,10,100,500,1000,2000"
		if o.full {
			fanSubs = "1,10,100,250,500,1000,2000,5000"
		}
	}
	var err error
	if o.fanSubs, err = ints(fanSubs); err != nil {
		return nil, fmt.Errorf("--fan-subs: %w", err)
	}
	if o.writers, err = ints(writers); err != nil {
		return nil, fmt.Errorf("--writers: %w", err)
	}
	for _, f := range strings.Split(satRates, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("--sat-rates: bad rate %q", f)
		}
		o.satRates = append(o.satRates, v)
	}
	o.scenarios = map[int]bool{}
	if scenarios == "" {
		for i := 1; i <= 6; i++ {
			o.scenarios[i] = true
		}
	} else {
		o.scenarios[0] = true // explicit
		ns, err := ints(scenarios)
		if err != nil {
			return nil, fmt.Errorf("--scenarios: %w", err)
		}
		for _, n := range ns {
			if n < 1 || n > 6 {
				return nil, fmt.Errorf("--scenarios: no scenario %d", n)
			}
			o.scenarios[n] = true
		}
	}
	for _, b := range strings.Split(backends, ",") {
		switch b = strings.TrimSpace(b); b {
		case "sqlite", "postgres":
			o.backends = append(o.backends, b)
		case "":
		default:
			return nil, fmt.Errorf("--backends: unknown backend %q (sqlite, postgres)", b)
		}
	}
	if o.target != "" {
		o.backends = []string{"target"}
	}
	o.serverArgs = strings.Fields(serverArgs)
	return o, nil
}

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
