package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/roomfeed/roomfeed/sse"
)

// Metrics are the Prometheus metrics of the HTTP surface and the feed on
// this node. A nil *Metrics records nothing.
type Metrics struct {
	gatherer prometheus.Gatherer

	requests       *prometheus.CounterVec
	writeLatency   *prometheus.HistogramVec
	written        *prometheus.CounterVec
	published      prometheus.Counter
	publishErrors  prometheus.Counter
	publishQueue   prometheus.Gauge
	replayed       prometheus.Counter
	delivered      prometheus.Counter
	deliveryLag    prometheus.Histogram
	streamsEnded   *prometheus.CounterVec
	dependencyErrs *prometheus.CounterVec
	signals        prometheus.Counter
	historyPages   prometheus.Counter
	historyEvents  prometheus.Counter
	historyReads   *prometheus.CounterVec
	replays        prometheus.Counter
	keyReuses      prometheus.Counter
	catchUpReads   *prometheus.CounterVec
	catchUpJoined  *prometheus.CounterVec
	catchUpWaiting prometheus.Gauge
	catchUpStreams prometheus.Gauge
	catchUpRefused prometheus.Counter
}

// FeedStats are counters the feed keeps itself.
type FeedStats interface {
	Subscribers() int
	Dropped() uint64
}

// NewMetrics registers roomfeed's metrics with reg. stats, when not nil,
// reports subscribers and slow-consumer drops from the hub. extra lists more
// counters read at scrape time (for example events the relay republished).
func NewMetrics(reg *prometheus.Registry, stats FeedStats, extra map[string]func() float64) *Metrics {
	m := &Metrics{
		gatherer: reg,
		requests: counterVec(reg, "roomfeed_http_requests_total", "HTTP requests by route, method and status.", "route", "method", "status"),
		writeLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "roomfeed_write_duration_seconds", Help: "Time to answer a write (its commit; the publish runs after the answer), by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"route"}),
		written:       counterVec(reg, "roomfeed_events_written_total", "Events committed through this node, by kind (element or message).", "kind"),
		published:     counter(reg, "roomfeed_events_published_total", "Committed events this node published to the log after the write."),
		publishErrors: counter(reg, "roomfeed_publish_errors_total", "Publishes of committed events (one per batch handed to the log) that failed or left events out (the relay republishes them)."),
		publishQueue:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "roomfeed_publish_queue_events", Help: "Committed events waiting for the log (at most 8,192; beyond that the writers wait)."}),
		replayed:      counter(reg, "roomfeed_events_replayed_total", "Events sent to subscribers from history (catch-up and gap filling)."),
		delivered:     counter(reg, "roomfeed_events_delivered_total", "Live events written to subscribers."),
		deliveryLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "roomfeed_delivery_lag_seconds", Help: "Time from an event reaching this node's hub to its write to a subscriber: once per write, the write's oldest event.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}),
		streamsEnded:   counterVec(reg, "roomfeed_streams_ended_total", "SSE streams ended, by reason (client_gone, slow_consumer, shutdown, error, auth_expired).", "reason"),
		dependencyErrs: counterVec(reg, "roomfeed_dependency_errors_total", "Requests that failed because a dependency was down, by dependency (database, log).", "dependency"),
		signals:        counter(reg, "roomfeed_signals_total", "Signals accepted through this node (sent to the log; never recorded)."),
		historyPages:   counter(reg, "roomfeed_history_pages_total", "JSON pages of history answered (GET /rooms/{room}/events as JSON)."),
		historyEvents:  counter(reg, "roomfeed_history_events_total", "Events sent in JSON pages of history."),
		historyReads:   counterVec(reg, "roomfeed_history_reads_total", "Reads of the past answered, by kind: versions (an element's history) or snapshot_at (the room as of a seq).", "kind"),
		replays:        counter(reg, "roomfeed_idempotent_replays_total", "Writes answered with the recorded answer of their idempotency key (nothing applied)."),
		keyReuses:      counter(reg, "roomfeed_idempotency_key_reuses_total", "Writes refused because their idempotency key was used for another request (422)."),
		catchUpReads:   counterVec(reg, "roomfeed_catchup_reads_total", "Reads of the log the SSE streams made (replays, hole fills, heads), by kind: events or head.", "kind"),
		catchUpJoined:  counterVec(reg, "roomfeed_catchup_reads_joined_total", "Reads a stream took from another stream's read instead of reading the log itself, by kind: events or head.", "kind"),
		catchUpWaiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "roomfeed_catchup_waiting", Help: "SSE streams waiting for a read of the log."}),
		catchUpStreams: prometheus.NewGauge(prometheus.GaugeOpts{Name: "roomfeed_catchup_streams", Help: "SSE streams admitted to catch up whose replay is not sent yet."}),
		catchUpRefused: counter(reg, "roomfeed_catchup_refused_total", "SSE streams refused with 503 catch_up_busy: too many streams were catching up."),
	}
	reg.MustRegister(m.writeLatency, m.deliveryLag, m.catchUpWaiting, m.catchUpStreams, m.publishQueue)
	if stats != nil {
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "roomfeed_subscribers", Help: "SSE subscribers connected to this node.",
			}, func() float64 { return float64(stats.Subscribers()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "roomfeed_subscribers_dropped_slow_total", Help: "Subscribers dropped because their buffer was full.",
			}, func() float64 { return float64(stats.Dropped()) }),
		)
	}
	for name, f := range extra {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: "See the README's metrics list."}, f))
	}
	return m
}

// counter makes and registers a counter.
func counter(reg prometheus.Registerer, name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	reg.MustRegister(c)
	return c
}

// counterVec makes and registers a counter with labels.
func counterVec(reg prometheus.Registerer, name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	reg.MustRegister(c)
	return c
}

// handler serves the metrics.
func (m *Metrics) handler() gin.HandlerFunc {
	h := promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{})
	return func(c *gin.Context) { h.ServeHTTP(c.Writer, c.Request) }
}

// observe is the metrics middleware: requests by route and status, the
// latency of writes, idempotent replays and reused keys.
func (m *Metrics) observe(c *gin.Context) {
	if m == nil {
		c.Next()
		return
	}
	start := time.Now()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	method := c.Request.Method
	m.requests.WithLabelValues(route, method, strconv.Itoa(c.Writer.Status())).Inc()
	switch c.GetString(errorCodeKey) {
	case "database_unavailable":
		m.dependencyErrs.WithLabelValues("database").Inc()
	case "idempotency_key_reused":
		m.keyReuses.Inc()
	}
	if c.GetBool(replayedKey) {
		m.replays.Inc()
	}
	switch method {
	case http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodPost:
		m.writeLatency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	}
}

func (m *Metrics) wrote(message bool) {
	if m == nil {
		return
	}
	if message {
		m.written.WithLabelValues("message").Inc()
	} else {
		m.written.WithLabelValues("element").Inc()
	}
}

// publishQueued records the committed events waiting for the log.
func (m *Metrics) publishQueued(n int) {
	if m != nil {
		m.publishQueue.Set(float64(n))
	}
}

// publishResult counts a publish of n committed events.
func (m *Metrics) publishResult(n int, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.publishErrors.Inc()
		m.dependencyErrs.WithLabelValues("log").Inc()
		return
	}
	m.published.Add(float64(n))
}

// signaled counts a signal accepted through this node.
func (m *Metrics) signaled() {
	if m != nil {
		m.signals.Inc()
	}
}

// historyPage counts a JSON page of history answered with n events.
func (m *Metrics) historyPage(n int) {
	if m != nil {
		m.historyPages.Inc()
		m.historyEvents.Add(float64(n))
	}
}

// historyRead counts a read of the past answered: kind is versions or
// snapshot_at.
func (m *Metrics) historyRead(kind string) {
	if m != nil {
		m.historyReads.WithLabelValues(kind).Inc()
	}
}

// Metrics is the feed engine's sse.Observer.
var _ sse.Observer = (*Metrics)(nil)

// EventsReplayed counts events sent to subscribers from history.
func (m *Metrics) EventsReplayed(n int) {
	if m != nil && n > 0 {
		m.replayed.Add(float64(n))
	}
}

// EventsDelivered counts n live events written to a subscriber in one
// step, and observes the lag of the oldest of them: the time since the hub
// received it. Once per write, not per event: at a saturated node a write
// carries many events, and a histogram observation per event cost a tenth
// of its CPU.
func (m *Metrics) EventsDelivered(n int, oldest time.Time) {
	if m == nil {
		return
	}
	m.delivered.Add(float64(n))
	if !oldest.IsZero() {
		m.deliveryLag.Observe(time.Since(oldest).Seconds())
	}
}

// StreamEnded counts a stream that ended, by reason.
func (m *Metrics) StreamEnded(reason string) {
	if m != nil {
		m.streamsEnded.WithLabelValues(reason).Inc()
	}
}

// CatchUpRead counts a read of the log by the streams, or (joined) one a
// stream took from another's read.
func (m *Metrics) CatchUpRead(kind string, joined bool) {
	switch {
	case m == nil:
	case joined:
		m.catchUpJoined.WithLabelValues(kind).Inc()
	default:
		m.catchUpReads.WithLabelValues(kind).Inc()
	}
}

// CatchUpWaiting tracks the streams waiting for a read of the log.
func (m *Metrics) CatchUpWaiting(delta int) {
	if m != nil {
		m.catchUpWaiting.Add(float64(delta))
	}
}

// CatchUpAdmitted tracks the streams admitted to catch up.
func (m *Metrics) CatchUpAdmitted(delta int) {
	if m != nil {
		m.catchUpStreams.Add(float64(delta))
	}
}

// CatchUpRefused counts a stream refused because too many were catching up.
func (m *Metrics) CatchUpRefused() {
	if m != nil {
		m.catchUpRefused.Inc()
	}
}
