package sse

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed"
)

// addTyped records an event of room in s without delivering it: an element
// event when el is "id/kind", else a message.
func (s *memSource) addTyped(room, typ, el string) roomfeed.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	seq := int64(len(s.events[room]) + 1)
	data := `{"id":"` + strconv.FormatInt(seq, 10) + `","room":"` + room + `","type":"` + typ + `"`
	if id, kind, ok := strings.Cut(el, "/"); ok {
		data += `,"element":{"id":"` + id + `","kind":"` + kind + `","version":1,"data":{"kind":"decoy"}}`
	} else {
		data += `,"data":{"element":{"id":"c1","kind":"character"}}`
	}
	ev := roomfeed.Event{Room: room, Seq: seq, Type: typ, Data: []byte(data + "}")}
	s.events[room] = append(s.events[room], ev)
	return ev
}

// world is the history the filter tests run on; its decoys (a message whose
// data names an element, an element whose data has a "kind") must not match
// by kind or element.
var world = []struct{ typ, el string }{
	{roomfeed.TypeCreated, "c1/character"}, // 1
	{roomfeed.TypeCreated, "p1/place"},     // 2
	{"chat", ""},                           // 3
	{roomfeed.TypeUpdated, "c1/character"}, // 4
	{roomfeed.TypeUpdated, "p1/place"},     // 5
	{roomfeed.TypeDeleted, "c1/character"}, // 6
	{"chat", ""},                           // 7
	{roomfeed.TypeUpdated, "p1/place"},     // 8
}

func TestFilterMatch(t *testing.T) {
	src := newMemSource(nil)
	var evs []roomfeed.Event
	for _, w := range world {
		evs = append(evs, src.addTyped("r", w.typ, w.el))
	}
	presence := roomfeed.Event{Room: "r", Type: "presence.joined", Data: []byte(`{"room":"r"}`)}
	evs = append(evs, presence)
	tests := []struct {
		query string
		want  []int64 // seqs that pass; 0 is the presence event
	}{
		{"", []int64{1, 2, 3, 4, 5, 6, 7, 8, 0}},
		{"type=chat", []int64{3, 7}},
		{"type=chat&type=element.deleted&type=chat", []int64{3, 6, 7}},
		{"kind=character", []int64{1, 4, 6, 0}},
		{"element=p1", []int64{2, 5, 8, 0}},
		{"element=p1&element=c1", []int64{1, 2, 4, 5, 6, 8, 0}},
		{"kind=character&element=p1", []int64{0}},
		{"kind=place&type=element.updated", []int64{5, 8}},
		{"kind=decoy", []int64{0}},
		{"type=presence.joined&kind=place", []int64{0}},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		f, err := ParseFilter(q)
		if err != nil {
			t.Fatalf("%s: %v", tt.query, err)
		}
		var got []int64
		for _, ev := range evs {
			m := NewMessage(ev)
			if f.Match(ev) != f.matchMessage(m) || f.matchMessage(m) != f.matchMessage(m) {
				t.Errorf("%s: Match and matchMessage (fresh and cached) disagree on %d", tt.query, ev.Seq)
			}
			if f.Match(ev) {
				got = append(got, ev.Seq)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.query, got, tt.want)
		}
		back := url.Values{}
		f.AddTo(back)
		if g, _ := ParseFilter(back); !slices.Equal(g.Types, f.Types) || !slices.Equal(g.Kinds, f.Kinds) || !slices.Equal(g.Elements, f.Elements) {
			t.Errorf("%s: AddTo then ParseFilter gave %+v, want %+v", tt.query, g, f)
		}
	}
}

func TestParseFilterRefuses(t *testing.T) {
	many := url.Values{}
	for i := range MaxFilterValues + 1 {
		many.Add("element", "e"+strconv.Itoa(i))
	}
	for _, q := range []url.Values{
		{"type": {""}}, {"type": {"Chat"}}, {"type": {"chat\nid: 9"}}, {"kind": {"Character"}},
		{"kind": {"c1/x"}}, {"element": {".."}}, {"element": {"c\x001"}}, {"element": {""}}, many,
	} {
		_, err := ParseFilter(q)
		var fe *FilterError
		if !errors.As(err, &fe) || fe.Param == "" {
			t.Errorf("%v: got %v, want a FilterError", q, err)
		}
	}
	dup := url.Values{"element": slices.Repeat([]string{"e1"}, 100)}
	if f, err := ParseFilter(dup); err != nil || len(f.Elements) != 1 {
		t.Errorf("one value repeated: got %+v, %v; want it once", f, err)
	}
}

// memWriter is a stream's output kept in memory, one string per write.
type memWriter struct{ writes []string }

func (w *memWriter) Write(b []byte) (int, error) {
	w.writes = append(w.writes, string(b))
	return len(b), nil
}
func (w *memWriter) SetWriteDeadline(time.Time) error { return nil }
func (w *memWriter) Close() error                     { return nil }

// summary reads one write back: "4:element.updated" per event, "(7)" per
// bare id, "~presence.joined" per event without an id.
func summary(tb testing.TB, write string) string {
	tb.Helper()
	var out []string
	for block := range strings.SplitSeq(strings.TrimSuffix(write, "\n\n"), "\n\n") {
		var id, typ string
		data := false
		for line := range strings.SplitSeq(block, "\n") {
			k, v, _ := strings.Cut(line, ": ")
			switch k {
			case "id":
				id = v
			case "event":
				typ = v
			case "data":
				data = true
			}
		}
		switch {
		case !data && typ == "":
			out = append(out, "("+id+")")
		case id == "":
			out = append(out, "~"+typ)
		default:
			out = append(out, id+":"+typ)
		}
	}
	return strings.Join(out, " ")
}

// TestFilterCursorArithmetic: what a filtered stream writes, batch by batch,
// for a history replayed in pages and live events delivered in batches: the
// matching events with their room seq (or composite cursor) as id, and one
// bare id after a batch whose last events were left out, never more. Each
// case then resumes from every cursor a client could hold along the way and
// checks that it gets exactly the matching events after it, once, in order.
func TestFilterCursorArithmetic(t *testing.T) {
	tests := []struct {
		name     string
		rooms    []string // one: seqs as ids; several: composite ids
		query    string
		page     int   // replay page size
		cursor   int64 // of every room
		replayed int   // world events recorded before the stream opens
		live     [][]int
		want     []string // one summary per write
	}{
		{name: "no filter", rooms: []string{"r"}, page: 10, replayed: 4, live: [][]int{{5, 6, 7, 8}},
			want: []string{"1:element.created 2:element.created 3:chat 4:element.updated", "5:element.updated 6:element.deleted 7:chat 8:element.updated"}},
		{name: "kind", rooms: []string{"r"}, query: "kind=character", page: 10, replayed: 4, live: [][]int{{5, 6, 7, 8}},
			want: []string{"1:element.created 4:element.updated", "6:element.deleted (8)"}},
		{name: "one bare id per replay page and per batch", rooms: []string{"r"}, query: "kind=character", page: 2, replayed: 4, live: [][]int{{5}, {6}, {7}, {8}},
			want: []string{"1:element.created (2)", "4:element.updated", "(5)", "6:element.deleted", "(7)", "(8)"}},
		{name: "type from a cursor", rooms: []string{"r"}, query: "type=chat", page: 10, cursor: 2, replayed: 4, live: [][]int{{5, 6, 7, 8}},
			want: []string{"3:chat (4)", "7:chat (8)"}},
		{name: "nothing matches in the replay", rooms: []string{"r"}, query: "element=p1&type=element.updated", page: 10, replayed: 4, live: [][]int{{5, 6}, {7, 8}},
			want: []string{"(4)", "5:element.updated (6)", "8:element.updated"}},
		{name: "cursor at the head", rooms: []string{"r"}, query: "kind=character", page: 10, cursor: 4, replayed: 4, live: [][]int{{5, 6, 7, 8}},
			want: []string{"6:element.deleted (8)"}},
		{name: "presence passes a kind filter", rooms: []string{"r"}, query: "kind=place", page: 10, cursor: 4, replayed: 4, live: [][]int{{5, 0, 6}, {0, 7}},
			want: []string{"5:element.updated ~presence.joined (6)", "~presence.joined (7)"}},
		{name: "presence left out by type, moving nothing", rooms: []string{"r"}, query: "type=chat", page: 10, cursor: 4, replayed: 4, live: [][]int{{5, 0}, {0}, {6, 7, 8}},
			want: []string{"(5)", "7:chat (8)"}},
		{name: "hole filled under the filter", rooms: []string{"r"}, query: "kind=character", page: 10, cursor: 4, replayed: 4, live: [][]int{{5, -6, -7, 8}},
			want: []string{"6:element.deleted (7)", "(8)"}},
		{name: "composite", rooms: []string{"a", "b"}, query: "type=chat", page: 10, replayed: 4, live: [][]int{{5, 6, 7, 8}},
			want: []string{"a:3,b:0:chat (a:4,b:0)", "a:4,b:3:chat (a:4,b:4)", "a:7,b:4:chat a:8,b:7:chat (a:8,b:8)"}},
		{name: "composite from cursors", rooms: []string{"a", "b"}, query: "kind=place", page: 3, cursor: 3, replayed: 4, live: [][]int{{5}, {6, 7}, {8}},
			want: []string{"(a:4,b:3)", "(a:4,b:4)", "a:5,b:4:element.updated a:5,b:5:element.updated", "(a:7,b:7)", "a:8,b:7:element.updated a:8,b:8:element.updated"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, _ := url.ParseQuery(tt.query)
			f, err := ParseFilter(q)
			if err != nil {
				t.Fatal(err)
			}
			cursors := map[string]int64{}
			for _, r := range tt.rooms {
				cursors[r] = tt.cursor
			}
			e, src := filterEngine(t, tt.page)
			for _, r := range tt.rooms {
				for _, w := range world[:tt.replayed] {
					src.addTyped(r, w.typ, w.el)
				}
			}
			writes := runStream(t, e, src, tt.rooms, cursors, f, tt.live)
			var got []string
			for _, w := range writes {
				got = append(got, summary(t, w))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("writes:\ngot  %q\nwant %q", got, tt.want)
			}
			checkResumes(t, e, src, tt.rooms, cursors, f, strings.Join(writes, ""))
		})
	}
}

// filterEngine is an engine over a memSource, for streams driven by hand.
func filterEngine(t *testing.T, page int) (*Engine, *memSource) {
	hub := NewHub(1024)
	src := newMemSource(hub)
	e := New(hub, src, Config{ReplayPage: page}, nil, nil)
	t.Cleanup(func() { e.Close(context.Background()) })
	return e, src
}

// runStream opens a stream of rooms from cursors with filter f, replays
// it, then for each batch of live records world events in every room
// (index i: world[i-1] delivered; -i: recorded only, a hole; 0: a presence
// event; the indexes of a stream's batches follow each other, since seqs
// are given in order) and flushes once. It returns what the stream wrote, write by write.
func runStream(t *testing.T, e *Engine, src *memSource, rooms []string, cursors map[string]int64, f Filter, live [][]int) []string {
	t.Helper()
	ctx := t.Context()
	st, err := e.Open(ctx, Request{Rooms: rooms, Cursors: cursors, Composite: len(rooms) > 1, Filter: f})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out := &memWriter{}
	st.out = out
	for i, r := range rooms {
		if err := st.catchUp(ctx, r, st.heads[i], false); err != nil {
			t.Fatal(err)
		}
	}
	st.w = &worker{}
	for _, b := range live {
		for _, i := range b {
			for _, r := range rooms {
				switch {
				case i == 0:
					e.hub.Deliver(roomfeed.Event{Room: r, Type: "presence.joined", Data: []byte(`{"room":"` + r + `"}`)})
				case i < 0:
					src.addTyped(r, world[-i-1].typ, world[-i-1].el)
				default:
					e.hub.Deliver(src.addTyped(r, world[i-1].typ, world[i-1].el))
				}
			}
		}
		if err := st.flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return out.writes
}

// checkResumes follows stream as a client would, and at every cursor it
// holds along the way (the start, after each event, after each bare id)
// resumes with that cursor: what it had plus what the resumed stream
// replays must be exactly the recorded events that pass f, once, in order.
func checkResumes(t *testing.T, e *Engine, src *memSource, rooms []string, start map[string]int64, f Filter, stream string) {
	t.Helper()
	var want []string
	for _, r := range rooms {
		evs, _ := src.EventsAfter(t.Context(), r, start[r], 1000)
		for _, ev := range evs {
			if f.Match(ev) {
				want = append(want, r+":"+ev.ID())
			}
		}
	}
	type point struct {
		cursor string
		had    []string
	}
	var had []string
	points := []point{{"", nil}}
	d := NewDecoder(strings.NewReader(stream))
	d.OnID = func(id string) error { points = append(points, point{id, slices.Clone(had)}); return nil }
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ev.HasID {
			had = append(had, eventKey(t, ev.Data))
			points = append(points, point{ev.ID, slices.Clone(had)})
		}
	}
	for _, p := range points {
		cursors := start
		if p.cursor != "" {
			cursors = parseAnyCursor(t, rooms, p.cursor)
		}
		resumed := NewDecoder(strings.NewReader(strings.Join(runStream(t, e, src, rooms, cursors, f, nil), "")))
		got := slices.Clone(p.had)
		for {
			ev, err := resumed.Next()
			if err != nil {
				break
			}
			got = append(got, eventKey(t, ev.Data))
		}
		// Rooms interleave on a composite stream: compare each room's order
		// (want lists the rooms in order, each in seq order).
		slices.SortStableFunc(got, func(a, b string) int {
			ra, _, _ := strings.Cut(a, ":")
			rb, _, _ := strings.Cut(b, ":")
			return strings.Compare(ra, rb)
		})
		if !slices.Equal(got, want) {
			t.Errorf("resumed from %q after %v: got %v in all (by room); want %v", p.cursor, p.had, got, want)
		}
	}
}

// eventKey is "room:seq" of an event's data.
func eventKey(t *testing.T, data string) string {
	var d struct{ ID, Room string }
	if err := json.Unmarshal([]byte(data), &d); err != nil {
		t.Fatalf("data %q: %v", data, err)
	}
	return d.Room + ":" + d.ID
}

func parseAnyCursor(t *testing.T, rooms []string, id string) map[string]int64 {
	if len(rooms) > 1 {
		c, err := ParseComposite(id)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	seq, err := ParseCursor(id)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]int64{rooms[0]: seq}
}
