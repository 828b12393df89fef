// Package transport translates Socket.IO sockets into actor messages and
// actor frames back into socket writes. It holds no chat state: presence
// and routing live in the actors package.
package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strings"
	"time"

	"github.com/switchboard/switchboard/actors"
	"github.com/switchboard/switchboard/auth"
	"github.com/switchboard/switchboard/config"
	"github.com/switchboard/switchboard/messages"
	"github.com/switchboard/switchboard/metrics"
	"github.com/switchboard/switchboard/transport/ws"
	"github.com/switchboard/switchboard/web"
	"github.com/zishang520/socket.io/servers/engine/v3"
	"github.com/zishang520/socket.io/servers/socket/v3"
)

// Server is the Socket.IO endpoint and the HTTP endpoints on one port.
type Server struct {
	cfg  *config.Config
	sys  *actors.System
	log  *slog.Logger
	auth *auth.Verifier
	met  *metrics.Metrics
	io   *socket.Server
	// wss serves Engine.IO 4 websockets without the library, and polls
	// its long-polling sessions (nil: the library serves everything).
	wss           *ws.Server
	polls         polls
	library       librarySockets
	wssMaxPayload int
	limits        messages.Limits
	handler       http.Handler
	httpSrv       *http.Server

	// mem keeps the process within cfg.MemoryLimit (nil: no budget).
	mem *memGuard
}

// New builds the server; Serve starts it. verifier and met may be nil.
func New(cfg *config.Config, sys *actors.System, log *slog.Logger, verifier *auth.Verifier, met *metrics.Metrics) *Server {
	s := &Server{
		cfg:  cfg,
		sys:  sys,
		log:  log.With("component", "transport"),
		auth: verifier,
		met:  met,
		limits: messages.Limits{
			MaxText:    cfg.MaxTextChars,
			MaxImage:   cfg.MaxImageBytes,
			MaxField:   cfg.MaxFieldChars,
			ImageTypes: cfg.ImageTypes,
		},
	}

	opts := socket.DefaultServerOptions()
	opts.SetPath(cfg.Path)
	opts.SetServeClient(false)
	opts.SetPingInterval(cfg.PingInterval)
	opts.SetPingTimeout(cfg.PingTimeout)
	// Twice the image limit (config.MaxPayload says why).
	maxPayload := cfg.MaxPayload()
	opts.SetMaxHttpBufferSize(int64(maxPayload))
	opts.SetAllowEIO3(cfg.AllowEIO3)
	s.io = socket.NewServer(nil, opts)
	// Set up each socket in a namespace middleware, which runs before the
	// CONNECT packet is sent: a client may emit the moment it sees CONNECT,
	// and its first event must find its listeners and session in place.
	s.io.Use(func(sock *socket.Socket, next func(*socket.ExtendedError)) {
		if err := s.onConnection(sock); err != nil {
			next(socket.NewExtendedError("server unavailable", nil))
			return
		}
		next(nil)
	})

	eio := limitBodies(maxPayload, s.io.ServeHandler(nil))
	gates := &connectGates{}
	_ = s.io.Engine().On("connection", gates.guard, s.admitLibrary)
	s.io.On("connection", gates.connected)

	sio := coalesceWebSockets(cfg.WriteCoalesce, eio)
	if cfg.WebSocketServer == "native" && ws.Supported {
		wss, err := ws.NewServer(ws.Options{
			MaxMessage:     maxPayload,
			MaxPending:     cfg.MaxPendingBytes,
			WriteWindow:    cfg.WriteCoalesce,
			Pollers:        min(runtime.GOMAXPROCS(0), 4),
			MaxBuffered:    cfg.MaxBufferedBytes,
			MessageTimeout: cfg.MessageTimeout,
		})
		if err != nil {
			s.log.Warn("native websocket server unavailable; the Socket.IO library serves websockets", "err", err)
		} else {
			s.wss, s.wssMaxPayload = wss, maxPayload
			sio = s.serveEngine(sio) // Engine.IO 4 natively, Engine.IO 3 to the library
		}
	}
	s.mem = s.startMemGuard(cfg.MemoryLimit)

	mux := http.NewServeMux()
	mux.Handle(cfg.Path+"/", s.cors(s.gateHandshakes(sio)))
	mux.Handle("GET /health", s.cors(http.HandlerFunc(s.handleHealth)))
	mux.Handle("GET /stats", s.cors(http.HandlerFunc(s.handleStats)))
	if met != nil {
		mux.Handle("GET /metrics", met.Handler())
	}
	if cfg.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	// The pages (web/), and the JSON index for every other / request.
	var verify func(string) (*messages.Identity, error)
	if verifier != nil {
		verify = verifier.Verify
	}
	if err := web.Register(mux, s.cors, web.Options{
		Pages: cfg.Pages, Dashboard: cfg.Dashboard,
		OperatorAuth: verifier.OperatorsConfigured(), Verify: verify, Routing: cfg.Routing,
		Env: cfg.Env, Version: Version, SocketPath: cfg.Path,
		MaxImageBytes: cfg.MaxImageBytes, MaxTextChars: cfg.MaxTextChars, ImageTypes: cfg.ImageTypes,
		Metrics: met, Health: sys.Health, Stats: sys.Stats, Transports: s.transportCounts,
		Publish: sys.PublishFigures,
		ClusterFigures: func(ctx context.Context) (map[string][]byte, error) {
			return sys.ClusterFigures(ctx)
		},
		Log: s.log,
	}, http.HandlerFunc(s.handleIndex)); err != nil {
		// The pages are embedded: only a broken build fails here.
		panic(err)
	}
	s.handler = mux
	return s
}

// transportCounts counts the Engine.IO sessions that are long-polling and
// that began polling and upgraded to a websocket, for the dashboard: the
// native server's and the library's (Engine.IO 3 clients, or every session
// with SWITCHBOARD_WEBSOCKET=library), each by its own transport. Every
// other socket is a websocket from its start.
func (s *Server) transportCounts() (polling, upgraded int, ok bool) {
	if s.wss != nil {
		s.polls.each(func(p *pollConn) {
			p.mu.Lock()
			st := p.state
			p.mu.Unlock()
			switch st {
			case stateUpgraded:
				upgraded++
			case stateClosed:
			default:
				polling++
			}
		})
	}
	s.io.Engine().Clients().Range(func(_ string, c engine.Socket) bool {
		switch {
		case c.ReadyState() == "closed":
		case c.Upgraded():
			upgraded++
		case c.Transport() != nil && c.Transport().Name() == "polling":
			polling++
		}
		return true
	})
	return polling, upgraded, true
}

// Handler is everything served on the port.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	s.httpSrv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		// An idle keep-alive connection costs a goroutine and its buffers
		// (about 10 KB); after an upgrade a client's polling connections
		// stay idle for good. 5 s by default, as Node's http server
		// (keepAliveTimeout). A websocket or a pending long-poll is not idle.
		IdleTimeout: s.idleTimeout(),
		// No ReadTimeout or WriteTimeout: a long-poll GET lasts up to a
		// ping interval, and a body's reading is bounded by the engine.
		MaxHeaderBytes: maxHeaderBytes,
	}
	s.polls.serveBack(s.httpSrv, ln.Addr()) // parked long-polls' connections come back through it
	err := s.httpSrv.Serve(s.limitListener(ln))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serve: %w", err)
}

// Shutdown stops accepting, closes every socket (clients reconnect to
// another node, or to this one when it is back), and waits for the actors
// to record the departures, all within ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	var errs []error
	stopped := make(chan error, 1)
	go func() {
		if s.httpSrv == nil {
			stopped <- nil
			return
		}
		stopped <- s.httpSrv.Shutdown(ctx) // stops accepting at once
	}()
	// Closing every engine connection (not only the Socket.IO sockets) also
	// ends the long-polling requests that would otherwise hold
	// http.Server.Shutdown until their next heartbeat.
	if s.wss != nil {
		s.shutNative()
	}
	// Closing the library's engine ends its sockets without a DISCONNECT
	// too ("server shutting down"), so its clients reconnect as well.
	s.io.Close(nil)
	// Wait for the router to record every departure, or, with recovery,
	// every participant as away: their clients reconnect, to another node
	// or to this one when it is back.
	for {
		h, err := s.sys.Health(ctx)
		if err != nil {
			errs = append(errs, err)
			break
		}
		connected := h.Clients + h.Operators - h.Away
		if connected == 0 {
			break
		}
		select {
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("sockets still open: %d", connected))
		case <-time.After(20 * time.Millisecond):
			continue
		}
		break
	}
	// What is left are connections with no request in flight, which
	// http.Server.Shutdown would wait five seconds for when they are new.
	if s.httpSrv != nil {
		_ = s.httpSrv.Close()
	}
	if s.wss != nil {
		s.wss.Close()
	}
	s.mem.stop()
	if err := <-stopped; err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, fmt.Errorf("http: %w", err))
	}
	return errors.Join(errs...)
}

func (s *Server) onConnection(sock *socket.Socket) error {
	id := string(sock.Id())
	req := sock.Request().Request()
	addr := s.clientAddr(req)
	conn := &socketConn{sock: sock, id: id, addr: addr, log: s.log, maxPending: int64(s.cfg.MaxPendingBytes), met: s.met}

	// Listeners are registered before the session exists, so they wait
	// for it.
	var sess *actors.Session
	ready := make(chan struct{})
	session := func() *actors.Session { <-ready; return sess }

	for _, event := range messages.InboundEvents {
		sock.On(event, func(args ...any) {
			var ack messages.AckFunc
			if n := len(args); n > 0 {
				if a, ok := args[n-1].(socket.Ack); ok {
					ack = func(r *messages.AckReply) { a([]any{r}, nil) }
					args = args[:n-1]
				}
			}
			var payload any
			if len(args) > 0 {
				payload = args[0]
			}
			if p := session(); p != nil {
				s.event(p, id, event, payload, ack)
			}
		})
	}
	sock.On("disconnect", func(args ...any) {
		reason := "unknown"
		if len(args) > 0 {
			reason = fmt.Sprint(args[0])
		}
		conn.closed.Store(true)
		s.library.remove(conn)
		if p := session(); p != nil {
			// The library's sockets are not recoverable: their participant
			// leaves at once, as on the guide's server.
			s.gone(p, conn, addr, reason, false)
		}
	})
	s.library.add(conn) // after "disconnect" is heard, which removes it

	token, _ := sock.Handshake().Auth["token"].(string)
	if token == "" {
		token = bearer(req)
	}
	opened, err := s.open(conn, addr, connectAuth{Token: token}, sock.Conn().Transport().Name())
	sess = opened
	close(ready)
	if err != nil {
		s.library.remove(conn)
	}
	return err
}

// connectAuth is what a CONNECT packet's auth object may carry: the token,
// and for connection-state recovery the private id and the last offset.
type connectAuth struct {
	Token  string  `json:"token"`
	PID    string  `json:"pid"`
	Offset *string `json:"offset"`
	// ResumeToken is a reloaded page's proof, from its join's ack.
	ResumeToken string `json:"resumeToken"`
}

// open verifies a socket's token and gives it a session: its old one when
// it asks to recover and may, else a new one. conn's ID is the new socket
// id to use when it does not recover.
func (s *Server) open(conn actors.Conn, addr string, a connectAuth, transport string) (*actors.Session, error) {
	var identity *messages.Identity
	var authErr error
	if a.Token != "" && s.auth != nil {
		identity, authErr = s.auth.Verify(a.Token)
	}
	asked := a.PID != "" || a.ResumeToken != ""
	bySubject := identity != nil && identity.Role == messages.RoleClient && identity.Subject != ""
	if s.cfg.RecoveryWindow > 0 && (asked || bySubject) {
		req := actors.ResumeRequest{PrivateID: a.PID, ResumeToken: a.ResumeToken, Identity: identity, AuthErr: authErr}
		if a.Offset != nil {
			req.Offset, req.HasOffset = *a.Offset, true
		}
		sess, why := s.sys.Resume(conn, req)
		if sess != nil {
			s.met.Connected()
			s.log.Info("socket recovered", "socket", sess.ID(), "transport", transport, "remote", addr, "reload", a.PID == "")
			return sess, nil
		}
		if asked {
			s.met.Fresh()
			s.log.Info("socket could not recover; fresh session", "remote", addr, "why", why)
		}
	}
	sess, err := s.sys.Connect(conn, identity, authErr)
	if err != nil {
		s.log.Error("no session for socket; refusing it", "socket", conn.ID(), "err", err)
		return nil, err
	}
	s.met.Connected()
	s.log.Info("socket connected", "socket", conn.ID(), "transport", transport, "remote", addr, "token", tokenState(identity, authErr))
	return sess, nil
}

// bearer is the token of an Authorization: Bearer header, which clients
// that are not browsers may send instead of Socket.IO's auth object.
func bearer(req *http.Request) string {
	if h := req.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

func tokenState(id *messages.Identity, err error) string {
	switch {
	case err != nil:
		return "invalid"
	case id != nil:
		return "verified " + id.Role.String()
	}
	return "none"
}

// event hands one received event to the socket's session, or refuses it
// there when its payload is malformed. Events the contract does not name
// deliver nothing, as on the Node server, but count against the socket's
// rate like any other.
func (s *Server) event(sess *actors.Session, id, event string, payload any, ack messages.AckFunc) {
	msg, known, err := messages.Decode(event, payload, messages.Origin{From: id, Ack: ack, At: time.Now()}, &s.limits)
	if !known {
		s.met.Received("unknown")
		sess.Unknown(event, ack)
		return
	}
	s.met.Received(event)
	if err != nil {
		s.refuse(sess, id, event, err, ack)
		return
	}
	sess.Event(msg)
}

// refuse answers a malformed event through the socket's session, so the
// answer keeps its place among the socket's other frames; nobody else
// hears of it.
func (s *Server) refuse(sess *actors.Session, id, event string, err error, ack messages.AckFunc) {
	r := &messages.Refused{Event: event, Code: messages.CodeInvalidPayload, Reason: err.Error(), Ack: ack}
	var pe *messages.PayloadError
	if errors.As(err, &pe) {
		r.Code = pe.Code
	}
	s.log.Debug("event refused", "socket", id, "event", event, "code", r.Code, "reason", r.Reason)
	sess.Refuse(r)
}
