package transport

import (
	"context"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/zishang520/socket.io/servers/engine/v3"
)

// A connection counts against its address's cap from its handshake, the
// first request it makes, whether or not it ever sends CONNECT: the gate
// counts it when it admits the handshake (actors/gate.go), and whoever
// then holds the connection releases the count when it ends. A handshake
// that opens nothing (refused, malformed) gives it back at once.

// admission is a handshake's place in its address's count, carried in
// the request's context to whoever opens the connection.
type admission struct {
	addr  string
	state atomic.Int32 // admissionPending, then claimed or returned, once
}

const (
	admissionPending  int32 = iota
	admissionClaimed        // a connection holds it and releases it
	admissionReturned       // the handshake opened nothing
)

type admissionKey struct{}

// admitted claims r's admission for the connection it opens: true when the
// connection is counted and must release its address when it ends.
func admitted(r *http.Request) bool {
	a, _ := r.Context().Value(admissionKey{}).(*admission)
	return a != nil && a.state.CompareAndSwap(admissionPending, admissionClaimed)
}

// gateHandshakes bounds connections per client address: a handshake (a
// request without an Engine.IO session id) is admitted by the gate, which
// counts it, or refused with 429. A long-polling client's steady requests
// are never throttled. Past the memory budget, or with the budget for
// unfinished input nearly spent, every handshake is refused with 503
// (memory.go).
func (s *Server) gateHandshakes(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if parseEngineQuery(r.URL.RawQuery).sid != "" {
			next.ServeHTTP(w, r)
			return
		}
		if why := s.busy(); why != "" {
			s.met.Refused("handshake", "server_busy")
			w.Header().Set("Retry-After", "5")
			writeError(w, http.StatusServiceUnavailable, "server_busy", why)
			return
		}
		addr := s.limitedAddr(r)
		if addr == "" {
			next.ServeHTTP(w, r)
			return
		}
		if reason := s.sys.Admit(addr); reason != "" {
			s.met.Refused("handshake", "rate_limited")
			s.log.Info("handshake refused", "remote", addr, "reason", reason)
			w.Header().Set("Retry-After", "1")
			writeError(w, http.StatusTooManyRequests, "rate_limited", reason)
			return
		}
		a := &admission{addr: addr}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), admissionKey{}, a)))
		if a.state.CompareAndSwap(admissionPending, admissionReturned) {
			s.sys.Closed(addr)
		}
	})
}

// admitLibrary counts a connection of the Socket.IO library (Engine.IO 3,
// or SWITCHBOARD_WEBSOCKET=library) from its handshake until it closes.
func (s *Server) admitLibrary(args ...any) {
	conn, ok := args[0].(engine.Socket)
	if !ok {
		return
	}
	r := conn.Request().Request()
	if !admitted(r) {
		return
	}
	addr := r.Context().Value(admissionKey{}).(*admission).addr
	_ = conn.Once("close", func(...any) { s.sys.Closed(addr) })
}

// bucket is a token bucket: rate tokens a second, up to burst.
type bucket struct {
	tokens, rate, burst float64
	last                time.Time
}

func newBucket(rate float64, burst int, now time.Time) bucket {
	return bucket{tokens: float64(burst), rate: rate, burst: float64(burst), last: now}
}

// take spends a token, if there is one.
func (b *bucket) take(now time.Time) bool {
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
