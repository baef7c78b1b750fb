package api_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/internal/ssetest"
	"github.com/roomfeed/roomfeed/internal/testenv"
	"github.com/roomfeed/roomfeed/repo"
	"github.com/roomfeed/roomfeed/sse"
)

const (
	testSecret    = "roomfeed-test-secret-0123456789abcdef"
	allowedOrigin = "https://app.example"
)

// newAuthServer is newServer with tokens checked (HS256, testSecret) and
// the request log kept in logs.
func newAuthServer(t *testing.T, be backend, cfg api.Config) (*testServer, *testenv.SyncBuffer) {
	t.Helper()
	if cfg.Auth == nil {
		v, err := api.NewSecretVerifier([]byte(testSecret))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Auth = v
	}
	if cfg.CORSOrigins == nil {
		cfg.CORSOrigins = []string{allowedOrigin}
	}
	hub := sse.NewHub(1024)
	store, log := be.open(t, hub, 100000)
	logs := &testenv.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	feeds := sse.New(hub, log, sse.Config{}, nil, logger)
	srv := api.New(cfg, store, log, feeds, logger)
	ts := start(t, be, srv, feeds, nil)
	return &testServer{URL: ts.URL, Store: store, Hub: hub, Feeds: feeds, Srv: srv, Log: log}, logs
}

// grant builds claims for sub valid for an hour.
func grant(sub string, read, write []string) api.Claims {
	now := time.Now()
	return api.Claims{
		Roomfeed: api.Grants{Read: read, Write: write},
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   sub,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)),
		},
	}
}

func sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return tok
}

// hs256 signs claims with the test secret.
func hs256(t testing.TB, claims jwt.Claims) string {
	t.Helper()
	return sign(t, jwt.SigningMethodHS256, []byte(testSecret), claims)
}

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// send makes one request and reads the answer; a 200 event stream is closed
// after its headers, so it never waits for the feed.
func send(t *testing.T, method, url, body string, headers ...string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == "Cookie" || headers[i] == "Authorization" {
			req.Header.Add(headers[i], headers[i+1])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return response{resp.StatusCode, resp.Header, nil}
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// authRoute is one room route, written so that an authorized call passes
// the auth checks and then stops at a deterministic answer that changes
// nothing (a failed precondition, a reserved message name).
type authRoute struct {
	name    string
	method  string
	path    string // under /rooms/w1
	body    string
	headers []string
	write   bool
	ok      int // the status once authorized
}

var authRoutes = []authRoute{
	{"snapshot", "GET", "/elements", "", nil, false, 200},
	{"get element", "GET", "/elements/c1", "", nil, false, 200},
	{"events", "GET", "/events", "", nil, false, 200},
	{"put", "PUT", "/elements/c1", `{"kind":"character","data":{}}`, []string{"If-Match", `"99"`}, true, 412},
	{"patch", "PATCH", "/elements/c1", `{"a":1}`, []string{"Content-Type", "application/merge-patch+json", "If-Match", `"99"`}, true, 412},
	{"delete", "DELETE", "/elements/c1", "", []string{"If-Match", `"99"`}, true, 412},
	{"create", "POST", "/elements", `{"id":"c1","kind":"character","data":{}}`, nil, true, 412},
	{"message", "POST", "/messages", `{"event":"reset","data":1}`, nil, true, 400},
	{"signal", "POST", "/signals", `{"event":"reset","data":1}`, nil, true, 400},
}

func TestAuthCases(t *testing.T) {
	ts, logs := newAuthServer(t, backends[0], api.Config{})
	if _, err := ts.Store.Put(t.Context(), "w1", "c1", "character", json.RawMessage(`{"name":"A"}`), repo.Precondition{}, repo.Meta{}); err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	both := func(p ...string) api.Claims { return grant("alice", p, p) }
	valid := hs256(t, both("w1"))
	expired := both("w1")
	expired.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Minute))
	notYet := both("w1")
	notYet.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour))
	noExp := both("w1")
	noExp.ExpiresAt = nil
	noSub := both("w1")
	noSub.Subject = ""
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, both("w1"))
	// A forged HS256 token keyed with the text of a public key must fail too
	// (the classic algorithm confusion); here the server's key is a secret,
	// so sign with the wrong secret.
	forged := sign(t, jwt.SigningMethodHS256, []byte("not-the-secret-not-the-secret-!!"), both("w1"))
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + base64URL(`{"roomfeed":{"read":["*"],"write":["*"]},"sub":"mallory","exp":9999999999}`) + "." + parts[2]

	cases := []struct {
		name    string
		headers []string
		query   string // appended to the URL
		// the status of reads and of writes: 0 = the route's ok status;
		// -1 = ok on the events route, else 401
		read, write int
		code        string // error code when refused
	}{
		{"no token", nil, "", 401, 401, "unauthorized"},
		{"empty bearer", []string{"Authorization", "Bearer "}, "", 401, 401, "invalid_token"},
		{"basic scheme", []string{"Authorization", "Basic YWxpY2U6c2VjcmV0"}, "", 401, 401, "invalid_token"},
		{"garbage", bearer("not.a.jwt"), "", 401, 401, "invalid_token"},
		{"bad signature", bearer(forged), "", 401, 401, "invalid_token"},
		{"tampered payload", bearer(tampered), "", 401, 401, "invalid_token"},
		{"alg none", bearer(none), "", 401, 401, "invalid_token"},
		{"alg HS384 same secret", bearer(sign(t, jwt.SigningMethodHS384, []byte(testSecret), both("w1"))), "", 401, 401, "invalid_token"},
		{"alg HS512 same secret", bearer(sign(t, jwt.SigningMethodHS512, []byte(testSecret), both("w1"))), "", 401, 401, "invalid_token"},
		{"alg RS256", bearer(sign(t, jwt.SigningMethodRS256, rsaKey, both("w1"))), "", 401, 401, "invalid_token"},
		{"alg EdDSA", bearer(sign(t, jwt.SigningMethodEdDSA, edKey, both("w1"))), "", 401, 401, "invalid_token"},
		{"expired", bearer(hs256(t, expired)), "", 401, 401, "token_expired"},
		{"not yet valid", bearer(hs256(t, notYet)), "", 401, 401, "invalid_token"},
		{"no exp", bearer(hs256(t, noExp)), "", 401, 401, "invalid_token"},
		{"no sub", bearer(hs256(t, noSub)), "", 401, 401, "invalid_token"},
		{"token too long", bearer(strings.Repeat("a", 9000)), "", 401, 401, "invalid_token"},
		{"two Authorization headers", []string{"Authorization", "Bearer " + valid, "Authorization", "Bearer " + valid}, "", 0, 0, ""},
		{"valid", bearer(valid), "", 0, 0, ""},
		{"lower-case scheme", []string{"Authorization", "bearer " + valid}, "", 0, 0, ""},
		{"read only writing", bearer(hs256(t, grant("bob", []string{"w1"}, nil))), "", 0, 403, "forbidden"},
		{"write only reading", bearer(hs256(t, grant("bob", nil, []string{"w1"}))), "", 403, 0, "forbidden"},
		{"other room", bearer(hs256(t, both("w2"))), "", 403, 403, "forbidden"},
		{"no grants", bearer(hs256(t, both())), "", 403, 403, "forbidden"},
		{"pattern w*", bearer(hs256(t, both("w*"))), "", 0, 0, ""},
		{"pattern w1* covers w1", bearer(hs256(t, both("w1*"))), "", 0, 0, ""},
		{"pattern *", bearer(hs256(t, both("*"))), "", 0, 0, ""},
		{"pattern wx*", bearer(hs256(t, both("wx*"))), "", 403, 403, "forbidden"},
		{"pattern w1x*", bearer(hs256(t, both("w1x*"))), "", 403, 403, "forbidden"},
		{"prefix without star", bearer(hs256(t, both("w"))), "", 403, 403, "forbidden"},
		{"longer exact name", bearer(hs256(t, both("w10"))), "", 403, 403, "forbidden"},
		{"upper case name", bearer(hs256(t, both("W1"))), "", 403, 403, "forbidden"},
		{"star not at the end", bearer(hs256(t, both("*1"))), "", 403, 403, "forbidden"},
		{"two stars", bearer(hs256(t, both("w**"))), "", 403, 403, "forbidden"},
		{"cookie, no Origin", []string{"Cookie", api.CookieName + "=" + valid}, "", 0, 403, "bad_origin"},
		{"cookie, allowed Origin", []string{"Cookie", api.CookieName + "=" + valid, "Origin", allowedOrigin}, "", 0, 0, ""},
		{"cookie, foreign Origin", []string{"Cookie", api.CookieName + "=" + valid, "Origin", "https://evil.example"}, "", 0, 403, "bad_origin"},
		{"cookie, null Origin", []string{"Cookie", api.CookieName + "=" + valid, "Origin", "null"}, "", 0, 403, "bad_origin"},
		{"cookie, bad token", []string{"Cookie", api.CookieName + "=" + forged, "Origin", allowedOrigin}, "", 401, 401, "invalid_token"},
		{"header wins over cookie", []string{"Authorization", "Bearer " + forged, "Cookie", api.CookieName + "=" + valid}, "", 401, 401, "invalid_token"},
		{"query token", nil, "?access_token=" + valid, -1, 401, "invalid_token"},
		{"query token twice", nil, "?access_token=" + valid + "&access_token=" + valid, 401, 401, "invalid_token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, rt := range authRoutes {
				want := tc.read
				if rt.write {
					want = tc.write
				}
				code := tc.code
				switch {
				case tc.name == "two Authorization headers":
					want, code = 401, "invalid_token"
				case want == -1 && rt.path == "/events":
					want = 0 // ?access_token= is for EventSource only
				case want == -1:
					want, code = 401, "invalid_token"
				}
				if want == 0 {
					want, code = rt.ok, ""
				}
				headers := append(append([]string{}, rt.headers...), tc.headers...)
				r := send(t, rt.method, ts.URL+"/rooms/w1"+rt.path+tc.query, rt.body, headers...)
				if r.Status != want {
					t.Errorf("%s: got status %d, want %d (%s)", rt.name, r.Status, want, r.Body)
					continue
				}
				if code != "" {
					if got := r.errorCode(t); got != code {
						t.Errorf("%s: got code %q, want %q", rt.name, got, code)
					}
					if want == 401 && r.Header.Get("WWW-Authenticate") == "" {
						t.Errorf("%s: 401 without WWW-Authenticate", rt.name)
					}
				}
			}
			assertUnchanged(t, ts, "w1", 1)
		})
	}
	t.Run("no token is logged", func(t *testing.T) {
		out := logs.String()
		for _, tok := range []string{valid, forged, none, parts[2]} {
			if strings.Contains(out, tok) {
				t.Fatalf("the log holds a token:\n%s", out)
			}
		}
		if !strings.Contains(out, "status=401") || !strings.Contains(out, "status=403") {
			t.Errorf("the log lacks the refused requests:\n%s", out)
		}
	})
}

func base64URL(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestAuthDoesNotRevealRooms: a refusal reads the same whether the room
// exists or not.
func TestAuthDoesNotRevealRooms(t *testing.T) {
	ts, _ := newAuthServer(t, backends[0], api.Config{})
	if _, err := ts.Store.Put(t.Context(), "exists", "c1", "character", json.RawMessage(`{}`), repo.Precondition{}, repo.Meta{}); err != nil {
		t.Fatal(err)
	}
	other := hs256(t, grant("eve", []string{"elsewhere"}, []string{"elsewhere"}))
	for _, rt := range authRoutes {
		for _, h := range [][]string{nil, bearer(other)} {
			a := send(t, rt.method, ts.URL+"/rooms/exists"+rt.path, rt.body, append(append([]string{}, rt.headers...), h...)...)
			b := send(t, rt.method, ts.URL+"/rooms/nowhere"+rt.path, rt.body, append(append([]string{}, rt.headers...), h...)...)
			if a.Status != b.Status || !bytes.Equal(a.Body, b.Body) {
				t.Errorf("%s: existing room got %d %s, missing room got %d %s", rt.name, a.Status, a.Body, b.Status, b.Body)
			}
			if a.Status != 401 && a.Status != 403 {
				t.Errorf("%s: got %d, want 401 or 403", rt.name, a.Status)
			}
		}
	}
}

// TestAuthActor records the token's sub in the events it causes.
func TestAuthActor(t *testing.T) {
	ts, _ := newAuthServer(t, backends[0], api.Config{})
	tok := hs256(t, grant("alice", []string{"w1"}, []string{"w1"}))
	mustStatus(t, do(t, http.MethodPut, ts.URL+"/rooms/w1/elements/c1", `{"kind":"character","data":{}}`, bearer(tok)...), http.StatusCreated)
	mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/w1/messages", `{"event":"chat","data":"hi"}`, bearer(tok)...), http.StatusCreated)
	evs, err := ts.Store.EventsAfter(t.Context(), "w1", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 {
		t.Fatalf("got %d events, want 2", len(evs))
	}
	for _, ev := range evs {
		var p struct{ Actor string }
		if err := json.Unmarshal(ev.Data, &p); err != nil || p.Actor != "alice" {
			t.Errorf("event %d: got actor %q (%v), want alice: %s", ev.Seq, p.Actor, err, ev.Data)
		}
	}
}

// TestAuthExpiredEndsStream: a feed ends at its token's expiry with a final
// auth_expired event, after delivering what came before; pumped and
// served by its request's goroutine (TLS).
func TestAuthExpiredEndsStream(t *testing.T) {
	for _, be := range backends[:2] {
		t.Run(be.name, func(t *testing.T) {
			testAuthExpiredEndsStream(t, be)
		})
	}
}

func testAuthExpiredEndsStream(t *testing.T, be backend) {
	ts, _ := newAuthServer(t, be, api.Config{})
	writer := hs256(t, grant("w", nil, []string{"w1"}))
	short := grant("reader", []string{"w1"}, nil)
	short.ExpiresAt = jwt.NewNumericDate(time.Now().Add(1500 * time.Millisecond))
	start := time.Now()
	st := ssetest.Open(t, ts.URL+"/rooms/w1/events?access_token="+hs256(t, short), "0")
	mustStatus(t, do(t, http.MethodPost, ts.URL+"/rooms/w1/messages", `{"event":"chat","data":1}`, bearer(writer)...), http.StatusCreated)
	if ev := st.MustNext(t, 5*time.Second); ev.Type != "chat" || ev.ID != "1" {
		t.Fatalf("got %+v, want chat 1", ev)
	}
	ev := st.MustNext(t, 5*time.Second)
	if ev.Type != "auth_expired" || ev.ID != "" {
		t.Fatalf("got %+v, want auth_expired without an id", ev)
	}
	if !strings.Contains(ev.Data, "token_expired") {
		t.Errorf("got data %q, want a reason", ev.Data)
	}
	if !st.Ended(2 * time.Second) {
		t.Fatal("the stream went on after auth_expired")
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("the stream ended after %v, want at the token's expiry", d)
	}
}

// TestAuthPublicKey verifies EdDSA and RS256 tokens against PEM public keys
// and refuses the other algorithm and the HS256 confusion.
func TestAuthPublicKey(t *testing.T) {
	edPub, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pemOf := func(pub any) []byte {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	claims := grant("alice", []string{"w1"}, nil)
	tests := []struct {
		name   string
		pub    []byte
		alg    string
		good   string
		forged []string
	}{
		{"ed25519", pemOf(edPub), "EdDSA", sign(t, jwt.SigningMethodEdDSA, edKey, claims), []string{
			sign(t, jwt.SigningMethodRS256, rsaKey, claims),
			sign(t, jwt.SigningMethodHS256, pemOf(edPub), claims),
			sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims),
		}},
		{"rsa", pemOf(&rsaKey.PublicKey), "RS256", sign(t, jwt.SigningMethodRS256, rsaKey, claims), []string{
			sign(t, jwt.SigningMethodEdDSA, edKey, claims),
			sign(t, jwt.SigningMethodRS512, rsaKey, claims),
			sign(t, jwt.SigningMethodPS256, rsaKey, claims),
			sign(t, jwt.SigningMethodHS256, pemOf(&rsaKey.PublicKey), claims),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := api.NewPublicKeyVerifier(tt.pub)
			if err != nil {
				t.Fatal(err)
			}
			if got := v.Algorithms(); len(got) != 1 || got[0] != tt.alg {
				t.Errorf("got algorithms %v, want %s", got, tt.alg)
			}
			if c, err := v.Verify(tt.good); err != nil || c.Subject != "alice" {
				t.Fatalf("good token: got %v, %v", c, err)
			}
			for i, f := range tt.forged {
				if _, err := v.Verify(f); err == nil {
					t.Errorf("forged token %d accepted", i)
				}
			}
		})
	}
	if _, err := api.NewPublicKeyVerifier([]byte("not pem")); err == nil {
		t.Error("a file without PEM was accepted")
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	if _, err := api.NewPublicKeyVerifier(pemOf(&small.PublicKey)); err == nil {
		t.Error("a 1024-bit RSA key was accepted")
	}
}

func TestMatchRoom(t *testing.T) {
	tests := []struct {
		pattern, room string
		want          bool
	}{
		{"w1", "w1", true},
		{"w1", "w10", false},
		{"w1", "W1", false},
		{"w*", "w", true},
		{"w*", "w1", true},
		{"w*", "x1", false},
		{"team-*", "team-a", true},
		{"team-*", "team", false},
		{"*", "anything", true},
		{"", "w1", false},
		{"*1", "w1", false},
		{"w**", "w1", false},
		{"w*1", "w11", false},
	}
	for _, tt := range tests {
		if got := api.MatchRoom(tt.pattern, tt.room); got != tt.want {
			t.Errorf("MatchRoom(%q, %q): got %v, want %v", tt.pattern, tt.room, got, tt.want)
		}
	}
}
