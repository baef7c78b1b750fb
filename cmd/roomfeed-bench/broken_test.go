package main

import (
	"slices"
	"testing"
)

// TestBrokenDeliveries: a run whose deliveries lost, doubled or reordered a
// write is listed (and so fails), a clean one is not; a saturation step's
// late deliveries are its knee, not a broken promise, and the bare
// broadcaster is not checked.
func TestBrokenDeliveries(t *testing.T) {
	clean := FanOutPoint{Subscribers: 1000, delivery: delivery{Expected: 10, Delivered: 10}}
	tests := []struct {
		name string
		run  BackendRun
		want []string
	}{
		{"clean", BackendRun{Backend: "sqlite", FanOut: []FanOutPoint{clean},
			Saturation: &Saturation{Roomfeed: SatRun{Steps: []SatStep{{TargetRate: 100}}}}}, nil},
		{"fan-out lost and doubled", BackendRun{Backend: "sqlite",
			FanOut: []FanOutPoint{{Subscribers: 10, delivery: delivery{Lost: 2, Duplicates: 1}}}},
			[]string{"sqlite, fan-out at 10 subscribers: 2 deliveries lost", "sqlite, fan-out at 10 subscribers: 1 deliveries duplicated"}},
		{"saturation late is the knee", BackendRun{Backend: "postgres",
			Saturation: &Saturation{Roomfeed: SatRun{Server: "roomfeed", Steps: []SatStep{{TargetRate: 800, Lost: 50}}}}}, nil},
		{"saturation reordered, paced", BackendRun{Backend: "postgres",
			Saturation: &Saturation{Paced: &SatRun{Server: "paced", Steps: []SatStep{{TargetRate: 400, OutOfOrder: 3}}}}},
			[]string{"postgres, saturation (paced) at 400 writes/s: 3 deliveries out of order"}},
		{"bare not checked", BackendRun{Backend: "sqlite",
			Saturation: &Saturation{Bare: SatRun{Server: "bare", Steps: []SatStep{{TargetRate: 100, Duplicates: 5}}}}}, nil},
		{"storm", BackendRun{Backend: "sqlite", Storm: &Storm{Runs: []StormPoint{{Signal: "killed", delivery: delivery{Lost: 1}}}}},
			[]string{"sqlite, reconnect storm (killed): 1 deliveries lost"}},
		{"scale-out and two nodes", BackendRun{Backend: "postgres", Scale: &Scale{delivery: delivery{Duplicates: 4}},
			TwoNodes: &TwoNodes{AcrossNodes: FanOutPoint{delivery: delivery{OutOfOrder: 1}}}},
			[]string{"postgres, two nodes, across: 1 deliveries out of order", "postgres, scale-out: 4 deliveries duplicated"}},
		{"full node and many rooms", BackendRun{Backend: "sqlite",
			FullNode:  &FullNode{Points: []FullNodePoint{{Parallel: 50, Writes: FanOutPoint{delivery: delivery{Lost: 7}}}}},
			ManyRooms: &ManyRooms{FanOutPoint: FanOutPoint{delivery: delivery{Duplicates: 2}}}},
			[]string{"sqlite, many rooms: 2 deliveries duplicated", "sqlite, full node connected 50 at a time: 7 deliveries lost"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := brokenDeliveries(&Report{Runs: []BackendRun{tt.run}})
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
