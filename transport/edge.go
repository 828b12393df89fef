package transport

import (
	"cmp"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"time"
)

// The edge of the HTTP server: who may call, and from where. Socket.IO's
// own CORS handling is not used: these answer every path the way the Node
// server's cors() middleware does, and refuse what production must refuse.

// cors answers browsers as the Node server's cors() middleware does: the
// configured origin, credentials allowed, GET and POST. A request whose
// Origin is not allowed is refused outright: a browser would only hide the
// answer, and websocket handshakes are not subject to CORS at all.
//
// Access-Control-Allow-Origin always names the request's own Origin, with
// CORS_ORIGIN=* too: browsers refuse "*" beside Allow-Credentials: true, so
// "*" would break a credentialed widget. A request without an Origin (a
// server, a load tool, a same-origin GET) gets no CORS headers at all: only
// browsers read them, and a browser sends Origin whenever they matter.
// Vary: Origin goes on every answer, since each depends on the Origin (or
// its absence), so that no cache serves one origin's answer to another.
func (s *Server) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		allowed := s.allowOrigin(origin)
		w.Header().Add("Vary", "Origin")
		if origin != "" && allowed == "" {
			s.log.Info("request refused: origin not allowed", "origin", origin, "path", r.URL.Path, "remote", s.clientAddr(r))
			writeError(w, http.StatusForbidden, "origin_not_allowed", "origin "+origin+" is not allowed")
			return
		}
		if allowed != "" {
			w.Header().Set("Access-Control-Allow-Origin", allowed)
			w.Header().Set("Access-Control-Allow-Credentials", "true")
		}
		if origin != "" && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			// Checked above; the websocket upgrader would otherwise refuse
			// every cross-origin handshake on its own same-host rule.
			r.Header.Del("Origin")
		}
		if r.Method == http.MethodOptions {
			w.Header().Set("Access-Control-Allow-Methods", "GET,POST")
			w.Header().Add("Vary", "Access-Control-Request-Headers")
			if h := r.Header.Get("Access-Control-Request-Headers"); h != "" {
				w.Header().Set("Access-Control-Allow-Headers", h)
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// allowOrigin returns the Access-Control-Allow-Origin value for origin:
// origin itself when it is allowed ("*" allows any), "" when it is not
// allowed or absent.
func (s *Server) allowOrigin(origin string) string {
	if origin == "" {
		return ""
	}
	for _, o := range s.cfg.CORSOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return origin
		}
	}
	return ""
}

// maxHeaderBytes bounds a request's headers (net/http reads 4 KiB more
// before it answers 431): a browser's cookies and a bearer token fit in
// 16 KiB; the 1 MiB default would let each slow client hold that much.
const maxHeaderBytes = 16 << 10

// idleTimeout is how long a keep-alive connection with no request may stay
// open: the configured value, or Node's 5 s for a Config not from Load.
func (s *Server) idleTimeout() time.Duration {
	return cmp.Or(s.cfg.HTTPIdleTimeout, 5*time.Second)
}

// limitedAddr is the address that limits apply to, or "" for an exempt one.
func (s *Server) limitedAddr(r *http.Request) string {
	addr := s.clientAddr(r)
	if !s.cfg.IPLimitLoopback {
		if ip := net.ParseIP(addr); ip != nil && ip.IsLoopback() {
			return ""
		}
	}
	return addr
}

// clientAddr is the client's IP: the connection's peer, or behind a
// trusted proxy the address that proxy appended to X-Forwarded-For.
func (s *Server) clientAddr(r *http.Request) string {
	if s.cfg.TrustProxy {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			parts := strings.Split(xff, ",")
			return strings.TrimSpace(parts[len(parts)-1])
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"code": code, "message": message})
}
