package main

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	sorted := []int64{10, 20, 30, 40, 50, 60, 70, 80, 90, 100}
	for _, tc := range []struct {
		p    float64
		want int64
	}{
		{0, 10}, {1, 10}, {10, 10}, {11, 20}, {50, 50}, {90, 90}, {91, 100}, {99, 100}, {100, 100}, {150, 100},
	} {
		if got := percentile(sorted, tc.p); got != tc.want {
			t.Errorf("percentile(p=%v) = %d, want %d", tc.p, got, tc.want)
		}
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile(empty) = %d, want 0", got)
	}
	if got := percentile([]int64{7}, 99); got != 7 {
		t.Errorf("percentile(one) = %d, want 7", got)
	}
}

func TestPercentileOf1000(t *testing.T) {
	// 1..1000 shuffled: p50 is 500, p99 is 990, p99.9 is 999.
	ns := make([]int64, 1000)
	for i := range ns {
		ns[i] = int64(i + 1)
	}
	rand.Shuffle(len(ns), func(i, j int) { ns[i], ns[j] = ns[j], ns[i] })
	slices.Sort(ns)
	for p, want := range map[float64]int64{50: 500, 90: 900, 99: 990, 99.9: 999, 100: 1000} {
		if got := percentile(ns, p); got != want {
			t.Errorf("p%v = %d, want %d", p, got, want)
		}
	}
}

func TestSummarize(t *testing.T) {
	var ns []int64
	for i := 100; i >= 1; i-- { // unsorted on purpose
		ns = append(ns, int64(i)*int64(time.Millisecond))
	}
	d := summarize(ns)
	want := Dist{N: 100, Min: 1, P50: 50, P90: 90, P99: 99, Max: 100, Mean: 50.5}
	if d != want {
		t.Fatalf("summarize = %+v, want %+v", d, want)
	}
	if !slices.IsSorted(ns) {
		t.Fatal("summarize must sort its input in place")
	}
	if (summarize(nil) != Dist{}) {
		t.Fatal("summarize(nil) must be zero")
	}
	// Negative values (a receipt before the write's acknowledgement) are kept.
	d = summarize([]int64{-2e6, 1e6, 3e6})
	if d.Min != -2 || d.Max != 3 || d.P50 != 1 {
		t.Fatalf("summarize with a negative value = %+v", d)
	}
}

func TestPerSecond(t *testing.T) {
	if got := perSecond(1500, 3*time.Second); got != 500 {
		t.Fatalf("perSecond = %v, want 500", got)
	}
	if got := perSecond(10, 0); got != 0 {
		t.Fatalf("perSecond(d=0) = %v, want 0", got)
	}
}

func TestParseProcStat(t *testing.T) {
	// comm may contain spaces and parentheses; utime and stime are fields
	// 14 and 15 counted from the pid.
	line := "4242 (room feed (x)) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 12 0 100 123456 789 18446744073709551615"
	u, s, err := parseProcStat(line)
	if err != nil || u != 250 || s != 75 {
		t.Fatalf("parseProcStat = %d, %d, %v; want 250, 75, nil", u, s, err)
	}
	if _, _, err := parseProcStat("garbage"); err == nil {
		t.Fatal("parseProcStat(garbage) must fail")
	}
}

func TestParseSockMem(t *testing.T) {
	tests := []struct {
		name, in string
		want     int64
	}{
		{"linux 6", "sockets: used 331\nTCP: inuse 25 orphan 0 tw 3 alloc 31 mem 7\nUDP: inuse 2 mem 1\n", 7},
		{"no TCP line", "sockets: used 1\nUDP: inuse 2 mem 1\n", 0},
		{"no mem field", "TCP: inuse 25 orphan 0\n", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseSockMem(strings.NewReader(tt.in)); got != tt.want {
				t.Errorf("parseSockMem = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestCommandCPU: the CPU of the processes named as this one counts this
// one's.
func TestCommandCPU(t *testing.T) {
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for i := range 50_000_000 { // about 20 ms of CPU, more than a clock tick
		x ^= i
	}
	own := cpuSeconds(os.Getpid())
	if own <= 0 {
		t.Fatalf("own CPU: got %v (x=%d), want > 0", own, x)
	}
	if got := commandCPU(strings.TrimSpace(string(comm))); got < own {
		t.Errorf("commandCPU(%q): got %v, want at least this process's %v", comm, got, own)
	}
	if got := commandCPU("no-such-command-here"); got != 0 {
		t.Errorf("commandCPU of no process: got %v, want 0", got)
	}
}

// TestWriteCalls: the count of this process's write calls grows by at
// least the writes it makes; its RSS, read the same way, is there too.
func TestWriteCalls(t *testing.T) {
	if _, err := os.Stat("/proc/self/io"); err != nil {
		t.Skipf("no /proc/self/io on this platform (%v): the bench reports 0 write calls", err)
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "w"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	before := writeCalls(os.Getpid())
	const n = 50
	for range n {
		if _, err := f.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if got := writeCalls(os.Getpid()) - before; got < n {
		t.Errorf("got %d more write calls, want at least %d", got, n)
	}
	if got := rssKiB(os.Getpid()); got <= 0 {
		t.Errorf("got RSS %d KiB for this process, want more than 0", got)
	}
	if got := writeCalls(0); got != 0 {
		t.Errorf("got %d write calls of no process, want 0", got)
	}
}
