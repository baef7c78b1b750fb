package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/roomfeed/roomfeed/api"
)

const testSecret = "0123456789abcdef0123456789abcdef"

func TestOpenModeRule(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
		auth    string
	}{
		{"loopback v4", []string{"--addr", "127.0.0.1:8080"}, nil, "", "open (loopback only)"},
		{"loopback v6", []string{"--addr", "[::1]:8080"}, nil, "", "open (loopback only)"},
		{"localhost", []string{"--addr", "localhost:8080"}, nil, "", "open (loopback only)"},
		{"all interfaces", []string{"--addr", ":8080"}, nil, "refusing to listen on :8080", ""},
		{"any v4", []string{"--addr", "0.0.0.0:8080"}, nil, "refusing", ""},
		{"public address", []string{"--addr", "192.0.2.7:8080"}, nil, "--insecure", ""},
		{"insecure", []string{"--addr", "0.0.0.0:8080", "--insecure"}, nil, "", "OPEN (--insecure)"},
		{"secret", []string{"--addr", "0.0.0.0:8080"}, map[string]string{"ROOMFEED_JWT_SECRET": testSecret}, "", "jwt HS256 secret"},
		{"short secret", nil, map[string]string{"ROOMFEED_JWT_SECRET": "short"}, "at least 32 bytes", ""},
		{"key file", []string{"--addr", ":1", "--jwt-public-key-file", "/k.pem"}, nil, "", "jwt public key /k.pem"},
		{"secret and key file", []string{"--jwt-public-key-file", "/k.pem"}, map[string]string{"ROOMFEED_JWT_SECRET": testSecret}, "not several", ""},
		{"keys file", []string{"--addr", ":1", "--jwt-keys-file", "/k.json"}, nil, "", "jwt keys file /k.json"},
		{"keys file from the environment", []string{"--addr", ":1"}, map[string]string{"ROOMFEED_JWT_KEYS_FILE": "/k.json"}, "", "jwt keys file /k.json"},
		{"key file and keys file", []string{"--jwt-public-key-file", "/k.pem", "--jwt-keys-file", "/k.json"}, nil, "not several", ""},
		{"bad proxy", []string{"--trusted-proxies", "10.0.0.0/8, nope"}, nil, "TRUSTED_PROXIES", ""},
		{"zero rate", []string{"--write-rate", "0"}, nil, "WRITE_RATE", ""},
		{"message above body", []string{"--max-message-bytes", "999999999"}, nil, "MAX_MESSAGE_BYTES", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if got := c.authMode(); got != tt.auth {
				t.Errorf("got auth %q, want %q", got, tt.auth)
			}
			for _, a := range c.logAttrs() {
				if tt.env["ROOMFEED_JWT_SECRET"] != "" && strings.Contains(a.Value.String(), tt.env["ROOMFEED_JWT_SECRET"]) {
					t.Errorf("the start-up log line holds the secret in %s", a.Key)
				}
			}
		})
	}
}

// mint runs `roomfeed token` and returns the token.
func mint(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), append([]string{"token"}, args...), func(k string) string { return env[k] }, &out, &errOut)
	return strings.TrimSpace(out.String()), err
}

func TestTokenCommand(t *testing.T) {
	env := map[string]string{"ROOMFEED_JWT_SECRET": testSecret}
	tok, err := mint(t, env, "--sub", "alice", "--read", "w*", "--read", "team-a,team-b", "--write", "w1", "--ttl", "1h")
	if err != nil {
		t.Fatal(err)
	}
	v, err := api.NewSecretVerifier([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("verify the minted token: %v", err)
	}
	if c.Subject != "alice" || !slices.Equal(c.Roomfeed.Read, []string{"w*", "team-a", "team-b"}) || !slices.Equal(c.Roomfeed.Write, []string{"w1"}) {
		t.Errorf("got claims %+v", c)
	}
	if left := time.Until(c.ExpiresAt.Time); left < 59*time.Minute || left > time.Hour {
		t.Errorf("got %v left, want about 1h", left)
	}

	for _, tt := range []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"no secret", nil, []string{"--sub", "a", "--read", "w1"}, "ROOMFEED_JWT_SECRET"},
		{"no sub", env, []string{"--read", "w1"}, "--sub"},
		{"no rooms", env, []string{"--sub", "a"}, "--read or --write"},
		{"bad pattern", env, []string{"--sub", "a", "--read", "w*1"}, "room pattern"},
		{"bad ttl", env, []string{"--sub", "a", "--read", "w1", "--ttl", "-1h"}, "--ttl"},
		{"missing key file", env, []string{"--sub", "a", "--read", "w1", "--key", "/nonexistent.pem"}, "--key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := mint(t, tt.env, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got error %v, want one mentioning %q", err, tt.wantErr)
			}
			if tok != "" {
				t.Errorf("got output %q, want none", tok)
			}
		})
	}
}

// writeKeys writes an Ed25519 key pair as PEM files.
func writeKeys(t *testing.T) (pubFile, privFile string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, typ string, der []byte, err error) string {
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	pubFile = write("pub.pem", "PUBLIC KEY", pubDER, err)
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	privFile = write("priv.pem", "PRIVATE KEY", privDER, err)
	return pubFile, privFile
}

// TestTokenEndToEnd mints EdDSA tokens with `roomfeed token --key` and uses
// them against a node verifying with the public key.
func TestTokenEndToEnd(t *testing.T) {
	pubFile, privFile := writeKeys(t)
	writer, err := mint(t, nil, "--sub", "alice", "--read", "w1", "--write", "w1", "--key", privFile)
	if err != nil {
		t.Fatal(err)
	}
	reader, err := mint(t, nil, "--sub", "bob", "--read", "w*", "--key", privFile)
	if err != nil {
		t.Fatal(err)
	}
	n := startNode(t, "--jwt-public-key-file", pubFile, "--addr", "0.0.0.0:0", "--database-url", "sqlite://"+filepath.Join(t.TempDir(), "rf.db"))
	url := strings.Replace(n.URL, "0.0.0.0", "127.0.0.1", 1)
	steps := []struct {
		method, path, tok, body string
		want                    int
	}{
		{"GET", "/rooms/w1/elements", "", "", 401},
		{"PUT", "/rooms/w1/elements/c1", reader, `{"kind":"item","data":{}}`, 403},
		{"PUT", "/rooms/w1/elements/c1", writer, `{"kind":"item","data":{}}`, 201},
		{"GET", "/rooms/w1/elements/c1", reader, "", 200},
		{"GET", "/rooms/w2/elements", writer, "", 403},
		{"GET", "/healthz", "", "", 200},
	}
	for _, s := range steps {
		if got := statusWith(t, s.method, url+s.path, s.tok, s.body); got != s.want {
			t.Errorf("%s %s: got %d, want %d", s.method, s.path, got, s.want)
		}
	}
	if out := n.stderr.String(); strings.Contains(out, writer) || strings.Contains(out, reader) || !strings.Contains(out, "jwt public key") {
		t.Errorf("the log holds a token or lacks the auth mode:\n%s", out)
	}
}

// statusWith makes one request with tok as its bearer token ("": none)
// and returns the answer's status.
func statusWith(t *testing.T, method, url, tok, body string) int {
	t.Helper()
	r, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestInsecureStart: without a key, run refuses a non-loopback address
// unless --insecure, and then says so loudly.
func TestInsecureStart(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := run(ctx, []string{"--addr", "0.0.0.0:0", "--database-url", "sqlite://" + filepath.Join(t.TempDir(), "rf.db")},
		func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "refusing") {
		t.Fatalf("got %v, want a refusal", err)
	}
	n := startNode(t, "--addr", "0.0.0.0:0", "--insecure", "--database-url", "sqlite://"+filepath.Join(t.TempDir(), "rf.db"))
	if out := n.stderr.String(); !strings.Contains(out, "INSECURE") {
		t.Errorf("no INSECURE warning in the log:\n%s", out)
	}
}

// jwksOf is the JWK Set of the Ed25519 public keys in the PEM files, each
// under its kid.
func jwksOf(t *testing.T, kidFiles ...string) string {
	t.Helper()
	var keys []string
	for i := 0; i+1 < len(kidFiles); i += 2 {
		data, err := os.ReadFile(kidFiles[i+1])
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(data)
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		x := base64.RawURLEncoding.EncodeToString(pub.(ed25519.PublicKey))
		keys = append(keys, `{"kty":"OKP","crv":"Ed25519","use":"sig","kid":"`+kidFiles[i]+`","x":"`+x+`"}`)
	}
	return `{"keys":[` + strings.Join(keys, ",") + `]}`
}

// TestTokenKeyRotationEndToEnd rotates a running node's keys through its
// JWKS file: tokens minted with `roomfeed token --key --kid` are accepted
// once their key is listed and refused once it is removed, with no
// restart. A JWKS file that does not parse stops the start.
func TestTokenKeyRotationEndToEnd(t *testing.T) {
	pubA, privA := writeKeys(t)
	pubB, privB := writeKeys(t)
	jwksFile := filepath.Join(t.TempDir(), "jwks.json")
	replace := func(contents string) {
		t.Helper()
		if err := os.WriteFile(jwksFile+".tmp", []byte(contents), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(jwksFile+".tmp", jwksFile); err != nil {
			t.Fatal(err)
		}
	}
	replace("{")
	err := run(t.Context(), []string{"--jwt-keys-file", jwksFile, "--database-url", "sqlite://" + filepath.Join(t.TempDir(), "rf.db")},
		func(string) string { return "" }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "ROOMFEED_JWT_KEYS_FILE") {
		t.Fatalf("start with a broken JWKS file: got %v, want an error naming ROOMFEED_JWT_KEYS_FILE", err)
	}

	replace(jwksOf(t, "a", pubA))
	n := startNode(t, "--jwt-keys-file", jwksFile, "--database-url", "sqlite://"+filepath.Join(t.TempDir(), "rf.db"))
	tokA, err := mint(t, nil, "--sub", "alice", "--read", "w1", "--key", privA, "--kid", "a")
	if err != nil {
		t.Fatal(err)
	}
	tokB, err := mint(t, nil, "--sub", "bob", "--read", "w1", "--key", privB, "--kid", "b")
	if err != nil {
		t.Fatal(err)
	}
	status := func(tok string) int { return statusWith(t, http.MethodGet, n.URL+"/rooms/w1/elements", tok, "") }
	expect := func(step string, wantA, wantB int) {
		t.Helper()
		deadline := time.Now().Add(3 * api.DefaultKeyReload)
		for {
			a, b := status(tokA), status(tokB)
			if a == wantA && b == wantB {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: got %d for key a and %d for key b, want %d and %d\n%s", step, a, b, wantA, wantB, n.stderr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	expect("only key a", 200, 401)
	replace(jwksOf(t, "a", pubA, "b", pubB))
	expect("keys a and b", 200, 200)
	replace(jwksOf(t, "b", pubB))
	expect("only key b", 401, 200)
	if out := n.stderr.String(); !strings.Contains(out, "jwt keys loaded") || !strings.Contains(out, "jwt keys file") {
		t.Errorf("the log lacks the reloads or the auth mode:\n%s", out)
	}
	if _, err := mint(t, nil, "--sub", "a", "--read", "w1", "--kid", "a"); err == nil || !strings.Contains(err.Error(), "--kid") {
		t.Errorf("--kid without --key: got %v, want a refusal", err)
	}
}

// TestValidGrant: a grant is "*", a room name, or a room name and "*".
func TestValidGrant(t *testing.T) {
	name := strings.Repeat("a", 128)
	for p, want := range map[string]bool{
		"*": true, "w1": true, "w*": true, "team-a.b_c*": true, name: true, name + "*": true,
		"": false, "**": false, "w**": false, "*w": false, "w*1": false, "-w": false, name + "a": false, "w/1": false,
	} {
		if got := validGrant(p); got != want {
			t.Errorf("validGrant(%q) = %v, want %v", p, got, want)
		}
	}
}
