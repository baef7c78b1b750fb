package repo

import (
	"encoding/json"
	"testing"

	"github.com/roomfeed/roomfeed"
)

// mergePatchTests are the examples of RFC 7386 appendix A, plus member order
// cases. want is exact: existing members keep their place, new ones follow
// in patch order.
var mergePatchTests = []struct {
	target, patch, want string
}{
	{`{"a":"b"}`, `{"a":"c"}`, `{"a":"c"}`},
	{`{"a":"b"}`, `{"b":"c"}`, `{"a":"b","b":"c"}`},
	{`{"a":"b"}`, `{"a":null}`, `{}`},
	{`{"a":"b","b":"c"}`, `{"a":null}`, `{"b":"c"}`},
	{`{"a":["b"]}`, `{"a":"c"}`, `{"a":"c"}`},
	{`{"a":"c"}`, `{"a":["b"]}`, `{"a":["b"]}`},
	{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`, `{"a":{"b":"d"}}`},
	{`{"a":[{"b":"c"}]}`, `{"a":[1]}`, `{"a":[1]}`},
	{`["a","b"]`, `["c","d"]`, `["c","d"]`},
	{`{"a":"b"}`, `["c"]`, `["c"]`},
	{`{"a":"foo"}`, `null`, `null`},
	{`{"a":"foo"}`, `"bar"`, `"bar"`},
	{`{"e":null}`, `{"a":1}`, `{"e":null,"a":1}`},
	{`[1,2]`, `{"a":"b","c":null}`, `{"a":"b"}`},
	{`{}`, `{"a":{"bb":{"ccc":null}}}`, `{"a":{"bb":{}}}`},
	// order and number preservation
	{`{"b":1,"a":{"y":1,"x":2}}`, `{"c":3,"a":{"x":null,"z":1.50},"b":1e3}`, `{"b":1e3,"a":{"y":1,"z":1.50},"c":3}`},
	{`{"s":"<&>"}`, `{"t":"\u00e9<"}`, `{"s":"<&>","t":"\u00e9<"}`},
}

func TestMerge(t *testing.T) {
	t.Parallel()
	for _, tt := range mergePatchTests {
		got, err := merge(json.RawMessage(tt.target), json.RawMessage(tt.patch))
		if err != nil {
			t.Errorf("merge(%s, %s): %v", tt.target, tt.patch, err)
			continue
		}
		if string(got) != tt.want {
			t.Errorf("merge(%s, %s): got %s, want %s", tt.target, tt.patch, got, tt.want)
		}
	}
	for _, bad := range [][2]string{{`{"a":`, `{}`}, {`{}`, `{"a":}`}, {`{}`, `{} {}`}} {
		if _, err := mergePatch(json.RawMessage(bad[0]), json.RawMessage(bad[1])); err == nil {
			t.Errorf("mergePatch(%s, %s): got nil error, want one", bad[0], bad[1])
		}
	}
}

// TestPatch runs the object cases of the table through the store.
func TestPatch(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		for i, tt := range mergePatchTests {
			if !isObject(json.RawMessage(tt.target)) || !isObject(json.RawMessage(tt.patch)) {
				continue
			}
			id := "e" + string(rune('a'+i))
			mustPut(t, s, "w1", id, "thing", tt.target)
			el, ev, err := s.Patch(t.Context(), "w1", id, json.RawMessage(tt.patch), Precondition{IfMatch: ptr(int64(1))}, Meta{OpID: "p"})
			if err != nil {
				t.Errorf("Patch(%s, %s): %v", tt.target, tt.patch, err)
				continue
			}
			if string(el.Data) != tt.want || el.Version != 2 || el.Kind != "thing" {
				t.Errorf("Patch(%s, %s): got %s version %d kind %s, want %s version 2 kind thing", tt.target, tt.patch, el.Data, el.Version, el.Kind, tt.want)
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
