package jsonmerge

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
)

// Conflict is a path that both sides changed from base to different
// values. Path is a JSON pointer (RFC 6901) into the merged document; a nil
// side is absent there (the member does not exist, or was removed).
type Conflict struct {
	Path   string          `json:"path"`
	Base   json.RawMessage `json:"base,omitempty"`
	Theirs json.RawMessage `json:"theirs,omitempty"`
	Mine   json.RawMessage `json:"mine,omitempty"`
}

// Merge3 applies the change from base to mine onto theirs, at JSON-pointer
// granularity: objects are merged member by member, recursively; anything
// else (arrays, strings, numbers, booleans, null) is a leaf. Where only one
// side changed a path, that change wins; where both changed it to the same
// value, it is taken once; where both changed it differently, theirs is
// kept there and the path is returned as a conflict. Members keep theirs'
// order, and members mine adds are appended in mine's order. The result is
// compacted. Values are compared by meaning: member order, white space,
// string escapes and number spelling (1 and 1.0) do not count as changes.
func Merge3(base, theirs, mine json.RawMessage) (json.RawMessage, []Conflict, error) {
	var m merger
	out, err := m.merge("", base, theirs, mine)
	if err != nil {
		return nil, nil, err
	}
	if out != nil {
		if out, err = compact(out); err != nil {
			return nil, nil, err
		}
	}
	return out, m.conflicts, nil
}

type merger struct{ conflicts []Conflict }

// merge returns the merged value at path, nil when it is absent.
func (m *merger) merge(path string, b, t, n json.RawMessage) (json.RawMessage, error) {
	if eq, err := Equal(n, b); err != nil || eq {
		return t, err // mine did not change it
	}
	if eq, err := Equal(t, b); err != nil || eq {
		return n, err // theirs did not change it
	}
	if eq, err := Equal(t, n); err != nil || eq {
		return t, err // the same change on both sides
	}
	to, tok, err := parseObject(t)
	if err != nil {
		return nil, err
	}
	no, nok, err := parseObject(n)
	if err != nil {
		return nil, err
	}
	bo, bok, err := parseObject(b)
	if err != nil {
		return nil, err
	}
	if !tok || !nok || (!bok && b != nil) {
		m.conflicts = append(m.conflicts, Conflict{Path: path, Base: b, Theirs: t, Mine: n})
		return t, nil
	}
	if bo == nil {
		bo = &object{}
	}
	return m.members(path, bo, to, no)
}

// members merges three objects member by member, in theirs' order, then
// the members only mine has, in mine's order.
func (m *merger) members(path string, b, t, n *object) (json.RawMessage, error) {
	out := &object{}
	for i, k := range t.keys {
		bv, _ := b.get(k)
		nv, _ := n.get(k)
		v, err := m.merge(path+"/"+escape(k), bv, t.vals[i], nv)
		if err != nil {
			return nil, err
		}
		if v != nil {
			out.set(k, v)
		}
	}
	for i, k := range n.keys {
		if t.index(k) >= 0 {
			continue
		}
		bv, _ := b.get(k)
		v, err := m.merge(path+"/"+escape(k), bv, nil, n.vals[i])
		if err != nil {
			return nil, err
		}
		if v != nil {
			out.set(k, v)
		}
	}
	return out.encode()
}

// escape writes a member name as a JSON pointer reference token.
func escape(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

// Equal reports whether two JSON values mean the same: objects with the
// same members (in any order), arrays with equal elements in order, equal
// strings, numbers of equal value, the same literal. nil (absent) equals
// only nil.
func Equal(a, b json.RawMessage) (bool, error) {
	if a == nil || b == nil {
		return a == nil && b == nil, nil
	}
	if bytes.Equal(a, b) {
		return true, nil
	}
	va, err := decode(a)
	if err != nil {
		return false, err
	}
	vb, err := decode(b)
	if err != nil {
		return false, err
	}
	return same(va, vb), nil
}

func decode(raw json.RawMessage) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

func same(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			bv, ok := b[k]
			if !ok || !same(av, bv) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !same(a[i], b[i]) {
				return false
			}
		}
		return true
	case json.Number:
		b, ok := b.(json.Number)
		if !ok {
			return false
		}
		fa, errA := strconv.ParseFloat(a.String(), 64)
		fb, errB := strconv.ParseFloat(b.String(), 64)
		if errA != nil || errB != nil {
			return a == b
		}
		return fa == fb
	default:
		return a == b // string, bool, nil
	}
}
