package api_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/internal/ssetest"
)

func TestWriteRateLimit(t *testing.T) {
	// A token every 20 s: the bucket cannot refill while the test writes,
	// however slow a loaded machine answers.
	ts, _ := newAuthServer(t, backends[0], api.Config{Limits: api.Limits{WriteRate: 0.05, WriteBurst: 3}})
	alice := hs256(t, grant("alice", []string{"w1"}, []string{"w1"}))
	bob := hs256(t, grant("bob", []string{"w1"}, []string{"w1"}))
	msg := `{"event":"chat","data":1}`
	for range 3 {
		mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/w1/messages", msg, bearer(alice)...), http.StatusCreated)
	}
	r := do(t, http.MethodPost, ts.URL+"/rooms/w1/messages", msg, bearer(alice)...)
	mustStatus(t, r, http.StatusTooManyRequests)
	if code := r.errorCode(t); code != "rate_limited" {
		t.Errorf("got code %q, want rate_limited", code)
	}
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 2 || ra > 20 {
		t.Errorf("got Retry-After %q, want the seconds until the next token (at most 20)", r.Header.Get("Retry-After"))
	}
	// Reads are not rate limited; another token has its own bucket.
	mustStatus(t, do(t, http.MethodGet, ts.URL+"/rooms/w1/elements", "", bearer(alice)...), http.StatusOK)
	mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/w1/messages", msg, bearer(bob)...), http.StatusCreated)
	if head, _ := ts.Store.Head(t.Context(), "w1"); head != 4 {
		t.Errorf("got head %d, want 4 (the refused write was recorded)", head)
	}
}

// dialStatus opens a feed and returns it, or the status it was refused with.
func dialStatus(t *testing.T, url string) (*ssetest.Stream, int) {
	t.Helper()
	st, err := ssetest.Dial(t.Context(), url, "")
	var se *ssetest.StatusError
	if errors.As(err, &se) {
		return nil, se.Status
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st, http.StatusOK
}

// eventually retries f until it holds or 5 s pass.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStreamLimits(t *testing.T) {
	ts, _ := newAuthServer(t, backends[0], api.Config{Limits: api.Limits{StreamsPerToken: 2, StreamsPerIP: 3, MaxStreams: 100}})
	feedURL := func(tok string) string { return ts.URL + "/rooms/w1/events?access_token=" + tok }
	a := hs256(t, grant("a", []string{"w1"}, nil))
	b := hs256(t, grant("b", []string{"w1"}, nil))
	c := hs256(t, grant("c", []string{"w1"}, nil))

	a1, _ := dialStatus(t, feedURL(a))
	dialStatus(t, feedURL(a))
	if _, status := dialStatus(t, feedURL(a)); status != http.StatusTooManyRequests {
		t.Fatalf("third feed of one token: got %d, want 429", status)
	}
	dialStatus(t, feedURL(b))
	if _, status := dialStatus(t, feedURL(c)); status != http.StatusTooManyRequests {
		t.Fatalf("fourth feed of one address: got %d, want 429", status)
	}
	// X-Forwarded-For from an untrusted peer changes nothing.
	if status := send(t, http.MethodGet, feedURL(c), "", "X-Forwarded-For", "203.0.113.9").Status; status != http.StatusTooManyRequests {
		t.Fatalf("forged X-Forwarded-For: got %d, want 429", status)
	}
	a1.Close()
	eventually(t, "a closed feed frees its place", func() bool {
		st, status := dialStatus(t, feedURL(c))
		if st != nil {
			st.Close()
		}
		return status == http.StatusOK
	})
}

func TestMaxStreamsPerNode(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{cfg: api.Config{Limits: api.Limits{MaxStreams: 2}}})
		dialStatus(t, ts.URL+"/rooms/w1/events")
		dialStatus(t, ts.URL+"/rooms/w2/events")
		r := send(t, http.MethodGet, ts.URL+"/rooms/w3/events", "")
		mustStatus(t, r, http.StatusServiceUnavailable)
		if code := r.errorCode(t); code != "node_full" {
			t.Errorf("got code %q, want node_full", code)
		}
		if r.Header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
	})
}

func TestElementsPerRoom(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		ts := newServer(t, be, serverOpts{cfg: api.Config{Limits: api.Limits{MaxElementsPerRoom: 3}}})
		el := func(id string) string { return ts.URL + "/rooms/w1/elements/" + id }
		body := `{"kind":"item","data":{}}`
		for _, id := range []string{"a", "b", "c"} {
			mustStatus(t, do(t, http.MethodPut, el(id), body), http.StatusCreated)
		}
		for _, r := range []response{
			do(t, http.MethodPut, el("d"), body),
			do(t, http.MethodPost, ts.URL+"/rooms/w1/elements", body),
		} {
			mustStatus(t, r, http.StatusConflict)
			if code := r.errorCode(t); code != "room_full" {
				t.Errorf("got code %q, want room_full", code)
			}
		}
		mustStatus(t, do(t, http.MethodPut, el("a"), `{"kind":"item","data":{"v":2}}`), http.StatusOK)
		mustStatus(t, do(t, http.MethodPut, ts.URL+"/rooms/w2/elements/d", body), http.StatusCreated)
		mustStatus(t, do(t, http.MethodDelete, el("b"), ""), http.StatusOK)
		mustStatus(t, do(t, http.MethodPut, el("d"), body), http.StatusCreated)
		snap, err := ts.Store.Snapshot(t.Context(), "w1")
		if err != nil || len(snap.Elements) != 3 {
			t.Errorf("got %d elements (%v), want 3", len(snap.Elements), err)
		}
	})
}

func TestMessageAndHeaderLimits(t *testing.T) {
	ts := newServer(t, backends[0], serverOpts{cfg: api.Config{Limits: api.Limits{MaxMessageBytes: 100, MaxHeaderBytes: 4096}}})
	msg := func(n int) string { return `{"event":"chat","data":"` + strings.Repeat("x", n-2) + `"}` }
	mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/w1/messages", msg(100)), http.StatusCreated)
	r := do(t, http.MethodPost, ts.URL+"/rooms/w1/messages", msg(101))
	mustStatus(t, r, http.StatusRequestEntityTooLarge)
	if code := r.errorCode(t); code != "data_too_large" {
		t.Errorf("got code %q, want data_too_large", code)
	}
	// Element data has its own, larger limit.
	mustStatus(t, do(t, http.MethodPut, ts.URL+"/rooms/w1/elements/c1", `{"kind":"item","data":{"s":"`+strings.Repeat("x", 1000)+`"}}`), http.StatusCreated)

	r = do(t, http.MethodGet, ts.URL+"/rooms/w1/elements", "", "X-Padding", strings.Repeat("p", 5000))
	mustStatus(t, r, http.StatusRequestHeaderFieldsTooLarge)
	if code := r.errorCode(t); code != "headers_too_large" {
		t.Errorf("got code %q, want headers_too_large", code)
	}
}

// TestOpenModeNoWriteRate: without tokens nothing is rate limited (the
// limit is per token), but feeds per address still are.
func TestOpenModeLimits(t *testing.T) {
	ts := newServer(t, backends[0], serverOpts{cfg: api.Config{Limits: api.Limits{WriteRate: 1, WriteBurst: 1, StreamsPerIP: 1}}})
	for range 5 {
		mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/w1/messages", `{"event":"chat","data":1}`), http.StatusCreated)
	}
	dialStatus(t, ts.URL+"/rooms/w1/events")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := ssetest.Dial(ctx, ts.URL+"/rooms/w2/events", ""); err == nil || !strings.Contains(err.Error(), "429") {
		t.Fatalf("second feed from one address: got %v, want 429", err)
	}
}

func TestStreamsFor(t *testing.T) {
	tests := []struct {
		nofile uint64
		want   int
	}{
		{1024, 922},
		{4096, 3687},
		{20000, 19000},
		{1 << 20, 1<<20 - 1000},
		{^uint64(0), 1 << 30}, // RLIM_INFINITY
	}
	for _, tt := range tests {
		if got := api.StreamsFor(tt.nofile); got != tt.want {
			t.Errorf("StreamsFor(%d) = %d, want %d", tt.nofile, got, tt.want)
		}
	}
}
