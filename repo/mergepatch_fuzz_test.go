package repo

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzMergePatch checks RFC 7386 properties on any object target and
// patch: the result is a JSON object, applying the patch twice changes
// nothing more (merge patch is idempotent), every null in the patch removes
// its key, and every non-object value in the patch is taken as is.
func FuzzMergePatch(f *testing.F) {
	for _, s := range [][2]string{
		{`{"a":"b"}`, `{"a":"c"}`},
		{`{"a":"b"}`, `{"b":"c"}`},
		{`{"a":"b"}`, `{"a":null}`},
		{`{"a":"b","b":"c"}`, `{"a":null}`},
		{`{"a":["b"]}`, `{"a":"c"}`},
		{`{"a":{"b":"c"}}`, `{"a":{"b":"d","c":null}}`},
		{`{"a":[{"b":"c"}]}`, `{"a":[1]}`},
		{`{}`, `{"a":{"bb":{"ccc":null}}}`},
		{`{"e":null}`, `{"a":1}`},
		{`{"n":1e400}`, `{"n":-0.0}`},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, target, patch string) {
		if !isObject(json.RawMessage(target)) || !isObject(json.RawMessage(patch)) ||
			!json.Valid([]byte(target)) || !json.Valid([]byte(patch)) {
			t.Skip()
		}
		once, err := mergePatch(json.RawMessage(target), json.RawMessage(patch))
		if err != nil {
			return // refused input (for example numbers out of range) is fine; a panic is not
		}
		if !json.Valid(once) || !isObject(once) {
			t.Fatalf("merge(%s, %s) = %s, want a JSON object", target, patch, once)
		}
		twice, err := mergePatch(once, json.RawMessage(patch))
		if err != nil {
			t.Fatalf("second merge of %s into %s: %v", patch, once, err)
		}
		if !bytes.Equal(once, twice) {
			t.Fatalf("merge is not idempotent:\nonce  %s\ntwice %s", once, twice)
		}
		var p, got map[string]json.RawMessage
		if json.Unmarshal([]byte(patch), &p) != nil || json.Unmarshal(once, &got) != nil {
			return // duplicate keys and the like: the properties below need plain objects
		}
		for k, v := range p {
			switch {
			case string(v) == "null":
				if _, ok := got[k]; ok {
					t.Fatalf("key %q set to null in the patch is still in %s", k, once)
				}
			case !isObject(v):
				if w, ok := got[k]; !ok || !jsonEqual(w, v) {
					t.Fatalf("key %q: got %s, want the patch's %s", k, got[k], v)
				}
			}
		}
	})
}

func jsonEqual(a, b json.RawMessage) bool {
	var x, y bytes.Buffer
	if json.Compact(&x, a) != nil || json.Compact(&y, b) != nil {
		return false
	}
	return bytes.Equal(x.Bytes(), y.Bytes())
}
