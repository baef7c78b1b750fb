package sse

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// decodeAll returns every event of a whole stream, failing the test on any
// error other than the end.
func decodeAll(tb testing.TB, stream string) []Event {
	tb.Helper()
	d := NewDecoder(strings.NewReader(stream))
	var out []Event
	for {
		ev, err := d.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			tb.Fatalf("decode %q: %v", stream, err)
		}
		out = append(out, ev)
	}
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name, in string
		want     []Event
	}{
		{"fields and joined data", "id: 7\nevent: a\ndata: one\ndata:two\n\n",
			[]Event{{ID: "7", HasID: true, Type: "a", Data: "one\ntwo"}}},
		{"default type, last id stays in effect", "id: 7\ndata: a\n\ndata: b\n\n",
			[]Event{{ID: "7", HasID: true, Type: "message", Data: "a"}, {ID: "7", Type: "message", Data: "b"}}},
		{"crlf", "id: 1\r\ndata: x\r\n\r\n", []Event{{ID: "1", HasID: true, Type: "message", Data: "x"}}},
		{"cr", "id: 8\rdata: cr\r\r", []Event{{ID: "8", HasID: true, Type: "message", Data: "cr"}}},
		{"cr then lf is one ending", "data: a\r\ndata: b\r\r\n", []Event{{Type: "message", Data: "a\nb"}}},
		{"byte-order mark", "\ufeffdata: x\n\n", []Event{{Type: "message", Data: "x"}}},
		{"a second byte-order mark is part of the line", "\ufeff\ufeffdata: x\n\ndata: y\n\n", []Event{{Type: "message", Data: "y"}}},
		{"one optional space only", "data:  two spaces\n\n", []Event{{Type: "message", Data: " two spaces"}}},
		{"field without colon", "data\n\n", []Event{{Type: "message", Data: ""}}},
		{"empty data line dispatches", "data:\n\n", []Event{{Type: "message", Data: ""}}},
		{"value with colons", "data: a:b: c\n\n", []Event{{Type: "message", Data: "a:b: c"}}},
		{"event without data is not dispatched", "event: a\nid: 3\n\ndata: x\n\n",
			[]Event{{ID: "3", Type: "message", Data: "x"}}},
		{"lone id empties the last id", "id: 5\ndata: a\n\nid\nevent: b\n\ndata: x\n\n",
			[]Event{{ID: "5", HasID: true, Type: "message", Data: "a"}, {ID: "", Type: "message", Data: "x"}}},
		{"id with NUL ignored", "id: 5\ndata: a\n\nid: 6\x00\ndata: b\n\n",
			[]Event{{ID: "5", HasID: true, Type: "message", Data: "a"}, {ID: "5", Type: "message", Data: "b"}}},
		{"unknown fields and comments ignored", ": hi\nfoo: bar\ndata: x\n: mid\n\n", []Event{{Type: "message", Data: "x"}}},
		{"event cut by the end", "data: x\n\ndata: cut off", []Event{{Type: "message", Data: "x"}}},
		{"event cut after its last line", "data: x\n", nil},
		{"composite id", "id: a:42,b:7\nevent: reset\ndata: {}\n\n", []Event{{ID: "a:42,b:7", HasID: true, Type: "reset", Data: "{}"}}},
		{"empty stream", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decodeAll(t, tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			// The same stream a byte at a time: no event depends on how
			// the input is cut.
			d := NewDecoder(iotest.OneByteReader(strings.NewReader(tt.in)))
			for i, w := range tt.want {
				if got, err := d.Next(); err != nil || got != w {
					t.Fatalf("byte by byte, event %d: got %+v, %v; want %+v", i, got, err, w)
				}
			}
			if _, err := d.Next(); !errors.Is(err, io.EOF) {
				t.Errorf("byte by byte, at the end: got %v, want io.EOF", err)
			}
			// Through bufio's smallest buffer, lines span reads; with
			// IgnoreData the same events come, without their data.
			d = NewDecoderSize(strings.NewReader(tt.in+"data: "+strings.Repeat("long ", 10)+"\n\n"), 16)
			d.IgnoreData = true
			for i, w := range append(tt.want, Event{ID: d.LastEventID(), Type: "message"}) {
				if i == len(tt.want) {
					w.ID = d.LastEventID()
				}
				w.Data = ""
				if got, err := d.Next(); err != nil || got != w {
					t.Fatalf("16-byte buffer, no data, event %d: got %+v, %v; want %+v", i, got, err, w)
				}
			}
		})
	}
}

func TestDecodeRetryAndComments(t *testing.T) {
	tests := []struct {
		in        string
		want      time.Duration
		wantRetry bool
	}{
		{"retry: 1500\n\n", 1500 * time.Millisecond, true},
		{"retry: 0\n\n", 0, true},
		{"retry: 10\nretry: 20\n\n", 20 * time.Millisecond, true},
		{"retry: 10\nretry: x\n\n", 10 * time.Millisecond, true},
		{"retry: -1\n\n", 0, false},
		{"retry: 1.5\n\n", 0, false},
		{"retry:\n\n", 0, false},
		{"retry: 99999999999999999999999\n\n", time.Duration(1<<63-1) / time.Millisecond * time.Millisecond, true},
	}
	for _, tt := range tests {
		d := NewDecoder(strings.NewReader(tt.in))
		if _, err := d.Next(); !errors.Is(err, io.EOF) {
			t.Fatalf("%q: got %v, want io.EOF", tt.in, err)
		}
		if got, ok := d.Retry(); got != tt.want || ok != tt.wantRetry {
			t.Errorf("%q: got retry %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantRetry)
		}
	}

	// The stream roomfeed tail's own reader was checked with.
	in := "\ufeffretry: 1500\n: comment\n\n" +
		"id: 7\nevent: a\ndata: one\ndata:two\n\n" +
		"data: no type\r\n\r\n" +
		"id: 8\rdata: cr\r\r" +
		"id\nevent: b\n\n" + // an id with no value and no data: nothing dispatched
		"data: x\n\n" +
		"data: cut off at the end"
	d := NewDecoder(strings.NewReader(in))
	var comments []string
	d.OnComment = func(c string) error { comments = append(comments, c); return nil }
	want := []Event{
		{ID: "7", HasID: true, Type: "a", Data: "one\ntwo"},
		{ID: "7", Type: "message", Data: "no type"}, // the last id stays in effect
		{ID: "8", HasID: true, Type: "message", Data: "cr"},
		{ID: "", Type: "message", Data: "x"}, // the lone "id" line emptied the last id
	}
	for i, w := range want {
		if got, err := d.Next(); err != nil || got != w {
			t.Fatalf("event %d: got %+v, %v; want %+v", i, got, err, w)
		}
	}
	if _, err := d.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("at the end: got %v, want io.EOF (the cut-off event discarded)", err)
	}
	if r, _ := d.Retry(); r != 1500*time.Millisecond || !slices.Equal(comments, []string{"comment"}) {
		t.Errorf("got retry %v, comments %q; want 1.5s and [comment]", r, comments)
	}

	d = NewDecoder(strings.NewReader(": roomfeed w1 from 4\n:ping\n\nid: 5\ndata: x\n\n"))
	comments = nil
	stop := errors.New("stop")
	d.OnComment = func(c string) error {
		comments = append(comments, c)
		if len(comments) == 1 {
			return stop
		}
		return nil
	}
	if _, err := d.Next(); !errors.Is(err, stop) {
		t.Fatalf("got %v, want the comment hook's error", err)
	}
	if ev, err := d.Next(); err != nil || ev.ID != "5" || d.LastEventID() != "5" {
		t.Fatalf("after the hook's error: got %+v, %v; want the event with id 5", ev, err)
	}
	if want := []string{"roomfeed w1 from 4", "ping"}; !slices.Equal(comments, want) {
		t.Errorf("comments: got %q, want %q", comments, want)
	}
}

// TestDecodeBareID: an event with an id and no data dispatches nothing but
// moves the last event id (a filtered stream's cursor after events it left
// out), and OnID hears of it; an id in an event cut off by the end moves
// nothing, as in a browser.
func TestDecodeBareID(t *testing.T) {
	d := NewDecoder(iotest.OneByteReader(strings.NewReader(
		"id: 3\ndata: a\n\nid: 7\n\nid: 9\n\nid: a:4,b:2\nevent: x\n\ndata: b\n\nid: 12\ndata: cut off")))
	var ids []string
	stop := errors.New("stop")
	d.OnID = func(id string) error {
		ids = append(ids, id)
		if id == "9" {
			return stop
		}
		return nil
	}
	if ev, err := d.Next(); err != nil || ev.ID != "3" || d.LastEventID() != "3" {
		t.Fatalf("got %+v, %v (last id %q); want the event with id 3", ev, err, d.LastEventID())
	}
	if _, err := d.Next(); !errors.Is(err, stop) || d.LastEventID() != "9" {
		t.Fatalf("got %v (last id %q), want OnID's error at the bare id 9", err, d.LastEventID())
	}
	ev, err := d.Next()
	if want := (Event{ID: "a:4,b:2", Type: "message", Data: "b"}); err != nil || ev != want {
		t.Fatalf("got %+v, %v; want %+v: the bare composite id in effect, HasID false", ev, err, want)
	}
	if _, err := d.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("at the end: got %v, want io.EOF", err)
	}
	if want := []string{"7", "9", "a:4,b:2"}; !slices.Equal(ids, want) {
		t.Errorf("OnID: got %q, want %q", ids, want)
	}
	if got := d.LastEventID(); got != "a:4,b:2" {
		t.Errorf("after an event cut off by the end: last id %q, want a:4,b:2 (the cut-off id 12 never took effect)", got)
	}
}

func TestDecodeLineBound(t *testing.T) {
	d := NewDecoder(strings.NewReader("data: " + strings.Repeat("x", 100) + "\n\n"))
	d.maxLine = 106
	if ev, err := d.Next(); err != nil || len(ev.Data) != 100 {
		t.Fatalf("a line at the bound: got %d bytes, %v; want 100", len(ev.Data), err)
	}
	d = NewDecoder(strings.NewReader("data: " + strings.Repeat("x", 101) + "\n\n"))
	d.maxLine = 106
	if _, err := d.Next(); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("a line over the bound: got %v, want ErrLineTooLong", err)
	}
	if NewDecoder(nil).maxLine != 16<<20 {
		t.Errorf("default bound: want 16 MiB")
	}
}

// FuzzDecode checks that any event AppendEvent writes decodes back to its
// id, type and data, with the id in effect carried to a following event
// without one; and that no input makes the decoder fail but by its end.
func FuzzDecode(f *testing.F) {
	f.Add("1", "m", "a\nb")
	f.Add("", "", "")
	f.Add("a:1,b:2", "reset", "{}")
	f.Add(" x", "\n", "a\r\n\rb\n")
	f.Add("4\x002", "e\r", "data: x\n\nid: 9")
	f.Fuzz(func(t *testing.T, id, typ, data string) {
		frame := string(AppendEvent(nil, id, typ, []byte(data)))
		frame += string(AppendEvent(nil, "", "", []byte(data)))
		events := decodeAll(t, frame)
		if len(events) != 2 {
			t.Fatalf("got %d events in %q, want 2", len(events), frame)
		}
		wantID, wantType := cleanField(id), cleanField(typ)
		if wantType == "" {
			wantType = "message"
		}
		want := Event{ID: wantID, HasID: id != "", Type: wantType, Data: normalise(data)}
		if events[0] != want {
			t.Fatalf("got %+v, want %+v", events[0], want)
		}
		if want := (Event{ID: wantID, Type: "message", Data: normalise(data)}); events[1] != want {
			t.Fatalf("second event: got %+v, want %+v", events[1], want)
		}

		d := NewDecoder(strings.NewReader(id + "\n" + typ + "\r" + data))
		for {
			ev, err := d.Next()
			if err != nil {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("decode: got %v, want only io.EOF", err)
				}
				break
			}
			if strings.ContainsRune(ev.ID, 0) || ev.Type == "" {
				t.Fatalf("decoded %+v: an id with NUL or no type", ev)
			}
		}
	})
}

func cleanField(s string) string { return string(appendField(nil, s)) }

// BenchmarkDecode: one roomfeed event of about 300 bytes (id, type, data)
// through a 4 KiB buffer, as a client reads it and as the load generator
// does (IgnoreData).
func BenchmarkDecode(b *testing.B) {
	data := `{"type":"element.updated","element":{"id":"e1","kind":"note","version":3,"data":{"t":"` +
		strings.Repeat("x", 200) + `"}}}`
	var stream []byte
	for i := 1; i <= 1000; i++ {
		stream = AppendEvent(stream, strconv.Itoa(i), "element.updated", []byte(data))
	}
	for _, ignore := range []bool{false, true} {
		b.Run("IgnoreData="+strconv.FormatBool(ignore), func(b *testing.B) {
			b.SetBytes(int64(len(stream) / 1000))
			b.ReportAllocs()
			for n := 0; n < b.N; n += 1000 {
				d := NewDecoderSize(bytes.NewReader(stream), 4096)
				d.IgnoreData = ignore
				for range 1000 {
					if _, err := d.Next(); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
