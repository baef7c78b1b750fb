package sse

import (
	"strings"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed"
)

func TestAppendEvent(t *testing.T) {
	tests := []struct {
		name, id, event, data, want string
	}{
		{"json", "42", "element.updated", `{"a":1}`, "id: 42\nevent: element.updated\ndata: {\"a\":1}\n\n"},
		{"no id no event", "", "", "x", "data: x\n\n"},
		{"empty data", "1", "", "", "id: 1\ndata: \n\n"},
		{"lf", "", "m", "a\nb", "event: m\ndata: a\ndata: b\n\n"},
		{"crlf", "", "", "a\r\nb", "data: a\ndata: b\n\n"},
		{"cr", "", "", "a\rb", "data: a\ndata: b\n\n"},
		{"mixed and trailing", "", "", "a\r\n\rb\n", "data: a\ndata: \ndata: b\ndata: \n\n"},
		{"cr then lf separately", "", "", "a\r\r\nb", "data: a\ndata: \ndata: b\n\n"},
		{"newlines in id and event are removed", "4\n2", "x\r\ny", "d", "id: 42\nevent: xy\ndata: d\n\n"},
		{"nul in id removed", "4\x002", "", "d", "id: 42\ndata: d\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendEvent(nil, tt.id, tt.event, []byte(tt.data)))
			if got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestAppendCommentAndRetry(t *testing.T) {
	if got, want := string(AppendComment(nil, "ping")), ": ping\n\n"; got != want {
		t.Errorf("comment: got %q, want %q", got, want)
	}
	if got, want := string(AppendComment(nil, "a\r\nb")), ": a\n: b\n\n"; got != want {
		t.Errorf("multi-line comment: got %q, want %q", got, want)
	}
	if got, want := string(AppendRetry(nil, 2500*time.Millisecond)), "retry: 2500\n\n"; got != want {
		t.Errorf("retry: got %q, want %q", got, want)
	}
}

func TestParseCursor(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"0", 0, false},
		{"42", 42, false},
		{"42-0", 42, false},
		{" 7 ", 7, false},
		{"9223372036854775807", 9223372036854775807, false},
		{"", 0, true},
		{"-1", 0, true},
		{"+1", 0, true},
		{"abc", 0, true},
		{"42-1", 0, true},
		{"1.5", 0, true},
		{"99999999999999999999", 0, true},
		{"9223372036854775808", 0, true},
		{"0x10", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseCursor(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseCursor(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// FuzzAppendEvent checks that no data can break the framing: parsing the
// frame back yields exactly the data with its line endings normalised.
func FuzzAppendEvent(f *testing.F) {
	for _, s := range []string{"", "a", "a\nb", "a\r\nb", "a\rb", "\r\n\r\n", "data: x\n\nid: 9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		frame := string(AppendEvent(nil, "1", "m", []byte(data)))
		events := decodeAll(t, frame)
		if len(events) != 1 {
			t.Fatalf("got %d events in %q, want 1", len(events), frame)
		}
		if want := normalise(data); events[0].Data != want {
			t.Fatalf("got data %q, want %q", events[0].Data, want)
		}
	})
}

func normalise(s string) string { return strings.Join(splitLines(s), "\n") }

// FuzzParseCursor checks that an accepted Last-Event-ID is a sequence
// number that survives formatting and parsing again, in both forms.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"0", "42", "42-0", " 7 ", "-1", "1-1", "9223372036854775807", "9223372036854775808", "0x1", "", "٣"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseCursor(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("ParseCursor(%q) = %d with error %v, want 0", s, n, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseCursor(%q) = %d, want >= 0", s, n)
		}
		e := roomfeed.Event{Seq: n}
		for _, form := range []string{e.ID(), e.ID() + "-0"} {
			if m, err := ParseCursor(form); err != nil || m != n {
				t.Fatalf("ParseCursor(%q) = %d, %v; want %d", form, m, err, n)
			}
		}
	})
}

// BenchmarkAppendEvent encodes a typical element event: done once per
// event, whatever the number of subscribers (NewMessage).
func BenchmarkAppendEvent(b *testing.B) {
	data := []byte(`{"id":"42","room":"w1","type":"element.updated","element":{"id":"c1","kind":"character","version":7,"data":{"name":"Aria","home":"Valen","notes":"line one"},"updated_at":"2026-11-25T12:00:00.123456Z"},"op_id":"op-7","at":"2026-11-25T12:00:00.123456Z"}`)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		buf = AppendEvent(buf[:0], "42", "element.updated", data)
	}
}
