package api

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/roomfeed/roomfeed/internal/streak"
)

// DefaultKeyReload is how often a KeyFile looks at its file.
const DefaultKeyReload = 2 * time.Second

// minRSABits is the smallest RSA modulus accepted.
const minRSABits = 2048

// Key is one verification key pinned to one algorithm: HS256 for a
// secret, EdDSA for an Ed25519 public key, RS256 for an RSA public key of
// at least 2048 bits. ID is its kid ("" for none: PEM keys).
type Key struct {
	ID  string
	Alg string
	key any
}

// publicKey pins a parsed public key to its algorithm.
func publicKey(id string, pub any) (Key, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return Key{ID: id, Alg: jwt.SigningMethodEdDSA.Alg(), key: k}, nil
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return Key{}, fmt.Errorf("RSA key of %d bits: want at least %d", k.N.BitLen(), minRSABits)
		}
		return Key{ID: id, Alg: jwt.SigningMethodRS256.Alg(), key: k}, nil
	}
	return Key{}, fmt.Errorf("public key of type %T: want Ed25519 or RSA", pub)
}

// ParsePEMKeys reads one or more PEM public keys ("PUBLIC KEY" or "RSA
// PUBLIC KEY" blocks, Ed25519 or RSA), without kids. Any other block, or
// none, is an error.
func ParsePEMKeys(data []byte) ([]Key, error) {
	var keys []Key
	for rest := data; ; {
		block, next := pem.Decode(rest)
		if block == nil {
			if len(bytes.TrimSpace(rest)) > 0 && len(keys) > 0 {
				return nil, fmt.Errorf("text after PEM key %d is not a PEM block", len(keys))
			}
			break
		}
		rest = next
		var (
			pub any
			err error
		)
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		default:
			return nil, fmt.Errorf("PEM block %q: want PUBLIC KEY", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM key %d: parse public key: %w", len(keys)+1, err)
		}
		k, err := publicKey("", pub)
		if err != nil {
			return nil, fmt.Errorf("PEM key %d: %w", len(keys)+1, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM block in the public key file")
	}
	return keys, nil
}

// jwk is the part of a JSON Web Key (RFC 7517, 7518, 8037) roomfeed reads.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	N   string `json:"n"`
	E   string `json:"e"`
	D   string `json:"d"` // private: refused
}

// ParseJWKS reads a JWK Set (RFC 7517) of public signature keys: "OKP"
// keys of curve Ed25519 (EdDSA) and "RSA" keys of at least 2048 bits
// (RS256). Keys marked for another use ("use" other than "sig") or another
// algorithm, and other key types, are skipped; a key that claims to be
// usable but is malformed, a private key, a repeated kid or a set without
// a usable key is an error.
func ParseJWKS(data []byte) ([]Key, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	var keys []Key
	for i, raw := range doc.Keys {
		var j jwk
		if err := json.Unmarshal(raw, &j); err != nil {
			return nil, fmt.Errorf("JWKS key %d: %w", i, err)
		}
		k, ok, err := j.key()
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d (kid %q): %w", i, j.Kid, err)
		}
		if !ok {
			continue
		}
		if k.ID != "" && slices.ContainsFunc(keys, func(o Key) bool { return o.ID == k.ID }) {
			return nil, fmt.Errorf("JWKS: kid %q is used twice", k.ID)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS: no Ed25519 or RSA signature key")
	}
	return keys, nil
}

// key converts j; ok is false for a key roomfeed does not verify with.
func (j jwk) key() (_ Key, ok bool, _ error) {
	if j.D != "" {
		return Key{}, false, errors.New("a private key: list public keys only")
	}
	if j.Use != "" && j.Use != "sig" {
		return Key{}, false, nil
	}
	switch {
	case j.Kty == "OKP" && (j.Alg == "" || j.Alg == jwt.SigningMethodEdDSA.Alg()):
		if j.Crv != "Ed25519" {
			return Key{}, false, fmt.Errorf("OKP curve %q: want Ed25519", j.Crv)
		}
		x, err := base64.RawURLEncoding.DecodeString(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return Key{}, false, errors.New(`"x" is not a base64url Ed25519 public key`)
		}
		k, err := publicKey(j.Kid, ed25519.PublicKey(x))
		return k, err == nil, err
	case j.Kty == "RSA" && (j.Alg == "" || j.Alg == jwt.SigningMethodRS256.Alg()):
		n, errN := base64.RawURLEncoding.DecodeString(j.N)
		e, errE := base64.RawURLEncoding.DecodeString(j.E)
		if errN != nil || errE != nil || len(e) == 0 || len(e) > 4 {
			return Key{}, false, errors.New(`"n" or "e" is not a base64url RSA public key`)
		}
		exp := new(big.Int).SetBytes(e).Int64()
		if exp < 3 || exp%2 == 0 || exp > 1<<31-1 {
			return Key{}, false, fmt.Errorf("RSA exponent %d", exp)
		}
		k, err := publicKey(j.Kid, &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp)})
		return k, err == nil, err
	}
	return Key{}, false, nil
}

// KeyFile is a file of public keys (PEM or JWKS, by its parse function)
// that a Verifier follows. It is read once when opened (an error then is
// the caller's to report); Run then reads it every interval, and contents
// that changed and parse replace the Verifier's keys at once. A file that
// cannot be read or does not parse leaves the last good keys in place and
// is logged once per failure streak.
type KeyFile struct {
	path   string
	parse  func([]byte) ([]Key, error)
	v      *Verifier
	logger *slog.Logger

	mu      sync.Mutex
	last    []byte // the contents last parsed
	lastErr error  // why they were refused; nil: they are the keys in use
	streak  *streak.Logger
}

// OpenKeyFile reads path with parse (ParsePEMKeys or ParseJWKS) and
// returns the KeyFile whose Verifier holds its keys.
func OpenKeyFile(path string, parse func([]byte) ([]Key, error), logger *slog.Logger) (*KeyFile, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	v, err := NewVerifier(keys)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &KeyFile{path: path, parse: parse, v: v, logger: logger, last: data,
		streak: streak.New(logger, "jwt key file "+path)}, nil
}

// Verifier is the Verifier that follows the file.
func (f *KeyFile) Verifier() *Verifier { return f.v }

// Run reloads the file every interval until ctx is done.
func (f *KeyFile) Run(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			f.Reload(ctx)
		}
	}
}

// Reload reads the file once and applies it if its contents changed.
func (f *KeyFile) Reload(ctx context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, err := os.ReadFile(f.path)
	if err != nil {
		f.streak.Fail(ctx, err)
		return
	}
	if bytes.Equal(data, f.last) { // the keys in use, or contents refused already
		if f.lastErr != nil {
			f.streak.Fail(ctx, f.lastErr)
		} else {
			f.streak.OK(ctx)
		}
		return
	}
	f.last = data
	keys, err := f.parse(data)
	if err == nil {
		err = f.v.SetKeys(keys)
	}
	if err != nil {
		f.lastErr = fmt.Errorf("keeping the previous keys: %w", err)
		f.streak.Fail(ctx, f.lastErr)
		return
	}
	f.lastErr = nil
	f.streak.OK(ctx)
	f.logger.LogAttrs(ctx, slog.LevelInfo, "jwt keys loaded", slog.String("file", f.path),
		slog.Int("keys", len(keys)), slog.String("kids", kids(keys)))
}

// kids lists the keys' ids for the log ("-" for a key without one).
func kids(keys []Key) string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = cmp.Or(k.ID, "-")
	}
	return strings.Join(ids, ",")
}
