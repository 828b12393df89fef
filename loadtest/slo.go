package loadtest

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SLO is a list of thresholds, as k6 has them: "p99<50ms,loss=0". A run
// that misses one exits non-zero.
//
// Terms are <metric><op><value>, op one of < <= > >= = ==. Metrics:
//
//	p50 p90 p99 p999 max          message latency, the worse direction
//	p2o.p99, o2p.max, …           one direction (player→operator, operator→player)
//	connect.p99, join.p99, …      connection and join latency
//	loss, duplicated, misrouted   counts, or shares with a % value ("loss<0.1%")
//	errors                        errors of any kind, counted
//	connected                     participants connected at the end (count or %)
//	throughput                    player messages per second over the load
//	recovered, fresh              reconnections recovered or not (count, or % of reconnections)
//	recovery.p99, recovery_p99, … drop to recovered CONNECT
//
// Latencies take a duration ("50ms", "1.5s"); a bare number is ms.
type SLO []term

type term struct {
	expr, metric, op string
	value            float64 // ms for latencies, a share (0..1) when percent
	percent          bool
}

// Threshold is one evaluated term.
type Threshold struct {
	Expr   string `json:"expr"`
	Actual string `json:"actual"`
	OK     bool   `json:"ok"`
}

var sloOps = []string{"<=", ">=", "==", "<", ">", "="} // longest first

// ParseSLO reads a threshold list; empty means none.
func ParseSLO(s string) (SLO, error) {
	var slo SLO
	for _, raw := range strings.Split(s, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		var t term
		for _, op := range sloOps {
			if i := strings.Index(raw, op); i > 0 {
				t = term{expr: raw, metric: strings.ToLower(strings.TrimSpace(raw[:i])), op: op}
				if q, ok := strings.CutPrefix(t.metric, "recovery_"); ok {
					t.metric = "recovery." + q // recovery_p99 reads as recovery.p99
				}
				if err := t.parseValue(strings.TrimSpace(raw[i+len(op):])); err != nil {
					return nil, fmt.Errorf("%q: %w", raw, err)
				}
				break
			}
		}
		if t.op == "" {
			return nil, fmt.Errorf("%q: want <metric><op><value>, e.g. p99<50ms", raw)
		}
		if t.op == "==" {
			t.op = "="
		}
		if _, ok := metricValue(t.metric, &Result{}); !ok {
			return nil, fmt.Errorf("%q: unknown metric %q", raw, t.metric)
		}
		slo = append(slo, t)
	}
	return slo, nil
}

func (t *term) parseValue(v string) error {
	if isLatency(t.metric) {
		if d, err := time.ParseDuration(v); err == nil {
			t.value = float64(d) / float64(time.Millisecond)
			return nil
		}
	}
	if p, ok := strings.CutSuffix(v, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil {
			return fmt.Errorf("bad percentage %q", v)
		}
		t.value, t.percent = f/100, true
		return nil
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		return fmt.Errorf("bad value %q", v)
	}
	t.value = f
	return nil
}

func isLatency(metric string) bool {
	_, q, ok := strings.Cut(metric, ".")
	if !ok {
		q = metric
	}
	_, isQ := quantiles[q]
	return isQ
}

var quantiles = map[string]func(Summary) float64{
	"p50":  func(s Summary) float64 { return s.P50 },
	"p90":  func(s Summary) float64 { return s.P90 },
	"p99":  func(s Summary) float64 { return s.P99 },
	"p999": func(s Summary) float64 { return s.P999 },
	"max":  func(s Summary) float64 { return s.Max },
}

// metricValue looks a metric up in a result; for counts it returns the
// count and, through share, the share of its whole.
func metricValue(metric string, r *Result) (v metricReading, ok bool) {
	if dir, q, found := strings.Cut(metric, "."); found {
		get, isQ := quantiles[q]
		if !isQ {
			return v, false
		}
		var s Summary
		switch dir {
		case "p2o", "player_to_operator":
			s = r.Latency.PlayerToOperator
		case "o2p", "operator_to_player":
			s = r.Latency.OperatorToPlayer
		case "connect":
			s = r.Latency.Connect
		case "join":
			s = r.Latency.Join
		case "recovery":
			if r.Recovery != nil {
				s = r.Recovery.Time
			}
		default:
			return v, false
		}
		return metricReading{value: get(s), unit: "ms"}, true
	}
	if get, isQ := quantiles[metric]; isQ {
		return metricReading{value: max(get(r.Latency.PlayerToOperator), get(r.Latency.OperatorToPlayer)), unit: "ms"}, true
	}
	a := r.Messages.Accounts
	share := func(n, of int64) metricReading {
		x := metricReading{value: float64(n)}
		if of > 0 {
			x.share = float64(n) / float64(of)
		}
		return x
	}
	switch metric {
	case "loss", "lost":
		return share(a.Lost, a.Expected), true
	case "duplicated", "dup", "duplicates":
		return share(a.Duplicated, a.Expected), true
	case "misrouted":
		return share(a.Misrouted, a.Expected), true
	case "errors":
		return metricReading{value: float64(r.ErrorsTotal)}, true
	case "connected":
		return share(r.Players.Connected+r.Operators.Connected, int64(r.Players.Target+r.Operators.Target)), true
	case "recovered", "fresh":
		var rc Recovery
		if r.Recovery != nil {
			rc = *r.Recovery
		}
		if metric == "fresh" {
			return share(rc.Fresh, rc.Reconnects), true
		}
		x := share(rc.Recovered, rc.Reconnects)
		if rc.Reconnects == 0 {
			x.share = 1 // nothing to recover: all of it was
		}
		return x, true
	case "throughput", "rps":
		return metricReading{value: r.Throughput.SentPerS, unit: "/s"}, true
	}
	return v, false
}

type metricReading struct {
	value, share float64
	unit         string
}

// Evaluate checks every term against a result.
func (s SLO) Evaluate(r *Result) ([]Threshold, bool) {
	pass := true
	out := make([]Threshold, 0, len(s))
	for _, t := range s {
		got, _ := metricValue(t.metric, r)
		v := got.value
		actual := strconv.FormatFloat(v, 'g', 4, 64) + got.unit
		if t.percent {
			v = got.share
			actual = strconv.FormatFloat(100*v, 'g', 4, 64) + "%"
		}
		ok := compare(v, t.op, t.value)
		pass = pass && ok
		out = append(out, Threshold{Expr: t.expr, Actual: actual, OK: ok})
	}
	return out, pass
}

func compare(a float64, op string, b float64) bool {
	switch op {
	case "<":
		return a < b
	case "<=":
		return a <= b
	case ">":
		return a > b
	case ">=":
		return a >= b
	}
	return a == b
}
