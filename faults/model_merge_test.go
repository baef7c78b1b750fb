package faults

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"testing"
)

// The model of stale If-Match writes: the three-way merge of README
// "Field-level merges", told again on decoded JSON values so the test does
// not trust the code it checks.

// staleOutcome is what the model expects of a PUT or PATCH from a stale
// base: 200 with Kind and Data, 409 with the Conflicts paths, or 412.
type staleOutcome struct {
	Status    int
	Kind      string
	Data      map[string]any
	Conflicts []string
}

// put records a PUT or PATCH the model expects to succeed (created, or
// the next version of id) with its event.
func (m *roomModel) put(id, kind string, data map[string]any, op string) {
	cur := m.elements[id]
	typ, version := "element.updated", m.tombs[id]+1
	if cur == nil {
		typ = "element.created"
		m.versions[id] = nil
	} else {
		version = cur.Version + 1
	}
	el := &modelElement{Kind: kind, Version: version, Data: data}
	m.elements[id] = el
	m.versions[id] = append(m.versions[id], *el)
	m.events = append(m.events, modelEvent{typ, id, kind, version, data, op})
}

// staleBase picks, for one write in three to an existing element, a stale
// If-Match: mostly an older version of its current life (among the last
// 20, all kept), sometimes one of an earlier life (before a delete).
func (m *roomModel) staleBase(rng *rand.Rand, id string) (int64, bool) {
	if m.elements[id] == nil || rng.IntN(3) != 0 {
		return 0, false
	}
	if tomb := m.tombs[id]; tomb > 0 && rng.IntN(6) == 0 {
		return 1 + rng.Int64N(tomb), true
	}
	vs := m.versions[id]
	if len(vs) < 2 {
		return 0, false
	}
	if rng.IntN(2) == 0 { // the version just before, the usual race
		return vs[len(vs)-2].Version, true
	}
	from := max(0, len(vs)-1-20)
	return vs[from+rng.IntN(len(vs)-1-from)].Version, true
}

// edit returns the data of version base of id with one or two members
// changed, removed, or (in a nested object) changed: a PUT from an editor
// that holds that version.
func (m *roomModel) edit(rng *rand.Rand, id string, base int64) map[string]any {
	data := map[string]any{}
	for _, v := range m.versions[id] {
		if v.Version == base {
			data = mergePatch(v.Data, nil) // a copy
		}
	}
	return mergePatch(data, smallPatch(rng))
}

// smallPatch is a merge patch of one or two members: a new value, a
// removal (null) or a change inside a nested object.
func smallPatch(rng *rand.Rand) map[string]any {
	patch := map[string]any{}
	for range 1 + rng.IntN(2) {
		k := []string{"a", "b", "c", "d"}[rng.IntN(4)]
		switch rng.IntN(4) {
		case 0:
			patch[k] = nil
		case 1:
			patch[k] = rng.IntN(100)
		case 2:
			patch[k] = "s" + strconv.Itoa(rng.IntN(10))
		default:
			patch[k] = map[string]any{[]string{"x", "y"}[rng.IntN(2)]: rng.IntN(5)}
		}
	}
	return patch
}

// expectStale is the outcome of a write from version base of id: a PUT of
// kind and data, or (kind "") a PATCH with the merge patch data.
func (m *roomModel) expectStale(id string, base int64, kind string, data map[string]any) staleOutcome {
	cur := m.elements[id]
	i := slices.IndexFunc(m.versions[id], func(v modelElement) bool { return v.Version == base })
	if base <= m.tombs[id] || i < 0 {
		return staleOutcome{Status: http.StatusPreconditionFailed}
	}
	b := m.versions[id][i]
	if kind == "" {
		kind, data = b.Kind, mergePatch(b.Data, data)
	}
	switch { // the kind: the side's that changed it
	case kind == b.Kind || kind == cur.Kind:
		kind = cur.Kind
	case cur.Kind != b.Kind:
		return staleOutcome{Status: http.StatusPreconditionFailed}
	}
	var conflicts []string
	merged := modelMerge3("", normalize(b.Data), normalize(cur.Data), normalize(data), &conflicts)
	if len(conflicts) > 0 {
		return staleOutcome{Status: http.StatusConflict, Conflicts: conflicts}
	}
	return staleOutcome{Status: http.StatusOK, Kind: kind, Data: merged.(map[string]any)}
}

// absent is a member that is not there.
type absentValue struct{}

var absent = absentValue{}

func member(obj map[string]any, k string) any {
	if v, ok := obj[k]; ok {
		return v
	}
	return absent
}

// modelMerge3 merges the change from b to n onto t at path: a side that
// did not change wins the other's change; the same change is taken once;
// objects changed on both sides are merged member by member; any other
// value changed differently is a conflict at path (t kept).
func modelMerge3(path string, b, t, n any, conflicts *[]string) any {
	switch {
	case reflect.DeepEqual(n, b):
		return t
	case reflect.DeepEqual(t, b), reflect.DeepEqual(t, n):
		return n
	}
	bo, bok := b.(map[string]any)
	to, tok := t.(map[string]any)
	no, nok := n.(map[string]any)
	if !tok || !nok || (!bok && b != absent) {
		*conflicts = append(*conflicts, path)
		return t
	}
	out := map[string]any{}
	for k := range to {
		if v := modelMerge3(path+"/"+k, member(bo, k), to[k], member(no, k), conflicts); v != absent {
			out[k] = v
		}
	}
	for k := range no {
		if _, ok := to[k]; !ok {
			if v := modelMerge3(path+"/"+k, member(bo, k), absent, no[k], conflicts); v != absent {
				out[k] = v
			}
		}
	}
	return out
}

// applyMerge checks a stale write's 200 (Merged-From the base, the next
// ETag, the merged data) and records it.
func (m *roomModel) applyMerge(tb testing.TB, what string, r writeResult, id string, base int64, exp staleOutcome, op string) {
	tb.Helper()
	next := m.elements[id].Version + 1
	if got := r.Header.Get("Merged-From"); got != etagOf(base) {
		tb.Errorf("%s: Merged-From %q, want %s", what, got, etagOf(base))
	}
	if got := r.Header.Get("ETag"); got != etagOf(next) {
		tb.Errorf("%s: ETag %q, want %s", what, got, etagOf(next))
	}
	var el struct {
		Kind    string `json:"kind"`
		Version int64  `json:"version"`
		Data    any    `json:"data"`
	}
	if err := json.Unmarshal([]byte(r.Body), &el); err != nil || el.Kind != exp.Kind || el.Version != next ||
		!reflect.DeepEqual(el.Data, normalize(exp.Data)) {
		tb.Errorf("%s: merged %s (%v), want %s v%d %v", what, r.Body, err, exp.Kind, next, normalize(exp.Data))
	}
	m.put(id, exp.Kind, exp.Data, op)
}

// checkRefusal checks the body of a stale write's 409: code conflict, the
// paths the model found, and the current element.
func (m *roomModel) checkRefusal(tb testing.TB, what string, r writeResult, id string, exp staleOutcome) {
	tb.Helper()
	if exp.Status != http.StatusConflict || r.Status != http.StatusConflict {
		return
	}
	var body struct {
		Error struct {
			Code      string `json:"code"`
			Conflicts []struct {
				Path string `json:"path"`
			} `json:"conflicts"`
			Current struct {
				ID      string `json:"id"`
				Version int64  `json:"version"`
				Data    any    `json:"data"`
			} `json:"current"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.Body), &body); err != nil {
		tb.Errorf("%s: 409 body %s: %v", what, r.Body, err)
		return
	}
	var paths []string
	for _, c := range body.Error.Conflicts {
		paths = append(paths, c.Path)
	}
	slices.Sort(paths)
	want := slices.Sorted(slices.Values(exp.Conflicts))
	if body.Error.Code != "conflict" || !slices.Equal(paths, want) {
		tb.Errorf("%s: got %s, want code conflict with paths %v", what, r.Body, want)
	}
	cur := m.elements[id]
	if c := body.Error.Current; c.ID != id || c.Version != cur.Version || !reflect.DeepEqual(c.Data, normalize(cur.Data)) {
		tb.Errorf("%s: current %+v, want %s v%d %v", what, c, id, cur.Version, normalize(cur.Data))
	}
}

func etagOf(v int64) string { return `"` + strconv.FormatInt(v, 10) + `"` }

// foldedElement is an element as the fold of a feed leaves it.
type foldedElement struct {
	Kind    string
	Version int64
	Data    any
}

// checkFold folds the events a subscriber received into the elements
// they leave and compares them with the room's snapshot on n: the final
// state is the fold of the feed.
func checkFold(tb testing.TB, hc *http.Client, n *node, room, name string, evs []feedEvent) {
	tb.Helper()
	folded := map[string]foldedElement{}
	for _, e := range evs {
		var p struct {
			Element struct {
				ID      string `json:"id"`
				Kind    string `json:"kind"`
				Version int64  `json:"version"`
				Data    any    `json:"data"`
			} `json:"element"`
		}
		if err := json.Unmarshal([]byte(e.Data), &p); err != nil {
			tb.Fatalf("%s: event %d: %v", name, e.Seq, err)
		}
		switch e.Type {
		case "element.deleted":
			delete(folded, p.Element.ID)
		case "element.created", "element.updated":
			folded[p.Element.ID] = foldedElement{p.Element.Kind, p.Element.Version, p.Element.Data}
		}
	}
	var snap struct {
		Cursor   string `json:"cursor"`
		Elements []struct {
			ID      string `json:"id"`
			Kind    string `json:"kind"`
			Version int64  `json:"version"`
			Data    any    `json:"data"`
		} `json:"elements"`
	}
	if status, err := getJSON(tb.(*testing.T).Context(), hc, n.URL()+"/rooms/"+room+"/elements", &snap); err != nil || status != http.StatusOK {
		tb.Fatalf("final snapshot on %s: got %d, %v", n.name, status, err)
	}
	if want := fmt.Sprint(len(evs)); snap.Cursor != want {
		tb.Errorf("%s: final snapshot cursor %s, the feed has %s events", name, snap.Cursor, want)
	}
	if len(snap.Elements) != len(folded) {
		tb.Errorf("%s: final snapshot has %d elements, the fold of the feed %d", name, len(snap.Elements), len(folded))
	}
	for _, el := range snap.Elements {
		got := foldedElement{el.Kind, el.Version, el.Data}
		if want, ok := folded[el.ID]; !ok || !reflect.DeepEqual(got, want) {
			tb.Errorf("%s: element %s: snapshot %+v, the fold of the feed %+v", name, el.ID, got, want)
		}
	}
}
