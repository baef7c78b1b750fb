package api_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/sse"
)

// mixedWrites makes n writes to room, one of each kind of event in turn:
// characters and places created and updated, chat messages, deletions,
// and a "noise" message no test filter selects.
func mixedWrites(t *testing.T, base, room string, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		var r response
		switch i % 6 {
		case 0, 3:
			r = do(t, http.MethodPut, base+"/rooms/"+room+"/elements/c"+strconv.Itoa(i%4), `{"kind":"character","data":{"i":`+strconv.Itoa(i)+`}}`)
		case 1:
			r = do(t, http.MethodPut, base+"/rooms/"+room+"/elements/p"+strconv.Itoa(i/6%2), `{"kind":"place","data":{"i":`+strconv.Itoa(i)+`}}`)
		case 2:
			r = do(t, http.MethodPost, base+"/rooms/"+room+"/messages", `{"event":"chat","data":{"kind":"character","element":{"id":"c1"}}}`)
		case 4:
			r = do(t, http.MethodDelete, base+"/rooms/"+room+"/elements/c"+strconv.Itoa(i%4), "")
			if r.Status == http.StatusNotFound {
				r.Status = http.StatusOK
			}
		case 5:
			r = do(t, http.MethodPost, base+"/rooms/"+room+"/messages", `{"event":"noise","data":1}`)
		}
		if r.Status/100 != 2 {
			t.Errorf("write %d: got %d %s", i, r.Status, r.Body)
			return
		}
	}
}

// filterOracle says whether a recorded event passes a filter query,
// written from the README's rules independently of sse.Filter.
func filterOracle(t *testing.T, query string) func(typ string, data []byte) bool {
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	return func(typ string, data []byte) bool {
		var d struct {
			Element *struct{ ID, Kind string } `json:"element"`
		}
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("event data %s: %v", data, err)
		}
		in := func(param, v string) bool { return len(q[param]) == 0 || slices.Contains(q[param], v) }
		if !in("type", typ) {
			return false
		}
		if len(q["kind"]) == 0 && len(q["element"]) == 0 {
			return true
		}
		isElement := typ == roomfeed.TypeCreated || typ == roomfeed.TypeUpdated || typ == roomfeed.TypeDeleted
		return isElement && d.Element != nil && in("kind", d.Element.Kind) && in("element", d.Element.ID)
	}
}

// expected returns "room:seq" of the events of rooms in the events table
// that pass query, with their data.
func expected(t *testing.T, ts *testServer, query string, rooms ...string) (keys []string, data map[string]string) {
	t.Helper()
	match := filterOracle(t, query)
	data = map[string]string{}
	for _, r := range rooms {
		after := int64(0)
		for {
			evs, err := ts.Store.EventsAfter(t.Context(), r, after, 1000)
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) == 0 {
				break
			}
			for _, ev := range evs {
				if match(ev.Type, ev.Data) {
					k := r + ":" + ev.ID()
					keys = append(keys, k)
					data[k] = string(ev.Data)
				}
			}
			after = evs[len(evs)-1].Seq
		}
	}
	return keys, data
}

// feedReader reads a feed with the sse decoder as a client would, keeping
// every event and the last event id in effect, bare ids included.
type feedReader struct {
	t      *testing.T
	resp   *http.Response
	dec    *sse.Decoder
	got    []string          // "room:seq" of each event, in order
	data   map[string]string // and its data
	lastID string
	bare   int // bare ids seen
}

var errCut = errors.New("cut at a bare id")

// openFeed GETs url from lastID; cutAtBare makes next stop at the first bare
// id that follows an event.
func openFeed(t *testing.T, url, lastID string, cutAtBare bool) *feedReader {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got %d", url, resp.StatusCode)
	}
	fr := &feedReader{t: t, resp: resp, dec: sse.NewDecoder(resp.Body), data: map[string]string{}, lastID: lastID}
	fr.dec.OnID = func(id string) error {
		fr.lastID = id
		fr.bare++
		if cutAtBare && len(fr.got) > 0 {
			return errCut
		}
		return nil
	}
	return fr
}

// next reads one event; false when the reader was cut at a bare id.
func (fr *feedReader) next() bool {
	fr.t.Helper()
	timer := time.AfterFunc(20*time.Second, func() { fr.resp.Body.Close() })
	defer timer.Stop()
	ev, err := fr.dec.Next()
	if errors.Is(err, errCut) {
		return false
	}
	if err != nil {
		fr.t.Fatalf("after %v: %v", fr.got, err)
	}
	if !ev.HasID || ev.Type == "reset" || ev.Type == "error" {
		fr.t.Fatalf("got %+v, want a recorded event", ev)
	}
	var d struct{ ID, Room string }
	if err := json.Unmarshal([]byte(ev.Data), &d); err != nil {
		fr.t.Fatal(err)
	}
	k := d.Room + ":" + d.ID
	fr.got = append(fr.got, k)
	fr.data[k] = ev.Data
	fr.lastID = ev.ID
	return true
}

// TestFilteredFeedsResume: a filtered stream, single-room or multiplexed,
// cut right after a bare id (its cursor moved past events it left out) and
// resumed from that id while writes go on, delivers exactly the matching
// events of the events table, once, in order, byte for byte.
func TestFilteredFeedsResume(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{feed: sse.Config{ReplayPage: 7}})
		mixedWrites(t, ts.URL, "fa", 0, 60)
		mixedWrites(t, ts.URL, "fb", 0, 30)
		feeds := []struct{ name, path, query string }{
			{"kind", "/rooms/fa/events", "kind=character"},
			{"types", "/rooms/fa/events", "type=chat&type=element.deleted"},
			{"element and type", "/rooms/fa/events", "element=p1&type=element.updated"},
			{"kind and element", "/rooms/fa/events", "kind=place&element=p0&element=c1"},
			{"multiplexed", "/events?room=fa&room=fb", "kind=place&type=element.updated"},
		}
		for _, f := range feeds {
			t.Run(f.name, func(t *testing.T) {
				rooms := []string{"fa"}
				if f.name == "multiplexed" {
					rooms = append(rooms, "fb")
				}
				sep := "?"
				if f.name == "multiplexed" {
					sep = "&"
				}
				cursor := "0"
				if len(rooms) > 1 {
					cursor = "fa:0,fb:0"
				}
				first := openFeed(t, ts.URL+f.path+sep+f.query, cursor, true)
				for first.next() {
				}
				first.resp.Body.Close()
				if first.bare == 0 || len(first.got) == 0 {
					t.Fatalf("cut with %d events and %d bare ids, want some of each", len(first.got), first.bare)
				}
				var wg sync.WaitGroup
				for _, r := range rooms {
					wg.Go(func() { mixedWrites(t, ts.URL, r, 100, 24) })
				}
				resumed := openFeed(t, ts.URL+f.path+sep+f.query, first.lastID, false)
				wg.Wait()
				want, data := expected(t, ts, f.query, rooms...)
				got := slices.Clone(first.got)
				for len(got) < len(want) && resumed.next() {
					got = append(got, resumed.got[len(resumed.got)-1])
				}
				// Rooms interleave on a multiplexed stream: compare each room's
				// order (want lists the rooms in order, each in seq order).
				slices.SortStableFunc(got, func(a, b string) int { return strings.Compare(roomOf(a), roomOf(b)) })
				if !slices.Equal(got, want) {
					t.Fatalf("cut after %v at %s, then got %v;\nwant %v", first.got, first.lastID, resumed.got, want)
				}
				for k, d := range data {
					if g := first.data[k] + resumed.data[k]; g != d {
						t.Errorf("%s: got data %s, want %s", k, g, d)
					}
				}
			})
		}
	})
}

// roomOf is the room of a "room:seq" key.
func roomOf(key string) string {
	room, _, _ := strings.Cut(key, ":")
	return room
}
