package jsonmerge

import (
	"bytes"
	"encoding/json"
)

var jsonNull = []byte("null")

// Patch applies the RFC 7386 JSON merge patch to target and returns the
// compacted result. Object members keep their order: existing keys stay
// where they were, new keys are appended in the patch's order. Malformed
// JSON in either is an error.
func Patch(target, patch json.RawMessage) (json.RawMessage, error) {
	merged, err := mergePatch(target, patch)
	if err != nil {
		return nil, err
	}
	return compact(merged)
}

func mergePatch(target, patch json.RawMessage) (json.RawMessage, error) {
	p, ok, err := parseObject(patch)
	if err != nil {
		return nil, err
	}
	if !ok {
		return patch, nil // a non-object patch replaces the target
	}
	t, ok, err := parseObject(target)
	if err != nil {
		return nil, err
	}
	if !ok {
		t = &object{}
	}
	for i, k := range p.keys {
		v := p.vals[i]
		if bytes.Equal(bytes.TrimSpace(v), jsonNull) {
			t.remove(k)
			continue
		}
		cur, _ := t.get(k)
		nv, err := mergePatch(cur, v)
		if err != nil {
			return nil, err
		}
		t.set(k, nv)
	}
	return t.encode()
}
