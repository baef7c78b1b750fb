package api

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"
)

// Limits bound what one client can take from a node. A zero field takes its
// default; a negative one switches that limit off.
type Limits struct {
	MaxElementsPerRoom int           // elements one room may hold (default 10,000)
	MaxMessageBytes    int           // data of one custom message (default 16 KiB, at most Config.MaxDataBytes)
	MaxHeaderBytes     int           // all request header names and values (default 32 KiB)
	BodyTimeout        time.Duration // time to receive a write's body once reading starts (default 10 s)
	StreamsPerToken    int           // open feeds per token (default 16)
	StreamsPerIP       int           // open feeds per client address (default 128)
	MaxStreams         int           // open feeds on this node (default 10,000; roomfeed sets StreamsFor its descriptor limit): 503 beyond
	WriteRate          float64       // sustained writes per second per token (default 20)
	WriteBurst         int           // writes per token allowed at once (default 40)
	SignalRate         float64       // sustained signals per second per token, per address in open mode (default 10)
	SignalBurst        int           // signals per token (or address) allowed at once (default 20)
}

// DefaultLimits returns the limits used where a Limits field is zero;
// maxData is the data limit, which bounds MaxMessageBytes.
func DefaultLimits(maxData int) Limits {
	return Limits{
		MaxElementsPerRoom: 10000,
		MaxMessageBytes:    min(16<<10, maxData),
		MaxHeaderBytes:     32 << 10,
		StreamsPerToken:    16,
		StreamsPerIP:       128,
		MaxStreams:         10000,
		WriteRate:          20,
		WriteBurst:         40,
		SignalRate:         10,
		SignalBurst:        20,
		BodyTimeout:        10 * time.Second,
	}
}

// StreamsFor returns the open feeds a process allowed nofile descriptors
// can hold: one each, less a reserve for everything else (the listener,
// writes, the database and Redis pools, files) of a tenth of nofile, at
// most 1,000. A node past it would fail to accept connections, writes
// included, instead of answering the next feed 503 node_full.
func StreamsFor(nofile uint64) int {
	reserve := min(nofile/10, 1000)
	return int(min(nofile-reserve, 1<<30))
}

func (l *Limits) defaults(maxData int) {
	d := DefaultLimits(maxData)
	orDefault(&l.MaxElementsPerRoom, d.MaxElementsPerRoom)
	orDefault(&l.MaxMessageBytes, d.MaxMessageBytes)
	orDefault(&l.MaxHeaderBytes, d.MaxHeaderBytes)
	orDefault(&l.StreamsPerToken, d.StreamsPerToken)
	orDefault(&l.StreamsPerIP, d.StreamsPerIP)
	orDefault(&l.MaxStreams, d.MaxStreams)
	orDefault(&l.WriteBurst, d.WriteBurst)
	orDefault(&l.BodyTimeout, d.BodyTimeout)
	orDefault(&l.WriteRate, d.WriteRate)
	orDefault(&l.SignalBurst, d.SignalBurst)
	orDefault(&l.SignalRate, d.SignalRate)
}

// orDefault sets *p to def when it is zero.
func orDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// limiter holds the live counts behind Limits.
type limiter struct {
	cfg     Limits
	writes  *buckets // nil: no write rate
	signals *buckets // nil: no signal rate

	mu      sync.Mutex
	total   int
	byToken map[string]int
	byIP    map[string]int
}

func newLimiter(cfg Limits) *limiter {
	return &limiter{
		cfg:     cfg,
		writes:  newBuckets(cfg.WriteRate, cfg.WriteBurst),
		signals: newBuckets(cfg.SignalRate, cfg.SignalBurst),
		byToken: map[string]int{},
		byIP:    map[string]int{},
	}
}

// acquireStream counts one more open feed for the request's token and
// address, or refuses it. The caller calls release when the feed ends.
func (s *Server) acquireStream(c *gin.Context) (release func(), err error) {
	l := s.limits
	tok := c.GetString(tokenKeyKey)
	ip := c.ClientIP()
	l.mu.Lock()
	defer l.mu.Unlock()
	if over(l.total, l.cfg.MaxStreams) {
		c.Header("Retry-After", "5")
		return nil, errNodeFull
	}
	if over(l.byIP[ip], l.cfg.StreamsPerIP) || (tok != "" && over(l.byToken[tok], l.cfg.StreamsPerToken)) {
		return nil, errTooManyStreams
	}
	l.total++
	l.byIP[ip]++
	if tok != "" {
		l.byToken[tok]++
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.total--
		decrement(l.byIP, ip)
		if tok != "" {
			decrement(l.byToken, tok)
		}
	}, nil
}

func over(n, limit int) bool { return limit >= 0 && n >= limit }

func decrement(m map[string]int, k string) {
	if m[k] <= 1 {
		delete(m, k)
		return
	}
	m[k]--
}

// limitRate takes one from the request's token bucket: a signal's from the
// signal bucket of its token, or of its address in open mode; any other
// write's from the write bucket of its token (open mode has no write rate).
// An empty bucket is 429 rate_limited with the seconds until the next one in
// Retry-After.
func (s *Server) limitRate(c *gin.Context) {
	if !isWrite(c.Request.Method) {
		c.Next()
		return
	}
	b, key, refusal := s.limits.writes, c.GetString(tokenKeyKey), errRateLimited
	if c.FullPath() == signalsRoute {
		b, refusal = s.limits.signals, errSignalRateLimited
		if key == "" {
			key = c.ClientIP()
		}
	}
	if b == nil || key == "" {
		c.Next()
		return
	}
	if wait := b.take(key, time.Now()); wait > 0 {
		c.Header("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		writeError(c, refusal)
		return
	}
	c.Next()
}

// buckets are token buckets of one rate and burst, one per key (a token or
// a client address), made on first use.
type buckets struct {
	rate  rate.Limit
	burst int

	mu    sync.Mutex
	byKey map[string]*bucket
	swept time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

// newBuckets returns buckets of perSecond and burst; nil when perSecond is
// negative (no limit).
func newBuckets(perSecond float64, burst int) *buckets {
	if perSecond < 0 {
		return nil
	}
	return &buckets{rate: rate.Limit(perSecond), burst: max(burst, 1), byKey: map[string]*bucket{}}
}

// take takes one from key's bucket, or returns how long until one is
// available (and takes nothing).
func (b *buckets) take(key string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	// A bucket idle long enough to be full again is the same as a new one:
	// forget those so the table stays as small as the set of active keys.
	refill := time.Duration(float64(b.burst)/float64(b.rate)*float64(time.Second)) + time.Second
	if now.Sub(b.swept) > refill {
		for k, bk := range b.byKey {
			if now.Sub(bk.seen) > refill {
				delete(b.byKey, k)
			}
		}
		b.swept = now
	}
	bk, ok := b.byKey[key]
	if !ok {
		bk = &bucket{lim: rate.NewLimiter(b.rate, b.burst)}
		b.byKey[key] = bk
	}
	bk.seen = now
	r := bk.lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}

// limitHeaders refuses requests whose headers are larger than the limit,
// before anything reads them.
func (s *Server) limitHeaders(c *gin.Context) {
	if limit := s.limits.cfg.MaxHeaderBytes; limit >= 0 {
		n := len(c.Request.RequestURI)
		for k, vs := range c.Request.Header {
			for _, v := range vs {
				n += len(k) + len(v) + 4
			}
		}
		if n > limit {
			writeError(c, errHeadersTooLarge)
			return
		}
	}
	c.Next()
}

// bodyDeadline gives a write's body BodyTimeout to arrive once the handler
// starts reading it, so a client trickling bytes (slowloris) cannot hold a
// handler. The deadline is lifted once the body has been read, so the
// connection's background read cannot cancel the request while the
// handler works.
func (s *Server) bodyDeadline(c *gin.Context) {
	if d := s.limits.cfg.BodyTimeout; d > 0 && isWrite(c.Request.Method) && c.Request.Body != nil && c.Request.Body != http.NoBody {
		c.Request.Body = &deadlineBody{ReadCloser: c.Request.Body, rc: http.NewResponseController(c.Writer), timeout: d}
	}
	c.Next()
}

type deadlineBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	state   int // 0 not started, 1 reading, 2 done
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if b.state == 0 {
		_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
		b.state = 1
	}
	n, err := b.ReadCloser.Read(p)
	if err != nil && b.state == 1 {
		b.state = 2
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// maxElements is the store's Precondition.MaxElements for a write that
// may create an element: the store checks the room's element count in the
// write's transaction, so concurrent creations cannot overshoot it.
func (s *Server) maxElements() int {
	return max(0, s.limits.cfg.MaxElementsPerRoom) // negative: no limit
}

// maxNumberLiteral bounds the text of one JSON number.
const maxNumberLiteral = 64

// checkJSONText refuses JSON that is valid but that other parsers, the
// databases or JavaScript clients cannot carry faithfully: numbers that are
// not finite doubles (or absurdly long literals), NUL characters, and
// unpaired UTF-16 surrogate escapes. raw must already be valid JSON.
func checkJSONText(field string, raw []byte) error {
	bad := func(msg string) error { return badRequest("bad_"+field, field+": "+msg) }
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case c == '"':
			for i++; i < len(raw) && raw[i] != '"'; i++ {
				if raw[i] != '\\' {
					continue
				}
				i++
				if raw[i] != 'u' || i+4 >= len(raw) {
					continue
				}
				r, _ := strconv.ParseUint(string(raw[i+1:i+5]), 16, 16)
				i += 4
				switch {
				case r == 0:
					return bad(`strings must not contain NUL (\u0000)`)
				case r >= 0xDC00 && r <= 0xDFFF:
					return bad("unpaired UTF-16 surrogate escape")
				case r >= 0xD800 && r <= 0xDBFF:
					if i+6 >= len(raw) || raw[i+1] != '\\' || raw[i+2] != 'u' {
						return bad("unpaired UTF-16 surrogate escape")
					}
					lo, _ := strconv.ParseUint(string(raw[i+3:i+7]), 16, 16)
					if lo < 0xDC00 || lo > 0xDFFF {
						return bad("unpaired UTF-16 surrogate escape")
					}
					i += 6
				}
			}
		case c == '-' || (c >= '0' && c <= '9'):
			j := i
			for j < len(raw) && strings.IndexByte("+-.eE0123456789", raw[j]) >= 0 {
				j++
			}
			if j-i > maxNumberLiteral {
				return bad(fmt.Sprintf("a number is longer than %d characters", maxNumberLiteral))
			}
			if f, err := strconv.ParseFloat(string(raw[i:j]), 64); err != nil || math.IsInf(f, 0) {
				return bad("a number is out of the range of a double")
			}
			i = j - 1
		}
	}
	return nil
}
