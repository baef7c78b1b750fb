// Package api owns roomfeed's HTTP surface: the Gin routes, the JSON
// handlers, errors, CORS, request logging, authorization and limits. The
// feed routes parse, authorize and limit a request, then hand it to the sse
// engine, which serves the stream. It consumes the SQL store and the event
// log through the small interfaces declared here.
package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/roomfeed/roomfeed"
	"github.com/roomfeed/roomfeed/repo"
	"github.com/roomfeed/roomfeed/sse"
)

// Store is the SQL store the handlers need.
type Store interface {
	Put(ctx context.Context, room, id, kind string, data json.RawMessage, pre repo.Precondition, meta repo.Meta) (repo.Outcome, error)
	Patch(ctx context.Context, room, id string, patch json.RawMessage, pre repo.Precondition, meta repo.Meta) (repo.Outcome, error)
	Delete(ctx context.Context, room, id string, pre repo.Precondition, meta repo.Meta) (repo.Outcome, error)
	Message(ctx context.Context, room, name string, data json.RawMessage, meta repo.Meta) (repo.Outcome, error)
	Get(ctx context.Context, room, id string) (roomfeed.Element, error)
	Snapshot(ctx context.Context, room string) (repo.Snapshot, error)
	SnapshotAt(ctx context.Context, room string, at int64) (repo.Snapshot, error)
	History(ctx context.Context, room, id string, before int64, limit int) (repo.History, error)
	Revert(ctx context.Context, room, id string, to int64, pre repo.Precondition, meta repo.Meta) (repo.Outcome, error)
	Head(ctx context.Context, room string) (int64, error)
	Oldest(ctx context.Context, room string) (int64, error)
	Ping(ctx context.Context) error
	// OnCommit sets the hook that gets the events of every committed batch
	// of writes, in commit order, before they are answered.
	OnCommit(fn func(events []roomfeed.Event))
}

// EventLog carries committed events, and signals, to every node (the feed
// engine reads the same log as its sse.Source).
type EventLog interface {
	// PublishAll hands committed events, in seq order per room, to the
	// log; its error is about the events it left out.
	PublishAll(ctx context.Context, evs []roomfeed.Event) error
	Signaler
}

// Signaler delivers a signal, an ephemeral event (Seq 0, made by
// feed.SignalEvent), at once to the room's current subscribers on every
// node: never recorded, never replayed, at most once. A log that cannot
// reach its backing service answers feed.ErrUnavailable.
type Signaler interface {
	Signal(ctx context.Context, ev roomfeed.Event) error
}

// Pinger is a dependency /readyz checks.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Config holds the HTTP-level settings.
type Config struct {
	CORSOrigins  []string      // allowed browser origins; empty = same origin only
	MaxBodyBytes int64         // request body limit
	MaxDataBytes int           // element data / message data limit
	PublishWait  time.Duration // how long one publish of committed events may take
	WebDir       string        // built web app; empty or missing = a short placeholder page
	WebClient    WebClient     // what GET /config.json tells the web app
	Ready        map[string]Pinger
	Metrics      *Metrics // nil = no /metrics and nothing recorded
	MaxFeedRooms int      // rooms per multiplexed stream
	Presence     Presence // nil = no presence

	Auth           *Verifier // checks tokens on every room route; nil = open development mode
	TrustedProxies []string  // proxies (IPs or CIDRs) whose X-Forwarded-For is believed; empty = none
	Limits         Limits    // per-client and per-node limits (limits.go)
}

// DefaultConfig returns the settings used where a Config field is zero or
// negative.
func DefaultConfig() Config {
	c := Config{MaxBodyBytes: 256 << 10, MaxDataBytes: 64 << 10, MaxFeedRooms: 32, PublishWait: 5 * time.Second}
	c.Limits = DefaultLimits(c.MaxDataBytes)
	return c
}

func (c *Config) defaults() {
	d := DefaultConfig()
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.MaxDataBytes <= 0 {
		c.MaxDataBytes = d.MaxDataBytes
	}
	if c.MaxFeedRooms <= 0 {
		c.MaxFeedRooms = d.MaxFeedRooms
	}
	if c.PublishWait <= 0 {
		c.PublishWait = d.PublishWait
	}
	c.Limits.defaults(c.MaxDataBytes)
}

// Server is roomfeed's HTTP handler.
type Server struct {
	cfg    Config
	store  Store
	log    EventLog
	feeds  *sse.Engine
	logger *slog.Logger
	router *gin.Engine
	limits *limiter
	// opening bounds the streams being opened at once (serveFeed).
	opening chan struct{}
	// publisher publishes the events of committed writes (publish.go).
	publisher *publisher
}

// New builds the routes; the feed routes serve their streams with feeds.
// The caller closes feeds before shutting down the http.Server, since
// Shutdown waits for open streams, and calls WaitPublishes after it.
func New(cfg Config, store Store, log EventLog, feeds *sse.Engine, logger *slog.Logger) *Server {
	cfg.defaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, store: store, log: log, feeds: feeds, logger: logger, limits: newLimiter(cfg.Limits),
		opening: make(chan struct{}, maxOpening)}
	s.publisher = newPublisher(log, cfg.PublishWait, cfg.Metrics, logger)
	store.OnCommit(s.publisher.committed)
	s.router = s.routes()
	return s
}

func (s *Server) routes() *gin.Engine {
	r := gin.New()
	r.HandleMethodNotAllowed = true
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.ContextWithFallback = false
	if err := r.SetTrustedProxies(s.cfg.TrustedProxies); err != nil {
		s.logger.Error("trusted proxies ignored", slog.Any("error", err))
		_ = r.SetTrustedProxies(nil)
	}
	r.Use(s.requestLog, s.cfg.Metrics.observe, s.recovery, s.limitHeaders, s.cors)

	r.GET("/healthz", s.healthz)
	r.GET("/readyz", s.readyz)
	r.GET("/openapi.json", s.openAPI)
	r.GET("/config.json", s.webConfig)
	r.GET(multiEventsRoute, s.multiEvents)
	if s.cfg.Metrics != nil {
		r.GET("/metrics", s.cfg.Metrics.handler())
	}

	rooms := r.Group("/rooms/:room", s.authorize, s.roomName, s.limitRate, s.bodyDeadline)
	rooms.GET("/elements", handle(s.snapshot))
	rooms.POST("/elements", handle(s.createElement))
	rooms.GET("/elements/:id", handle(s.getElement))
	rooms.PUT("/elements/:id", handle(s.putElement))
	rooms.PATCH("/elements/:id", handle(s.patchElement))
	rooms.DELETE("/elements/:id", handle(s.deleteElement))
	rooms.GET("/elements/:id/history", handle(s.history))
	rooms.POST("/elements/:id/revert", handle(s.revertElement))
	rooms.POST("/messages", handle(s.postMessage))
	rooms.POST("/signals", handle(s.postSignal))
	rooms.GET("/events", s.events)
	rooms.GET("/presence", s.presence)

	r.NoRoute(s.web)
	r.NoMethod(func(c *gin.Context) {
		writeError(c, errMethodNotAllowed)
	})
	return r
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.router.ServeHTTP(w, r) }

// waitOrDone runs wait and returns when it does or when ctx is done,
// whichever comes first (wait then goes on in the background).
func waitOrDone(ctx context.Context, wait func()) {
	done := make(chan struct{})
	go func() {
		wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

func (s *Server) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"status": "ok"})
}

func (s *Server) readyz(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	checks := gin.H{}
	status := http.StatusOK
	for name, p := range s.cfg.Ready {
		if err := p.Ping(ctx); err != nil {
			checks[name] = "unavailable"
			status = http.StatusServiceUnavailable
			continue
		}
		checks[name] = "ok"
	}
	c.JSON(status, gin.H{"ready": status == http.StatusOK, "checks": checks})
}
