package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/internal/ssetest"
	"github.com/roomfeed/roomfeed/internal/testenv"
)

// TestPostgresDownAndBack cuts two nodes off PostgreSQL (a proxy the test
// controls) while writers write through both: writes must answer 503
// database_unavailable promptly (never 500, never hang), /readyz must turn
// red, open streams must keep heartbeating; when the database is reachable
// again everything must recover by itself, and every acknowledged write must
// reach every subscriber exactly once, in order, with the snapshot matching
// the feed (nothing half-written).
func TestPostgresDownAndBack(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	b := newBackend(t)
	pgURL, pgProxy := proxiedPostgres(t, b.pgURL)
	room := testenv.UniqueName("pg")
	args := []string{"--database-url", pgURL, "--redis-url", b.redisURL, "--redis-prefix", b.prefix, "--relay-interval", "200ms"}
	ld := startLoad(t, room, 50, args...)
	ctx, hc, l, nodes, subs := ld.ctx, ld.hc, ld.l, ld.nodes, ld.subs

	pgProxy.SetCut(true)
	cutAt := time.Now()
	for _, n := range nodes {
		eventually(t, 10*time.Second, n.name+" write answers 503 database_unavailable", func() error {
			r := putElement(ctx, hc, n.URL(), room, "probe", "", `{}`)
			return wantError(r.Status, r.Body, http.StatusServiceUnavailable, "database_unavailable")
		})
		eventually(t, 10*time.Second, n.name+" /readyz red", func() error {
			var body struct {
				Checks map[string]string `json:"checks"`
			}
			status, err := getJSON(ctx, hc, n.URL()+"/readyz", &body)
			if err != nil {
				return err
			}
			if status != http.StatusServiceUnavailable || body.Checks["database"] != "unavailable" {
				return fmt.Errorf("got %d %v, want 503 with database unavailable", status, body.Checks)
			}
			return nil
		})
		if _, err := ssetest.Dial(ctx, n.URL()+"/rooms/"+room+"/events", "0"); err == nil ||
			wantError(statusOf(err), bodyOf(err), http.StatusServiceUnavailable, "database_unavailable") != nil {
			t.Errorf("%s new feed while PostgreSQL is down: got %v, want 503 database_unavailable", n.name, err)
		}
		var snapErr struct {
			Error struct{ Code string } `json:"error"`
		}
		if status, err := getJSON(ctx, hc, n.URL()+"/rooms/"+room+"/elements", &snapErr); err != nil ||
			status != http.StatusServiceUnavailable || snapErr.Error.Code != "database_unavailable" {
			t.Errorf("%s snapshot while PostgreSQL is down: got %d %+v (%v), want 503 database_unavailable", n.name, status, snapErr, err)
		}
	}
	t.Logf("writes and /readyz failing %v after the cut", time.Since(cutAt).Round(time.Millisecond))
	acksAtCut, failedAtCut, _ := l.snapshot()
	time.Sleep(1500 * time.Millisecond)
	for _, s := range subs {
		if _, _, lastPing := s.stats(); time.Since(lastPing) > 1500*time.Millisecond {
			t.Errorf("%s got no ping for %v while PostgreSQL was down", s.name, time.Since(lastPing))
		}
	}
	acksDown, failedDown, statuses := l.snapshot()
	if len(acksDown) > len(acksAtCut) {
		t.Errorf("%d writes acknowledged while PostgreSQL was cut off", len(acksDown)-len(acksAtCut))
	}
	if failedDown == failedAtCut {
		t.Errorf("no write failed while PostgreSQL was cut off")
	}
	for k := range statuses {
		if k != "503" {
			t.Errorf("writes failed with %s (%v), want only 503", k, statuses)
		}
	}

	pgProxy.SetCut(false)
	upAt := time.Now()
	waitAcks(t, l, len(acksDown)+50, 20*time.Second)
	for _, n := range nodes {
		eventually(t, 10*time.Second, n.name+" /readyz green again", func() error {
			status, err := getJSON(ctx, hc, n.URL()+"/readyz", nil)
			if err != nil || status != http.StatusOK {
				return fmt.Errorf("got %d, %v", status, err)
			}
			return nil
		})
	}
	t.Logf("recovered %v after PostgreSQL returned", time.Since(upAt).Round(time.Millisecond))
	ld.stop()

	rep := checkFeed(t, b.pgURL, room, l, subs, 30*time.Second)
	_, _, statuses = l.snapshot()
	t.Logf("acknowledged %d, refused %d %v, committed %d, events checked %d (%d subscribers)",
		rep.Acked, rep.Failed, statuses, rep.Committed, rep.Checked, len(subs))
	checkSnapshotMatchesFeed(t, t.Context(), hc, nodes[0].URL(), room, subs[0])
}

// TestPostgresHangs stalls a node's PostgreSQL connections (a proxy that
// accepts connections and forwards nothing, as a database that hangs):
// with --db-timeout 1s, writes, snapshots and /readyz must answer 503
// database_unavailable instead of hanging until the client gives up, open
// streams must keep heartbeating; when the database answers again the node
// must recover by itself, and the feed must hold every acknowledged write
// once, in order, matching the snapshot.
func TestPostgresHangs(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test")
	}
	b := newBackend(t)
	pgURL, pgProxy := proxiedPostgres(t, b.pgURL)
	room := testenv.UniqueName("hang")
	n := startNode(t, "A", "--database-url", pgURL, "--redis-url", b.redisURL, "--redis-prefix", b.prefix,
		"--relay-interval", "200ms", "--db-timeout", "1s")
	subs := []*subscriber{startSubscriber(t, "sub1@A", room, func(int) *node { return n })}
	hc := newClient(t, 10*time.Second) // a hang shows as the client's timeout
	l := newLedger()
	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { writer(ctx, hc, l, "w1", room, func(int) *node { return n }, 5*time.Millisecond) })
	waitAcks(t, l, 50, 10*time.Second)

	pgProxy.SetStall(true)
	stalledAt := time.Now()
	eventually(t, 10*time.Second, "write answers 503 database_unavailable", func() error {
		r := putElement(ctx, hc, n.URL(), room, "probe", "", `{}`)
		if r.Err != nil {
			return r.Err
		}
		return wantError(r.Status, r.Body, http.StatusServiceUnavailable, "database_unavailable")
	})
	var snapErr struct {
		Error struct{ Code string } `json:"error"`
	}
	if status, err := getJSON(ctx, hc, n.URL()+"/rooms/"+room+"/elements", &snapErr); err != nil ||
		status != http.StatusServiceUnavailable || snapErr.Error.Code != "database_unavailable" {
		t.Errorf("snapshot while PostgreSQL hangs: got %d %+v (%v), want 503 database_unavailable", status, snapErr, err)
	}
	eventually(t, 10*time.Second, "/readyz red", func() error {
		status, err := getJSON(ctx, hc, n.URL()+"/readyz", nil)
		if err != nil {
			return err
		}
		if status != http.StatusServiceUnavailable {
			return fmt.Errorf("got %d, want 503", status)
		}
		return nil
	})
	t.Logf("writes, snapshots and /readyz failing %v after the stall", time.Since(stalledAt).Round(time.Millisecond))
	time.Sleep(1500 * time.Millisecond)
	for _, s := range subs {
		if _, _, lastPing := s.stats(); time.Since(lastPing) > 1500*time.Millisecond {
			t.Errorf("%s got no ping for %v while PostgreSQL hung", s.name, time.Since(lastPing))
		}
	}
	acksStalled, _, statuses := l.snapshot()
	for k := range statuses {
		if k != "503" {
			t.Errorf("writes failed with %s (%v), want only 503", k, statuses)
		}
	}

	pgProxy.SetStall(false)
	waitAcks(t, l, len(acksStalled)+50, 20*time.Second)
	eventually(t, 10*time.Second, "/readyz green again", func() error {
		status, err := getJSON(ctx, hc, n.URL()+"/readyz", nil)
		if err != nil || status != http.StatusOK {
			return fmt.Errorf("got %d, %v", status, err)
		}
		return nil
	})
	stop()
	wg.Wait()

	rep := checkFeed(t, b.pgURL, room, l, subs, 30*time.Second)
	_, _, statuses = l.snapshot()
	t.Logf("acknowledged %d, refused %d %v, committed %d, events checked %d",
		rep.Acked, rep.Failed, statuses, rep.Committed, rep.Checked)
	checkSnapshotMatchesFeed(t, t.Context(), hc, n.URL(), room, subs[0])
}

// wantError checks an error answer's status and code.
func wantError(status int, body string, wantStatus int, wantCode string) error {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || status != wantStatus || e.Error.Code != wantCode {
		return fmt.Errorf("got %d %s, want %d %s", status, body, wantStatus, wantCode)
	}
	return nil
}

// checkSnapshotMatchesFeed folds the events s received into element
// versions and compares them with the room's snapshot at the same cursor.
func checkSnapshotMatchesFeed(tb testing.TB, ctx context.Context, hc *http.Client, base, room string, s *subscriber) {
	tb.Helper()
	var snap struct {
		Cursor   string `json:"cursor"`
		Elements []struct {
			ID      string `json:"id"`
			Version int64  `json:"version"`
		} `json:"elements"`
	}
	if status, err := getJSON(ctx, hc, base+"/rooms/"+room+"/elements", &snap); err != nil || status != http.StatusOK {
		tb.Fatalf("snapshot: got %d, %v", status, err)
	}
	s.mu.Lock()
	evs := append([]feedEvent(nil), s.events...)
	s.mu.Unlock()
	folded := make(map[string]int64)
	for _, e := range evs {
		var p struct {
			Element struct {
				ID      string `json:"id"`
				Version int64  `json:"version"`
			} `json:"element"`
		}
		if err := json.Unmarshal([]byte(e.Data), &p); err != nil {
			tb.Fatalf("event %d: %v", e.Seq, err)
		}
		switch e.Type {
		case "element.deleted":
			delete(folded, p.Element.ID)
		case "element.created", "element.updated":
			folded[p.Element.ID] = p.Element.Version
		}
	}
	if got := fmt.Sprint(int64(len(evs))); got != snap.Cursor {
		tb.Fatalf("snapshot cursor %s, but the subscriber holds %s events", snap.Cursor, got)
	}
	if len(snap.Elements) != len(folded) {
		tb.Errorf("snapshot has %d elements, the feed folds into %d", len(snap.Elements), len(folded))
	}
	for _, el := range snap.Elements {
		if folded[el.ID] != el.Version {
			tb.Errorf("element %s: snapshot version %d, feed version %d", el.ID, el.Version, folded[el.ID])
		}
	}
}

func statusOf(err error) int {
	var se *ssetest.StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

func bodyOf(err error) string {
	var se *ssetest.StatusError
	if errors.As(err, &se) {
		return se.Body
	}
	return ""
}
