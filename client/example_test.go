package client_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/roomfeed/roomfeed/client"
)

// A server that answers one canned stream, then holds it open.
func cannedServer() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "retry: 2000\n\n: roomfeed w1 from 0\n\n"+
			"id: 1\nevent: element.created\ndata: {\"id\":\"1\",\"room\":\"w1\",\"type\":\"element.created\"}\n\n"+
			"event: presence.joined\ndata: {\"room\":\"w1\",\"person\":\"bram\"}\n\n"+
			"id: 9\nevent: reset\ndata: {\"room\":\"w1\",\"cursor\":\"9\",\"reason\":\"history_trimmed\"}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
}

func ExampleClient_Subscribe() {
	srv := cannedServer()
	defer srv.Close()

	c := &client.Client{Server: srv.URL}
	sub := c.Subscribe(client.Cursor{"w1": 0}, "w1") // nil: live
	defer sub.Close()
	ctx := context.Background()
	for range 3 {
		m, err := sub.Next(ctx)
		if err != nil {
			fmt.Println(err) // a refused request: an *client.Error
			return
		}
		switch m := m.(type) {
		case client.Event:
			fmt.Println(m.Room, m.Seq, m.Type, string(m.Data))
		case client.Reset:
			fmt.Println("reset", m.Room, "to", m.Cursor) // reload c.Snapshot, then sub.Advance
		case client.Reconnect:
			fmt.Println("reconnecting in", m.Wait, "after", m.Err)
		}
	}
	fmt.Println(sub.Cursor())
	// Output:
	// w1 1 element.created {"id":"1","room":"w1","type":"element.created"}
	// w1 0 presence.joined {"room":"w1","person":"bram"}
	// reset w1 to 9
	// map[w1:9]
}

// A server that answers one page of history as JSON.
func pageServer() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"room":"w1","events":[`+
			`{"id":"5","room":"w1","type":"chat","data":{"text":"hi"}},`+
			`{"id":"6","room":"w1","type":"element.created","element":{"id":"c1","kind":"character","version":1,"data":{}}}],`+
			`"next":"6","head":"9"}`)
	}))
}

// Page reads a room's history as pages of JSON, for a program that wants
// "the events after 4, at most 500" and to stop at the head.
func ExampleClient_Page() {
	srv := pageServer()
	defer srv.Close()

	c := &client.Client{Server: srv.URL}
	p, err := c.Page(context.Background(), "w1", 4, 500, client.Filter{})
	if err != nil {
		fmt.Println(err) // a *client.TrimmedError when 4 is older than the history kept
		return
	}
	for _, ev := range p.Events {
		fmt.Println(ev.Seq, ev.Type)
	}
	fmt.Println("next", p.Next, "head", p.Head, "done", p.Next == p.Head)
	// Output:
	// 5 chat
	// 6 element.created
	// next 6 head 9 done false
}
