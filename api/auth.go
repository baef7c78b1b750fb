package api

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"
)

// CookieName is the HttpOnly cookie a browser may carry its token in.
const CookieName = "roomfeed_token"

const (
	maxTokenBytes = 8 << 10 // longer tokens are refused before parsing
	maxSubject    = 256     // the sub claim is recorded in every event
	claimsKey     = "roomfeed.claims"
	tokenKeyKey   = "roomfeed.token"
	eventsRoute   = "/rooms/:room/events"
)

// Grants are the rooms a token may read and write: exact room names, or a
// prefix followed by "*" ("team-*" matches "team-a"; "*" matches every room).
type Grants struct {
	Read  []string `json:"read,omitempty"`
	Write []string `json:"write,omitempty"`
}

// Claims are the JWT claims roomfeed reads: the registered ones (sub is the
// actor recorded in every event the token causes; exp is required) and the
// room grants under "roomfeed".
type Claims struct {
	Roomfeed Grants `json:"roomfeed"`
	jwt.RegisteredClaims
}

// MatchRoom reports whether a grant pattern covers room.
func MatchRoom(pattern, room string) bool {
	if prefix, ok := strings.CutSuffix(pattern, "*"); ok {
		return !strings.Contains(prefix, "*") && strings.HasPrefix(room, prefix)
	}
	return pattern == room
}

func allowed(patterns []string, room string) bool {
	return slices.ContainsFunc(patterns, func(p string) bool { return MatchRoom(p, room) })
}

// Verifier checks tokens against a set of keys, each pinned to one
// algorithm (Key). A token whose algorithm no key has ("none" included) is
// refused before any key is consulted; a token with a kid is checked
// against the keys of that kid and the keys without one, a token without a
// kid against every key of its algorithm. SetKeys replaces the set at once
// (key rotation); a Verifier is safe for concurrent use.
type Verifier struct {
	set atomic.Pointer[keySet]
}

// keySet is one generation of a Verifier's keys and the parser that
// accepts exactly their algorithms.
type keySet struct {
	keys   []Key
	parser *jwt.Parser
}

// NewVerifier returns a Verifier of keys (at least one).
func NewVerifier(keys []Key) (*Verifier, error) {
	v := &Verifier{}
	if err := v.SetKeys(keys); err != nil {
		return nil, err
	}
	return v, nil
}

// NewSecretVerifier verifies HS256 tokens signed with secret.
func NewSecretVerifier(secret []byte) (*Verifier, error) {
	if len(secret) == 0 {
		return nil, errors.New("empty JWT secret")
	}
	return NewVerifier([]Key{{Alg: jwt.SigningMethodHS256.Alg(), key: secret}})
}

// SetKeys makes keys (at least one) the keys of v, for the tokens verified
// from now on.
func (v *Verifier) SetKeys(keys []Key) error {
	if len(keys) == 0 {
		return errors.New("no key")
	}
	for _, k := range keys {
		if k.key == nil || k.Alg == "" {
			return errors.New("a key without its value or algorithm")
		}
	}
	v.set.Store(&keySet{keys: slices.Clone(keys), parser: jwt.NewParser(
		jwt.WithValidMethods(algorithms(keys)),
		jwt.WithExpirationRequired(),
		jwt.WithJSONNumber(),
	)})
	return nil
}

// algorithms are the JWT algorithms of keys, sorted, each once.
func algorithms(keys []Key) []string {
	var algs []string
	for _, k := range keys {
		if !slices.Contains(algs, k.Alg) {
			algs = append(algs, k.Alg)
		}
	}
	slices.Sort(algs)
	return algs
}

// Verify parses and checks a token. It answers only errInvalidToken or
// errTokenExpired, which never quote the token.
func (v *Verifier) Verify(raw string) (*Claims, error) {
	if raw == "" || len(raw) > maxTokenBytes {
		return nil, errInvalidToken
	}
	set := v.set.Load()
	var claims Claims
	_, err := set.parser.ParseWithClaims(raw, &claims, set.candidates)
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, errTokenExpired
	case err != nil:
		return nil, errInvalidToken
	case claims.Subject == "" || len(claims.Subject) > maxSubject:
		return nil, errInvalidToken
	}
	return &claims, nil
}

// candidates is the jwt.Keyfunc of a set: the keys of the token's
// algorithm whose kid is the token's or empty. No candidate is an error.
func (s *keySet) candidates(t *jwt.Token) (any, error) {
	kid, hasKid := t.Header["kid"]
	want, isString := kid.(string)
	if hasKid && !isString {
		return nil, errors.New("kid is not a string")
	}
	var found jwt.VerificationKeySet
	for _, k := range s.keys {
		if k.Alg == t.Method.Alg() && (k.ID == "" || !hasKid || k.ID == want) {
			found.Keys = append(found.Keys, k.key)
		}
	}
	if len(found.Keys) == 0 {
		return nil, errors.New("no key for the token's kid and algorithm")
	}
	return found, nil
}

type tokenSource int

const (
	fromHeader tokenSource = iota + 1
	fromQuery
	fromCookie
)

// tokenFrom finds the request's token: the Authorization header, else
// ?access_token= (the events route only: EventSource cannot set headers),
// else the cookie.
func tokenFrom(c *gin.Context) (string, tokenSource, error) {
	if h := c.Request.Header.Values("Authorization"); len(h) > 0 {
		scheme, tok, ok := strings.Cut(h[0], " ")
		if len(h) > 1 || !ok || !strings.EqualFold(scheme, "Bearer") {
			return "", 0, errBadAuthorization
		}
		return strings.TrimSpace(tok), fromHeader, nil
	}
	if q, ok := c.Request.URL.Query()["access_token"]; ok {
		if c.FullPath() != eventsRoute && c.FullPath() != multiEventsRoute {
			return "", 0, errTokenInQuery
		}
		if len(q) != 1 {
			return "", 0, errInvalidToken
		}
		return q[0], fromQuery, nil
	}
	if ck, err := c.Request.Cookie(CookieName); err == nil {
		return ck.Value, fromCookie, nil
	}
	return "", 0, errNoToken
}

// authorize checks the token of every room route: reading needs a read
// grant for the room, writing a write grant. Without a verifier (open
// development mode) everything is allowed. Refusals never depend on whether
// the room exists.
func (s *Server) authorize(c *gin.Context) {
	if s.cfg.Auth == nil {
		c.Next()
		return
	}
	raw, src, err := tokenFrom(c)
	if err != nil {
		writeError(c, err)
		return
	}
	claims, err := s.cfg.Auth.Verify(raw)
	if err != nil {
		writeError(c, err)
		return
	}
	room := c.Param("room")
	if isWrite(c.Request.Method) {
		if !allowed(claims.Roomfeed.Write, room) {
			writeError(c, errForbiddenWrite)
			return
		}
		// A cookie rides along on any site's request: writes carried by
		// one must come from an allowed page (CSRF).
		if src == fromCookie && !s.originAllowed(c.Request) {
			writeError(c, errBadOrigin)
			return
		}
	} else if !allowed(claims.Roomfeed.Read, room) {
		writeError(c, errForbiddenRead)
		return
	}
	c.Set(claimsKey, claims)
	c.Set(tokenKeyKey, tokenKey(raw))
	c.Next()
}

func isWrite(method string) bool {
	return method != http.MethodGet && method != http.MethodHead && method != http.MethodOptions
}

// originAllowed reports whether the request's one Origin is in the CORS
// allowlist or is the server's own origin.
func (s *Server) originAllowed(r *http.Request) bool {
	vals := r.Header.Values("Origin")
	if len(vals) != 1 {
		return false
	}
	origin := strings.TrimRight(vals[0], "/")
	if slices.Contains(s.cfg.CORSOrigins, origin) {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Host == r.Host && u.Path == ""
}

// tokenKey names a token in limit tables without keeping the token itself.
func tokenKey(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:12])
}

func claimsOf(c *gin.Context) *Claims {
	v, _ := c.Get(claimsKey)
	claims, _ := v.(*Claims)
	return claims
}

// actor is the sub of the request's token, "" in open mode.
func actor(c *gin.Context) string {
	if claims := claimsOf(c); claims != nil {
		return claims.Subject
	}
	return ""
}

// tokenExpiresAt returns when the request's token expires; zero when there
// is no token or it does not expire.
func tokenExpiresAt(c *gin.Context) time.Time {
	claims := claimsOf(c)
	if claims == nil || claims.ExpiresAt == nil {
		return time.Time{}
	}
	return claims.ExpiresAt.Time
}
