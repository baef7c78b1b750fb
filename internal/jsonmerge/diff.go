package jsonmerge

import (
	"encoding/json"
	"fmt"
)

// The operations of a Change.
const (
	OpAdd     = "add"
	OpRemove  = "remove"
	OpReplace = "replace"
)

// Change is one difference between two JSON documents: at Path (a JSON
// pointer, RFC 6901), From (absent for an add) became To (absent for a
// remove). Values are compacted.
type Change struct {
	Op   string          `json:"op"`
	Path string          `json:"path"`
	From json.RawMessage `json:"from,omitempty"`
	To   json.RawMessage `json:"to,omitempty"`
}

// Diff lists what changed from a to b at the granularity of the three-way
// merge: objects member by member, recursively; anything else (arrays,
// strings, numbers, booleans, null) is a leaf, replaced whole. A nil or
// empty document is absent: Diff(nil, b) is one add at "" and Diff(a, nil)
// one remove. Changes follow a's member order (replacements and removals),
// then b's new members; values equal by meaning (Equal) are no change.
func Diff(a, b json.RawMessage) ([]Change, error) {
	var out []Change
	if err := diff(&out, "", a, b); err != nil {
		return nil, err
	}
	return out, nil
}

func diff(out *[]Change, path string, a, b json.RawMessage) error {
	ao, aObj, err := parseObject(a)
	if err != nil {
		return fmt.Errorf("diff %q: from: %w", path, err)
	}
	bo, bObj, err := parseObject(b)
	if err != nil {
		return fmt.Errorf("diff %q: to: %w", path, err)
	}
	switch absentA, absentB := len(a) == 0, len(b) == 0; {
	case absentA && absentB:
		return nil
	case absentA:
		return add(out, Change{Op: OpAdd, Path: path}, nil, b)
	case absentB:
		return add(out, Change{Op: OpRemove, Path: path}, a, nil)
	case aObj && bObj:
		for i, k := range ao.keys {
			bv, _ := bo.get(k)
			if err := diff(out, path+"/"+escape(k), ao.vals[i], bv); err != nil {
				return err
			}
		}
		for i, k := range bo.keys {
			if _, ok := ao.get(k); !ok {
				if err := diff(out, path+"/"+escape(k), nil, bo.vals[i]); err != nil {
					return err
				}
			}
		}
		return nil
	}
	same, err := Equal(a, b)
	if err != nil || same {
		return err
	}
	return add(out, Change{Op: OpReplace, Path: path}, a, b)
}

// add appends c with its sides compacted.
func add(out *[]Change, c Change, from, to json.RawMessage) error {
	var err error
	if from != nil {
		if c.From, err = compact(from); err != nil {
			return err
		}
	}
	if to != nil {
		if c.To, err = compact(to); err != nil {
			return err
		}
	}
	*out = append(*out, c)
	return nil
}
