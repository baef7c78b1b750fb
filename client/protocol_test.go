package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// protocolCases is the table in testdata/protocol-cases.json, which the
// JS client (@roomfeed/client) passes too.
type protocolCases struct {
	Cases []struct {
		Name   string           `json:"name"`
		Rooms  []string         `json:"rooms"`
		Frames []protocolFrame  `json:"frames"`
		Expect []protocolExpect `json:"expect"`
		Cursor Cursor           `json:"cursor"`
	} `json:"cases"`
}

type protocolFrame struct {
	ID    *string         `json:"id"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

type protocolExpect struct {
	Kind   string `json:"kind"`
	Room   string `json:"room"`
	Seq    int64  `json:"seq,omitempty"`
	Type   string `json:"type,omitempty"`
	Person string `json:"person,omitempty"`
}

// TestProtocolCases serves each case's frames as one stream and checks
// what the subscription delivers and where its cursor ends.
func TestProtocolCases(t *testing.T) {
	raw, err := os.ReadFile("testdata/protocol-cases.json")
	if err != nil {
		t.Fatal(err)
	}
	var table protocolCases
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatal(err)
	}
	if len(table.Cases) == 0 {
		t.Fatal("no protocol cases")
	}
	for _, tc := range table.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			var body strings.Builder
			body.WriteString("retry: 1000\n\n")
			for _, f := range tc.Frames {
				if f.ID != nil {
					fmt.Fprintf(&body, "id: %s\n", *f.ID)
				}
				fmt.Fprintf(&body, "event: %s\ndata: %s\n\n", f.Event, f.Data)
			}
			srv := httptest.NewServer(feed(body.String(), "hold"))
			t.Cleanup(srv.Close)
			start := Cursor{}
			for _, r := range tc.Rooms {
				start[r] = 0
			}
			c := &Client{Server: srv.URL, HTTPClient: srv.Client()}
			sub := c.Subscribe(start, tc.Rooms...)
			t.Cleanup(func() { sub.Close() })

			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			var got []protocolExpect
			for len(got) < len(tc.Expect) {
				m, err := sub.Next(ctx)
				if err != nil {
					t.Fatalf("after %v: %v", got, err)
				}
				if e, ok := delivered(t, m); ok {
					got = append(got, e)
				}
			}
			if !reflect.DeepEqual(got, tc.Expect) {
				t.Errorf("delivered %+v, want %+v", got, tc.Expect)
			}
			if cur := sub.Cursor(); !reflect.DeepEqual(cur, tc.Cursor) {
				t.Errorf("cursor %v, want %v", cur, tc.Cursor)
			}
		})
	}
}

// delivered turns a message into the table's form; Start, Progress and
// Reconnect are not deliveries.
func delivered(t *testing.T, m Message) (protocolExpect, bool) {
	t.Helper()
	switch m := m.(type) {
	case Event:
		if m.Seq == 0 {
			var p struct{ Person string }
			if err := json.Unmarshal(m.Data, &p); err != nil {
				t.Fatalf("presence data %s: %v", m.Data, err)
			}
			return protocolExpect{Kind: "presence", Room: m.Room, Type: m.Type, Person: p.Person}, true
		}
		return protocolExpect{Kind: "event", Room: m.Room, Seq: m.Seq, Type: m.Type}, true
	case Reset:
		return protocolExpect{Kind: "reset", Room: m.Room}, true
	case Reconnect:
		t.Fatalf("the stream ended: %v", m.Err)
	}
	return protocolExpect{}, false
}
