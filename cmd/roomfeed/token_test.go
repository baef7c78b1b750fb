package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
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
		{"secret and key file", []string{"--jwt-public-key-file", "/k.pem"}, map[string]string{"ROOMFEED_JWT_SECRET": testSecret}, "not both", ""},
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
	req := func(method, path, tok, body string) int {
		t.Helper()
		r, err := http.NewRequestWithContext(t.Context(), method, url+path, strings.NewReader(body))
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
		if got := req(s.method, s.path, s.tok, s.body); got != s.want {
			t.Errorf("%s %s: got %d, want %d", s.method, s.path, got, s.want)
		}
	}
	if out := n.stderr.String(); strings.Contains(out, writer) || strings.Contains(out, reader) || !strings.Contains(out, "jwt public key") {
		t.Errorf("the log holds a token or lacks the auth mode:\n%s", out)
	}
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
