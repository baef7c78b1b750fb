package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/roomfeed/roomfeed/api"
	"github.com/roomfeed/roomfeed/feed"
	"github.com/roomfeed/roomfeed/feed/redis"
	"github.com/roomfeed/roomfeed/internal/memrelease"
	"github.com/roomfeed/roomfeed/repo"
	"github.com/roomfeed/roomfeed/sse"
)

// eventLog is the log between nodes: api publishes to it, the delivery
// engine reads it.
type eventLog interface {
	api.EventLog
	sse.Source
}

// node is the parts of one roomfeed process, built in dependency order:
// store → log and presence → delivery engine → HTTP API. close releases
// what build acquired, last first.
type node struct {
	cfg    config
	logger *slog.Logger

	store    *repo.Store
	hub      *sse.Hub
	log      eventLog
	presence api.Presence
	feeds    *sse.Engine
	api      *api.Server

	ready map[string]api.Pinger         // what /readyz checks
	extra map[string]func() float64     // counters read at scrape time
	loops []func(context.Context) error // background loops, run by serve
	// published reads how far the log has published each room (retention
	// never trims above it); nil: everything committed counts.
	published func(context.Context, []string) ([]int64, error)
	closers   []func()
}

// build opens the store and the log and assembles the node. On error,
// what was opened is closed.
func build(ctx context.Context, cfg config, logger *slog.Logger) (_ *node, err error) {
	n := &node{cfg: cfg, logger: logger, ready: map[string]api.Pinger{}, extra: map[string]func() float64{}}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	verifier, reloadKeys, err := cfg.verifier(logger)
	if err != nil {
		return nil, err
	}
	if reloadKeys != nil {
		n.loops = append(n.loops, reloadKeys)
	}
	n.store, err = repo.Open(ctx, cfg.DatabaseURL, repo.Options{Logger: logger, QueryTimeout: cfg.DBTimeout, VersionsKeep: int(cfg.VersionsKeep)})
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	n.onClose(func() { n.store.Close() })
	n.ready["database"] = n.store
	n.hub = sse.NewHub(cfg.SubscriberBuffer)
	if cfg.RedisURL == "" {
		n.openMemLog()
	} else if err := n.openRedisLog(); err != nil {
		return nil, err
	}
	n.addRetention()
	rel := memrelease.New(memrelease.Config{})
	n.loops = append(n.loops, rel.Run)
	n.extra["roomfeed_memory_releases_total"] = func() float64 { return float64(rel.Releases()) }
	n.assemble(verifier)
	return n, nil
}

// openMemLog makes the embedded default's log and presence: one process.
func (n *node) openMemLog() {
	n.log = feed.NewMemLog(n.hub, n.store)
	p := feed.NewMemPresence(n.hub, n.cfg.PresenceGrace)
	n.onClose(p.Close)
	n.presence = p
}

// openRedisLog makes the Redis log and presence (single Redis or Cluster)
// and their background loops: the reader, the relay, the signals'
// subscriber and presence refresh.
func (n *node) openRedisLog() error {
	client, err := newRedisClient(n.cfg.RedisURL, true)
	if err != nil {
		return err
	}
	n.onClose(func() { client.Close() })
	rl := redis.New(client, n.hub, n.store, redis.Options{Prefix: n.cfg.RedisPrefix, MaxLen: n.cfg.RedisMaxLen, Logger: n.logger})
	rp := redis.NewPresence(client, n.hub, redis.PresenceOptions{
		Prefix: n.cfg.RedisPrefix, Grace: n.cfg.PresenceGrace, TTL: n.cfg.PresenceTTL, Logger: n.logger,
	})
	n.log, n.presence, n.published = rl, rp, rl.StreamTops
	n.ready["redis"] = rl
	n.extra["roomfeed_events_relayed_total"] = func() float64 { return float64(rl.Relayed()) }
	relay := func(ctx context.Context) error { return rl.Relay(ctx, n.store, n.cfg.RelayInterval) }
	n.loops = append(n.loops, rl.Run, relay, rl.RunSignals, rp.Run)
	return nil
}

// addRetention adds the loop that deletes expired idempotency keys, and
// the SQL history retention loop when it is configured.
func (n *node) addRetention() {
	n.loops = append(n.loops, keyTrim(n.store, n.cfg.IdempotencyTTL, n.cfg.RetentionInterval, n.logger).Run)
	if n.cfg.HistoryKeep <= 0 && n.cfg.HistoryMaxAge <= 0 {
		return
	}
	r := &retention{store: n.store, tops: n.published, keep: n.cfg.HistoryKeep, maxAge: n.cfg.HistoryMaxAge,
		interval: n.cfg.RetentionInterval, lookBack: retentionLookBack, sweep: retentionSweep, logger: n.logger}
	n.loops = append(n.loops, r.Run)
}

// assemble builds the metrics, the delivery engine and the HTTP API.
func (n *node) assemble(verifier *api.Verifier) {
	cfg := n.cfg
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Read at scrape time, once the engine below is built.
	n.extra["roomfeed_stream_steps_paced_total"] = func() float64 { return float64(n.feeds.Paced()) }
	metrics := api.NewMetrics(registry, n.hub, n.extra)
	n.feeds = sse.New(n.hub, n.log, sse.Config{Heartbeat: cfg.Heartbeat, WriteTimeout: cfg.StreamWriteTimeout, Pace: cfg.StreamPace,
		CatchUpReads: cfg.CatchUpReads, CatchUpQueue: cfg.CatchUpQueue}, metrics, n.logger)
	n.api = api.New(api.Config{
		CORSOrigins:    cfg.CORSOrigins,
		MaxBodyBytes:   cfg.MaxBodyBytes,
		MaxDataBytes:   cfg.MaxDataBytes,
		WebDir:         cfg.webDir(),
		WebClient:      api.WebClient{ServerURL: cfg.WebServerURL, TokenEndpoint: cfg.WebTokenEndpoint},
		Ready:          n.ready,
		Metrics:        metrics,
		Presence:       n.presence,
		MaxFeedRooms:   cfg.MaxFeedRooms,
		Auth:           verifier,
		TrustedProxies: cfg.TrustedProxies,
		Limits:         cfg.Limits,
	}, n.store, n.log, n.feeds, n.logger)
}

func (n *node) onClose(fn func()) { n.closers = append(n.closers, fn) }

// close releases what build acquired, last first: presence, Redis, the
// database.
func (n *node) close() {
	for i := len(n.closers) - 1; i >= 0; i-- {
		n.closers[i]()
	}
	n.closers = nil
}
