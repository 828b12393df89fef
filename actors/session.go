package actors

import (
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard/switchboard/messages"
	"github.com/switchboard/switchboard/metrics"
)

// session is one socket's actor. It enforces the socket's limits and
// identity, forwards its events to the router in the order they arrived,
// answers refusals and acknowledgements, and writes the router's frames to
// the socket. When it stops, for whatever reason, its socket is closed, and
// the router, which watches it, removes it from presence.
type session struct {
	conn     Conn
	router   *actor.PID
	log      *slog.Logger
	policy   *Policy
	met      *metrics.Metrics
	identity *messages.Identity // from a verified handshake token, or nil
	authErr  error              // why a presented token was refused
	messages bucket
	typing   bucket
	abuse    strikes
	closed   string // why the socket went away, once it has
}

func newSession(conn Conn, router *actor.PID, log *slog.Logger, p *Policy, met *metrics.Metrics, id *messages.Identity, authErr error) *session {
	now := time.Now()
	return &session{
		conn: conn, router: router, log: log, policy: p, met: met, identity: id, authErr: authErr,
		messages: newBucket(p.Messages, now),
		typing:   newBucket(p.Typing, now),
		abuse:    strikes{limit: p.AbuseLimit, win: p.AbuseWindow},
	}
}

func (s *session) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.Deliver:
		s.conn.Write(m.Frame)
		s.met.Delivered(m.Frame.Event, m.Frame.At)
	case *messages.Join:
		m.Session = ctx.Self()
		if code, reason := s.admit(m); code != "" {
			s.refused(ctx, &messages.Refused{Event: "join", Code: code, Reason: reason, Ack: m.Ack})
			return
		}
		if s.limited(ctx, &m.Origin, "join", &s.messages) {
			return
		}
		ctx.Send(s.router, m)
	case *messages.ClientTyping:
		s.forward(ctx, m, "clientTyping", &s.typing)
	case *messages.OperatorTyping:
		s.forward(ctx, m, "operatorTyping", &s.typing)
	case *messages.ClientMessage:
		s.forward(ctx, m, "clientMessage", &s.messages)
	case *messages.OperatorMessage:
		s.forward(ctx, m, "operatorMessage", &s.messages)
	case *messages.EndChat:
		s.forward(ctx, m, "endChat", &s.messages)
	case *messages.Refused:
		s.refused(ctx, m)
	case *messages.Accepted:
		m.Ack(&messages.AckReply{OK: true, ID: m.ID, Timestamp: m.Timestamp})
	case *messages.SocketClosed:
		s.closed = m.Reason
		ctx.Stop(ctx.Self())
	case *actor.Stopped:
		if s.closed == "" {
			// Stopped by a failure, by abuse or by shutdown: the socket must
			// not linger without an actor behind it.
			s.conn.Close("session stopped")
		}
	}
}

// admit checks a join against the socket's verified identity.
func (s *session) admit(m *messages.Join) (code, reason string) {
	if s.authErr != nil {
		return messages.CodeUnauthorized, s.authErr.Error()
	}
	id := s.identity
	switch m.Payload.Role {
	case messages.RoleOperator:
		if id != nil && id.Role == messages.RoleOperator {
			m.Verified = id
		} else if s.policy.OperatorAuth {
			return messages.CodeUnauthorized, "operators must present a valid token"
		}
	case messages.RoleClient:
		if id != nil && id.Role == messages.RoleClient {
			m.Verified = id
		} else if id != nil || s.policy.ClientTokenRequired {
			return messages.CodeUnauthorized, "clients must present a valid client token"
		}
	}
	return "", ""
}

// forward passes an event to the router if the socket's bucket allows it.
func (s *session) forward(ctx actor.Context, m messages.RouterMessage, event string, b *bucket) {
	o := m.Src()
	o.Session = ctx.Self()
	if s.limited(ctx, o, event, b) {
		return
	}
	ctx.Send(s.router, m)
}

// limited refuses an event over the socket's rate.
func (s *session) limited(ctx actor.Context, o *messages.Origin, event string, b *bucket) bool {
	if b.take(time.Now()) {
		return false
	}
	s.refused(ctx, &messages.Refused{Event: event, Code: messages.CodeRateLimited, Reason: "too many events; slow down", Ack: o.Ack})
	return true
}

// refused answers a refused event, and disconnects a socket that keeps
// sending refused events.
func (s *session) refused(ctx actor.Context, m *messages.Refused) {
	s.met.Refused(m.Event, m.Code)
	if m.Ack != nil {
		m.Ack(&messages.AckReply{OK: false, Error: &messages.AckError{Code: m.Code, Message: m.Reason}})
	} else {
		s.conn.Write(messages.MustFrame(messages.EventChatError, &messages.ChatError{Code: m.Code, Message: m.Reason, Event: m.Event}))
	}
	if s.abuse.add(time.Now()) && s.closed == "" {
		s.log.Warn("disconnecting abusive socket", "socket", s.conn.ID(), "refusals", len(s.abuse.times), "window", s.policy.AbuseWindow.String(), "last", m.Code)
		s.closed = "abuse"
		s.conn.Close("too many refused events")
		ctx.Stop(ctx.Self())
	}
}
