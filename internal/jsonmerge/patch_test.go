package jsonmerge

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
)

// PatchCase is one case of testdata/mergepatch.json: the examples of RFC
// 7386 appendix A, plus member order cases. Want is exact: existing
// members keep their place, new ones follow in patch order. The store's
// tests run the same file.
type PatchCase struct{ Target, Patch, Want string }

func patchCases(tb testing.TB) []PatchCase {
	tb.Helper()
	data, err := os.ReadFile("testdata/mergepatch.json")
	if err != nil {
		tb.Fatal(err)
	}
	var cases []PatchCase
	if err := json.Unmarshal(data, &cases); err != nil {
		tb.Fatal(err)
	}
	return cases
}

func TestPatch(t *testing.T) {
	for _, tt := range patchCases(t) {
		got, err := Patch(json.RawMessage(tt.Target), json.RawMessage(tt.Patch))
		if err != nil {
			t.Errorf("Patch(%s, %s): %v", tt.Target, tt.Patch, err)
			continue
		}
		if string(got) != tt.Want {
			t.Errorf("Patch(%s, %s): got %s, want %s", tt.Target, tt.Patch, got, tt.Want)
		}
	}
	for _, bad := range [][2]string{{`{"a":`, `{}`}, {`{}`, `{"a":}`}, {`{}`, `{} {}`}} {
		if _, err := Patch(json.RawMessage(bad[0]), json.RawMessage(bad[1])); err == nil {
			t.Errorf("Patch(%s, %s): got nil error, want one", bad[0], bad[1])
		}
	}
}

// FuzzPatch checks RFC 7386 properties on any object target and patch:
// the result is a JSON object, applying the patch twice changes nothing
// more (merge patch is idempotent), every null in the patch removes its
// key, and every non-object value in the patch is taken as is.
func FuzzPatch(f *testing.F) {
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
		if !isObject(target) || !isObject(patch) {
			t.Skip()
		}
		once, err := Patch(json.RawMessage(target), json.RawMessage(patch))
		if err != nil {
			return // refused input is fine; a panic is not
		}
		if !json.Valid(once) || !isObject(string(once)) {
			t.Fatalf("Patch(%s, %s) = %s, want a JSON object", target, patch, once)
		}
		twice, err := Patch(once, json.RawMessage(patch))
		if err != nil {
			t.Fatalf("second merge of %s into %s: %v", patch, once, err)
		}
		if !bytes.Equal(once, twice) {
			t.Fatalf("merge is not idempotent:\nonce  %s\ntwice %s", once, twice)
		}
		checkPatchApplied(t, patch, once)
	})
}

// checkPatchApplied checks that every null of patch removed its key from
// got and every non-object value was taken as is.
func checkPatchApplied(t *testing.T, patch string, got json.RawMessage) {
	t.Helper()
	var p, g map[string]json.RawMessage
	if json.Unmarshal([]byte(patch), &p) != nil || json.Unmarshal(got, &g) != nil {
		return // duplicate keys and the like: the properties need plain objects
	}
	for k, v := range p {
		switch {
		case string(v) == "null":
			if _, ok := g[k]; ok {
				t.Fatalf("key %q set to null in the patch is still in %s", k, got)
			}
		case !isObject(string(v)):
			if eq, _ := Equal(g[k], v); !eq {
				t.Fatalf("key %q: got %s, want the patch's %s", k, g[k], v)
			}
		}
	}
}

func isObject(s string) bool {
	_, ok, err := parseObject(json.RawMessage(s))
	return ok && err == nil
}
