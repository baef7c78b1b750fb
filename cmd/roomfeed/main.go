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

	"github.com/redis/go-redis/v9"

	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/repo"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "roomfeed:", err)
		}
		os.Exit(1)
	}
}

// run starts the service and blocks until ctx is cancelled, then shuts down
// in order: refuse new streams and end open ones, stop the HTTP server
// (finishing in-flight writes), stop the background loops, close Redis, close
// the database.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger, err := newLogger(cfg.LogFormat, stderr)
	if err != nil {
		return err
	}
	logger.LogAttrs(ctx, slog.LevelInfo, "starting", cfg.logAttrs()...)

	store, err := repo.Open(ctx, cfg.DatabaseURL, repo.Options{Logger: logger})
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer store.Close()

	hub := feed.NewHub(cfg.SubscriberBuffer)
	hist := api.History{Store: store}
	ready := map[string]api.Pinger{"database": store}
	var (
		log        api.EventLog
		background []func(context.Context) error
	)
	if cfg.RedisURL == "" {
		log = feed.NewMemLog(hub, hist)
	} else {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return fmt.Errorf("REDIS_URL: %w", err)
		}
		client := redis.NewClient(opts)
		defer client.Close()
		rl := feed.NewRedisLog(client, hub, hist, feed.RedisOptions{
			Prefix: cfg.RedisPrefix,
			MaxLen: cfg.RedisMaxLen,
			Logger: logger,
		})
		log = rl
		ready["redis"] = rl
		background = append(background, rl.Run, func(ctx context.Context) error {
			return rl.Relay(ctx, hist, cfg.RelayInterval)
		})
	}

	srv := api.New(api.Config{
		CORSOrigins:  cfg.CORSOrigins,
		MaxBodyBytes: cfg.MaxBodyBytes,
		MaxDataBytes: cfg.MaxDataBytes,
		Heartbeat:    cfg.Heartbeat,
		WriteTimeout: cfg.StreamWriteTimeout,
		WebDir:       cfg.webDir(),
		Ready:        ready,
	}, store, log, logger)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	httpSrv := &http.Server{
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
	go func() { serveErr <- httpSrv.Serve(ln) }()
	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())
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
	hub.Close()
	srv.CloseStreams(shutdownCtx)
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		logger.LogAttrs(ctx, slog.LevelWarn, "shutdown", slog.Any("error", err))
		_ = httpSrv.Close()
	}
	<-serveErr
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
