package repo

import (
	"encoding/json"
	"os"
	"testing"

	"github.com/roomfeed/roomfeed"
)

// mergePatchCases are the merge patch cases internal/jsonmerge checks,
// run here through the store.
func mergePatchCases(tb testing.TB) []struct{ Target, Patch, Want string } {
	tb.Helper()
	data, err := os.ReadFile("../internal/jsonmerge/testdata/mergepatch.json")
	if err != nil {
		tb.Fatal(err)
	}
	var cases []struct{ Target, Patch, Want string }
	if err := json.Unmarshal(data, &cases); err != nil {
		tb.Fatal(err)
	}
	return cases
}

// TestPatch runs the object cases of the table through the store.
func TestPatch(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		for i, tt := range mergePatchCases(t) {
			if !isObject(json.RawMessage(tt.Target)) || !isObject(json.RawMessage(tt.Patch)) {
				continue
			}
			id := "e" + string(rune('a'+i))
			mustPut(t, s, "w1", id, "thing", tt.Target)
			el, ev, _, err := elOf(s.Patch(t.Context(), "w1", id, json.RawMessage(tt.Patch), Precondition{IfMatch: ptr(int64(1))}, Meta{OpID: "p"}))
			if err != nil {
				t.Errorf("Patch(%s, %s): %v", tt.Target, tt.Patch, err)
				continue
			}
			if string(el.Data) != tt.Want || el.Version != 2 || el.Kind != "thing" {
				t.Errorf("Patch(%s, %s): got %s version %d kind %s, want %s version 2 kind thing", tt.Target, tt.Patch, el.Data, el.Version, el.Kind, tt.Want)
			}
			if got := mustGet(t, s, "w1", id); !equalElement(got, el) {
				t.Errorf("Get after Patch: got %+v, want %+v", got, el)
			}
			var p payloadElement
			if err := json.Unmarshal(ev.Data, &p); err != nil {
				t.Fatalf("payload: %v", err)
			}
			if p.Type != roomfeed.TypeUpdated || !equalElement(p.Element, el) {
				t.Errorf("payload: got %s, want element.updated with %+v", ev.Data, el)
			}
		}
	})
}
