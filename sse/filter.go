package sse

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"

	"github.com/roomfeed/roomfeed"
)

// Filter selects the events a feed or a page of history carries. An event
// passes when it matches every dimension that has values, and it matches a
// dimension when it matches one of its values:
//
//   - Types: the event's type (element.updated, chat, presence.joined).
//   - Kinds and Elements: the kind and the id of the element an element
//     event records. A recorded event that is no element change (a custom
//     message) passes only when neither has values.
//   - Ephemeral events (Seq 0: presence, signals) are matched by Types only.
//
// The stream's own events (reset, error, auth_expired) are never filtered.
// The zero Filter passes every event. A filtered stream's ids stay the room
// seqs: events left out move the cursor all the same (see Stream.flush).
type Filter struct {
	Types    []string // event types; none = every type
	Kinds    []string // element kinds; none = every kind
	Elements []string // element ids; none = every element
}

// MaxFilterValues bounds the values of each dimension of a Filter, and so
// the work of matching one event.
const MaxFilterValues = 32

// The query parameters of a Filter (ParseFilter, Filter.AddTo).
const (
	paramType    = "type"
	paramKind    = "kind"
	paramElement = "element"
)

// FilterError reports a filter parameter ParseFilter refuses.
type FilterError struct {
	Param  string // "type", "kind" or "element"
	Reason string
}

func (e *FilterError) Error() string { return e.Param + ": " + e.Reason }

// ParseFilter reads a Filter from the query parameters of a feed: type=,
// kind= and element=, each repeatable (a value given twice counts once).
// A type matches roomfeed.MessagePattern (which every event type does), a
// kind roomfeed.KindPattern, an element roomfeed.NamePattern; at most
// MaxFilterValues distinct values each. Other parameters are ignored.
func ParseFilter(q url.Values) (Filter, error) {
	var f Filter
	dims := []struct {
		param string
		check func(string) bool
		dst   *[]string
	}{
		{paramType, roomfeed.MessagePattern.MatchString, &f.Types},
		{paramKind, roomfeed.KindPattern.MatchString, &f.Kinds},
		{paramElement, roomfeed.ValidName, &f.Elements},
	}
	for _, d := range dims {
		for _, v := range q[d.param] {
			if !d.check(v) {
				return Filter{}, &FilterError{d.param, fmt.Sprintf("%q is not a valid %s", v, d.param)}
			}
			if slices.Contains(*d.dst, v) {
				continue
			}
			if len(*d.dst) == MaxFilterValues {
				return Filter{}, &FilterError{d.param, fmt.Sprintf("at most %d values", MaxFilterValues)}
			}
			*d.dst = append(*d.dst, v)
		}
	}
	return f, nil
}

// AddTo adds f to q as the query parameters ParseFilter reads.
func (f Filter) AddTo(q url.Values) {
	for _, d := range []struct {
		param  string
		values []string
	}{{paramType, f.Types}, {paramKind, f.Kinds}, {paramElement, f.Elements}} {
		for _, v := range d.values {
			q.Add(d.param, v)
		}
	}
}

// IsZero reports whether f passes every event.
func (f *Filter) IsZero() bool {
	return len(f.Types) == 0 && len(f.Kinds) == 0 && len(f.Elements) == 0
}

// Match reports whether ev passes f.
func (f *Filter) Match(ev roomfeed.Event) bool {
	if !f.matchType(ev.Type) {
		return false
	}
	if ev.Seq == 0 || !f.byElement() {
		return true
	}
	return f.matchElement(elementOf(ev))
}

// matchMessage is Match for a message of the hub, whose element is parsed
// once for all the streams that look at it.
func (f *Filter) matchMessage(m *Message) bool {
	if !f.matchType(m.Type) {
		return false
	}
	if m.Seq == 0 || !f.byElement() {
		return true
	}
	return f.matchElement(*m.element())
}

func (f *Filter) matchType(typ string) bool {
	return len(f.Types) == 0 || slices.Contains(f.Types, typ)
}

func (f *Filter) byElement() bool { return len(f.Kinds) > 0 || len(f.Elements) > 0 }

func (f *Filter) matchElement(el elementRef) bool {
	return el.ok &&
		(len(f.Kinds) == 0 || slices.Contains(f.Kinds, el.kind)) &&
		(len(f.Elements) == 0 || slices.Contains(f.Elements, el.id))
}

// elementRef names the element an element event records; ok is false for
// any other event.
type elementRef struct {
	id, kind string
	ok       bool
}

// elementOf reads the element's id and kind from an element event's data.
func elementOf(ev roomfeed.Event) elementRef {
	if !ev.IsElement() {
		return elementRef{}
	}
	var d struct {
		Element struct {
			ID   string `json:"id"`
			Kind string `json:"kind"`
		} `json:"element"`
	}
	if json.Unmarshal(ev.Data, &d) != nil || d.Element.ID == "" {
		return elementRef{}
	}
	return elementRef{id: d.Element.ID, kind: d.Element.Kind, ok: true}
}

// element returns the element m records, parsed on the first call (by a
// filter: an unfiltered stream never pays for it); streams that call it at
// once may each parse it, harmlessly.
func (m *Message) element() *elementRef {
	if el := m.el.Load(); el != nil {
		return el
	}
	el := elementOf(m.Event)
	m.el.Store(&el)
	return &el
}
