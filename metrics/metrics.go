// Package metrics is Switchboard's Prometheus instrumentation. Every
// update is an atomic add: actors record what they see without sharing any
// other state.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds every collector. A nil *Metrics records nothing, so tests
// and tools may leave it out.
type Metrics struct {
	reg *prometheus.Registry

	Connections  *prometheus.GaugeVec   // role: client, operator, none (not joined)
	Joins        *prometheus.CounterVec // role
	Inbound      *prometheus.CounterVec // event
	Deliveries   *prometheus.CounterVec // event
	Refusals     *prometheus.CounterVec // code
	RateLimited  *prometheus.CounterVec // event
	MailboxDepth prometheus.Gauge
	Latency      prometheus.Histogram

	// Continuity: sessions that went away, recovered, and ended unrecovered;
	// messages kept while no operator was online.
	Recovery    *prometheus.CounterVec // outcome: away, recovered, fresh, expired
	QueuedNow   prometheus.Gauge       // player messages waiting for an operator
	QueueEvents *prometheus.CounterVec // what: queued, delivered, refused, expired, abandoned

	// Cluster mode (REDIS_URL); they stay at zero on a single node.
	NodeInfo        *prometheus.GaugeVec // node: always 1, names the node
	ClusterOut      prometheus.Counter   // messages published to Redis
	ClusterIn       prometheus.Counter   // messages received from other nodes
	ClusterErrs     prometheus.Counter   // failed Redis commands, malformed messages
	ClusterDrops    prometheus.Counter   // cross-node messages dropped: Redis away or too slow
	ClusterRedisUp  prometheus.Gauge
	ClusterNodeSeen prometheus.Gauge

	// Counters by event, resolved once: a label lookup hashes its values,
	// and deliveries are counted tens of thousands of times a second.
	inbound, delivered sync.Map // event -> prometheus.Counter
}

// counter is vec's counter for label, resolved once.
func counter(cache *sync.Map, vec *prometheus.CounterVec, label string) prometheus.Counter {
	if c, ok := cache.Load(label); ok {
		return c.(prometheus.Counter)
	}
	c := vec.WithLabelValues(label)
	cache.Store(label, c)
	return c
}

// New registers the collectors, plus Go runtime and process metrics.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{
		reg: reg,
		Connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_connections", Help: "Open sockets by role (none: connected, not joined).",
		}, []string{"role"}),
		Joins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_joins_total", Help: "Accepted joins by role.",
		}, []string{"role"}),
		Inbound: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_events_received_total", Help: "Events received from sockets, by event.",
		}, []string{"event"}),
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_deliveries_total", Help: "Events written to sockets, by event.",
		}, []string{"event"}),
		Refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_refusals_total", Help: "Refused events, by reason code.",
		}, []string{"code"}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_rate_limited_total", Help: "Events refused by a rate limit, by event (handshake for new connections).",
		}, []string{"event"}),
		MailboxDepth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_router_mailbox_depth", Help: "Messages waiting in the router's mailbox.",
		}),
		Latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "switchboard_delivery_seconds",
			Help:    "Time from receiving an event to handing each of its deliveries to a socket.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}),
		Recovery: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_recovery_total", Help: "Connection-state recovery by outcome: away (transport dropped, session kept), recovered, fresh (a reconnect that could not recover), expired (away past the window).",
		}, []string{"outcome"}),
		QueuedNow: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_offline_queue_messages", Help: "Player messages waiting for an operator to join.",
		}),
		QueueEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_offline_queue_total", Help: "Offline queue: messages queued, delivered, refused (queue full), expired (past their age), abandoned (their player left).",
		}, []string{"what"}),
		NodeInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_node_info", Help: "Always 1; the node label is this node's id.",
		}, []string{"node"}),
		ClusterOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_cluster_published_total", Help: "Messages published to the cluster through Redis.",
		}),
		ClusterIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_cluster_received_total", Help: "Messages received from other nodes through Redis.",
		}),
		ClusterErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_cluster_redis_errors_total", Help: "Failed Redis commands and malformed cluster messages.",
		}),
		ClusterDrops: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_cluster_dropped_total", Help: "Cross-node messages dropped because Redis was unreachable or too slow.",
		}),
		ClusterRedisUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_cluster_redis_up", Help: "1 when Redis is reachable (cluster mode only).",
		}),
		ClusterNodeSeen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_cluster_nodes", Help: "Nodes this node sees alive, itself included.",
		}),
	}
	for _, c := range []prometheus.Collector{m.NodeInfo, m.ClusterOut, m.ClusterIn, m.ClusterErrs, m.ClusterDrops, m.ClusterRedisUp, m.ClusterNodeSeen,
		m.Connections, m.Joins, m.Inbound, m.Deliveries, m.Refusals, m.RateLimited, m.MailboxDepth, m.Latency,
		m.Recovery, m.QueuedNow, m.QueueEvents,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	return m
}

// Handler serves the metrics in Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Delivered records one frame written to a socket, received at `at`.
func (m *Metrics) Delivered(event string, at time.Time) {
	if m == nil {
		return
	}
	counter(&m.delivered, m.Deliveries, event).Inc()
	if !at.IsZero() {
		m.Latency.Observe(time.Since(at).Seconds())
	}
}

// Received records an event from a socket.
func (m *Metrics) Received(event string) {
	if m != nil {
		counter(&m.inbound, m.Inbound, event).Inc()
	}
}

// Refused records a refused event.
func (m *Metrics) Refused(event, code string) {
	if m == nil {
		return
	}
	m.Refusals.WithLabelValues(code).Inc()
	if code == "rate_limited" {
		m.RateLimited.WithLabelValues(event).Inc()
	}
}

// Joined moves a socket from one role's gauge to another's.
func (m *Metrics) Joined(from, to string) {
	if m == nil || from == to {
		return
	}
	m.Joins.WithLabelValues(to).Inc()
	m.Connections.WithLabelValues(from).Dec()
	m.Connections.WithLabelValues(to).Inc()
}

// Left moves a socket that joined in role back to "none" as it goes.
func (m *Metrics) Left(role string) {
	if m != nil {
		m.Connections.WithLabelValues(role).Dec()
		m.Connections.WithLabelValues("none").Inc()
	}
}

// Connected counts a new socket, not yet joined.
func (m *Metrics) Connected() {
	if m != nil {
		m.Connections.WithLabelValues("none").Inc()
	}
}

// Disconnected counts a closed socket; the router has moved a joined one
// back to "none" as it left.
func (m *Metrics) Disconnected() {
	if m != nil {
		m.Connections.WithLabelValues("none").Dec()
	}
}

// Away counts a session whose transport dropped and that waits to recover.
func (m *Metrics) Away() { m.recovery("away") }

// Recovered counts a socket that got its session back.
func (m *Metrics) Recovered() { m.recovery("recovered") }

// Fresh counts a reconnect that asked to recover and could not.
func (m *Metrics) Fresh() { m.recovery("fresh") }

// Expired counts an away session whose window ended.
func (m *Metrics) Expired() { m.recovery("expired") }

func (m *Metrics) recovery(outcome string) {
	if m != nil {
		m.Recovery.WithLabelValues(outcome).Inc()
	}
}

// Queue counts n offline-queue events of one kind and moves the gauge by
// delta.
func (m *Metrics) Queue(what string, n int, delta int) {
	if m != nil {
		m.QueueEvents.WithLabelValues(what).Add(float64(n))
		m.QueuedNow.Add(float64(delta))
	}
}

// Node names this node in switchboard_node_info.
func (m *Metrics) Node(id string) {
	if m != nil {
		m.NodeInfo.WithLabelValues(id).Set(1)
	}
}

// ClusterPublished counts messages published to Redis.
func (m *Metrics) ClusterPublished(n int) {
	if m != nil {
		m.ClusterOut.Add(float64(n))
	}
}

// ClusterReceived counts a message from another node.
func (m *Metrics) ClusterReceived() {
	if m != nil {
		m.ClusterIn.Inc()
	}
}

// ClusterError counts a failed Redis command or a malformed message.
func (m *Metrics) ClusterError() {
	if m != nil {
		m.ClusterErrs.Inc()
	}
}

// ClusterDropped counts a cross-node message that was not sent.
func (m *Metrics) ClusterDropped() {
	if m != nil {
		m.ClusterDrops.Inc()
	}
}

// ClusterUp records whether Redis is reachable.
func (m *Metrics) ClusterUp(up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.ClusterRedisUp.Set(v)
}

// ClusterNodes records how many nodes are alive.
func (m *Metrics) ClusterNodes(n int) {
	if m != nil {
		m.ClusterNodeSeen.Set(float64(n))
	}
}

// MailboxStats counts the router's queued messages for MailboxDepth; it
// implements protoactor's mailbox.Statistics.
type MailboxStats struct{ M *Metrics }

func (s MailboxStats) MailboxStarted()     {}
func (s MailboxStats) MessagePosted(any)   { s.add(1) }
func (s MailboxStats) MessageReceived(any) { s.add(-1) }
func (s MailboxStats) MailboxEmpty()       {}
func (s MailboxStats) add(d float64) {
	if s.M != nil {
		s.M.MailboxDepth.Add(d)
	}
}
