package actors

import (
	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard/switchboard/messages"
)

// Session is the transport's handle on one socket's session actor: the
// only way a socket's events reach the actors. It is safe for concurrent
// use; every method only sends a message.
type Session struct {
	sys       *actor.ActorSystem
	pid       *actor.PID
	id        string
	privateID string
}

// ID is the socket id, which a recovered socket keeps.
func (s *Session) ID() string { return s.id }

// PrivateID is the id a client presents to recover this session; "" when
// recovery is off. Only the socket itself ever sees it.
func (s *Session) PrivateID() string { return s.privateID }

// Event hands the session one decoded event from its socket.
func (s *Session) Event(m messages.RouterMessage) { s.sys.Root.Send(s.pid, m) }

// Unknown counts an event the contract does not name against the socket.
func (s *Session) Unknown(event string, ack messages.AckFunc) {
	s.sys.Root.Send(s.pid, &messages.Unknown{Event: event, Ack: ack})
}

// Refuse answers a malformed event through the session, so the answer
// keeps its place among the socket's frames.
func (s *Session) Refuse(r *messages.Refused) { s.sys.Root.Send(s.pid, r) }

// Disconnected tells the session that conn is gone. It is processed after
// every event the socket sent before, so none is lost. recoverable says
// the transport dropped without a goodbye (the client will try to
// recover); otherwise the participant leaves at once.
func (s *Session) Disconnected(conn Conn, reason string, recoverable bool) {
	s.sys.Root.Send(s.pid, &socketClosed{conn: conn, reason: reason, recoverable: recoverable})
}
