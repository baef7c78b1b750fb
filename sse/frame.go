package sse

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	"github.com/roomfeed/roomfeed"
)

// AppendEvent appends one SSE event to b. id and event are omitted when
// empty; data is split into one "data:" line per line, whatever its line
// endings (\r\n, \r or \n), so no payload can break the framing. Line breaks
// in id or event are removed for the same reason.
func AppendEvent(b []byte, id, event string, data []byte) []byte {
	if id != "" {
		b = append(b, "id: "...)
		b = appendField(b, id)
		b = append(b, '\n')
	}
	if event != "" {
		b = append(b, "event: "...)
		b = appendField(b, event)
		b = append(b, '\n')
	}
	for {
		i := indexLineEnd(data)
		b = append(b, "data: "...)
		if i < 0 {
			b = append(b, data...)
			b = append(b, '\n')
			break
		}
		b = append(b, data[:i]...)
		b = append(b, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	return append(b, '\n')
}

// AppendID appends an SSE event with an id and nothing else. A client sets
// its last event id to it and dispatches nothing (WHATWG: an event without
// data is not dispatched): the cursor moves without an event.
func AppendID(b []byte, id string) []byte {
	b = append(b, "id: "...)
	b = appendField(b, id)
	return append(b, '\n', '\n')
}

// AppendComment appends an SSE comment (": text"), one per line of text.
func AppendComment(b []byte, text string) []byte {
	for _, line := range splitLines(text) {
		b = append(b, ": "...)
		b = append(b, line...)
		b = append(b, '\n')
	}
	return append(b, '\n')
}

// AppendRetry appends a "retry:" field telling clients how long to wait
// before reconnecting.
func AppendRetry(b []byte, d time.Duration) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, d.Milliseconds(), 10)
	return append(b, '\n', '\n')
}

// Frame returns ev encoded as one SSE event: with its seq as the id, or
// without an id when it is ephemeral (Seq 0), so it never moves a cursor.
func Frame(ev roomfeed.Event) []byte {
	id := ""
	if ev.Seq > 0 {
		id = ev.ID()
	}
	return AppendEvent(make([]byte, 0, len(ev.Data)+len(ev.Type)+48), id, ev.Type, ev.Data)
}

// indexLineEnd returns the index of the first '\n' or '\r' in b, or -1.
func indexLineEnd(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if i >= 0 {
		b = b[:i]
	}
	if j := bytes.IndexByte(b, '\r'); j >= 0 {
		return j
	}
	return i
}

func appendField(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '\n' && c != '\r' && c != 0 {
			b = append(b, c)
		}
	}
	return b
}

func splitLines(s string) []string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.Split(s, "\n")
}
