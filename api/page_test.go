package api_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// eventsPage is a decoded page of history, its events kept as sent.
type eventsPage struct {
	Room   string            `json:"room"`
	Events []json.RawMessage `json:"events"`
	Next   string            `json:"next"`
	Head   string            `json:"head"`
}

// getPage GETs one page of room's history after the cursor with query
// (filters, limit) and fails the test unless it is a 200 page.
func getPage(t *testing.T, base, room string, after int64, query string) eventsPage {
	t.Helper()
	r := do(t, http.MethodGet, base+"/rooms/"+room+"/events?format=json&after="+strconv.FormatInt(after, 10)+query, "")
	mustStatus(t, r, http.StatusOK)
	var p eventsPage
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatalf("page %s: %v", r.Body, err)
	}
	return p
}

// pageAll pages room from after until next == head, and returns the
// events' data and the last next.
func pageAll(t *testing.T, base, room string, after int64, query string) ([]string, int64) {
	t.Helper()
	var out []string
	for {
		p := getPage(t, base, room, after, query)
		next, err1 := strconv.ParseInt(p.Next, 10, 64)
		head, err2 := strconv.ParseInt(p.Head, 10, 64)
		if err1 != nil || err2 != nil || next < after || next > head || (next == after && next < head) || p.Room != room {
			t.Fatalf("page after %d: room %q, next %q, head %q: want after < next <= head", after, p.Room, p.Next, p.Head)
		}
		for _, ev := range p.Events {
			out = append(out, string(ev))
		}
		if after = next; next == head {
			return out, next
		}
	}
}

// TestHistoryPagesWhileWriting pages through a room while writers add to
// it, unfiltered and filtered: once the writes are over, the pages hold
// exactly the events of the events table (those that pass the filter), once
// each, in order, byte for byte.
func TestHistoryPagesWhileWriting(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{})
		mixedWrites(t, ts.URL, "hp", 0, 30)
		stop := make(chan struct{})
		var writers sync.WaitGroup
		for w := range 3 {
			writers.Go(func() { mixedWrites(t, ts.URL, "hp", 1000*(w+1), 60) })
		}
		go func() { writers.Wait(); close(stop) }()
		for _, query := range []string{"", "&kind=character", "&type=chat&type=element.deleted"} {
			t.Run("filter"+query, func(t *testing.T) {
				t.Parallel() // the pagers run together, once the writers have started
				var got []string
				var after int64
				for done := false; !done; {
					select {
					case <-stop:
						done = true // one more round after the writes: up to the final head
					default:
					}
					page, next := pageAll(t, ts.URL, "hp", after, "&limit=7"+query)
					got, after = append(got, page...), next
				}
				wantKeys, wantData := expected(t, ts, strings.TrimPrefix(query, "&"), "hp")
				if len(got) != len(wantKeys) {
					t.Fatalf("got %d events, want %d", len(got), len(wantKeys))
				}
				for i, k := range wantKeys {
					if got[i] != wantData[k] {
						t.Fatalf("event %d: got %s, want %s (%s)", i, got[i], wantData[k], k)
					}
				}
			})
		}
	})
}

// TestHistoryPage: the defaults, negotiation by Accept, the limit, and a
// page of a room never written.
func TestHistoryPage(t *testing.T) {
	ts := newServer(t, backends[0], serverOpts{})
	messages(t, ts, "pg", 1200)
	r := do(t, http.MethodGet, ts.URL+"/rooms/pg/events", "", "Accept", "application/json")
	mustStatus(t, r, http.StatusOK)
	vary := strings.Join(r.Header.Values("Vary"), ", ")
	if ct := r.Header.Get("Content-Type"); ct != "application/json; charset=utf-8" || !strings.Contains(vary, "Accept") {
		t.Errorf("got Content-Type %q, Vary %q; want JSON, varying by Accept", ct, vary)
	}
	var p eventsPage
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatal(err)
	}
	if len(p.Events) != 500 || p.Next != "500" || p.Head != "1200" || !strings.HasPrefix(string(p.Events[0]), `{"id":"1","room":"pg","type":"tick","data":0,`) {
		t.Errorf("default page: got %d events, next %s, head %s, first %s; want 500 from 1, next 500, head 1200", len(p.Events), p.Next, p.Head, p.Events[0])
	}
	if p := getPage(t, ts.URL, "pg", 1000, "&limit=5000"); len(p.Events) != 200 || p.Next != "1200" {
		t.Errorf("to the head: got %d events, next %s; want 200, 1200", len(p.Events), p.Next)
	}
	if p := getPage(t, ts.URL, "pg", 1200, ""); len(p.Events) != 0 || p.Next != "1200" {
		t.Errorf("at the head: got %d events, next %s; want none, 1200", len(p.Events), p.Next)
	}
	if p := getPage(t, ts.URL, "never", 0, ""); p.Events == nil || len(p.Events) != 0 || p.Next != "0" || p.Head != "0" {
		t.Errorf("a room never written: got %+v, want an empty page at 0", p)
	}
	for _, accept := range []string{"text/event-stream, application/json", "*/*", ""} {
		s, err := dialStream(t, ts.URL+"/rooms/pg/events", accept)
		if err != nil {
			t.Errorf("Accept %q: got %v, want the stream", accept, err)
			continue
		}
		s.Body.Close()
	}
}

// dialStream GETs url with an Accept header and checks the answer is an
// event stream.
func dialStream(t *testing.T, url, accept string) (*http.Response, error) {
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		resp.Body.Close()
		return nil, &httpError{resp.StatusCode, ct}
	}
	return resp, nil
}

type httpError struct {
	status int
	ct     string
}

func (e *httpError) Error() string { return strconv.Itoa(e.status) + " " + e.ct }

// TestHistoryPageTrimmed: a page's cursor older than the retained history
// is 410 history_trimmed with the oldest event still retained; the page
// after it is served; with nothing retained, oldest is the head + 1.
func TestHistoryPageTrimmed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{redisMaxLen: 100})
		messages(t, ts, "tr", 1000)
		if _, err := ts.Store.Trim(t.Context(), "tr", 300, 0, 1000); err != nil {
			t.Fatal(err)
		}
		doc := loadDoc(t, ts.URL)
		gone := func(after int64, wantOldest string) {
			t.Helper()
			r := do(t, http.MethodGet, ts.URL+"/rooms/tr/events?format=json&after="+strconv.FormatInt(after, 10), "")
			mustStatus(t, r, http.StatusGone)
			doc.checkAnswer(t, "GET", "/rooms/{room}/events", &http.Response{StatusCode: r.Status, Header: r.Header}, r.Body)
			var e struct {
				Error struct{ Code, Message, Oldest string }
			}
			if err := json.Unmarshal(r.Body, &e); err != nil || e.Error.Code != "history_trimmed" || e.Error.Oldest != wantOldest {
				t.Errorf("after %d: got %s, want history_trimmed with oldest %s", after, r.Body, wantOldest)
			}
		}
		gone(5, "701")
		gone(699, "701")
		if p := getPage(t, ts.URL, "tr", 700, "&limit=1"); p.Next != "701" {
			t.Errorf("after oldest-1: got next %s, want 701", p.Next)
		}
		if evs, next := pageAll(t, ts.URL, "tr", 700, "&type=tick"); len(evs) != 300 || next != 1000 {
			t.Errorf("paging the rest: got %d events to %d, want 300 to 1000", len(evs), next)
		}

		time.Sleep(5 * time.Millisecond)
		if _, err := ts.Store.Trim(t.Context(), "tr", 0, time.Millisecond, 1000); err != nil {
			t.Fatal(err)
		}
		gone(5, "1001")
		if p := getPage(t, ts.URL, "tr", 1000, ""); len(p.Events) != 0 || p.Next != "1000" {
			t.Errorf("at the head with nothing retained: got %+v, want an empty page", p)
		}
	})
}
