package main

import (
	"testing"
	"time"
)

// TestSatPaceFlag: --sat-pace takes what roomfeed's --stream-pace takes, 0
// skipping the paced ramp; anything else is refused before a run starts.
func TestSatPaceFlag(t *testing.T) {
	tests := []struct {
		arg     string
		want    time.Duration
		wantErr bool
	}{
		{"40ms", 40 * time.Millisecond, false},
		{"0", 0, false},
		{"-1ms", 0, true},
		{"2s", 0, true},
	}
	for _, tt := range tests {
		o, err := parseFlags([]string{"--sat-pace", tt.arg})
		if (err != nil) != tt.wantErr {
			t.Fatalf("--sat-pace %s: got error %v, want error %v", tt.arg, err, tt.wantErr)
		}
		if err == nil && o.satPace != tt.want {
			t.Errorf("--sat-pace %s: got %v, want %v", tt.arg, o.satPace, tt.want)
		}
	}
}
