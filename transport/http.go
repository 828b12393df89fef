package transport

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/switchboard/switchboard/messages"
)

// Version is reported by GET /.
var Version = "dev"

type healthBody struct {
	Status      string      `json:"status"`
	Timestamp   string      `json:"timestamp"`
	Connections healthCount `json:"connections"`
	// In a cluster: this node's id, Redis's state, and this node's own counts.
	Node    string                  `json:"node,omitempty"`
	Cluster *messages.ClusterHealth `json:"cluster,omitempty"`
	Local   *healthCount            `json:"local,omitempty"`
}

type healthCount struct {
	Total     int `json:"total"`
	Clients   int `json:"clients"`
	Operators int `json:"operators"`
}

type statsBody struct {
	Timestamp string                  `json:"timestamp"`
	Summary   statsSummary            `json:"summary"`
	Clients   []messages.ClientInfo   `json:"clients"`
	Operators []messages.OperatorInfo `json:"operators"`
	Node      string                  `json:"node,omitempty"`
	Nodes     []messages.NodeInfo     `json:"nodes,omitempty"`
}

type statsSummary struct {
	TotalConnections int `json:"totalConnections"`
	TotalClients     int `json:"totalClients"`
	TotalOperators   int `json:"totalOperators"`
}

type indexBody struct {
	Service   string            `json:"service"`
	Version   string            `json:"version"`
	Endpoints map[string]string `json:"endpoints"`
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	h, err := s.sys.Health(r.Context())
	if err != nil {
		s.log.Error("health", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": err.Error()})
		return
	}
	body := healthBody{
		Status:      "ok",
		Timestamp:   messages.ISOTime(time.Now()),
		Connections: healthCount{Total: h.Clients + h.Operators, Clients: h.Clients, Operators: h.Operators},
	}
	if c := h.Cluster; c != nil {
		// The cluster's totals, as a single node's; a lost Redis is
		// "degraded" with 200: the node still serves its own sockets, and a
		// load balancer must not take every node out at once.
		local := body.Connections
		body.Node, body.Cluster, body.Local = c.Node, c, &local
		body.Connections = healthCount{Total: c.Clients + c.Operators, Clients: c.Clients, Operators: c.Operators}
		if c.Redis != "ok" {
			body.Status = "degraded"
		}
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	st, err := s.sys.Stats(r.Context())
	if err != nil {
		s.log.Error("stats", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, statsBody{
		Timestamp: messages.ISOTime(time.Now()),
		Summary: statsSummary{
			TotalConnections: len(st.Clients) + len(st.Operators),
			TotalClients:     len(st.Clients),
			TotalOperators:   len(st.Operators),
		},
		Clients:   st.Clients,
		Operators: st.Operators,
		Node:      st.Node,
		Nodes:     st.Nodes,
	})
}

func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found", "see": "/"})
		return
	}
	writeJSON(w, http.StatusOK, indexBody{
		Service: "switchboard",
		Version: Version,
		Endpoints: map[string]string{
			"socket": s.cfg.Path,
			"health": "/health",
			"stats":  "/stats",
		},
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// limitBodies bounds the bodies of the Socket.IO library's polling POSTs
// (Engine.IO 3, or every client with SWITCHBOARD_WEBSOCKET=library) as
// the native sessions' are: a body past max is answered 413 as soon as it
// passes it, read no further, and the connection closed. The library would
// read a chunked body well past its own limit and answer 200.
func limitBodies(max int, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			next.ServeHTTP(w, r)
			return
		}
		if r.ContentLength > int64(max) {
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", "polling body over the largest message")
			return
		}
		// What the library would buffer itself, read here first so that
		// its size is known before the library sees a byte.
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(max)))
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				w.Header().Set("Connection", "close")
				writeError(w, http.StatusRequestEntityTooLarge, "too_large", "polling body over the largest message")
			}
			return // a body cut short: nobody to answer
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}
