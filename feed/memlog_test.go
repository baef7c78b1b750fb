package feed

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed"
)

// sliceHistory is a History over committed events held in memory.
type sliceHistory map[string][]roomfeed.Event

func (h sliceHistory) EventsAfter(_ context.Context, room string, after int64, limit int) ([]roomfeed.Event, error) {
	evs := h[room]
	if after >= int64(len(evs)) {
		return nil, nil
	}
	return evs[after:min(int64(len(evs)), after+int64(limit))], nil
}

func (h sliceHistory) Head(_ context.Context, room string) (int64, error) {
	return int64(len(h[room])), nil
}

func (h sliceHistory) RoomHeads(context.Context, time.Time) ([]roomfeed.RoomHead, error) {
	return nil, nil
}

// TestMemLogPublishAll: each room's subscribers get its events once and
// in seq order, whatever PublishAll is handed: batches in order, an event
// already delivered, a batch above an event whose publish was lost (filled
// from the history).
func TestMemLogPublishAll(t *testing.T) {
	hist := sliceHistory{}
	for _, room := range []string{"a", "b"} {
		for seq := int64(1); seq <= 8; seq++ {
			hist[room] = append(hist[room], roomfeed.Event{Room: room, Seq: seq, Type: "put"})
		}
	}
	ev := func(room string, seq int64) roomfeed.Event { return hist[room][seq-1] }
	tests := []struct {
		name    string
		batches [][]roomfeed.Event
		want    map[string][]int64
	}{
		{
			name:    "in order",
			batches: [][]roomfeed.Event{{ev("a", 1), ev("b", 1), ev("a", 2)}, {ev("a", 3), ev("b", 2)}},
			want:    map[string][]int64{"a": {1, 2, 3}, "b": {1, 2}},
		},
		{
			name:    "already delivered",
			batches: [][]roomfeed.Event{{ev("a", 1), ev("a", 2)}, {ev("a", 2), ev("a", 3)}},
			want:    map[string][]int64{"a": {1, 2, 3}},
		},
		{
			name:    "a lost publish is filled from the history",
			batches: [][]roomfeed.Event{{ev("a", 1), ev("b", 1)}, {ev("a", 5), ev("b", 2)}, {ev("a", 6)}},
			want:    map[string][]int64{"a": {1, 2, 3, 4, 5, 6}, "b": {1, 2}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := &recordingSink{}
			l := NewMemLog(sink, hist)
			for i, b := range tt.batches {
				if err := l.PublishAll(t.Context(), b); err != nil {
					t.Fatalf("PublishAll %d: %v", i, err)
				}
			}
			got := map[string][]int64{}
			for _, e := range sink.got {
				got[e.Room] = append(got[e.Room], e.Seq)
			}
			for room, want := range tt.want {
				if !slices.Equal(got[room], want) {
					t.Errorf("room %s: got seqs %v, want %v", room, got[room], want)
				}
			}
		})
	}
}
