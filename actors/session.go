package actors

import (
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard/switchboard/messages"
)

// session is one socket's actor. It forwards the socket's events to the
// router in the order they arrived and writes the router's frames to the
// socket. When it stops, for whatever reason, its socket is closed, and the
// router, which watches it, removes it from presence.
type session struct {
	conn   Conn
	router *actor.PID
	log    *slog.Logger
	closed string // why the socket went away, once it has
}

func (s *session) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.Deliver:
		s.conn.Write(m.Frame)
	case *messages.Refused:
		s.conn.Write(messages.MustFrame(messages.EventChatError, &messages.ChatError{Code: m.Code, Message: m.Reason, Event: m.Event}))
	case *messages.Join:
		m.Session = ctx.Self()
		ctx.Send(s.router, m)
	case messages.RouterMessage:
		ctx.Send(s.router, m)
	case *messages.SocketClosed:
		s.closed = m.Reason
		ctx.Stop(ctx.Self())
	case *actor.Stopped:
		if s.closed == "" {
			// Stopped by a failure or by shutdown: the socket must not
			// linger without an actor behind it.
			s.conn.Close("session stopped")
		}
	}
}
