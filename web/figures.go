package web

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/messages"
)

// figures is what /dashboard/data answers: the server's own counters and
// gauges as /metrics has them (cumulative: the page computes rates from
// one second to the next), presence as /health and /stats have it, and
// the transports. Nothing here is counted twice.
type figures struct {
	Timestamp string `json:"timestamp"`
	Node      string `json:"node,omitempty"`
	Version   string `json:"version"`
	Env       string `json:"env"`
	// Metrics maps a metric's name to its samples: the value of its one
	// label (or "" for none; le for a histogram's buckets) to the value.
	Metrics map[string]map[string]float64 `json:"metrics"`
	// Presence counts joined participants: this node's, and the whole
	// cluster's in a cluster.
	Presence presence `json:"presence"`
	// Transports counts this node's Engine.IO sessions by transport; nil
	// when they cannot be counted.
	Transports map[string]int `json:"transports,omitempty"`
	// Cluster is nil on a single node.
	Cluster *cluster `json:"cluster,omitempty"`
	// The latest participants to join (the dashboard shows names).
	Clients   []messages.ClientInfo   `json:"clients"`
	Operators []messages.OperatorInfo `json:"operators"`
}

type presence struct {
	Clients   int `json:"clients"`
	Operators int `json:"operators"`
	Away      int `json:"away"`
	// The whole cluster's (equal to the above on a single node).
	TotalClients   int `json:"totalClients"`
	TotalOperators int `json:"totalOperators"`
}

type cluster struct {
	Node  string              `json:"node"`
	Redis string              `json:"redis"`
	Alive int                 `json:"alive"`
	Nodes []messages.NodeInfo `json:"nodes"`
	// Figures are every live node's own figures, by node id: this node's
	// as of now, the others' as each last wrote them to the cluster (at
	// most a second or two old). A node missing here wrote none lately.
	Figures []nodeFigures `json:"figures"`
}

// nodeFigures is one node's snapshot: what it writes to the cluster once
// a second, cumulative like Metrics (the page computes each node's rates
// from one of its snapshots to the next, by their timestamps).
type nodeFigures struct {
	Node       string                        `json:"node,omitempty"`
	Timestamp  string                        `json:"timestamp"`
	Metrics    map[string]map[string]float64 `json:"metrics"`
	Transports map[string]int                `json:"transports,omitempty"`
}

// listed is how many of the latest participants /dashboard/data names:
// with 15,000 players /stats is megabytes, and the dashboard reads once a
// second.
const listed = 20

// serveFigures answers /dashboard/data; with operator authentication on,
// only to a request carrying an operator's token.
func (o *Options) serveFigures(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if o.OperatorAuth {
		if why := o.operatorToken(r); why != "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard dashboard"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"code": "unauthorized", "message": why})
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	f, err := o.figures(ctx)
	if err != nil {
		o.Log.Error("dashboard figures", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"code": "unavailable", "message": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, f)
}

// operatorToken is why r does not carry a valid operator's token, or "".
func (o *Options) operatorToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) < 8 || !strings.EqualFold(h[:7], "bearer ") {
		return "an operator's token is required (Authorization: Bearer)"
	}
	if o.Verify == nil {
		return "tokens cannot be verified"
	}
	id, err := o.Verify(strings.TrimSpace(h[7:]))
	if err != nil {
		return "invalid token"
	}
	if id.Role != messages.RoleOperator {
		return "not an operator's token"
	}
	return ""
}

func (o *Options) figures(ctx context.Context) (*figures, error) {
	f := &figures{
		Timestamp: messages.ISOTime(time.Now()),
		Version:   o.Version,
		Env:       o.Env,
		Metrics:   map[string]map[string]float64{},
	}
	f.Metrics, f.Transports = o.local()
	if o.Health != nil {
		h, err := o.Health(ctx)
		if err != nil {
			return nil, err
		}
		f.Presence = presence{Clients: h.Clients, Operators: h.Operators, Away: h.Away, TotalClients: h.Clients, TotalOperators: h.Operators}
		if c := h.Cluster; c != nil {
			f.Node = c.Node
			f.Presence.TotalClients, f.Presence.TotalOperators = c.Clients, c.Operators
			f.Cluster = &cluster{Node: c.Node, Redis: c.Redis, Alive: c.Nodes}
		}
	}
	if o.Stats != nil {
		st, err := o.Stats(ctx)
		if err != nil {
			return nil, err
		}
		f.Clients = latest(st.Clients)
		f.Operators = latest(st.Operators)
		if f.Cluster != nil {
			f.Cluster.Nodes = st.Nodes
		}
	}
	if f.Clients == nil {
		f.Clients = []messages.ClientInfo{}
	}
	if f.Operators == nil {
		f.Operators = []messages.OperatorInfo{}
	}
	if f.Cluster != nil {
		f.Cluster.Figures = o.nodeFigures(ctx, f)
	}
	return f, nil
}

// local is this node's figures: its metrics and transports.
func (o *Options) local() (map[string]map[string]float64, map[string]int) {
	m := map[string]map[string]float64{}
	if o.Metrics != nil {
		var buf bufferWriter
		o.Metrics.Handler().ServeHTTP(&buf, &http.Request{Method: http.MethodGet, Header: http.Header{}})
		m = parseMetrics(buf.Bytes())
	}
	if o.Transports == nil {
		return m, nil
	}
	polling, upgraded, ok := o.Transports()
	if !ok {
		return m, nil
	}
	sockets := 0
	for _, v := range m["switchboard_connections"] {
		sockets += int(v)
	}
	// Every other socket came in on a websocket.
	return m, map[string]int{
		"websocket": max(sockets-polling-upgraded, 0),
		"polling":   polling,
		"upgraded":  upgraded,
	}
}

// snapshot is what this node writes to the cluster once a second.
func (o *Options) snapshot() []byte {
	m, tr := o.local()
	b, err := json.Marshal(nodeFigures{Timestamp: messages.ISOTime(time.Now()), Metrics: m, Transports: tr})
	if err != nil {
		return nil
	}
	return b
}

// nodeFigures lists every node's figures, in node order: this node's from
// f, the others' from the cluster. A snapshot that cannot be read is left
// out (and logged): the rest of the dashboard goes on.
func (o *Options) nodeFigures(ctx context.Context, f *figures) []nodeFigures {
	out := []nodeFigures{{Node: f.Node, Timestamp: f.Timestamp, Metrics: f.Metrics, Transports: f.Transports}}
	if o.ClusterFigures == nil {
		return out
	}
	all, err := o.ClusterFigures(ctx)
	if err != nil {
		o.Log.Warn("dashboard: other nodes' figures", "err", err)
		return out
	}
	for id, raw := range all {
		if id == f.Node {
			continue
		}
		var nf nodeFigures
		if err := json.Unmarshal(raw, &nf); err != nil {
			o.Log.Warn("dashboard: a node's figures are malformed", "node", id, "err", err)
			continue
		}
		nf.Node = id
		out = append(out, nf)
	}
	slices.SortFunc(out, func(a, b nodeFigures) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// latest is the last `listed` of a join-ordered list, newest first.
func latest[T any](all []T) []T {
	n := min(len(all), listed)
	out := make([]T, 0, n)
	for i := len(all) - 1; i >= len(all)-n; i-- {
		out = append(out, all[i])
	}
	return out
}

// parseMetrics reads the Prometheus text format that /metrics serves into
// name → label value → value. Only Switchboard's own metrics and a few of
// the process's are kept; each of Switchboard's has at most one label
// (a histogram's buckets have le).
func parseMetrics(text []byte) map[string]map[string]float64 {
	out := map[string]map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, _ := strings.Cut(line, " ")
		label := ""
		if i := strings.IndexByte(line, '{'); i >= 0 {
			j := strings.LastIndexByte(line, '}')
			if j < i {
				continue
			}
			name, rest = line[:i], strings.TrimSpace(line[j+1:])
			label = firstLabelValue(line[i+1 : j])
		}
		if !strings.HasPrefix(name, "switchboard_") && !kept[name] {
			continue
		}
		value, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			continue
		}
		if out[name] == nil {
			out[name] = map[string]float64{}
		}
		out[name][label] = v
	}
	return out
}

// kept are the runtime figures the dashboard shows beside Switchboard's.
var kept = map[string]bool{
	"go_goroutines":                 true,
	"process_resident_memory_bytes": true,
	"process_cpu_seconds_total":     true,
	"process_open_fds":              true,
	"process_start_time_seconds":    true,
}

// firstLabelValue is the value of the first label of `a="x",b="y"`.
func firstLabelValue(labels string) string {
	_, v, ok := strings.Cut(labels, `="`)
	if !ok {
		return ""
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && i+1 < len(v):
			i++
			if v[i] == 'n' {
				b.WriteByte('\n')
			} else {
				b.WriteByte(v[i])
			}
		case c == '"':
			return b.String()
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// bufferWriter is an http.ResponseWriter that keeps the body.
type bufferWriter struct {
	bytes.Buffer
	h http.Header
}

func (b *bufferWriter) Header() http.Header {
	if b.h == nil {
		b.h = http.Header{}
	}
	return b.h
}

func (b *bufferWriter) WriteHeader(int) {}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
