package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/feed"
	feedredis "github.com/roomfeed/roomfeed/feed/redis"
	"github.com/roomfeed/roomfeed/internal/redisurl"
	"github.com/roomfeed/roomfeed/repo"
	"github.com/roomfeed/roomfeed/sse"
)

var errUsage = errors.New("usage")

// config is every setting of the service: defaults, then environment, then
// flags; validated once.
type config struct {
	Addr               string
	DebugAddr          string // loopback address of the runtime profiles (debug.go); empty = none
	DatabaseURL        string
	RedisURL           string
	RedisPrefix        string
	RedisMaxLen        int64
	RelayInterval      time.Duration
	CORSOrigins        []string
	Heartbeat          time.Duration
	StreamWriteTimeout time.Duration
	StreamPace         time.Duration
	MaxBodyBytes       int64
	MaxDataBytes       int
	SubscriberBuffer   int
	CatchUpReads       int // sse.Config.CatchUpReads
	CatchUpQueue       int // sse.Config.CatchUpQueue
	WebDir             string
	WebServerURL       string
	WebTokenEndpoint   string
	LogFormat          string
	ShutdownTimeout    time.Duration
	DBTimeout          time.Duration // repo.Options.QueryTimeout
	TLSCert, TLSKey    string        // PEM files; both set = HTTPS with HTTP/2 (tls.go)
	HistoryKeep        int64         // events kept per room in SQL; 0 = all
	HistoryMaxAge      time.Duration // age beyond which SQL events are trimmed; 0 = never
	RetentionInterval  time.Duration
	IdempotencyTTL     time.Duration // how long idempotency keys are kept
	VersionsKeep       int64         // repo.Options.VersionsKeep
	PresenceGrace      time.Duration
	PresenceTTL        time.Duration
	MaxFeedRooms       int

	JWTSecret        string // HS256 key; never logged
	JWTPublicKeyFile string // PEM Ed25519 or RSA public keys, re-read when it changes
	JWTKeysFile      string // JWKS of Ed25519 or RSA public keys, re-read when it changes
	Insecure         bool   // open mode on a non-loopback address
	TrustedProxies   []string
	Limits           api.Limits
}

// setting describes one configuration entry: its flag, its environment
// variable and its help text. The README's configuration table lists them.
type setting struct {
	flag, env, help string
}

// flagSet registers settings whose defaults the environment replaces.
type flagSet struct {
	fs     *flag.FlagSet
	getenv func(string) string
	errs   []error // malformed environment values
}

func (f *flagSet) str(p *string, s setting, def string) {
	if v := f.getenv(s.env); v != "" {
		def = v
	}
	f.fs.StringVar(p, s.flag, def, s.help+" ($"+s.env+")")
}

func (f *flagSet) dur(p *time.Duration, s setting, def time.Duration) {
	if raw := f.getenv(s.env); raw != "" {
		d, err := time.ParseDuration(raw)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s: %w", s.env, err))
		}
		def = d
	}
	f.fs.DurationVar(p, s.flag, def, s.help+" ($"+s.env+")")
}

func (f *flagSet) num(p *int64, s setting, def int64) {
	if raw := f.getenv(s.env); raw != "" {
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			f.errs = append(f.errs, fmt.Errorf("%s: %w", s.env, err))
		}
		def = n
	}
	f.fs.Int64Var(p, s.flag, def, s.help+" ($"+s.env+")")
}

// integer registers an int setting, parsed as an int64.
func (f *flagSet) integer(p *int, s setting, def int) func() {
	var v int64
	f.num(&v, s, int64(def))
	return func() { *p = int(v) }
}

// list registers a comma-separated setting; clean trims each item (empty
// items are dropped).
func (f *flagSet) list(p *[]string, s setting, clean func(string) string) func() {
	var raw string
	f.str(&raw, s, "")
	return func() {
		for _, item := range strings.Split(raw, ",") {
			if item = clean(item); item != "" {
				*p = append(*p, item)
			}
		}
	}
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	f := &flagSet{fs: flag.NewFlagSet("roomfeed", flag.ContinueOnError), getenv: getenv}
	f.fs.SetOutput(stderr)
	var cfg config
	cfg.storageFlags(f)
	finish := append(cfg.serverFlags(f), cfg.limitFlags(f)...)
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, errUsage
		}
		return cfg, fmt.Errorf("%w: %w", errUsage, err)
	}
	if f.fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %q", f.fs.Args())
	}
	for _, fn := range finish {
		fn()
	}
	return cfg, errors.Join(append(f.errs, cfg.validate())...)
}

// serverFlags registers the HTTP, feed and security settings; the returned
// functions store the converted values once the flags are parsed.
func (c *config) serverFlags(f *flagSet) []func() {
	d := api.DefaultConfig()
	f.str(&c.Addr, setting{"addr", "ROOMFEED_ADDR", "listen address"}, "127.0.0.1:8080")
	f.str(&c.DebugAddr, setting{"debug-addr", "ROOMFEED_DEBUG_ADDR", "loopback address serving the Go runtime's profiles (/debug/pprof/); empty = none"}, "")
	f.dur(&c.Heartbeat, setting{"heartbeat", "ROOMFEED_HEARTBEAT", "interval of the SSE ping comment"}, sse.DefaultHeartbeat)
	f.dur(&c.StreamWriteTimeout, setting{"stream-write-timeout", "ROOMFEED_STREAM_WRITE_TIMEOUT", "deadline of each write to an SSE client"}, sse.DefaultWriteTimeout)
	f.dur(&c.StreamPace, setting{"stream-pace", "ROOMFEED_STREAM_PACE", "under load, a stream that wrote less than this ago waits for it to pass (fewer, larger writes); 0 = never"}, 0)
	f.num(&c.MaxBodyBytes, setting{"max-body-bytes", "ROOMFEED_MAX_BODY_BYTES", "request body limit"}, d.MaxBodyBytes)
	f.str(&c.WebDir, setting{"web-dir", "ROOMFEED_WEB_DIR", "directory of the built web app"}, "web/dist")
	f.str(&c.WebServerURL, setting{"web-server-url", "ROOMFEED_WEB_SERVER_URL", "the API origin the web app uses (GET /config.json); empty = the page's own"}, "")
	f.str(&c.WebTokenEndpoint, setting{"web-token-endpoint", "ROOMFEED_WEB_TOKEN_ENDPOINT", "where the web app fetches its token (GET /config.json); empty = none"}, "")
	f.str(&c.LogFormat, setting{"log-format", "ROOMFEED_LOG_FORMAT", "text or json"}, "text")
	f.dur(&c.ShutdownTimeout, setting{"shutdown-timeout", "ROOMFEED_SHUTDOWN_TIMEOUT", "how long shutdown waits for in-flight requests"}, 10*time.Second)
	f.str(&c.TLSCert, setting{"tls-cert", "ROOMFEED_TLS_CERT", "PEM certificate chain; with --tls-key, serve HTTPS with HTTP/2"}, "")
	f.str(&c.TLSKey, setting{"tls-key", "ROOMFEED_TLS_KEY", "PEM private key of --tls-cert"}, "")
	f.dur(&c.PresenceGrace, setting{"presence-grace", "ROOMFEED_PRESENCE_GRACE", "a reconnect within this emits no presence.left/joined"}, feed.DefaultPresenceGrace)
	// Security (token.go, README "Security"). The secret is read from the
	// environment only, so it never shows in a process list.
	c.JWTSecret = f.getenv("ROOMFEED_JWT_SECRET")
	f.str(&c.JWTPublicKeyFile, setting{"jwt-public-key-file", "ROOMFEED_JWT_PUBLIC_KEY_FILE", "PEM public keys (Ed25519 or RSA) that verify tokens; re-read when the file changes"}, "")
	f.str(&c.JWTKeysFile, setting{"jwt-keys-file", "ROOMFEED_JWT_KEYS_FILE", "JWKS document of public keys (Ed25519 or RSA) that verify tokens, selected by kid; re-read when the file changes"}, "")
	f.fs.BoolVar(&c.Insecure, "insecure", false, "serve without tokens on a non-loopback address: anyone who reaches it may read and change every room")
	return []func(){
		f.integer(&c.MaxDataBytes, setting{"max-data-bytes", "ROOMFEED_MAX_DATA_BYTES", "element data and message data limit"}, d.MaxDataBytes),
		f.integer(&c.SubscriberBuffer, setting{"subscriber-buffer", "ROOMFEED_SUBSCRIBER_BUFFER", "events buffered per subscriber before it is dropped as slow"}, sse.DefaultBuffer),
		f.integer(&c.CatchUpReads, setting{"catch-up-reads", "ROOMFEED_CATCH_UP_READS", "reads of the history the SSE streams run at once (replays, hole fills, heads), shared between streams; at most the database pool"}, sse.DefaultCatchUpReads),
		f.integer(&c.CatchUpQueue, setting{"catch-up-queue", "ROOMFEED_CATCH_UP_QUEUE", "SSE streams catching up at once, waiting their turn (503 catch_up_busy beyond)"}, sse.DefaultCatchUpQueue),
		f.integer(&c.MaxFeedRooms, setting{"max-feed-rooms", "ROOMFEED_MAX_FEED_ROOMS", "rooms per multiplexed stream (GET /events?room=...)"}, d.MaxFeedRooms),
		f.list(&c.CORSOrigins, setting{"cors-origins", "ROOMFEED_CORS_ORIGINS", "comma-separated browser origins allowed to call the API"},
			func(o string) string { return strings.TrimRight(strings.TrimSpace(o), "/") }),
		f.list(&c.TrustedProxies, setting{"trusted-proxies", "ROOMFEED_TRUSTED_PROXIES", "comma-separated proxy IPs or CIDRs whose X-Forwarded-For gives the client address"}, strings.TrimSpace),
	}
}

// storageFlags registers the database, Redis and retention settings.
func (c *config) storageFlags(f *flagSet) {
	f.str(&c.DatabaseURL, setting{"database-url", "DATABASE_URL", "sqlite://<path> or postgres://..."}, "sqlite://data/roomfeed.db")
	f.dur(&c.DBTimeout, setting{"db-timeout", "ROOMFEED_DB_TIMEOUT", "how long a request waits for the database before it answers 503"}, 5*time.Second)
	f.str(&c.RedisURL, setting{"redis-url", "REDIS_URL", "redis://host:port/db; several hosts (redis://h1:7000,h2:7001) or redis-cluster:// = Redis Cluster; empty = in-process fan-out (one node)"}, "")
	f.str(&c.RedisPrefix, setting{"redis-prefix", "ROOMFEED_REDIS_PREFIX", "prefix of every Redis key"}, feedredis.DefaultPrefix)
	f.num(&c.RedisMaxLen, setting{"redis-maxlen", "ROOMFEED_REDIS_MAXLEN", "events kept per room stream in Redis (approximate)"}, feedredis.DefaultMaxLen)
	f.dur(&c.RelayInterval, setting{"relay-interval", "ROOMFEED_RELAY_INTERVAL", "how often committed events missing from Redis are republished"}, feedredis.DefaultRelayInterval)
	f.dur(&c.PresenceTTL, setting{"presence-ttl", "ROOMFEED_PRESENCE_TTL", "a crashed node's people leave within about this (Redis only)"}, feedredis.DefaultPresenceTTL)
	f.num(&c.HistoryKeep, setting{"history-keep", "ROOMFEED_HISTORY_KEEP", "events kept per room in the SQL history (0 = all); never trims unpublished events"}, 0)
	f.dur(&c.HistoryMaxAge, setting{"history-max-age", "ROOMFEED_HISTORY_MAX_AGE", "SQL history events older than this are trimmed (0 = never)"}, 0)
	f.dur(&c.RetentionInterval, setting{"retention-interval", "ROOMFEED_RETENTION_INTERVAL", "how often the SQL history retention and the trimming of expired idempotency keys run"}, time.Minute)
	f.dur(&c.IdempotencyTTL, setting{"idempotency-ttl", "ROOMFEED_IDEMPOTENCY_TTL", "how long a write's idempotency key is kept: a retry within it gets the first answer"}, repo.DefaultIdempotencyTTL)
	f.num(&c.VersionsKeep, setting{"versions-keep", "ROOMFEED_VERSIONS_KEEP", "versions kept per element in SQL (at least), the bases a stale If-Match can merge from"}, repo.DefaultVersionsKeep)
}

// limitFlags registers the per-client and per-node limits.
func (c *config) limitFlags(f *flagSet) []func() {
	d := api.DefaultConfig().Limits
	l := &c.Limits
	f.dur(&l.BodyTimeout, setting{"body-timeout", "ROOMFEED_BODY_TIMEOUT", "time to receive a write's body"}, d.BodyTimeout)
	var rate, signalRate int64
	f.num(&rate, setting{"write-rate", "ROOMFEED_WRITE_RATE", "writes per second per token (429 beyond)"}, int64(d.WriteRate))
	f.num(&signalRate, setting{"signal-rate", "ROOMFEED_SIGNAL_RATE", "signals per second per token, per address in open mode (429 beyond)"}, int64(d.SignalRate))
	return []func(){
		f.integer(&l.MaxElementsPerRoom, setting{"max-elements-per-room", "ROOMFEED_MAX_ELEMENTS_PER_ROOM", "elements one room may hold"}, d.MaxElementsPerRoom),
		f.integer(&l.MaxMessageBytes, setting{"max-message-bytes", "ROOMFEED_MAX_MESSAGE_BYTES", "custom message data limit"}, d.MaxMessageBytes),
		f.integer(&l.StreamsPerToken, setting{"max-streams-per-token", "ROOMFEED_MAX_STREAMS_PER_TOKEN", "open feeds per token"}, d.StreamsPerToken),
		f.integer(&l.StreamsPerIP, setting{"max-streams-per-ip", "ROOMFEED_MAX_STREAMS_PER_IP", "open feeds per client address"}, d.StreamsPerIP),
		f.integer(&l.MaxStreams, setting{"max-streams", "ROOMFEED_MAX_STREAMS", "open feeds on this node (503 beyond); 0 = the file descriptor limit less a reserve"}, 0),
		f.integer(&l.WriteBurst, setting{"write-burst", "ROOMFEED_WRITE_BURST", "writes per token allowed at once"}, d.WriteBurst),
		f.integer(&l.SignalBurst, setting{"signal-burst", "ROOMFEED_SIGNAL_BURST", "signals per token (or address) allowed at once"}, d.SignalBurst),
		func() { l.WriteRate, l.SignalRate = float64(rate), float64(signalRate) },
		func() {
			if l.MaxStreams == 0 {
				l.MaxStreams = defaultMaxStreams(d.MaxStreams)
			}
		},
	}
}

func (c config) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(strings.HasPrefix(c.DatabaseURL, "sqlite://") || strings.HasPrefix(c.DatabaseURL, "postgres://") ||
		strings.HasPrefix(c.DatabaseURL, "postgresql://"), "DATABASE_URL must start with sqlite://, postgres:// or postgresql://")
	if c.RedisURL != "" {
		if _, err := newRedisClient(c.RedisURL, false); err != nil {
			errs = append(errs, err)
		}
	}
	for _, o := range c.CORSOrigins {
		u, err := url.Parse(o)
		check(o != "*" && err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.Path == "",
			"ROOMFEED_CORS_ORIGINS: %q is not an origin such as https://app.example (\"*\" is not allowed)", o)
	}
	check(c.RedisMaxLen >= 100, "ROOMFEED_REDIS_MAXLEN must be at least 100")
	check(c.RelayInterval >= 100*time.Millisecond, "ROOMFEED_RELAY_INTERVAL must be at least 100ms")
	check(c.DebugAddr == "" || (isLoopback(c.DebugAddr) && (c.DebugAddr != c.Addr || strings.HasSuffix(c.Addr, ":0"))),
		"ROOMFEED_DEBUG_ADDR must be a loopback address such as 127.0.0.1:6060, not the listen address (the profiles have no token check)")
	check(c.Heartbeat >= 100*time.Millisecond, "ROOMFEED_HEARTBEAT must be at least 100ms")
	check(c.StreamWriteTimeout >= 100*time.Millisecond, "ROOMFEED_STREAM_WRITE_TIMEOUT must be at least 100ms")
	check(c.StreamPace >= 0 && c.StreamPace <= time.Second, "ROOMFEED_STREAM_PACE must be between 0 and 1s")
	check(c.MaxBodyBytes >= 1024, "ROOMFEED_MAX_BODY_BYTES must be at least 1024")
	check(c.MaxDataBytes >= 64 && int64(c.MaxDataBytes) <= c.MaxBodyBytes, "ROOMFEED_MAX_DATA_BYTES must be between 64 and the body limit")
	check(c.SubscriberBuffer >= 1 && c.SubscriberBuffer <= 1<<20, "ROOMFEED_SUBSCRIBER_BUFFER must be between 1 and 1048576")
	check(c.CatchUpReads >= 1 && c.CatchUpReads <= 1000, "ROOMFEED_CATCH_UP_READS must be between 1 and 1000")
	check(c.CatchUpQueue >= 1, "ROOMFEED_CATCH_UP_QUEUE must be at least 1")
	check(c.ShutdownTimeout > 0, "ROOMFEED_SHUTDOWN_TIMEOUT must be positive")
	check(c.DBTimeout >= 100*time.Millisecond, "ROOMFEED_DB_TIMEOUT must be at least 100ms")
	check((c.TLSCert == "") == (c.TLSKey == ""), "ROOMFEED_TLS_CERT and ROOMFEED_TLS_KEY must be set together")
	check(c.HistoryKeep >= 0, "ROOMFEED_HISTORY_KEEP must not be negative")
	check(c.HistoryMaxAge == 0 || c.HistoryMaxAge >= time.Second, "ROOMFEED_HISTORY_MAX_AGE must be 0 or at least 1s")
	check(c.RetentionInterval >= 100*time.Millisecond, "ROOMFEED_RETENTION_INTERVAL must be at least 100ms")
	check(c.IdempotencyTTL >= time.Second, "ROOMFEED_IDEMPOTENCY_TTL must be at least 1s")
	check(c.VersionsKeep >= 1 && c.VersionsKeep <= 1_000_000, "ROOMFEED_VERSIONS_KEEP must be between 1 and 1000000")
	check(c.PresenceGrace >= 0, "ROOMFEED_PRESENCE_GRACE must not be negative")
	check(c.PresenceTTL >= 300*time.Millisecond, "ROOMFEED_PRESENCE_TTL must be at least 300ms")
	check(c.MaxFeedRooms >= 1 && c.MaxFeedRooms <= 1000, "ROOMFEED_MAX_FEED_ROOMS must be between 1 and 1000")
	l := c.Limits
	check(l.MaxElementsPerRoom >= 1, "ROOMFEED_MAX_ELEMENTS_PER_ROOM must be at least 1")
	check(l.MaxMessageBytes >= 64 && int64(l.MaxMessageBytes) <= c.MaxBodyBytes, "ROOMFEED_MAX_MESSAGE_BYTES must be between 64 and the body limit")
	check(l.StreamsPerToken >= 1 && l.StreamsPerIP >= 1 && l.MaxStreams >= 1, "ROOMFEED_MAX_STREAMS, _PER_TOKEN and _PER_IP must be at least 1")
	check(l.WriteRate >= 1 && l.WriteBurst >= 1, "ROOMFEED_WRITE_RATE and ROOMFEED_WRITE_BURST must be at least 1")
	check(l.SignalRate >= 1 && l.SignalBurst >= 1, "ROOMFEED_SIGNAL_RATE and ROOMFEED_SIGNAL_BURST must be at least 1")
	check(l.BodyTimeout >= 100*time.Millisecond, "ROOMFEED_BODY_TIMEOUT must be at least 100ms")
	errs = append(errs, c.validateAuth())
	return errors.Join(errs...)
}

// newRedisClient returns the client of REDIS_URL (only checking it when
// open is false): a *redis.ClusterClient when the URL names several hosts
// (redis://h1:7000,h2:7001) or has the scheme redis-cluster:// (rediss-cluster://
// for TLS; more seed nodes also as ?addr=host:port), a *redis.Client
// otherwise. The query options are go-redis's (redis.ParseURL,
// redis.ParseClusterURL). Either honours its calls' context deadlines
// (ContextTimeoutEnabled): without it a node that hangs (stopped, or its
// packets lost) holds a call for the whole ReadTimeout (5 s), whatever
// deadline roomfeed gave it.
func newRedisClient(raw string, open bool) (redis.UniversalClient, error) {
	o, err := redisurl.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	if !open {
		return nil, nil
	}
	if o.Cluster != nil {
		o.Cluster.ContextTimeoutEnabled = true
		clusterTimeouts(o.Cluster)
	} else {
		o.Single.ContextTimeoutEnabled = true
	}
	return o.Client(), nil
}

// Timeouts of a Cluster client whose REDIS_URL does not set them
// (dial_timeout, dialer_retries, read_timeout).
const (
	clusterDialTimeout   = time.Second
	clusterDialerRetries = 2
	clusterReadTimeout   = time.Second
)

// clusterTimeouts sets the timeouts REDIS_URL left to go-redis's defaults
// (5 s dials, tried 5 times, 5 s reads). go-redis reloads the slot map with
// no deadline of its own, asking the nodes one by one in random order: with
// its defaults, a master that hangs, or whose host is gone (no refusal,
// packets lost), kept the map stale, and its rooms on the dead master after
// the promotion, for 5 s at a read and up to 25 s at a dial. roomfeed's own
// calls have shorter deadlines.
func clusterTimeouts(opts *redis.ClusterOptions) {
	if opts.DialTimeout == 0 {
		opts.DialTimeout = clusterDialTimeout
	}
	if opts.DialerRetries == 0 {
		opts.DialerRetries = clusterDialerRetries
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = clusterReadTimeout
	}
}

// webDir returns the web app directory if it holds a built app.
func (c config) webDir() string {
	if _, err := os.Stat(c.WebDir + "/index.html"); err != nil {
		return ""
	}
	return c.WebDir
}

// logAttrs describes the configuration without secrets.
func (c config) logAttrs() []slog.Attr {
	return []slog.Attr{
		slog.String("addr", c.Addr),
		slog.String("database", redactURL(c.DatabaseURL)),
		slog.String("redis", redactURL(c.RedisURL)),
		slog.Any("cors_origins", c.CORSOrigins),
		slog.Int64("redis_maxlen", c.RedisMaxLen),
		slog.Int64("history_keep", c.HistoryKeep),
		slog.Duration("history_max_age", c.HistoryMaxAge),
		slog.Duration("idempotency_ttl", c.IdempotencyTTL),
		slog.Int64("versions_keep", c.VersionsKeep),
		slog.Duration("heartbeat", c.Heartbeat),
		slog.Int("catch_up_reads", c.CatchUpReads),
		slog.Int("catch_up_queue", c.CatchUpQueue),
		slog.Int64("max_body_bytes", c.MaxBodyBytes),
		slog.Int("max_data_bytes", c.MaxDataBytes),
		slog.String("web_dir", c.WebDir),
		slog.Bool("tls", c.TLSCert != ""),
		slog.String("auth", c.authMode()),
		slog.Any("trusted_proxies", c.TrustedProxies),
		slog.Any("limits", c.Limits),
	}
}

func redactURL(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}
