// Command roomfeed serves the roomfeed change feed: HTTP writes of room
// elements, recorded in SQL and fanned out as resumable Server-Sent Events.
// This file only wires the parts together.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/feed/redis"
	"github.com/roomfeed/roomfeed/repo"
	"github.com/roomfeed/roomfeed/sse"
)

func main() {
	gin.SetMode(gin.ReleaseMode) // no route list on stdout
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "roomfeed:", err)
		}
		code := 1
		var coded interface{ ExitCode() int }
		if errors.As(err, &coded) {
			code = coded.ExitCode()
		}
		os.Exit(code)
	}
}

// eventLog is the log between nodes: api publishes to it, the feed engine
// reads it.
type eventLog interface {
	api.EventLog
	sse.Source
}

// run starts the service and blocks until ctx is cancelled, then shuts down
// in order: refuse new streams and end open ones, stop the HTTP server
// (finishing in-flight writes), stop the background loops, close Redis, close
// the database.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "tail" {
		return runTail(ctx, args[1:], getenv, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "token" {
		return runToken(ctx, args[1:], getenv, stdout, stderr)
	}
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger, err := newLogger(cfg.LogFormat, stderr)
	if err != nil {
		return err
	}
	logger.LogAttrs(ctx, slog.LevelInfo, "starting", cfg.logAttrs()...)
	verifier, err := cfg.verifier()
	if err != nil {
		return err
	}
	if verifier == nil && !isLoopback(cfg.Addr) {
		logger.LogAttrs(ctx, slog.LevelWarn, "INSECURE: --insecure and no token key: anyone who reaches "+cfg.Addr+" can read and change every room")
	}

	store, err := repo.Open(ctx, cfg.DatabaseURL, repo.Options{Logger: logger, QueryTimeout: cfg.DBTimeout})
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer store.Close()

	hub := sse.NewHub(cfg.SubscriberBuffer)
	hist := store
	ready := map[string]api.Pinger{"database": store}
	var (
		log        eventLog
		extra      = map[string]func() float64{}
		presence   api.Presence
		background []func(context.Context) error
	)
	// published reads how far the log has published each room; nil: every
	// committed event counts as published (in-process log).
	var published func(context.Context, []string) ([]int64, error)
	if cfg.RedisURL == "" {
		log = feed.NewMemLog(hub, hist)
		mp := feed.NewMemPresence(hub, cfg.PresenceGrace)
		defer mp.Close()
		presence = mp
	} else {
		// A *redis.ClusterClient when REDIS_URL names a Redis Cluster: the
		// log and presence work on both (feed/redis).
		client, err := newRedisClient(cfg.RedisURL, true)
		if err != nil {
			return err
		}
		defer client.Close()
		rl := redis.New(client, hub, hist, redis.Options{
			Prefix: cfg.RedisPrefix,
			MaxLen: cfg.RedisMaxLen,
			Logger: logger,
		})
		extra["roomfeed_events_relayed_total"] = func() float64 { return float64(rl.Relayed()) }
		log = rl
		ready["redis"] = rl
		published = rl.StreamTops
		rp := redis.NewPresence(client, hub, redis.PresenceOptions{
			Prefix: cfg.RedisPrefix,
			Grace:  cfg.PresenceGrace,
			TTL:    cfg.PresenceTTL,
			Logger: logger,
		})
		presence = rp
		background = append(background, rl.Run, func(ctx context.Context) error {
			return rl.Relay(ctx, hist, cfg.RelayInterval)
		}, rp.Run)
	}

	if cfg.HistoryKeep > 0 || cfg.HistoryMaxAge > 0 {
		r := &retention{store: store, tops: published, keep: cfg.HistoryKeep, maxAge: cfg.HistoryMaxAge,
			interval: cfg.RetentionInterval, logger: logger}
		background = append(background, r.Run)
	}

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := api.NewMetrics(registry, hub, extra)

	feeds := sse.New(hub, log, sse.Config{Heartbeat: cfg.Heartbeat, WriteTimeout: cfg.StreamWriteTimeout}, metrics, logger)
	srv := api.New(api.Config{
		CORSOrigins:  cfg.CORSOrigins,
		MaxBodyBytes: cfg.MaxBodyBytes,
		MaxDataBytes: cfg.MaxDataBytes,
		WebDir:       cfg.webDir(),
		Ready:        ready,
		Metrics:      metrics,
		Presence:     presence,
		MaxFeedRooms: cfg.MaxFeedRooms,

		Auth:           verifier,
		TrustedProxies: cfg.TrustedProxies,
		Limits:         cfg.Limits,
	}, store, log, feeds, logger)

	tlsConfig, err := cfg.tlsConfig()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	httpSrv := &http.Server{
		TLSConfig:         tlsConfig, // nil = plain HTTP
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	var wg sync.WaitGroup
	for _, loop := range background {
		wg.Go(func() {
			if err := loop(bgCtx); err != nil {
				logger.LogAttrs(ctx, slog.LevelError, "background loop stopped", slog.Any("error", err))
			}
		})
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- serve(httpSrv, ln, tlsConfig != nil) }()
	fmt.Fprintf(stdout, "listening on %s://%s\n", scheme(tlsConfig), ln.Addr())
	logger.LogAttrs(ctx, slog.LevelInfo, "listening", slog.String("addr", ln.Addr().String()))

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		stopBackground()
		wg.Wait()
		return fmt.Errorf("serve: %w", err)
	}

	logger.LogAttrs(ctx, slog.LevelInfo, "shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	feeds.Close(shutdownCtx)
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		logger.LogAttrs(ctx, slog.LevelWarn, "shutdown", slog.Any("error", err))
		_ = httpSrv.Close()
	}
	<-serveErr
	srv.WaitPublishes(shutdownCtx)
	stopBackground()
	wg.Wait()
	logger.LogAttrs(ctx, slog.LevelInfo, "stopped")
	return nil
}

func newLogger(format string, w io.Writer) (*slog.Logger, error) {
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}
