package api_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/internal/testenv"
)

// testKey is a signing key pair with the kid it is listed under.
type testKey struct {
	kid  string
	priv any // ed25519.PrivateKey or *rsa.PrivateKey
}

func newEdKey(t testing.TB, kid string) testKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid, priv}
}

func newRSAKey(t testing.TB, kid string, bits int) testKey {
	t.Helper()
	priv, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid, priv}
}

func (k testKey) public() any {
	switch p := k.priv.(type) {
	case ed25519.PrivateKey:
		return p.Public()
	case *rsa.PrivateKey:
		return &p.PublicKey
	}
	panic("unknown key")
}

// jwk is k's public key as a JSON Web Key.
func (k testKey) jwk() map[string]string {
	b64 := base64.RawURLEncoding.EncodeToString
	m := map[string]string{}
	switch p := k.public().(type) {
	case ed25519.PublicKey:
		m = map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(p)}
	case *rsa.PublicKey:
		m = map[string]string{"kty": "RSA", "n": b64(p.N.Bytes()), "e": b64(big.NewInt(int64(p.E)).Bytes())}
	}
	if k.kid != "" {
		m["kid"] = k.kid
	}
	return m
}

// pem is k's public key as a PEM block.
func (k testKey) pem(t testing.TB) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.public())
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// token signs claims with k, with k's kid in the header when withKid.
func (k testKey) token(t testing.TB, claims jwt.Claims, withKid bool) string {
	t.Helper()
	method := jwt.SigningMethod(jwt.SigningMethodEdDSA)
	if _, ok := k.priv.(*rsa.PrivateKey); ok {
		method = jwt.SigningMethodRS256
	}
	tok := jwt.NewWithClaims(method, claims)
	if withKid {
		tok.Header["kid"] = k.kid
	}
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// jwks is a JWK Set of the keys, plus any extra raw members.
func jwks(t testing.TB, keys ...testKey) string {
	t.Helper()
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.jwk())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func pems(t testing.TB, keys ...testKey) string {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k.pem(t))
	}
	return b.String()
}

// writeFile replaces path's contents the way an operator's tooling does:
// a temporary file renamed over it.
func writeFile(t testing.TB, path, contents string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(contents), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestKeyRotation rotates the keys of a running server through its key
// file, JWKS or PEM, with no restart: a token of the new key is refused
// until the file lists it, both keys are accepted during the overlap, and
// the old key's tokens are refused once it is removed.
func TestKeyRotation(t *testing.T) {
	for _, format := range []struct {
		name   string
		parse  func([]byte) ([]api.Key, error)
		encode func(testing.TB, ...testKey) string
	}{
		{"jwks", api.ParseJWKS, jwks},
		{"pem", api.ParsePEMKeys, pems},
	} {
		t.Run(format.name, func(t *testing.T) {
			oldKey, newKey := newEdKey(t, "2026-01"), newRSAKey(t, "2026-02", 2048)
			path := filepath.Join(t.TempDir(), "keys")
			writeFile(t, path, format.encode(t, oldKey))
			kf, err := api.OpenKeyFile(path, format.parse, nil)
			if err != nil {
				t.Fatal(err)
			}
			ts, _ := newAuthServer(t, backends[0], api.Config{Auth: kf.Verifier()})
			runLoop(t, func(ctx context.Context) error { return kf.Run(ctx, 20*time.Millisecond) })
			claims := grant("alice", []string{"w1"}, nil)
			tokens := map[string]string{
				"old": oldKey.token(t, claims, true), "old without kid": oldKey.token(t, claims, false),
				"new": newKey.token(t, claims, true), "new without kid": newKey.token(t, claims, false),
			}
			expect := func(step string, want map[string]int) {
				t.Helper()
				for name, status := range want {
					eventually(t, fmt.Sprintf("%s: %s answers %d", step, name, status), func() bool {
						return send(t, "GET", ts.URL+"/rooms/w1/elements", "", bearer(tokens[name])...).Status == status
					})
				}
			}
			expect("only the old key", map[string]int{"old": 200, "old without kid": 200, "new": 401, "new without kid": 401})
			writeFile(t, path, format.encode(t, oldKey, newKey))
			expect("overlap", map[string]int{"new": 200, "new without kid": 200, "old": 200, "old without kid": 200})
			writeFile(t, path, format.encode(t, newKey))
			expect("only the new key", map[string]int{"old": 401, "old without kid": 401, "new": 200, "new without kid": 200})
		})
	}
}

// TestKeyFileBadContents: a key file that becomes invalid or unreadable
// keeps the last good keys, and each failure streak is logged once.
func TestKeyFileBadContents(t *testing.T) {
	good, next := newEdKey(t, "good"), newEdKey(t, "next")
	weak := newRSAKey(t, "weak", 1024)
	dir := t.TempDir()
	path := filepath.Join(dir, "jwks.json")
	writeFile(t, path, jwks(t, good))
	logs := &testenv.SyncBuffer{}
	kf, err := api.OpenKeyFile(path, api.ParseJWKS, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	v := kf.Verifier()
	claims := grant("alice", []string{"w1"}, nil)
	accepts := func(k testKey) bool {
		_, err := v.Verify(k.token(t, claims, true))
		return err == nil
	}
	privateJWK := strings.Replace(jwks(t, good), `"kty"`, `"d":"c2VjcmV0","kty"`, 1)
	bad := []struct{ name, contents string }{
		{"not JSON", `{"keys":[`},
		{"no keys", `{"keys":[]}`},
		{"weak RSA key", jwks(t, weak)},
		{"private key", privateJWK},
		{"same kid twice", jwks(t, next, next)},
		{"symmetric key only", `{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0","kid":"h"}]}`},
		{"PEM instead of JWKS", pems(t, next)},
		{"empty", ""},
	}
	for _, tc := range bad {
		writeFile(t, path, tc.contents)
		kf.Reload(t.Context())
		kf.Reload(t.Context())
		if !accepts(good) || accepts(next) {
			t.Errorf("%s: the last good keys are not the ones in use", tc.name)
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	kf.Reload(t.Context())
	if err := os.Mkdir(path, 0o700); err != nil { // unreadable as a file, even for root
		t.Fatal(err)
	}
	kf.Reload(t.Context())
	if !accepts(good) {
		t.Error("an unreadable file dropped the keys")
	}
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("got %d error lines for one failure streak, want 1:\n%s", n, logs)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, jwks(t, next))
	kf.Reload(t.Context())
	if accepts(good) || !accepts(next) {
		t.Error("a good file after bad ones was not applied")
	}
	writeFile(t, path, "garbage")
	kf.Reload(t.Context())
	out := logs.String()
	if strings.Count(out, "recovered") != 1 || strings.Count(out, "level=ERROR") != 2 {
		t.Errorf("want one recovery and a new error line for the second streak:\n%s", out)
	}
	for _, secret := range []string{"c2VjcmV0"} {
		if strings.Contains(out, secret) {
			t.Errorf("the log quotes key material:\n%s", out)
		}
	}
}

// TestJWKSKidsAndAlgorithms: a token's kid selects its key, a token
// without one is tried against every key of its algorithm, and no token
// passes with another algorithm than its key's.
func TestJWKSKidsAndAlgorithms(t *testing.T) {
	a, b, r := newEdKey(t, "a"), newEdKey(t, "b"), newRSAKey(t, "r", 2048)
	doc := jwks(t, a, b, r)
	keys, err := api.ParseJWKS([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	v, err := api.NewVerifier(keys)
	if err != nil {
		t.Fatal(err)
	}
	claims := grant("alice", []string{"w1"}, nil)
	withKid := func(method jwt.SigningMethod, key any, kid any) string {
		tok := jwt.NewWithClaims(method, claims)
		if kid != nil {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	rsaPriv := r.priv.(*rsa.PrivateKey)
	x := a.jwk()["x"]
	tests := []struct {
		name string
		tok  string
		ok   bool
	}{
		{"kid a, key a", a.token(t, claims, true), true},
		{"kid b, key b", b.token(t, claims, true), true},
		{"kid r, RSA key r", r.token(t, claims, true), true},
		{"no kid, key a", a.token(t, claims, false), true},
		{"no kid, key b", b.token(t, claims, false), true},
		{"no kid, RSA key r", r.token(t, claims, false), true},
		{"kid b, signed by a", withKid(jwt.SigningMethodEdDSA, a.priv, "b"), false},
		{"unknown kid", withKid(jwt.SigningMethodEdDSA, a.priv, "zz"), false},
		{"kid of the RSA key on an EdDSA token", withKid(jwt.SigningMethodEdDSA, a.priv, "r"), false},
		{"kid of an Ed25519 key on an RS256 token", withKid(jwt.SigningMethodRS256, rsaPriv, "a"), false},
		{"kid not a string", withKid(jwt.SigningMethodEdDSA, a.priv, 7), false},
		{"unlisted key", newEdKey(t, "a").token(t, claims, true), false},
		{"alg none", withKid(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "a"), false},
		{"HS256 keyed with the JWKS", withKid(jwt.SigningMethodHS256, []byte(doc), "a"), false},
		{"HS256 keyed with x", withKid(jwt.SigningMethodHS256, []byte(x), "a"), false},
		{"HS256 keyed with the PEM", withKid(jwt.SigningMethodHS256, []byte(r.pem(t)), "r"), false},
		{"RS512 with key r", withKid(jwt.SigningMethodRS512, rsaPriv, "r"), false},
		{"PS256 with key r", withKid(jwt.SigningMethodPS256, rsaPriv, "r"), false},
	}
	for _, tt := range tests {
		if _, err := v.Verify(tt.tok); (err == nil) != tt.ok {
			t.Errorf("%s: got error %v, want accepted %v", tt.name, err, tt.ok)
		}
	}
	if got := strings.Join(v.Algorithms(), ","); got != "EdDSA,RS256" {
		t.Errorf("got algorithms %s, want EdDSA,RS256", got)
	}
}

func TestParseJWKS(t *testing.T) {
	ed, weak := newEdKey(t, "ed"), newRSAKey(t, "weak", 1024)
	good := ed.jwk()
	member := func(extra string) string { // good with extra members
		b, _ := json.Marshal(good)
		return `{"keys":[` + strings.TrimSuffix(string(b), "}") + `,` + extra + `}]}`
	}
	goodJSON, _ := json.Marshal(good)
	withGood := func(other string) string { return `{"keys":[` + other + `,` + string(goodJSON) + `]}` }
	tests := []struct {
		name string
		doc  string
		keys int // 0: an error
	}{
		{"one Ed25519 key", jwks(t, ed), 1},
		{"alg EdDSA", member(`"alg":"EdDSA","use":"sig"`), 1},
		{"EC key skipped", withGood(`{"kty":"EC","crv":"P-256","x":"AA","y":"AA","kid":"ec"}`), 1},
		{"encryption key skipped", withGood(`{"kty":"RSA","use":"enc","n":"AQAB","e":"AQAB","kid":"enc"}`), 1},
		{"PS256 key skipped", withGood(`{"kty":"RSA","alg":"PS256","n":"AQAB","e":"AQAB","kid":"ps"}`), 1},
		{"symmetric key skipped", withGood(`{"kty":"oct","k":"c2VjcmV0","kid":"hs"}`), 1},
		{"OKP key with alg RS256 skipped", withGood(`{"kty":"OKP","crv":"Ed25519","alg":"RS256","x":"` + good["x"] + `","kid":"x"}`), 1},
		{"only skipped keys", `{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`, 0},
		{"X25519 curve", `{"keys":[{"kty":"OKP","crv":"X25519","x":"` + good["x"] + `"}]}`, 0},
		{"short x", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"AAAA"}]}`, 0},
		{"padded x", `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + good["x"] + `="}]}`, 0},
		{"weak RSA", jwks(t, weak), 0},
		{"even RSA exponent", `{"keys":[{"kty":"RSA","n":"` + weak.jwk()["n"] + `","e":"Ag"}]}`, 0},
		{"private member", member(`"d":"AAAA"`), 0},
		{"repeated kid", `{"keys":[` + string(goodJSON) + `,` + string(goodJSON) + `]}`, 0},
		{"not an object", `[]`, 0},
		{"no keys member", `{}`, 0},
	}
	for _, tt := range tests {
		keys, err := api.ParseJWKS([]byte(tt.doc))
		if tt.keys == 0 {
			if err == nil {
				t.Errorf("%s: got %d keys, want an error", tt.name, len(keys))
			}
			continue
		}
		if err != nil || len(keys) != tt.keys {
			t.Errorf("%s: got %d keys, %v; want %d", tt.name, len(keys), err, tt.keys)
		}
	}
}

func TestParsePEMKeys(t *testing.T) {
	ed, r := newEdKey(t, ""), newRSAKey(t, "", 2048)
	keys, err := api.ParsePEMKeys([]byte(pems(t, ed, r)))
	if err != nil || len(keys) != 2 || keys[0].Alg != "EdDSA" || keys[1].Alg != "RS256" {
		t.Fatalf("got %+v, %v; want an EdDSA and an RS256 key", keys, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(ed.priv)
	if err != nil {
		t.Fatal(err)
	}
	private := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	for name, doc := range map[string]string{
		"no PEM":              "not pem",
		"private key":         pems(t, ed) + private,
		"garbage after a key": pems(t, ed) + "garbage",
		"weak RSA":            pems(t, ed, newRSAKey(t, "", 1024)),
	} {
		if _, err := api.ParsePEMKeys([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
