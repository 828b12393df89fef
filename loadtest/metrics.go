package loadtest

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Metrics are the live counters. Reader goroutines and actors update them
// with atomic adds; the sampler reads them once a second.
type Metrics struct {
	start time.Time

	PlayersConnected, OperatorsConnected atomic.Int64
	PeakPlayers, PeakOperators           atomic.Int64
	OperatorsReady                       atomic.Int64
	PlayersJoined                        atomic.Int64 // joins confirmed by an ack or an operator's newChat

	ConnectAttempts, Connects atomic.Int64
	playerConnects            atomic.Int64
	firstDial, lastConnect    atomic.Int64 // ns since start, for the connect rate

	Sent, Replies              atomic.Int64 // messages and replies written to a socket
	ExpectedP2O                atomic.Int64 // sum over sent messages of operators joined
	UniqueP2O, UniqueO2P       atomic.Int64 // first copies received
	MisroutedP2O, MisroutedO2P atomic.Int64
	// IncomingP2O counts every incomingMessage an operator read, copies
	// and strays included: per message sent, the fan-out the server did.
	IncomingP2O atomic.Int64
	// Unassigned counts sends skipped because the chat had no owner yet
	// (routing): the player waits for operatorAssigned.
	Unassigned atomic.Int64
	Events     atomic.Int64 // every event received

	Failures, GaveUp, Departures atomic.Int64

	// Drops and reconnections (recovery.go).
	Blips, Storms, StormDrops    atomic.Int64
	Reconnects, Recovered, Fresh atomic.Int64

	Connect, Join, P2O, O2P Histogram
	Recovery                Histogram // drop to recovered CONNECT

	errMu sync.Mutex
	errs  map[string]int64
}

func newMetrics() *Metrics {
	return &Metrics{start: time.Now(), errs: map[string]int64{}}
}

// Error counts one error of a kind; kinds are short and stable, e.g.
// "connect: timeout" or "chatError rate_limited (clientMessage)".
func (m *Metrics) Error(kind string) {
	m.errMu.Lock()
	m.errs[kind]++
	m.errMu.Unlock()
}

// Errors returns a copy of the error counts and their total.
func (m *Metrics) Errors() (map[string]int64, int64) {
	m.errMu.Lock()
	defer m.errMu.Unlock()
	out := make(map[string]int64, len(m.errs))
	var n int64
	for k, v := range m.errs {
		out[k] = v
		n += v
	}
	return out, n
}

func (m *Metrics) connected(operator bool, delta int64) {
	g, peak := &m.PlayersConnected, &m.PeakPlayers
	if operator {
		g, peak = &m.OperatorsConnected, &m.PeakOperators
	}
	n := g.Add(delta)
	for {
		p := peak.Load()
		if n <= p || peak.CompareAndSwap(p, n) {
			return
		}
	}
}

// dialStarted and dialed count connections; only players' time the
// connect rate, since operators connect before them and then wait.
func (m *Metrics) dialStarted(operator bool) {
	m.ConnectAttempts.Add(1)
	if !operator {
		m.firstDial.CompareAndSwap(0, int64(time.Since(m.start)))
	}
}

func (m *Metrics) dialed(operator bool, took time.Duration) {
	m.Connects.Add(1)
	m.Connect.Record(took)
	if operator {
		return
	}
	m.playerConnects.Add(1)
	now := int64(time.Since(m.start))
	for {
		l := m.lastConnect.Load()
		if now <= l || m.lastConnect.CompareAndSwap(l, now) {
			return
		}
	}
}

// ConnectRate is players connected per second from the first player's
// dial to the last player's connection: what the server (and this machine)
// sustained.
func (m *Metrics) ConnectRate() float64 {
	span := time.Duration(m.lastConnect.Load() - m.firstDial.Load())
	if span <= 0 {
		return 0
	}
	return float64(m.playerConnects.Load()) / span.Seconds()
}

// Sample is one second of the run, for the live line and the charts.
type Sample struct {
	T           float64 `json:"t_s"`
	Players     int64   `json:"players"`
	Operators   int64   `json:"operators"`
	SentPerS    float64 `json:"sent_per_s"`
	DeliverPerS float64 `json:"delivered_per_s"` // first copies at operators
	RepliesPerS float64 `json:"replies_per_s"`
	P2OCount    uint64  `json:"p2o_count"`
	O2PCount    uint64  `json:"o2p_count"`
	P2OP50      float64 `json:"p2o_p50_ms"`
	P2OP99      float64 `json:"p2o_p99_ms"`
	P2OMax      float64 `json:"p2o_max_ms"`
	O2PP50      float64 `json:"o2p_p50_ms"`
	O2PP99      float64 `json:"o2p_p99_ms"`
	O2PMax      float64 `json:"o2p_max_ms"`
	Errors      int64   `json:"errors"`
}

// sampler turns the cumulative counters into per-second samples: the
// latency of a second is the difference of two snapshots of the one
// histogram, so no per-second histograms are kept.
type sampler struct {
	m        *Metrics
	at       time.Time
	sent     int64
	deliv    int64
	replies  int64
	p2o, o2p *HistSnapshot
	samples  []Sample
}

func newSampler(m *Metrics) *sampler {
	return &sampler{m: m, at: time.Now(), p2o: m.P2O.Snapshot(), o2p: m.O2P.Snapshot()}
}

func (s *sampler) sample(now time.Time) Sample {
	m := s.m
	dt := now.Sub(s.at).Seconds()
	if dt <= 0 {
		dt = 1
	}
	sent, deliv, replies := m.Sent.Load(), m.UniqueP2O.Load(), m.Replies.Load()
	p2o, o2p := m.P2O.Snapshot(), m.O2P.Snapshot()
	dp, do := p2o.Sub(s.p2o), o2p.Sub(s.o2p)
	_, errs := m.Errors()
	ms := func(us int64) float64 { return float64(us) / 1000 }
	x := Sample{
		T:           now.Sub(m.start).Seconds(),
		Players:     m.PlayersConnected.Load(),
		Operators:   m.OperatorsConnected.Load(),
		SentPerS:    float64(sent-s.sent) / dt,
		DeliverPerS: float64(deliv-s.deliv) / dt,
		RepliesPerS: float64(replies-s.replies) / dt,
		P2OCount:    dp.Total,
		O2PCount:    do.Total,
		P2OP50:      ms(dp.Quantile(0.5)),
		P2OP99:      ms(dp.Quantile(0.99)),
		P2OMax:      ms(dp.Max),
		O2PP50:      ms(do.Quantile(0.5)),
		O2PP99:      ms(do.Quantile(0.99)),
		O2PMax:      ms(do.Max),
		Errors:      errs,
	}
	s.at, s.sent, s.deliv, s.replies, s.p2o, s.o2p = now, sent, deliv, replies, p2o, o2p
	s.samples = append(s.samples, x)
	return x
}

// sortedKeys lists a map's keys in order, for stable output.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
