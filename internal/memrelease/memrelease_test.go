package memrelease

import (
	"context"
	"runtime"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	const mib = 1 << 20
	cfg := Config{Interval: time.Second, QuietTicks: 2, QuietBytes: mib, Growth: 32 * mib, MinGap: 10 * time.Second}
	s := func(held, allocated uint64) Sample { return Sample{Held: held * mib, Allocated: allocated} }
	tests := []struct {
		name    string
		samples []Sample // one a second
		want    []bool   // release after each sample
	}{
		{"grown by 40 MiB, then quiet: one release after two quiet samples",
			[]Sample{s(20, 0), s(60, 40*mib), s(60, 40*mib+1), s(60, 40*mib+2), s(60, 40*mib+3)},
			[]bool{false, false, false, true, false}},
		{"grown, busy: never",
			[]Sample{s(20, 0), s(60, 2*mib), s(60, 4*mib), s(60, 6*mib), s(60, 8*mib)},
			[]bool{false, false, false, false, false}},
		{"quiet, grown by less than Growth: never",
			[]Sample{s(20, 0), s(40, 1), s(40, 2), s(40, 3)},
			[]bool{false, false, false, false}},
		{"growth counts from the low point",
			[]Sample{s(40, 0), s(10, 1), s(45, 2*mib), s(45, 2*mib+1), s(45, 2*mib+2)},
			[]bool{false, false, false, false, true}},
		{"a busy sample starts the quiet count again",
			[]Sample{s(20, 0), s(60, 1), s(60, 5*mib), s(60, 5*mib+1), s(60, 5*mib+2)},
			[]bool{false, false, false, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(cfg)
			now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
			for i, smp := range tt.samples {
				if got := r.decide(now, smp); got != tt.want[i] {
					t.Errorf("sample %d: release %v, want %v", i, got, tt.want[i])
				}
				now = now.Add(time.Second)
			}
		})
	}
}

// TestDecideAfterRelease: growth counts from what the heap held after the
// last release, and two releases are at least MinGap apart.
func TestDecideAfterRelease(t *testing.T) {
	const mib = 1 << 20
	r := New(Config{QuietTicks: 1, QuietBytes: mib, Growth: 32 * mib, MinGap: 10 * time.Second})
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	step := func(held, allocated uint64) bool {
		now = now.Add(time.Second)
		return r.decide(now, Sample{Held: held * mib, Allocated: allocated})
	}
	step(20, 0)
	if !step(60, 1) {
		t.Fatalf("got no release after 40 MiB of growth, want one")
	}
	r.released(Sample{Held: 25 * mib, Allocated: 2})
	if step(50, 3) {
		t.Errorf("got a release after 25 MiB of growth from the release, want none")
	}
	if step(70, 4) {
		t.Errorf("got a release 2 s after the last, want none before MinGap")
	}
	now = now.Add(10 * time.Second)
	if !step(70, 5) {
		t.Errorf("got no release after MinGap with 45 MiB of growth, want one")
	}
}

// sink keeps the garbage reachable until the test drops it.
var sink [][]byte

// TestRunReleasesABurst makes 64 MiB of garbage, as a burst of connections
// does, and checks that Run gives it back to the OS once the test is quiet.
func TestRunReleasesABurst(t *testing.T) {
	rd := newReader()
	r := New(Config{Interval: 20 * time.Millisecond, Growth: 32 << 20})
	r.decide(time.Now(), rd.read()) // the low point, before the burst
	for range 64 {
		sink = append(sink, make([]byte, 1<<20))
	}
	runtime.GC() // the burst's objects are live at this collection: the goal grows
	sink = nil
	before := rd.read()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second) // a bound on a broken Run, not a speed target
	for r.Releases() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	after := rd.read()
	if got := r.Releases(); got != 1 {
		t.Fatalf("got %d releases, want 1 (held before: %d MiB)", got, before.Held>>20)
	}
	if after.Held+48<<20 > before.Held {
		t.Errorf("the heap held %d MiB after the release, want at least 48 MiB less than the %d MiB before",
			after.Held>>20, before.Held>>20)
	}
}
