package transport

import (
	"net/http"

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
		q := r.URL.Query()
		if q.Get("EIO") != "4" {
			library.ServeHTTP(w, r)
			return
		}
		sid := q.Get("sid")
		switch q.Get("transport") {
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
