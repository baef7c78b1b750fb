package sse

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
)

// Event is one event dispatched by a Decoder, as an EventSource sees it.
type Event struct {
	ID    string // the last event id in effect: this event's, else the one before it
	HasID bool   // the event set its own id; ephemeral events (presence) have none
	Type  string // "message" when the stream gave no event: line
	Data  string // the data: lines joined with "\n"
}

// MaxLine bounds one line of an event stream; a longer line is an error.
const MaxLine = 16 << 20

// ErrLineTooLong reports a line of an event stream longer than MaxLine.
var ErrLineTooLong = errors.New("event stream line longer than 16 MiB")

// Decoder reads an event stream by the WHATWG rules: lines end with CRLF,
// LF or CR; an optional byte-order mark; "field: value" with one optional
// space; lines starting with ':' are comments; "id" values with NUL are
// ignored; at a blank line the id in effect becomes the last event id and
// the event is dispatched when it has data; an event cut off by the end of
// the stream is discarded, its id with it.
type Decoder struct {
	// OnComment, when set, is called with the text of each comment (without
	// the ':' and one leading space). If it returns an error, Next returns
	// that error at once; a later Next goes on with the stream.
	OnComment func(text string) error
	// OnID, when set, is called with the id of each event that set an id
	// but carried no data, at its blank line: the stream moved the last
	// event id without dispatching anything (a filtered roomfeed stream
	// does so after events it left out). An error is returned by Next as
	// OnComment's is.
	OnID func(id string) error
	// IgnoreData, when set, dispatches events with an empty Data: for a
	// reader that needs only ids and types (a load generator), which then
	// does not copy every payload. Which events are dispatched is the same.
	IgnoreData bool

	br       *bufio.Reader
	maxLine  int
	line     []byte
	started  bool   // the optional byte-order mark has been checked
	skipLF   bool   // the previous line ended with CR: a following LF belongs to it
	lastID   string // the last event id: set at the blank line that ends an event
	idBuf    string // the id in effect for the event being read
	retry    time.Duration
	hasRetry bool

	data    strings.Builder
	typ     string
	lastTyp string // the type of an earlier event, reused while the stream repeats it
	hasData bool
	hasID   bool
}

// NewDecoder returns a Decoder reading r through a 64 KiB buffer.
func NewDecoder(r io.Reader) *Decoder { return NewDecoderSize(r, 64<<10) }

// NewDecoderSize returns a Decoder reading r through a buffer of at least
// size bytes; an r that is a *bufio.Reader of that size or more is read
// directly. Lines longer than the buffer are read all the same (up to
// MaxLine): a small buffer suits a process holding many idle streams.
func NewDecoderSize(r io.Reader, size int) *Decoder {
	return &Decoder{br: bufio.NewReaderSize(r, size), maxLine: MaxLine}
}

// Retry returns the latest retry: hint of the stream, and whether there was
// one.
func (d *Decoder) Retry() (time.Duration, bool) { return d.retry, d.hasRetry }

// LastEventID returns the last event id in effect: the one a reconnection
// sends as Last-Event-ID.
func (d *Decoder) LastEventID() string { return d.lastID }

// Next returns the next dispatched event; io.EOF when the stream ended
// (an event cut off by the end is discarded, as a browser does).
func (d *Decoder) Next() (Event, error) {
	for {
		line, err := d.readLine()
		if err != nil {
			return Event{}, err
		}
		if !d.started {
			d.started = true
			line = bytes.TrimPrefix(line, []byte("\ufeff"))
		}
		if len(line) == 0 {
			ev, ok, bareID := d.dispatch()
			if ok {
				return ev, nil
			}
			if bareID && d.OnID != nil {
				if err := d.OnID(d.lastID); err != nil {
					return Event{}, err
				}
			}
			continue
		}
		if line[0] == ':' {
			if d.OnComment != nil {
				if err := d.OnComment(string(bytes.TrimPrefix(line[1:], []byte(" ")))); err != nil {
					return Event{}, err
				}
			}
			continue
		}
		d.field(line)
	}
}

// dispatch ends the event at a blank line; it has one only when data was
// set. bareID reports an event that set an id and nothing else.
func (d *Decoder) dispatch() (ev Event, ok, bareID bool) {
	d.lastID = d.idBuf
	ev = Event{ID: d.lastID, HasID: d.hasID, Type: d.typ, Data: d.data.String()}
	ok, bareID = d.hasData, d.hasID && !d.hasData
	d.data.Reset()
	d.typ, d.hasData, d.hasID = "", false, false
	if ev.Type == "" {
		ev.Type = "message"
	}
	return ev, ok, bareID
}

// field applies one "name: value" line.
func (d *Decoder) field(line []byte) {
	name, value, _ := bytes.Cut(line, []byte(":"))
	value = bytes.TrimPrefix(value, []byte(" "))
	switch string(name) {
	case "event":
		if string(value) != d.lastTyp {
			d.lastTyp = string(value)
		}
		d.typ = d.lastTyp
	case "data":
		if d.IgnoreData {
			d.hasData = true
			return
		}
		if d.hasData {
			d.data.WriteByte('\n')
		}
		d.data.Write(value)
		d.hasData = true
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			d.idBuf, d.hasID = string(value), true
		}
	case "retry":
		if len(value) > 0 && len(bytes.Trim(value, "0123456789")) == 0 {
			ms, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || ms > math.MaxInt64/int64(time.Millisecond) {
				ms = math.MaxInt64 / int64(time.Millisecond)
			}
			d.retry, d.hasRetry = time.Duration(ms)*time.Millisecond, true
		}
	}
}

// readLine returns the next line without its ending, valid until the next
// call. It never waits for input past a line's end, so a CR-terminated
// event dispatches at once. A line whole in the buffer is returned from it,
// uncopied.
func (d *Decoder) readLine() ([]byte, error) {
	d.line = d.line[:0]
	for {
		buf, _ := d.br.Peek(d.br.Buffered())
		if len(buf) == 0 {
			if _, err := d.br.Peek(1); err != nil {
				return nil, err
			}
			continue
		}
		if d.skipLF {
			d.skipLF = false
			if buf[0] == '\n' {
				_, _ = d.br.Discard(1)
				continue
			}
		}
		i := indexLineEnd(buf)
		if i >= 0 && len(d.line) == 0 && i <= d.maxLine {
			// Discarding what is buffered moves no bytes: buf[:i] stays
			// valid until the next read of br.
			d.skipLF = buf[i] == '\r'
			_, _ = d.br.Discard(i + 1)
			return buf[:i], nil
		}
		n := i
		if i < 0 {
			n = len(buf)
		}
		if len(d.line)+n > d.maxLine {
			return nil, ErrLineTooLong
		}
		d.line = append(d.line, buf[:n]...)
		if i < 0 {
			_, _ = d.br.Discard(n)
			continue
		}
		d.skipLF = buf[i] == '\r'
		_, _ = d.br.Discard(i + 1)
		return d.line, nil
	}
}
