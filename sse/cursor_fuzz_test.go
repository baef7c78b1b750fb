package sse

import (
	"maps"
	"slices"
	"testing"

	"github.com/roomfeed/roomfeed"
)

// FuzzParseComposite checks that an accepted composite cursor names valid
// rooms and survives formatting and parsing again.
func FuzzParseComposite(f *testing.F) {
	for _, s := range []string{"a:1", "a:42,b:7", "a:1-0, b:2", "a:1,a:2", "a:", ":1", "a:1,", "r.1_x-y:0", "a:-1", "a:1:2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cur, err := ParseComposite(s)
		if err != nil {
			return
		}
		rooms := slices.Sorted(maps.Keys(cur))
		for _, r := range rooms {
			if !roomfeed.ValidName(r) || cur[r] < 0 {
				t.Fatalf("ParseComposite(%q) accepted room %q at %d", s, r, cur[r])
			}
		}
		again, err := ParseComposite(FormatComposite(rooms, cur))
		if err != nil || !maps.Equal(again, cur) {
			t.Fatalf("round trip of %q: got %v, %v; want %v", s, again, err, cur)
		}
	})
}
