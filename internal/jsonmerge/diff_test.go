package jsonmerge

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	for _, c := range []struct {
		name, a, b string
		want       string // the changes as JSON
	}{
		{"same", `{"a":1,"b":[1,2]}`, `{ "b" : [1,2], "a":1.0 }`, `null`},
		{"both absent", ``, ``, `null`},
		{"created", ``, `{"name":"Aria"}`, `[{"op":"add","path":"","to":{"name":"Aria"}}]`},
		{"deleted", `{"name":"Aria"}`, ``, `[{"op":"remove","path":"","from":{"name":"Aria"}}]`},
		{"member replaced", `{"name":"Aria","hp":3}`, `{"name":"Aria B","hp":3}`, `[{"op":"replace","path":"/name","from":"Aria","to":"Aria B"}]`},
		{"member added and removed", `{"a":1,"b":2}`, `{"b":2,"c":{"d":true}}`,
			`[{"op":"remove","path":"/a","from":1},{"op":"add","path":"/c","to":{"d":true}}]`},
		{"nested", `{"n":{"x":1,"y":{"z":"old"}}}`, `{"n":{"x":1,"y":{"z":"new","w":null}}}`,
			`[{"op":"replace","path":"/n/y/z","from":"old","to":"new"},{"op":"add","path":"/n/y/w","to":null}]`},
		{"arrays are leaves", `{"l":[1,2,3]}`, `{"l":[1,2]}`, `[{"op":"replace","path":"/l","from":[1,2,3],"to":[1,2]}]`},
		{"object becomes a leaf", `{"o":{"a":1}}`, `{"o":"flat"}`, `[{"op":"replace","path":"/o","from":{"a":1},"to":"flat"}]`},
		{"member names escaped", `{"a/b":1,"c~d":1}`, `{"a/b":2,"c~d":2}`,
			`[{"op":"replace","path":"/a~1b","from":1,"to":2},{"op":"replace","path":"/c~0d","from":1,"to":2}]`},
		{"leaves at the root", `1`, `"one"`, `[{"op":"replace","path":"","from":1,"to":"one"}]`},
		{"compacted", `{"a": [ 1,  2 ]}`, `{"a": { "x" : 1 }}`, `[{"op":"replace","path":"/a","from":[1,2],"to":{"x":1}}]`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Diff(json.RawMessage(c.a), json.RawMessage(c.b))
			if err != nil {
				t.Fatalf("Diff: %v", err)
			}
			b, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != c.want {
				t.Errorf("got %s, want %s", b, c.want)
			}
		})
	}
}

func TestDiffMalformed(t *testing.T) {
	for _, c := range []struct{ a, b string }{
		{`{"a":`, `{}`},
		{`{}`, `{"a":}`},
		{`[1,`, `1`},
	} {
		if _, err := Diff(json.RawMessage(c.a), json.RawMessage(c.b)); err == nil {
			t.Errorf("Diff(%s, %s): got nil error, want one", c.a, c.b)
		}
	}
}

// applyChanges applies Diff's changes to doc (decoded JSON), the way a
// reader of `roomfeed history` would replay them.
func applyChanges(t *testing.T, doc any, changes []Change) any {
	t.Helper()
	for _, c := range changes {
		var to any
		if c.To != nil {
			if err := json.Unmarshal(c.To, &to); err != nil {
				t.Fatal(err)
			}
		}
		if c.Path == "" {
			doc = to
			continue
		}
		tokens := strings.Split(c.Path[1:], "/")
		parent := doc.(map[string]any)
		for _, tok := range tokens[:len(tokens)-1] {
			parent = parent[unescape(tok)].(map[string]any)
		}
		last := unescape(tokens[len(tokens)-1])
		if c.Op == OpRemove {
			delete(parent, last)
		} else {
			parent[last] = to
		}
	}
	return doc
}

func unescape(tok string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
}

// randomDoc makes a small random JSON object, nested up to depth.
func randomDoc(rng *rand.Rand, depth int) map[string]any {
	o := map[string]any{}
	for range rng.IntN(4) {
		k := []string{"a", "b", "c/d", "e~f"}[rng.IntN(4)]
		switch rng.IntN(5) {
		case 0:
			if depth > 0 {
				o[k] = randomDoc(rng, depth-1)
				continue
			}
			o[k] = nil
		case 1:
			o[k] = []any{float64(rng.IntN(3))}
		case 2:
			o[k] = "s" + strconv.Itoa(rng.IntN(3))
		default:
			o[k] = float64(rng.IntN(3))
		}
	}
	return o
}

// TestDiffReplays: for random pairs of documents, applying Diff(a, b) to
// a gives b, and Diff(a, a) is empty.
func TestDiffReplays(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for i := range 2000 {
		a, b := randomDoc(rng, 2), randomDoc(rng, 2)
		ra, _ := json.Marshal(a)
		rb, _ := json.Marshal(b)
		changes, err := Diff(ra, rb)
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		_ = json.Unmarshal(ra, &doc)
		got, _ := json.Marshal(applyChanges(t, doc, changes))
		if same, _ := Equal(got, rb); !same {
			t.Fatalf("case %d: applying Diff(%s, %s) = %+v gave %s", i, ra, rb, changes, got)
		}
		if self, _ := Diff(ra, ra); len(self) != 0 {
			t.Fatalf("case %d: Diff of %s with itself: got %+v, want none", i, ra, self)
		}
	}
}
