package api

import (
	"maps"
	"slices"
	"testing"
)

// FuzzParseComposite checks that an accepted composite cursor names valid
// rooms and survives formatting and parsing again.
func FuzzParseComposite(f *testing.F) {
	for _, s := range []string{"a:1", "a:42,b:7", "a:1-0, b:2", "a:1,a:2", "a:", ":1", "a:1,", "r.1_x-y:0", "a:-1", "a:1:2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cur, err := parseComposite(s)
		if err != nil {
			return
		}
		rooms := slices.Sorted(maps.Keys(cur))
		for _, r := range rooms {
			if !namePattern.MatchString(r) || cur[r] < 0 {
				t.Fatalf("parseComposite(%q) accepted room %q at %d", s, r, cur[r])
			}
		}
		again, err := parseComposite(formatComposite(rooms, cur))
		if err != nil || !maps.Equal(again, cur) {
			t.Fatalf("round trip of %q: got %v, %v; want %v", s, again, err, cur)
		}
	})
}
