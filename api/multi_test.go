package api_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/ssetest"
)

// multiReader follows a multiplexed stream, checking that each room's
// events come in order, once, and that every id is the composite cursor
// after that event.
type multiReader struct {
	t    *testing.T
	last map[string]int64
	id   string
}

func newMultiReader(t *testing.T) *multiReader {
	return &multiReader{t: t, last: map[string]int64{}}
}

func (mr *multiReader) read(s *ssetest.Stream, want map[string]int64) {
	mr.t.Helper()
	for !mr.reached(want) {
		ev, err := s.Next(20 * time.Second)
		if err != nil {
			mr.t.Fatalf("waiting for %v (at %v): %v", want, mr.last, err)
		}
		mr.apply(ev)
	}
}

func (mr *multiReader) reached(want map[string]int64) bool {
	for r, seq := range want {
		if mr.last[r] < seq {
			return false
		}
	}
	return true
}

func (mr *multiReader) apply(ev ssetest.Event) {
	mr.t.Helper()
	var data struct {
		ID   string `json:"id"`
		Room string `json:"room"`
	}
	if err := json.Unmarshal([]byte(ev.Data), &data); err != nil {
		mr.t.Fatalf("event data %q: %v", ev.Data, err)
	}
	seq, err := strconv.ParseInt(data.ID, 10, 64)
	if err != nil || data.Room == "" {
		mr.t.Fatalf("event data %q: want id and room", ev.Data)
	}
	if seq != mr.last[data.Room]+1 {
		mr.t.Fatalf("room %s: got seq %d after %d (gap or duplicate)", data.Room, seq, mr.last[data.Room])
	}
	mr.last[data.Room] = seq
	if !strings.Contains(","+ev.ID+",", ","+data.Room+":"+data.ID+",") {
		mr.t.Fatalf("composite id %q does not say %s:%d", ev.ID, data.Room, seq)
	}
	mr.id = ev.ID
}

func TestMultiplexedFeedResumes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{})
		rooms := []string{"ma", "mb", "mc"}
		url := ts.URL + "/events?room=ma&room=mb&room=mc&room=ma"
		s := ssetest.Open(t, url, "")
		mr := newMultiReader(t)
		write := func(round int) {
			for _, r := range rooms {
				mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/"+r+"/messages", fmt.Sprintf(`{"event":"tick","data":%d}`, round)), http.StatusCreated)
			}
		}
		for i := range 5 {
			write(i)
		}
		mr.read(s, map[string]int64{"ma": 5, "mb": 5, "mc": 5})
		if want := "ma:5,mb:5,mc:5"; mr.id != want {
			t.Errorf("composite id: got %s, want %s", mr.id, want)
		}
		s.Close()

		for i := 5; i < 12; i++ {
			write(i)
		}
		// A browser reconnecting on its own sends the last id as a header.
		resumed := ssetest.Open(t, url, mr.id)
		mr.read(resumed, map[string]int64{"ma": 12, "mb": 12, "mc": 12})
		resumed.Close()

		// A reopened stream uses the query form; a room left out starts live.
		q := ssetest.Open(t, ts.URL+"/events?room=ma&room=mb&last_event_id=ma:10", "")
		mr2 := newMultiReader(t)
		mr2.last["ma"] = 10
		mr2.last["mb"] = 12
		write(12)
		mr2.read(q, map[string]int64{"ma": 13, "mb": 13})
		if ev, err := q.Next(200 * time.Millisecond); !errors.Is(err, ssetest.ErrTimeout) {
			t.Errorf("got extra %+v, %v; want nothing", ev, err)
		}
	})
}

func TestMultiplexedFeedResetsOnlyTrimmedRoom(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{redisMaxLen: 100})
		messages(t, ts, "old", 400)
		messages(t, ts, "fresh", 5)
		if _, err := ts.Store.Trim(t.Context(), "old", 100, 0, 400); err != nil {
			t.Fatal(err)
		}
		s := ssetest.Open(t, ts.URL+"/events?room=old&room=fresh", "old:3,fresh:2")
		var sawReset bool
		mr := newMultiReader(t)
		mr.last["fresh"] = 2
		for !sawReset || mr.last["fresh"] < 5 {
			ev := s.MustNext(t, 10*time.Second)
			if ev.Type == "reset" {
				var data map[string]string
				if err := json.Unmarshal([]byte(ev.Data), &data); err != nil {
					t.Fatal(err)
				}
				if data["room"] != "old" || data["cursor"] != "400" || data["reason"] != "history_trimmed" {
					t.Fatalf("reset: got %v, want room old, cursor 400", data)
				}
				if !strings.HasPrefix(ev.ID, "old:400,") {
					t.Errorf("reset id: got %s, want old:400 first", ev.ID)
				}
				sawReset = true
				mr.last["old"] = 400
				continue
			}
			mr.apply(ev)
			if strings.Contains(ev.Data, `"room":"old"`) {
				t.Fatalf("got an old-room event %s after the reset", ev.Data)
			}
		}
		mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/old/messages", `{"event":"after","data":1}`), http.StatusCreated)
		mr.read(s, map[string]int64{"old": 401})
	})
}

func TestMultiplexedFeedBadRequests(t *testing.T) {
	ts := newServer(t, backends[0], serverOpts{})
	mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/a/messages", `{"event":"x","data":1}`), http.StatusCreated)
	many := strings.Repeat("room=r&", 10)
	for i := range 40 {
		many += "room=r" + strconv.Itoa(i) + "&"
	}
	tests := []struct {
		name, query, header string
		status              int
		code                string
	}{
		{"no room", "", "", 400, "bad_room"},
		{"bad room", "?room=_x", "", 400, "bad_room"},
		{"too many rooms", "?" + many, "", 400, "too_many_rooms"},
		{"plain cursor", "?room=a", "1", 400, "bad_cursor"},
		{"missing seq", "?room=a", "a:", 400, "bad_cursor"},
		{"bad seq", "?room=a", "a:x", 400, "bad_cursor"},
		{"negative seq", "?room=a", "a:-1", 400, "bad_cursor"},
		{"room not subscribed", "?room=a", "a:1,b:2", 400, "bad_cursor"},
		{"room twice in cursor", "?room=a", "a:1,a:1", 400, "bad_cursor"},
		{"empty part", "?room=a", "a:1,", 400, "bad_cursor"},
		{"ahead", "?room=a&last_event_id=a:2", "", 400, "cursor_ahead"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ssetest.Dial(t.Context(), ts.URL+"/events"+tt.query, tt.header)
			var se *ssetest.StatusError
			if !errors.As(err, &se) {
				t.Fatalf("got %v, want status %d", err, tt.status)
			}
			if se.Status != tt.status || !strings.Contains(se.Body, `"code":"`+tt.code+`"`) {
				t.Errorf("got %d %s, want %d with code %s", se.Status, se.Body, tt.status, tt.code)
			}
		})
	}
}
