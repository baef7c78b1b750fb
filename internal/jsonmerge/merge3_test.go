package jsonmerge

import (
	"encoding/json"
	"slices"
	"testing"
)

func TestMerge3(t *testing.T) {
	tests := []struct {
		name               string
		base, theirs, mine string
		want               string
		conflicts          []string // paths
	}{
		{"disjoint fields", `{"name":"a","hp":1}`, `{"name":"b","hp":1}`, `{"name":"a","hp":2}`, `{"name":"b","hp":2}`, nil},
		{"same change both sides", `{"name":"a"}`, `{"name":"b"}`, `{"name":"b"}`, `{"name":"b"}`, nil},
		{"same path differently", `{"name":"a"}`, `{"name":"b"}`, `{"name":"c"}`, `{"name":"b"}`, []string{"/name"}},
		{"mine adds, theirs changes", `{"a":1}`, `{"a":2}`, `{"a":1,"b":3}`, `{"a":2,"b":3}`, nil},
		{"both add different keys", `{}`, `{"x":1}`, `{"y":2}`, `{"x":1,"y":2}`, nil},
		{"both add same key differently", `{}`, `{"x":1}`, `{"x":2}`, `{"x":1}`, []string{"/x"}},
		{"mine removes untouched", `{"a":1,"b":2}`, `{"a":1,"b":2,"c":3}`, `{"a":1}`, `{"a":1,"c":3}`, nil},
		{"mine removes what theirs changed", `{"a":1}`, `{"a":2}`, `{}`, `{"a":2}`, []string{"/a"}},
		{"theirs removes what mine changed", `{"a":1,"b":1}`, `{"b":1}`, `{"a":5,"b":1}`, `{"b":1}`, []string{"/a"}},
		{"both remove", `{"a":1,"b":1}`, `{"b":1}`, `{"b":1}`, `{"b":1}`, nil},
		{"nested disjoint", `{"stats":{"hp":1,"mp":1}}`, `{"stats":{"hp":2,"mp":1}}`, `{"stats":{"hp":1,"mp":3}}`, `{"stats":{"hp":2,"mp":3}}`, nil},
		{"nested conflict path", `{"s":{"hp":1}}`, `{"s":{"hp":2}}`, `{"s":{"hp":3}}`, `{"s":{"hp":2}}`, []string{"/s/hp"}},
		{"arrays are leaves", `{"tags":["a"]}`, `{"tags":["a","b"]}`, `{"tags":["a","c"]}`, `{"tags":["a","b"]}`, []string{"/tags"}},
		{"array changed one side", `{"tags":["a"],"n":1}`, `{"tags":["a"],"n":2}`, `{"tags":["x"],"n":1}`, `{"tags":["x"],"n":2}`, nil},
		{"object replaced by leaf vs changed inside", `{"o":{"a":1}}`, `{"o":{"a":2}}`, `{"o":"flat"}`, `{"o":{"a":2}}`, []string{"/o"}},
		{"pointer escapes", `{"a/b":1,"c~d":1}`, `{"a/b":2,"c~d":2}`, `{"a/b":3,"c~d":3}`, `{"a/b":2,"c~d":2}`, []string{"/a~1b", "/c~0d"}},
		{"number spelling is no change", `{"n":1,"m":1}`, `{"n":1.0,"m":2}`, `{"n":1,"m":3,"k":0}`, `{"n":1.0,"m":2,"k":0}`, []string{"/m"}},
		{"number spelling inside a change", `{"n":1,"m":1}`, `{"n":1.0,"m":2}`, `{"n":1,"m":1,"k":0}`, `{"n":1.0,"m":2,"k":0}`, nil},
		{"string escape is no change", `{"s":"A","t":1}`, `{"s":"\u0041","t":1}`, `{"s":"A","t":2}`, `{"s":"A","t":2}`, nil},
		{"member order is no change", `{"o":{"a":1,"b":2}}`, `{"o":{"b":2,"a":1}}`, `{"o":{"a":1,"b":2},"x":1}`, `{"o":{"a":1,"b":2},"x":1}`, nil},
		{"null is a value", `{"a":null}`, `{"a":null,"b":1}`, `{"a":1}`, `{"a":1,"b":1}`, nil},
		{"theirs order kept, mine's new keys appended", `{"a":1}`, `{"z":0,"a":1}`, `{"a":1,"m":1,"b":2}`, `{"z":0,"a":1,"m":1,"b":2}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, conflicts, err := Merge3(json.RawMessage(tt.base), json.RawMessage(tt.theirs), json.RawMessage(tt.mine))
			if err != nil {
				t.Fatalf("Merge3: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("merged: got %s, want %s", got, tt.want)
			}
			var paths []string
			for _, c := range conflicts {
				paths = append(paths, c.Path)
			}
			if !slices.Equal(paths, tt.conflicts) {
				t.Errorf("conflicts: got %v, want %v", paths, tt.conflicts)
			}
		})
	}
}

func TestMerge3ConflictSides(t *testing.T) {
	_, conflicts, err := Merge3(json.RawMessage(`{"a":1,"b":1}`), json.RawMessage(`{"b":2}`), json.RawMessage(`{"a":3,"b":4}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Conflict{
		{Path: "/b", Base: json.RawMessage(`1`), Theirs: json.RawMessage(`2`), Mine: json.RawMessage(`4`)},
		{Path: "/a", Base: json.RawMessage(`1`), Theirs: nil, Mine: json.RawMessage(`3`)},
	}
	got, _ := json.Marshal(conflicts)
	wantJSON, _ := json.Marshal(want)
	if string(got) != string(wantJSON) {
		t.Errorf("got %s, want %s", got, wantJSON)
	}
}

func TestMerge3Malformed(t *testing.T) {
	if _, _, err := Merge3(json.RawMessage(`{"a":1}`), json.RawMessage(`{"a":2`), json.RawMessage(`{"a":3}`)); err == nil {
		t.Error("malformed theirs: got no error")
	}
}

// FuzzMerge3 checks the merge's laws on arbitrary objects: no change on
// one side gives the other; the same change on both gives it once; the
// conflicts do not depend on which side is which, and without conflicts
// neither does the result's meaning.
func FuzzMerge3(f *testing.F) {
	f.Add(`{"a":1}`, `{"a":2}`, `{"a":1,"b":1}`)
	f.Add(`{"o":{"x":[1]}}`, `{"o":{"x":[2]},"p":null}`, `{"o":{"y":"s"}}`)
	f.Add(`{}`, `{"a":{"b":1}}`, `{"a":{"c":2}}`)
	f.Fuzz(func(t *testing.T, base, theirs, mine string) {
		for _, s := range []string{base, theirs, mine} {
			if o, ok, err := parseObject(json.RawMessage(s)); err != nil || !ok || o == nil {
				return
			}
		}
		b, th, mi := json.RawMessage(base), json.RawMessage(theirs), json.RawMessage(mine)
		mustEqual(t, "unchanged mine", b, th, b, th)
		mustEqual(t, "unchanged theirs", b, b, mi, mi)
		mustEqual(t, "same change", b, mi, mi, mi)
		got, c1, err := Merge3(b, th, mi)
		if err != nil {
			t.Fatalf("Merge3: %v", err)
		}
		flipped, c2, err := Merge3(b, mi, th)
		if err != nil {
			t.Fatalf("Merge3 flipped: %v", err)
		}
		if len(c1) != len(c2) {
			t.Fatalf("conflicts: %d one way, %d the other", len(c1), len(c2))
		}
		if len(c1) == 0 {
			if eq, _ := Equal(got, flipped); !eq {
				t.Fatalf("without conflicts the sides matter: %s vs %s", got, flipped)
			}
		}
	})
}

func mustEqual(t *testing.T, what string, b, th, mi, want json.RawMessage) {
	t.Helper()
	got, conflicts, err := Merge3(b, th, mi)
	if err != nil || len(conflicts) != 0 {
		t.Fatalf("%s: got %v, %v", what, conflicts, err)
	}
	if eq, err := Equal(got, want); err != nil || !eq {
		t.Fatalf("%s: got %s, want %s", what, got, want)
	}
}
