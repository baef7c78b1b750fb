package main

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/api"
)

// minSecretBytes is the shortest HS256 secret accepted (RFC 7518: a key of
// at least the hash size).
const minSecretBytes = 32

// validGrant reports whether p is a room pattern a token may grant: "*",
// a room name, or a room name followed by "*" (every room it prefixes).
func validGrant(p string) bool {
	return p == "*" || roomfeed.ValidName(strings.TrimSuffix(p, "*"))
}

// runToken mints a development token: `roomfeed token --sub alice --read
// 'w*' --write w1`. It signs with ROOMFEED_JWT_SECRET (HS256), or with
// --key, a PEM private key (Ed25519 = EdDSA, RSA = RS256), and prints the
// token alone on stdout.
func runToken(_ context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("roomfeed token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		sub, keyFile, kid string
		read, write       list
		ttl               time.Duration
	)
	fs.StringVar(&sub, "sub", "", "the actor: recorded in every event the token causes (required)")
	fs.Var(&read, "read", "rooms the token may read: names or prefix* patterns, comma-separated or repeated")
	fs.Var(&write, "write", "rooms the token may write, as --read")
	fs.DurationVar(&ttl, "ttl", 24*time.Hour, "how long the token is valid")
	fs.StringVar(&keyFile, "key", "", "PEM private key (Ed25519 or RSA) to sign with instead of $ROOMFEED_JWT_SECRET")
	fs.StringVar(&kid, "kid", "", "key id put in the token's header: the kid of --key in the JWKS the nodes read")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: roomfeed token --sub alice --read 'w*' --write w1 [--ttl 24h] [--key private.pem [--kid k1]]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errUsage
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(fs.NArg() == 0, "unexpected arguments: %q", fs.Args())
	check(sub != "" && len(sub) <= 256, "--sub is required (at most 256 bytes)")
	check(len(read)+len(write) > 0, "give at least one --read or --write room")
	for _, p := range append(append(list{}, read...), write...) {
		check(validGrant(p), "room pattern %q: want a room name, optionally ending in *", p)
	}
	check(ttl > 0 && ttl <= 366*24*time.Hour, "--ttl must be positive and at most a year")
	check(kid == "" || keyFile != "", "--kid goes with --key")
	if err := errors.Join(errs...); err != nil {
		return err
	}

	method, key, err := signingKey(keyFile, getenv("ROOMFEED_JWT_SECRET"))
	if err != nil {
		return err
	}
	now := time.Now()
	claims := api.Claims{
		Roomfeed: api.Grants{Read: read, Write: write},
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   sub,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	t := jwt.NewWithClaims(method, claims)
	if kid != "" {
		t.Header["kid"] = kid
	}
	tok, err := t.SignedString(key)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}

func signingKey(keyFile, secret string) (jwt.SigningMethod, any, error) {
	if keyFile == "" {
		if len(secret) < minSecretBytes {
			return nil, nil, fmt.Errorf("set ROOMFEED_JWT_SECRET (at least %d bytes) or pass --key private.pem", minSecretBytes)
		}
		return jwt.SigningMethodHS256, []byte(secret), nil
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, nil, fmt.Errorf("--key %s: no PEM block", keyFile)
	}
	var key crypto.PrivateKey
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, nil, fmt.Errorf("--key %s: PEM block %q, want PRIVATE KEY", keyFile, block.Type)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("--key %s: %w", keyFile, err)
	}
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return jwt.SigningMethodEdDSA, k, nil
	case *rsa.PrivateKey:
		return jwt.SigningMethodRS256, k, nil
	}
	return nil, nil, fmt.Errorf("--key %s: a %T key, want Ed25519 or RSA", keyFile, key)
}

// list is a flag that may be repeated and holds comma-separated values.
type list []string

func (l *list) String() string { return strings.Join(*l, ",") }

func (l *list) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// verifier builds the token verifier from the configuration: nil means
// open development mode. A key file comes with the loop that re-reads it
// (nil otherwise), which the node runs.
func (c config) verifier(logger *slog.Logger) (*api.Verifier, func(context.Context) error, error) {
	file, env, parse := c.JWTPublicKeyFile, "ROOMFEED_JWT_PUBLIC_KEY_FILE", api.ParsePEMKeys
	if c.JWTKeysFile != "" {
		file, env, parse = c.JWTKeysFile, "ROOMFEED_JWT_KEYS_FILE", api.ParseJWKS
	}
	switch {
	case file != "":
		kf, err := api.OpenKeyFile(file, parse, logger)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", env, err)
		}
		reload := func(ctx context.Context) error { return kf.Run(ctx, api.DefaultKeyReload) }
		return kf.Verifier(), reload, nil
	case c.JWTSecret != "":
		v, err := api.NewSecretVerifier([]byte(c.JWTSecret))
		return v, nil, err
	}
	return nil, nil, nil
}

// hasKey reports whether tokens are checked.
func (c config) hasKey() bool {
	return c.JWTSecret != "" || c.JWTPublicKeyFile != "" || c.JWTKeysFile != ""
}

// authMode names the authentication mode for the start-up log line.
func (c config) authMode() string {
	switch {
	case c.JWTKeysFile != "":
		return "jwt keys file " + c.JWTKeysFile
	case c.JWTPublicKeyFile != "":
		return "jwt public key " + c.JWTPublicKeyFile
	case c.JWTSecret != "":
		return "jwt HS256 secret"
	case c.Insecure:
		return "OPEN (--insecure)"
	}
	return "open (loopback only)"
}

// validateAuth enforces the open-mode rule: without a key the service
// listens only on loopback, unless --insecure says otherwise.
func (c config) validateAuth() error {
	var errs []error
	if n := countSet(c.JWTSecret, c.JWTPublicKeyFile, c.JWTKeysFile); n > 1 {
		errs = append(errs, errors.New("set one of ROOMFEED_JWT_SECRET, ROOMFEED_JWT_PUBLIC_KEY_FILE and ROOMFEED_JWT_KEYS_FILE, not several"))
	}
	if c.JWTSecret != "" && len(c.JWTSecret) < minSecretBytes {
		errs = append(errs, fmt.Errorf("ROOMFEED_JWT_SECRET must be at least %d bytes", minSecretBytes))
	}
	if !c.hasKey() && !c.Insecure && !isLoopback(c.Addr) {
		errs = append(errs, fmt.Errorf("refusing to listen on %s without tokens: anyone who reaches it could read and change every room. "+
			"Set ROOMFEED_JWT_SECRET, ROOMFEED_JWT_PUBLIC_KEY_FILE or ROOMFEED_JWT_KEYS_FILE, listen on a loopback address such as 127.0.0.1:8080, "+
			"or pass --insecure to run open anyway", c.Addr))
	}
	for _, p := range c.TrustedProxies {
		if net.ParseIP(p) == nil {
			if _, _, err := net.ParseCIDR(p); err != nil {
				errs = append(errs, fmt.Errorf("ROOMFEED_TRUSTED_PROXIES: %q is not an IP address or CIDR", p))
			}
		}
	}
	return errors.Join(errs...)
}

// countSet counts the non-empty values.
func countSet(values ...string) int {
	n := 0
	for _, v := range values {
		if v != "" {
			n++
		}
	}
	return n
}

// isLoopback reports whether addr (host:port) listens on loopback only.
// An empty host means every interface.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
