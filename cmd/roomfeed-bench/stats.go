package main

import (
	"math"
	"slices"
	"time"
)

// Dist summarises a sample of durations (latencies) in milliseconds.
type Dist struct {
	N    int     `json:"n"`
	Min  float64 `json:"min_ms"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// sorted, which must be sorted ascending: the smallest value such that at
// least p % of the sample is at or below it. An empty sample gives 0.
func percentile(sorted []int64, p float64) int64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if p <= 0 {
		return sorted[0]
	}
	if p >= 100 {
		return sorted[n-1]
	}
	rank := int(math.Ceil(p*float64(n)/100 - 1e-9)) // epsilon: 99.9*1000/100 is 999.0000000000001
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

// summarize sorts ns (nanoseconds) in place and returns its distribution.
func summarize(ns []int64) Dist {
	if len(ns) == 0 {
		return Dist{}
	}
	slices.Sort(ns)
	var sum float64
	for _, v := range ns {
		sum += float64(v)
	}
	return Dist{
		N:    len(ns),
		Min:  ms(ns[0]),
		P50:  ms(percentile(ns, 50)),
		P90:  ms(percentile(ns, 90)),
		P99:  ms(percentile(ns, 99)),
		Max:  ms(ns[len(ns)-1]),
		Mean: round3(sum / float64(len(ns)) / 1e6),
	}
}

func ms(ns int64) float64 { return round3(float64(ns) / float64(time.Millisecond)) }

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

func round1(f float64) float64 { return math.Round(f*10) / 10 }

// perSecond returns n / d in events per second.
func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return round1(float64(n) / d.Seconds())
}
