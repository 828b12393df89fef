package transport

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/switchboard/switchboard/transport/ws"
)

// Engine.IO 4 is served natively over both of its transports: a websocket
// (transport/ws, eio.go) and long-polling (polling.go), which may upgrade
// to a websocket (upgrade.go). One eioSocket speaks Engine.IO and
// Socket.IO whichever transport carries it; the transport is an
// engineConn. The Socket.IO library keeps Engine.IO 3 clients, and every
// client when SWITCHBOARD_WEBSOCKET=library.

// engineConn is what an eioSocket writes to. Both transports keep one
// contract: writes never block on the network and are bounded by
// cfg.MaxPendingBytes (past it WriteText queues nothing and returns
// ws.ErrSlow, and the socket is cut off as a slow consumer); writes within
// the write window leave together; Close carries a typed reason (a
// closeReason) that the socket's Closed receives back.
type engineConn interface {
	// WriteText queues one Engine.IO packet, prefix followed by payload.
	WriteText(prefix string, payload []byte) error
	// Close ends the transport after what is queued; Closed follows once.
	Close(code int, why error)
	// Pending is the number of bytes queued and not yet sent.
	Pending() int
}

var (
	_ engineConn = (*ws.Conn)(nil)
	_ engineConn = (*pollConn)(nil)
)

// Engine.IO's error answers (engine.io's Server.errors), which clients
// and the cluster tests recognise.
const (
	engineUnknownTransport = 0
	engineUnknownSID       = 1
	engineBadHandshake     = 2
	engineBadRequest       = 3
)

var engineMessages = [...]string{
	engineUnknownTransport: "Transport unknown",
	engineUnknownSID:       "Session ID unknown",
	engineBadHandshake:     "Bad handshake method",
	engineBadRequest:       "Bad request",
}

// engineError answers 400 with Engine.IO's JSON body, as engine.io does.
func engineError(w http.ResponseWriter, code int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write([]byte(`{"code":` + string(rune('0'+code)) + `,"message":"` + engineMessages[code] + `"}`))
}

// serveEngine routes one request under the Socket.IO path: Engine.IO 4 is
// served here, anything else (Engine.IO 3, or a request that is not
// Engine.IO at all) by library, which answers it as engine.io would.
func (s *Server) serveEngine(library http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := parseEngineQuery(r.URL.RawQuery)
		if q.eio != "4" {
			library.ServeHTTP(w, r)
			return
		}
		sid := q.sid
		switch q.transport {
		case "polling":
			if ws.IsUpgrade(r) {
				engineError(w, engineBadRequest)
				return
			}
			if sid == "" {
				s.pollHandshake(w, r)
				return
			}
			s.poll(w, r, sid)
		case "websocket":
			if !ws.IsUpgrade(r) {
				engineError(w, engineBadRequest)
				return
			}
			if sid == "" {
				s.serveNative(w, r)
				return
			}
			s.upgrade(w, r, sid)
		default:
			engineError(w, engineUnknownTransport)
		}
	})
}

// shutNative ends every native socket, on whichever transport: each gets
// a DISCONNECT and its transport's close (a pending long-poll is answered).
func (s *Server) shutNative() {
	s.wss.Each(func(h ws.Handler) {
		switch h := h.(type) {
		case *eioSocket:
			h.shut(reasonShutdown, "")
		case *upgradeConn:
			h.shutdown()
		}
	})
	s.polls.each(func(p *pollConn) { p.e.shut(reasonShutdown, "") })
}

// engineQuery is what the server reads of a request's query: Engine.IO's
// version, the transport and the session id, each as url.Values.Get
// would give it.
type engineQuery struct{ eio, transport, sid string }

// parseEngineQuery reads an engineQuery from a raw query, allocating
// nothing for Engine.IO's plain values. url.Values would allocate a map
// and a slice per parameter on every polling request; while a crowd
// arrives those short-lived objects share the heap's pages with the
// sessions' long-lived ones, and what they leave half used stays in RSS
// once the crowd is idle.
func parseEngineQuery(raw string) engineQuery {
	var q engineQuery
	var seen uint8
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if strings.Contains(pair, ";") {
			continue // url.ParseQuery refuses the pair
		}
		k, v, _ := strings.Cut(pair, "=")
		k, ok := unescapeQuery(k)
		if !ok {
			continue
		}
		var dst *string
		var bit uint8
		switch k {
		case "EIO":
			dst, bit = &q.eio, 1
		case "transport":
			dst, bit = &q.transport, 2
		case "sid":
			dst, bit = &q.sid, 4
		default:
			continue
		}
		if v, ok = unescapeQuery(v); ok && seen&bit == 0 { // the first value, as Get
			*dst, seen = v, seen|bit
		}
	}
	return q
}

// unescapeQuery is url.QueryUnescape, without allocating for a value that
// has nothing to unescape.
func unescapeQuery(s string) (string, bool) {
	if !strings.ContainsAny(s, "%+") {
		return s, true
	}
	u, err := url.QueryUnescape(s)
	return u, err == nil
}
