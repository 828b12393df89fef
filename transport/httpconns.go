package transport

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// After an upgrade the client polls no more, but the HTTP connections that
// carried its polling stay with net/http as idle keep-alives until the
// idle timeout: each holds a goroutine and its read and write buffers,
// more than the upgraded socket itself, and a crowd upgrading at once
// (a deploy's reconnections) would hold them all together. The server
// tracks which of its connections are idle, and a session that upgrades
// ends the idle ones that served it, as the idle timeout would have a few
// seconds later.

// httpConns follows the state of every connection the http.Server
// serves: it is the server's ConnContext and ConnState.
type httpConns struct{ m sync.Map } // net.Conn -> *httpConn

type httpConn struct {
	c    net.Conn
	idle atomic.Bool
}

type httpConnKey struct{}

func (h *httpConns) context(ctx context.Context, c net.Conn) context.Context {
	hc := &httpConn{c: c}
	h.m.Store(c, hc)
	return context.WithValue(ctx, httpConnKey{}, hc)
}

func (h *httpConns) state(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateActive, http.StateIdle:
		if v, ok := h.m.Load(c); ok {
			v.(*httpConn).idle.Store(st == http.StateIdle)
		}
	case http.StateHijacked, http.StateClosed:
		if v, ok := h.m.LoadAndDelete(c); ok {
			v.(*httpConn).idle.Store(false)
		}
	}
}

// connOf is the connection r came on; nil when the server was not started
// by Serve (tests serving the handler alone).
func connOf(r *http.Request) *httpConn {
	hc, _ := r.Context().Value(httpConnKey{}).(*httpConn)
	return hc
}

// endIfIdle ends hc if net/http holds it idle, waiting for a next request:
// its wait fails at once, and net/http closes it as the idle timeout
// would. A request that arrived meanwhile has its own read deadline set
// by net/http, which replaces this one.
func (hc *httpConn) endIfIdle() {
	if hc != nil && hc.idle.Load() {
		_ = hc.c.SetReadDeadline(time.Now())
	}
}
