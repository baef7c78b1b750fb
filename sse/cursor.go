package sse

import (
	"errors"
	"strconv"
	"strings"

	"github.com/roomfeed/roomfeed"
)

// ErrBadCursor reports a cursor that is not a sequence number, or a
// composite cursor that is malformed.
var ErrBadCursor = errors.New("malformed cursor")

// ParseCursor parses a Last-Event-ID: a decimal sequence number ("42"), or a
// Redis stream id of the form "42-0". Empty input is an error; the caller
// decides what a missing cursor means.
func ParseCursor(s string) (int64, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(s, "-0")
	if s == "" || len(s) > 19 {
		return 0, ErrBadCursor
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, ErrBadCursor
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, ErrBadCursor
	}
	return n, nil
}

// A composite cursor names the position of every room of a multiplexed
// subscription: "a:42,b:7". Room names cannot contain ':' or ',', so the
// form needs no escaping.

// ParseComposite parses a composite cursor. An empty string is no cursor.
func ParseComposite(raw string) (map[string]int64, error) {
	out := map[string]int64{}
	if strings.TrimSpace(raw) == "" {
		return out, nil
	}
	for part := range strings.SplitSeq(raw, ",") {
		room, seq, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok || !roomfeed.ValidName(room) {
			return nil, ErrBadCursor
		}
		n, err := ParseCursor(seq)
		if err != nil {
			return nil, err
		}
		if _, dup := out[room]; dup {
			return nil, ErrBadCursor
		}
		out[room] = n
	}
	return out, nil
}

// FormatComposite writes the cursor of every room, in the order of rooms.
func FormatComposite(rooms []string, last map[string]int64) string {
	var b strings.Builder
	for i, r := range rooms {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(r)
		b.WriteByte(':')
		b.WriteString(strconv.FormatInt(last[r], 10))
	}
	return b.String()
}
