package api_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/feed/redis"
	"github.com/roomfeed/roomfeed/internal/testenv"
	"github.com/roomfeed/roomfeed/repo"
	"github.com/roomfeed/roomfeed/sse"
)

// The fuzzed requests' tokens: the input names them by placeholder, in its
// target or its headers.
var (
	// fuzzGrants are $TOKEN's: it may write only w1 and team-* rooms.
	fuzzGrants = api.Grants{Read: []string{"w1", "w2", "team-*"}, Write: []string{"w1", "team-*"}}
	// $READER may read every room and write none; $FORGED claims every
	// room but is signed with another secret.
	fuzzForgedSecret = []byte("not-the-server-secret-0123456789abcdef")
)

// fuzzServer is the real router over one backend, with what a fuzzed
// request is checked against.
type fuzzServer struct {
	name   string
	url    string
	store  *repo.Store
	client *http.Client
	errors *testenv.SyncBuffer // the http.Server's and the API's error log
}

func newFuzzServer(tb testing.TB, name string, store *repo.Store, log eventLog, hub *sse.Hub) *fuzzServer {
	tb.Helper()
	v, err := api.NewSecretVerifier([]byte(testSecret))
	if err != nil {
		tb.Fatal(err)
	}
	errs := &testenv.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(errs, &slog.HandlerOptions{Level: slog.LevelError}))
	feeds := sse.New(hub, log, sse.Config{}, nil, logger)
	srv := api.New(api.Config{Auth: v, CORSOrigins: []string{allowedOrigin},
		Limits: api.Limits{WriteRate: -1, BodyTimeout: 2 * time.Second}}, store, log, feeds, logger)
	ts := httptest.NewUnstartedServer(srv)
	ts.Config.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelError)
	ts.Config.ReadHeaderTimeout = 2 * time.Second
	ts.Start()
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tr.CloseIdleConnections()
		feeds.Close(ctx)
		ts.Close()
		srv.WaitPublishes(ctx)
	})
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &fuzzServer{name: name, url: ts.URL, store: store, client: client, errors: errs}
}

// fuzzServers are the SQLite and the PostgreSQL + Redis servers (an
// isolated schema and key prefix).
func fuzzServers(tb testing.TB) []*fuzzServer {
	tb.Helper()
	hub := sse.NewHub(1024)
	store := openStore(tb, "sqlite://"+filepath.Join(tb.TempDir(), "rf.db")+"?_pragma=synchronous(OFF)")
	lite := newFuzzServer(tb, "sqlite", store, feed.NewMemLog(hub, store), hub)

	hub = sse.NewHub(1024)
	store = openStore(tb, testenv.PostgresURL(tb))
	client, prefix := testenv.Redis(tb)
	rl := redis.New(client, hub, store, redis.Options{Prefix: prefix, MaxLen: 10000, Block: 200 * time.Millisecond})
	runLoop(tb, rl.Run)
	return []*fuzzServer{lite, newFuzzServer(tb, "postgres+redis", store, rl, hub)}
}

// fuzzTokens replaces the placeholders with tokens.
func fuzzTokens(tb testing.TB) *strings.Replacer {
	tb.Helper()
	claims := func(g api.Grants) api.Claims {
		c := grant("fuzz", g.Read, g.Write)
		c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(24 * time.Hour))
		return c
	}
	all := api.Grants{Read: []string{"*"}, Write: []string{"*"}}
	return strings.NewReplacer(
		"$TOKEN", hs256(tb, claims(fuzzGrants)),
		"$READER", hs256(tb, claims(api.Grants{Read: []string{"*"}})),
		"$FORGED", sign(tb, jwt.SigningMethodHS256, fuzzForgedSecret, claims(all)),
	)
}

// FuzzRequest sends whole HTTP requests (method, request target, header
// lines, body) to the real router on SQLite and on PostgreSQL + Redis, with
// tokens named by placeholders ($TOKEN may write only w1 and team-* rooms,
// $READER reads everything, $FORGED claims everything with a bad
// signature). Whatever the request: no 5xx, no panic, no write to a room
// outside $TOKEN's write grant. Seeded from the hostile catalogue and the
// authorization cases.
func FuzzRequest(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.method, s.target, s.headers, []byte(s.body))
	}
	servers := fuzzServers(f)
	tokens := fuzzTokens(f)
	f.Fuzz(func(t *testing.T, method, target, headers string, body []byte) {
		for _, s := range servers {
			s.check(t, tokens, method, target, headers, body)
		}
	})
}

// check sends one fuzzed request and checks the answer and the store.
func (s *fuzzServer) check(t *testing.T, tokens *strings.Replacer, method, target, headers string, body []byte) {
	req, ok := fuzzRequest(s.url, method, tokens.Replace(target), tokens.Replace(headers), body)
	if !ok {
		return
	}
	since := time.Now().Add(-time.Second) // RoomHeads' margin
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s: %s %q: no answer: %v", s.name, method, target, err)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<20))
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		t.Fatalf("%s: %s %q with headers %q: got status %d", s.name, method, target, headers, resp.StatusCode)
	}
	if out := s.errors.String(); strings.Contains(out, "panic") {
		t.Fatalf("%s: %s %q: the server logged a panic:\n%s", s.name, method, target, out)
	}
	heads, err := s.store.RoomHeads(t.Context(), since)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range heads {
		if !slices.ContainsFunc(fuzzGrants.Write, func(p string) bool { return api.MatchRoom(p, h.Room) }) {
			t.Fatalf("%s: %s %q with headers %q: room %s changed (head %d), outside the token's write grant",
				s.name, method, target, headers, h.Room, h.Seq)
		}
	}
}

// fuzzRequest builds the request, or reports false for an input no HTTP
// client would send (a bad method, target or header line).
func fuzzRequest(base, method, target, headers string, body []byte) (*http.Request, bool) {
	if !strings.HasPrefix(target, "/") || method == http.MethodConnect || !validToken(method) {
		return nil, false
	}
	req, err := http.NewRequest(method, base+target, bytes.NewReader(body)) // the client's Timeout bounds it
	if err != nil || req.URL.Host != strings.TrimPrefix(base, "http://") {
		return nil, false
	}
	for _, line := range strings.Split(headers, "\n") {
		name, value, found := strings.Cut(line, ":")
		value = strings.TrimSpace(value)
		if !found || !validToken(name) || !validValue(value) {
			continue
		}
		switch http.CanonicalHeaderKey(name) {
		case "Host":
			req.Host = value
		case "Connection", "Content-Length", "Transfer-Encoding", "Te", "Trailer", "Upgrade", "Keep-Alive", "Proxy-Connection":
		default:
			req.Header.Add(name, value)
		}
	}
	if req.Host == "" || !validValue(req.Host) || strings.ContainsAny(req.Host, " /?#@") {
		return nil, false
	}
	return req, true
}

// validToken reports whether s is an HTTP token (a method or header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// validValue reports whether s can be sent as a header value.
func validValue(s string) bool {
	for _, c := range []byte(s) {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// fuzzSeed is one seed input of FuzzRequest.
type fuzzSeed struct{ method, target, headers, body string }

// fuzzSeeds are the hostile catalogue's requests (those a client sends in
// one go, with $TOKEN) and the authorization routes on rooms inside and
// outside $TOKEN's grants, with each token and each place a token goes.
func fuzzSeeds() []fuzzSeed {
	var seeds []fuzzSeed
	for _, tc := range hostileCases() {
		if tc.send != nil || len(tc.body)+len(fmt.Sprint(tc.headers)) > 64<<10 {
			continue
		}
		var hs []string
		if !tc.noAuth {
			hs = append(hs, "Authorization: Bearer $TOKEN")
		}
		if !tc.noCT && tc.body != "" {
			hs = append(hs, "Content-Type: application/json")
		}
		for _, kv := range tc.headers {
			hs = append(hs, kv[0]+": "+kv[1])
		}
		seeds = append(seeds, fuzzSeed{tc.method, tc.target, strings.Join(hs, "\n"), tc.body})
	}
	auth := []string{
		"Authorization: Bearer $TOKEN", "Authorization: Bearer $READER", "Authorization: Bearer $FORGED",
		"Cookie: " + api.CookieName + "=$TOKEN\nOrigin: " + allowedOrigin, "Cookie: " + api.CookieName + "=$TOKEN",
	}
	for _, room := range []string{"w1", "w2", "team-a", "team", "x"} {
		for _, rt := range authRoutes {
			for _, a := range auth {
				hs := append([]string{a, "Content-Type: application/json"}, pairs(rt.headers)...)
				seeds = append(seeds, fuzzSeed{rt.method, "/rooms/" + room + rt.path, strings.Join(hs, "\n"), strings.Replace(rt.body, `"reset"`, `"chat"`, 1)})
			}
		}
		seeds = append(seeds, fuzzSeed{"PUT", "/rooms/" + room + "/elements/c2?access_token=$TOKEN", "Content-Type: application/json", `{"kind":"item","data":{}}`})
	}
	return append(seeds,
		fuzzSeed{"GET", "/events?room=w1&room=x&access_token=$TOKEN", "", ""},
		fuzzSeed{"PATCH", "/rooms/w1/elements/c1", "Authorization: Bearer $TOKEN\nContent-Type: application/merge-patch+json", `{"a":null}`},
		fuzzSeed{"POST", "/rooms/team-x/messages", "Authorization: Bearer $TOKEN\nContent-Type: application/json", `{"event":"chat","data":{}}`},
	)
}

// pairs turns a name, value, name, value... list into header lines.
func pairs(kv []string) []string {
	var out []string
	for i := 0; i+1 < len(kv); i += 2 {
		out = append(out, kv[i]+": "+kv[i+1])
	}
	return out
}
