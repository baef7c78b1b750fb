package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/feed"
	feedredis "github.com/roomfeed/roomfeed/feed/redis"
)

var errUsage = errors.New("usage")

// config is every setting of the service: defaults, then environment, then
// flags; validated once.
type config struct {
	Addr               string
	DatabaseURL        string
	RedisURL           string
	RedisPrefix        string
	RedisMaxLen        int64
	RelayInterval      time.Duration
	CORSOrigins        []string
	Heartbeat          time.Duration
	StreamWriteTimeout time.Duration
	MaxBodyBytes       int64
	MaxDataBytes       int
	SubscriberBuffer   int
	WebDir             string
	LogFormat          string
	ShutdownTimeout    time.Duration
	DBTimeout          time.Duration // repo.Options.QueryTimeout
	TLSCert, TLSKey    string        // PEM files; both set = HTTPS with HTTP/2 (tls.go)
	HistoryKeep        int64         // events kept per room in SQL; 0 = all
	HistoryMaxAge      time.Duration // age beyond which SQL events are trimmed; 0 = never
	RetentionInterval  time.Duration
	PresenceGrace      time.Duration
	PresenceTTL        time.Duration
	MaxFeedRooms       int

	JWTSecret        string // HS256 key; never logged
	JWTPublicKeyFile string // PEM Ed25519 or RSA public key
	Insecure         bool   // open mode on a non-loopback address
	TrustedProxies   []string
	Limits           api.Limits
}

// setting describes one configuration entry: its flag, its environment
// variable and its help text. The README's configuration table lists them.
type setting struct {
	flag, env, help string
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("roomfeed", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg config
	var cors string
	var errs []error
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	str := func(p *string, s setting, def string) {
		fs.StringVar(p, s.flag, env(s.env, def), s.help+" ($"+s.env+")")
	}
	dur := func(p *time.Duration, s setting, def time.Duration) {
		v := def
		if raw := getenv(s.env); raw != "" {
			d, err := time.ParseDuration(raw)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.env, err))
			}
			v = d
		}
		fs.DurationVar(p, s.flag, v, s.help+" ($"+s.env+")")
	}
	num := func(p *int64, s setting, def int64) {
		v := def
		if raw := getenv(s.env); raw != "" {
			n, err := strconv.ParseInt(raw, 10, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", s.env, err))
			}
			v = n
		}
		fs.Int64Var(p, s.flag, v, s.help+" ($"+s.env+")")
	}
	var maxData, buffer int64
	str(&cfg.Addr, setting{"addr", "ROOMFEED_ADDR", "listen address"}, "127.0.0.1:8080")
	str(&cfg.DatabaseURL, setting{"database-url", "DATABASE_URL", "sqlite://<path> or postgres://..."}, "sqlite://data/roomfeed.db")
	str(&cfg.RedisURL, setting{"redis-url", "REDIS_URL", "redis://host:port/db; several hosts (redis://h1:7000,h2:7001) or redis-cluster:// = Redis Cluster; empty = in-process fan-out (one node)"}, "")
	str(&cfg.RedisPrefix, setting{"redis-prefix", "ROOMFEED_REDIS_PREFIX", "prefix of every Redis key"}, feedredis.DefaultPrefix)
	dur(&cfg.DBTimeout, setting{"db-timeout", "ROOMFEED_DB_TIMEOUT", "how long a request waits for the database before it answers 503"}, 5*time.Second)
	num(&cfg.RedisMaxLen, setting{"redis-maxlen", "ROOMFEED_REDIS_MAXLEN", "events kept per room stream in Redis (approximate)"}, feedredis.DefaultMaxLen)
	dur(&cfg.RelayInterval, setting{"relay-interval", "ROOMFEED_RELAY_INTERVAL", "how often committed events missing from Redis are republished"}, feedredis.DefaultRelayInterval)
	str(&cors, setting{"cors-origins", "ROOMFEED_CORS_ORIGINS", "comma-separated browser origins allowed to call the API"}, "")
	dur(&cfg.Heartbeat, setting{"heartbeat", "ROOMFEED_HEARTBEAT", "interval of the SSE ping comment"}, 15*time.Second)
	dur(&cfg.StreamWriteTimeout, setting{"stream-write-timeout", "ROOMFEED_STREAM_WRITE_TIMEOUT", "deadline of each write to an SSE client"}, 10*time.Second)
	num(&cfg.MaxBodyBytes, setting{"max-body-bytes", "ROOMFEED_MAX_BODY_BYTES", "request body limit"}, 256<<10)
	num(&maxData, setting{"max-data-bytes", "ROOMFEED_MAX_DATA_BYTES", "element data and message data limit"}, 64<<10)
	num(&buffer, setting{"subscriber-buffer", "ROOMFEED_SUBSCRIBER_BUFFER", "events buffered per subscriber before it is dropped as slow"}, 1024)
	str(&cfg.WebDir, setting{"web-dir", "ROOMFEED_WEB_DIR", "directory of the built web app"}, "web/dist")
	str(&cfg.LogFormat, setting{"log-format", "ROOMFEED_LOG_FORMAT", "text or json"}, "text")
	dur(&cfg.ShutdownTimeout, setting{"shutdown-timeout", "ROOMFEED_SHUTDOWN_TIMEOUT", "how long shutdown waits for in-flight requests"}, 10*time.Second)
	str(&cfg.TLSCert, setting{"tls-cert", "ROOMFEED_TLS_CERT", "PEM certificate chain; with --tls-key, serve HTTPS with HTTP/2"}, "")
	str(&cfg.TLSKey, setting{"tls-key", "ROOMFEED_TLS_KEY", "PEM private key of --tls-cert"}, "")
	num(&cfg.HistoryKeep, setting{"history-keep", "ROOMFEED_HISTORY_KEEP", "events kept per room in the SQL history (0 = all); never trims unpublished events"}, 0)
	dur(&cfg.HistoryMaxAge, setting{"history-max-age", "ROOMFEED_HISTORY_MAX_AGE", "SQL history events older than this are trimmed (0 = never)"}, 0)
	dur(&cfg.RetentionInterval, setting{"retention-interval", "ROOMFEED_RETENTION_INTERVAL", "how often the SQL history retention runs"}, time.Minute)
	dur(&cfg.PresenceGrace, setting{"presence-grace", "ROOMFEED_PRESENCE_GRACE", "a reconnect within this emits no presence.left/joined"}, feed.DefaultPresenceGrace)
	dur(&cfg.PresenceTTL, setting{"presence-ttl", "ROOMFEED_PRESENCE_TTL", "a crashed node's people leave within about this (Redis only)"}, feedredis.DefaultPresenceTTL)
	var feedRooms int64
	num(&feedRooms, setting{"max-feed-rooms", "ROOMFEED_MAX_FEED_ROOMS", "rooms per multiplexed stream (GET /events?room=...)"}, 32)

	// Security (token.go, README "Security"). The secret is read from the
	// environment only, so it never shows in a process list.
	cfg.JWTSecret = getenv("ROOMFEED_JWT_SECRET")
	str(&cfg.JWTPublicKeyFile, setting{"jwt-public-key-file", "ROOMFEED_JWT_PUBLIC_KEY_FILE", "PEM public key (Ed25519 or RSA) that verifies tokens"}, "")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "serve without tokens on a non-loopback address: anyone who reaches it may read and change every room")
	var proxies string
	var maxElements, maxMessage, perToken, perIP, maxStreams, writeRate, writeBurst int64
	str(&proxies, setting{"trusted-proxies", "ROOMFEED_TRUSTED_PROXIES", "comma-separated proxy IPs or CIDRs whose X-Forwarded-For gives the client address"}, "")
	num(&maxElements, setting{"max-elements-per-room", "ROOMFEED_MAX_ELEMENTS_PER_ROOM", "elements one room may hold"}, 10000)
	num(&maxMessage, setting{"max-message-bytes", "ROOMFEED_MAX_MESSAGE_BYTES", "custom message data limit"}, 16<<10)
	num(&perToken, setting{"max-streams-per-token", "ROOMFEED_MAX_STREAMS_PER_TOKEN", "open feeds per token"}, 16)
	num(&perIP, setting{"max-streams-per-ip", "ROOMFEED_MAX_STREAMS_PER_IP", "open feeds per client address"}, 128)
	num(&maxStreams, setting{"max-streams", "ROOMFEED_MAX_STREAMS", "open feeds on this node (503 beyond)"}, 10000)
	num(&writeRate, setting{"write-rate", "ROOMFEED_WRITE_RATE", "writes per second per token (429 beyond)"}, 20)
	num(&writeBurst, setting{"write-burst", "ROOMFEED_WRITE_BURST", "writes per token allowed at once"}, 40)
	dur(&cfg.Limits.BodyTimeout, setting{"body-timeout", "ROOMFEED_BODY_TIMEOUT", "time to receive a write's body"}, 10*time.Second)

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, errUsage
		}
		return cfg, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	cfg.MaxFeedRooms = int(feedRooms)
	cfg.MaxDataBytes = int(maxData)
	cfg.SubscriberBuffer = int(buffer)
	cfg.Limits.MaxElementsPerRoom, cfg.Limits.MaxMessageBytes = int(maxElements), int(maxMessage)
	cfg.Limits.StreamsPerToken, cfg.Limits.StreamsPerIP, cfg.Limits.MaxStreams = int(perToken), int(perIP), int(maxStreams)
	cfg.Limits.WriteRate, cfg.Limits.WriteBurst = float64(writeRate), int(writeBurst)
	for _, p := range strings.Split(proxies, ",") {
		if p = strings.TrimSpace(p); p != "" {
			cfg.TrustedProxies = append(cfg.TrustedProxies, p)
		}
	}
	for _, o := range strings.Split(cors, ",") {
		if o = strings.TrimRight(strings.TrimSpace(o), "/"); o != "" {
			cfg.CORSOrigins = append(cfg.CORSOrigins, o)
		}
	}
	errs = append(errs, cfg.validate())
	return cfg, errors.Join(errs...)
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
	check(c.Heartbeat >= 100*time.Millisecond, "ROOMFEED_HEARTBEAT must be at least 100ms")
	check(c.StreamWriteTimeout >= 100*time.Millisecond, "ROOMFEED_STREAM_WRITE_TIMEOUT must be at least 100ms")
	check(c.MaxBodyBytes >= 1024, "ROOMFEED_MAX_BODY_BYTES must be at least 1024")
	check(c.MaxDataBytes >= 64 && int64(c.MaxDataBytes) <= c.MaxBodyBytes, "ROOMFEED_MAX_DATA_BYTES must be between 64 and the body limit")
	check(c.SubscriberBuffer >= 1 && c.SubscriberBuffer <= 1<<20, "ROOMFEED_SUBSCRIBER_BUFFER must be between 1 and 1048576")
	check(c.ShutdownTimeout > 0, "ROOMFEED_SHUTDOWN_TIMEOUT must be positive")
	check(c.DBTimeout >= 100*time.Millisecond, "ROOMFEED_DB_TIMEOUT must be at least 100ms")
	check((c.TLSCert == "") == (c.TLSKey == ""), "ROOMFEED_TLS_CERT and ROOMFEED_TLS_KEY must be set together")
	check(c.HistoryKeep >= 0, "ROOMFEED_HISTORY_KEEP must not be negative")
	check(c.HistoryMaxAge == 0 || c.HistoryMaxAge >= time.Second, "ROOMFEED_HISTORY_MAX_AGE must be 0 or at least 1s")
	check(c.RetentionInterval >= 100*time.Millisecond, "ROOMFEED_RETENTION_INTERVAL must be at least 100ms")
	check(c.PresenceGrace >= 0, "ROOMFEED_PRESENCE_GRACE must not be negative")
	check(c.PresenceTTL >= 300*time.Millisecond, "ROOMFEED_PRESENCE_TTL must be at least 300ms")
	check(c.MaxFeedRooms >= 1 && c.MaxFeedRooms <= 1000, "ROOMFEED_MAX_FEED_ROOMS must be between 1 and 1000")
	l := c.Limits
	check(l.MaxElementsPerRoom >= 1, "ROOMFEED_MAX_ELEMENTS_PER_ROOM must be at least 1")
	check(l.MaxMessageBytes >= 64 && int64(l.MaxMessageBytes) <= c.MaxBodyBytes, "ROOMFEED_MAX_MESSAGE_BYTES must be between 64 and the body limit")
	check(l.StreamsPerToken >= 1 && l.StreamsPerIP >= 1 && l.MaxStreams >= 1, "ROOMFEED_MAX_STREAMS, _PER_TOKEN and _PER_IP must be at least 1")
	check(l.WriteRate >= 1 && l.WriteBurst >= 1, "ROOMFEED_WRITE_RATE and ROOMFEED_WRITE_BURST must be at least 1")
	check(l.BodyTimeout >= 100*time.Millisecond, "ROOMFEED_BODY_TIMEOUT must be at least 100ms")
	errs = append(errs, c.validateAuth())
	return errors.Join(errs...)
}

// newRedisClient returns the client of REDIS_URL (only checking it when
// open is false): a *redis.ClusterClient when the URL names several hosts
// (redis://h1:7000,h2:7001) or has the scheme redis-cluster:// (rediss-cluster://
// for TLS; more seed nodes also as ?addr=host:port), a *redis.Client
// otherwise. The query options are go-redis's (redis.ParseURL,
// redis.ParseClusterURL).
func newRedisClient(raw string, open bool) (redis.UniversalClient, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	scheme, cluster := u.Scheme, false
	switch u.Scheme {
	case "redis", "rediss":
	case "redis-cluster", "rediss-cluster":
		scheme, cluster = strings.TrimSuffix(u.Scheme, "-cluster"), true
	default:
		return nil, errors.New("REDIS_URL must start with redis://, rediss://, redis-cluster:// or rediss-cluster://")
	}
	hosts := strings.Split(u.Host, ",")
	if !cluster && len(hosts) == 1 {
		opts, err := redis.ParseURL(raw)
		if err != nil {
			return nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		if !open {
			return nil, nil
		}
		return redis.NewClient(opts), nil
	}
	if p := strings.Trim(u.Path, "/"); p != "" && p != "0" {
		return nil, fmt.Errorf("REDIS_URL: a Redis Cluster has only database 0, not %q", p)
	}
	seed := *u
	seed.Scheme, seed.Host, seed.Path = scheme, hosts[0], ""
	q := seed.Query()
	for _, h := range hosts[1:] {
		q.Add("addr", h)
	}
	seed.RawQuery = q.Encode()
	if slices.Contains(hosts, "") {
		return nil, errors.New("REDIS_URL: empty host in the list of cluster nodes")
	}
	opts, err := redis.ParseClusterURL(seed.String())
	if err != nil {
		return nil, fmt.Errorf("REDIS_URL: %w", err)
	}
	if !open {
		return nil, nil
	}
	return redis.NewClusterClient(opts), nil
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
		slog.Duration("heartbeat", c.Heartbeat),
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
