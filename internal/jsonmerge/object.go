// Package jsonmerge merges JSON documents while keeping object members in
// order: RFC 7386 merge patches, and three-way merges at JSON-pointer
// granularity (objects recursively; arrays, strings, numbers, booleans and
// null as leaves) that report the paths both sides changed differently.
package jsonmerge

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// object is a JSON object that keeps its member order.
type object struct {
	keys []string
	vals []json.RawMessage
}

func (o *object) index(k string) int {
	for i, key := range o.keys {
		if key == k {
			return i
		}
	}
	return -1
}

func (o *object) get(k string) (json.RawMessage, bool) {
	if i := o.index(k); i >= 0 {
		return o.vals[i], true
	}
	return nil, false
}

func (o *object) set(k string, v json.RawMessage) {
	if i := o.index(k); i >= 0 {
		o.vals[i] = v
		return
	}
	o.keys = append(o.keys, k)
	o.vals = append(o.vals, v)
}

func (o *object) remove(k string) {
	if i := o.index(k); i >= 0 {
		o.keys = append(o.keys[:i], o.keys[i+1:]...)
		o.vals = append(o.vals[:i], o.vals[i+1:]...)
	}
}

func (o *object) encode() (json.RawMessage, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		if err := writeKey(&b, k); err != nil {
			return nil, err
		}
		b.WriteByte(':')
		b.Write(o.vals[i])
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// writeKey writes k as a JSON string without HTML escaping, so a key is
// written as the client sent it.
func writeKey(b *bytes.Buffer, k string) error {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(k); err != nil {
		return err
	}
	b.Truncate(b.Len() - 1) // Encode's newline
	return nil
}

// parseObject parses raw as an object; ok is false when raw is valid JSON
// but not an object (or empty).
func parseObject(raw json.RawMessage) (o *object, ok bool, err error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, false, nil
	}
	if !json.Valid(raw) {
		return nil, false, errors.New("malformed JSON")
	}
	if raw[0] != '{' {
		return nil, false, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // {
		return nil, false, err
	}
	o = &object{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, false, err
		}
		k, isString := tok.(string)
		if !isString {
			return nil, false, fmt.Errorf("object key is %T", tok)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, false, err
		}
		o.set(k, v)
	}
	if _, err := dec.Token(); err != nil { // }
		return nil, false, err
	}
	return o, true, nil
}

// compact returns raw without insignificant white space.
func compact(raw json.RawMessage) (json.RawMessage, error) {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
