// Package memrelease gives the memory of a burst of work (a reconnect storm,
// thousands of subscribers connecting at once) back to the operating system
// once the process has gone quiet. A Releaser samples the runtime and, when
// the heap grew by Config.Growth and the process then allocates next to
// nothing for a while, collects and returns what is not live
// (debug.FreeOSMemory): one release per burst, none while busy. Why the
// runtime alone keeps a burst's memory: docs/performance.md.
package memrelease

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// Defaults of Config.
const (
	DefaultInterval   = time.Second
	DefaultQuietTicks = 2
	DefaultQuietBytes = 1 << 20
	DefaultGrowth     = 32 << 20
	DefaultMinGap     = 10 * time.Second
)

// Config says when the process counts as quiet and how much its heap must
// have grown for a release to be worth it; a zero field takes its default.
type Config struct {
	Interval   time.Duration // how often the runtime is sampled
	QuietTicks int           // samples in a row that must be quiet
	QuietBytes uint64        // a sample is quiet when less than this was allocated since the last
	Growth     uint64        // release only when the heap holds at least this much more than at its low point since the last release
	MinGap     time.Duration // at least this long between two releases
}

func (c *Config) defaults() {
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.QuietTicks <= 0 {
		c.QuietTicks = DefaultQuietTicks
	}
	if c.QuietBytes == 0 {
		c.QuietBytes = DefaultQuietBytes
	}
	if c.Growth == 0 {
		c.Growth = DefaultGrowth
	}
	if c.MinGap <= 0 {
		c.MinGap = DefaultMinGap
	}
}

// Sample is what the runtime says at one moment.
type Sample struct {
	Allocated uint64 // bytes allocated since the process started
	Held      uint64 // heap bytes not returned to the OS: objects (live or not), stacks, free and unused space
}

// Releaser decides, sample after sample, when to release.
type Releaser struct {
	cfg      Config
	prev     Sample
	low      uint64 // the least Held since the last release
	started  bool
	quiet    int       // quiet samples in a row
	last     time.Time // the last release; zero = none yet
	releases atomic.Int64
}

// New returns a Releaser with cfg's settings.
func New(cfg Config) *Releaser {
	cfg.defaults()
	return &Releaser{cfg: cfg}
}

// Releases returns how many releases Run made.
func (r *Releaser) Releases() int64 { return r.releases.Load() }

// decide takes the sample of now and reports whether to release.
func (r *Releaser) decide(now time.Time, s Sample) bool {
	if !r.started {
		r.started, r.prev, r.low = true, s, s.Held
		return false
	}
	allocated := s.Allocated - r.prev.Allocated
	r.prev, r.low = s, min(r.low, s.Held)
	if allocated >= r.cfg.QuietBytes {
		r.quiet = 0
		return false
	}
	r.quiet++
	if r.quiet < r.cfg.QuietTicks || s.Held-r.low < r.cfg.Growth {
		return false
	}
	if !r.last.IsZero() && now.Sub(r.last) < r.cfg.MinGap {
		return false
	}
	r.last, r.quiet = now, 0
	return true
}

// released records what the heap holds right after a release: growth
// counts from there.
func (r *Releaser) released(s Sample) { r.prev, r.low = s, s.Held }

// Run samples the runtime every Interval until ctx is done and, when the
// heap grew by Growth and the process is then quiet, collects and returns
// what is not live (debug.FreeOSMemory). It returns nil.
func (r *Releaser) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	reader := newReader()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if r.decide(now, reader.read()) {
				debug.FreeOSMemory()
				r.releases.Add(1)
				r.released(reader.read())
			}
		}
	}
}

// reader reads a Sample from runtime/metrics.
type reader struct{ samples []metrics.Sample }

func newReader() *reader {
	names := []string{
		"/gc/heap/allocs:bytes",
		"/memory/classes/heap/objects:bytes",
		"/memory/classes/heap/stacks:bytes",
		"/memory/classes/heap/free:bytes",
		"/memory/classes/heap/unused:bytes",
	}
	r := &reader{samples: make([]metrics.Sample, len(names))}
	for i, n := range names {
		r.samples[i].Name = n
	}
	return r
}

func (r *reader) read() Sample {
	metrics.Read(r.samples)
	v := func(i int) uint64 {
		if r.samples[i].Value.Kind() != metrics.KindUint64 {
			return 0 // not in this runtime: counts as nothing
		}
		return r.samples[i].Value.Uint64()
	}
	return Sample{Allocated: v(0), Held: v(1) + v(2) + v(3) + v(4)}
}
