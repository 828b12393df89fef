package actors

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard/switchboard/messages"
)

// spawnSession asks the hub for a new session actor; it responds with a
// *spawned.
type spawnSession struct {
	conn     Conn
	identity *messages.Identity
	authErr  error
	// id, when set, is the socket id of a session taken over from another
	// node (else the conn's).
	id string
}

// adoptSession asks the hub to start a session taken over from another
// node; the session responds with *resumed.
type adoptSession struct {
	conn      Conn
	identity  *messages.Identity
	privateID string
	a         *adoption
}

type spawned struct {
	pid       *actor.PID
	privateID string
}

// resumeSession asks the hub for the session a private id names; the hub
// forwards it there (the session responds with *resumed), or responds
// itself when there is none.
type resumeSession struct {
	privateID string
	key       string // a reload's: resumeByToken or resumeBySubject and its value
	resume
}

// routerPIDQuery asks the hub for the router's PID.
type routerPIDQuery struct{}

// bridgePIDQuery asks the hub for the cluster bridge's PID (nil on a
// single node).
type bridgePIDQuery struct{}

// hub supervises the router and every session. A failing session is
// stopped (its socket closes and the router treats it as a disconnect); a
// failing router is restarted and keeps its presence.
type hub struct {
	routerProps  *actor.Props
	sessionProps func(req *spawnSession, privateID string, router *actor.PID) *actor.Props
	router       *actor.PID
	// clusterProps is nil on a node without a cluster.
	clusterProps func(router *actor.PID) *actor.Props
	// recovery is on when sessions get private ids; recoverable finds a
	// session by its private id, byPID the other way, for its end.
	recovery    bool
	recoverable map[string]*actor.PID
	byPID       map[string]string
	// reload finds a player's session by its resume token or its token's
	// sub; reloadKeys lists a session's keys, for its end.
	reload     map[string]*actor.PID
	reloadKeys map[string][]string
	// stored: sessions are also kept in Redis (a cluster with recovery):
	// a private id then names its socket, so any node finds its record.
	stored bool
	bridge *actor.PID
}

func (h *hub) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		pid, err := ctx.SpawnNamed(h.routerProps, "router")
		if err != nil {
			panic(fmt.Errorf("hub: spawn router: %w", err))
		}
		h.router = pid
		if h.clusterProps != nil {
			bridge, err := ctx.SpawnNamed(h.clusterProps(pid), "cluster")
			if err != nil {
				panic(fmt.Errorf("hub: spawn cluster bridge: %w", err))
			}
			// Sent before any session exists, so the router knows its
			// bridge before the first join.
			ctx.Send(pid, &clusterAttached{pid: bridge})
			h.bridge = bridge
		}
	case *spawnSession:
		privateID := ""
		if h.recovery && recoverable(m.conn) {
			privateID = newPrivateID()
			if h.stored {
				privateID = m.conn.ID() + string(offsetSep) + privateID
			}
		}
		pid := ctx.SpawnPrefix(h.sessionProps(m, privateID, h.router), "session")
		h.register(privateID, pid)
		ctx.Respond(&spawned{pid: pid, privateID: privateID})
	case *adoptSession:
		if h.recoverable[m.privateID] != nil {
			ctx.Respond(&resumed{why: "session already here"})
			return
		}
		req := &spawnSession{conn: m.conn, identity: m.identity, id: m.a.member.ID}
		pid := ctx.SpawnPrefix(h.sessionProps(req, m.privateID, h.router), "session")
		h.register(m.privateID, pid)
		ctx.RequestWithCustomSender(pid, &adoptStart{a: m.a}, ctx.Sender())
	case *resumeSession:
		pid := h.recoverable[m.privateID]
		if pid == nil && m.key != "" {
			pid = h.reload[m.key]
		}
		if pid != nil {
			ctx.RequestWithCustomSender(pid, &m.resume, ctx.Sender())
			return
		}
		ctx.Respond(&resumed{why: "no such session (ended, or on another node)", notHere: true})
	case *resumeKeys:
		if h.reload == nil {
			h.reload, h.reloadKeys = map[string]*actor.PID{}, map[string][]string{}
		}
		for _, k := range m.keys {
			h.reload[k] = m.pid // a newer session with the same sub wins
		}
		h.reloadKeys[m.pid.Id] = append(h.reloadKeys[m.pid.Id], m.keys...)
		if h.stored && h.bridge != nil {
			// So that a reload on another node finds the player too.
			ctx.Send(h.bridge, &storeReloadKeys{id: m.id, keys: m.keys})
		}
	case *actor.Terminated:
		if id, ok := h.byPID[m.Who.Id]; ok {
			delete(h.byPID, m.Who.Id)
			delete(h.recoverable, id)
		}
		for _, k := range h.reloadKeys[m.Who.Id] {
			if h.reload[k] != nil && h.reload[k].Id == m.Who.Id {
				delete(h.reload, k)
			}
		}
		delete(h.reloadKeys, m.Who.Id)
	case *routerPIDQuery:
		ctx.Respond(h.router)
	case *bridgePIDQuery:
		ctx.Respond(h.bridge)
	}
}

func (h *hub) register(privateID string, pid *actor.PID) {
	if privateID == "" {
		return
	}
	if h.recoverable == nil {
		h.recoverable, h.byPID = map[string]*actor.PID{}, map[string]string{}
	}
	h.recoverable[privateID], h.byPID[pid.Id] = pid, privateID
}

// supervisor is the hub's strategy: restart the router, stop a session.
type supervisor struct {
	log *slog.Logger
	// fatal is told, once, that a singleton was stopped: the node cannot
	// route and must exit rather than dead-letter every event silently.
	fatal func(error)
	// restarts bounds router restarts: more than max within window means
	// the router cannot run, and the process should not pretend otherwise.
	max    int
	window time.Duration
}

func (s *supervisor) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason any, message any) {
	if name := singleton(child); name != "" {
		if rs.NumberOfFailures(s.window) >= s.max {
			s.log.Error(name+" keeps failing; stopping it", "reason", fmt.Sprint(reason), "failures", rs.NumberOfFailures(s.window))
			sup.StopChildren(child)
			if s.fatal != nil {
				s.fatal(fmt.Errorf("%s failed %d times in %s: %v", name, rs.NumberOfFailures(s.window), s.window, reason))
			}
			return
		}
		rs.Fail()
		s.log.Error(name+" failed; restarting with its state kept", "reason", fmt.Sprint(reason), "message", fmt.Sprintf("%T", message))
		sup.RestartChildren(child)
		return
	}
	s.log.Error("session failed; closing its socket", "session", child.Id, "reason", fmt.Sprint(reason), "message", fmt.Sprintf("%T", message))
	sup.StopChildren(child)
}

// singleton tells the router and the cluster bridge from sessions: they
// are the hub's only children spawned with a name ("<hub id>/router").
func singleton(child *actor.PID) string {
	for _, name := range []string{"router", "cluster"} {
		if strings.HasSuffix(child.Id, "/"+name) {
			return name
		}
	}
	return ""
}

// recoverable tells whether a connection can carry recovery: one that says
// it cannot (the Socket.IO library's) gets no private id and no log.
func recoverable(c Conn) bool {
	r, ok := c.(interface{ Recoverable() bool })
	return !ok || r.Recoverable()
}

// newPrivateID is a socket's secret for recovery: 120 random bits, as
// unguessable as the session it opens must be.
func newPrivateID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
