package jsonmerge

import (
	"encoding/json"
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
