package actors

import (
	"context"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard/switchboard/messages"
)

// router owns presence and all fan-out. Each event is encoded once into a
// frame, and the same frame is handed to every session that receives it;
// the router itself never does I/O.
type router struct {
	pr  *presence
	log *slog.Logger
	now func() time.Time
}

// endedByOperator is the same for every client, so it is encoded once.
var endedByOperator = messages.MustFrame(messages.EventChatEnded, &messages.ChatEnded{Message: messages.EndedByOperatorText})

func (r *router) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.Join:
		r.join(ctx, m)
	case *messages.ClientMessage:
		r.clientMessage(ctx, m)
	case *messages.OperatorMessage:
		r.operatorMessage(ctx, m)
	case *messages.ClientTyping:
		if r.sender(m.From, messages.RoleClient, "clientTyping") == nil {
			return
		}
		r.toOperators(ctx, messages.MustFrame(messages.EventClientTyping, &messages.ClientTypingOut{From: m.From, IsTyping: m.IsTyping}), "")
	case *messages.OperatorTyping:
		if r.sender(m.From, messages.RoleOperator, "operatorTyping") == nil {
			return
		}
		if c := r.pr.clients[m.Payload.To]; c != nil {
			ctx.Send(c.session, &messages.Deliver{Frame: messages.MustFrame(messages.EventOperatorTyping, &messages.OperatorTypingOut{IsTyping: m.Payload.IsTyping})})
		}
	case *messages.EndChat:
		r.endChat(ctx, m)
	case *actor.Terminated:
		r.leave(ctx, m.Who)
	case *messages.HealthQuery:
		ctx.Respond(&messages.Health{Clients: len(r.pr.clients), Operators: len(r.pr.operators)})
	case *messages.StatsQuery:
		ctx.Respond(r.stats())
	case *actor.Restarting:
		r.log.Warn("router restarting; presence kept", "clients", len(r.pr.clients), "operators", len(r.pr.operators))
	}
}

// sender returns the participant behind an event if it joined with the
// role that the event needs; otherwise the event delivers nothing.
func (r *router) sender(id string, role messages.Role, event string) *participant {
	p := r.pr.byID[id]
	if p == nil || p.role != role {
		if r.log.Enabled(context.Background(), slog.LevelDebug) {
			r.log.Debug("event ignored: wrong role", "event", event, "socket", id)
		}
		return nil
	}
	return p
}

func (r *router) join(ctx actor.Context, m *messages.Join) {
	p := &participant{
		id:          m.From,
		session:     m.Session,
		role:        m.Payload.Role,
		name:        m.Payload.Name,
		username:    m.Payload.Username,
		phone:       m.Payload.Phone,
		operatorID:  m.Payload.OperatorID,
		connectedAt: m.At,
	}
	if r.pr.upsert(p) {
		ctx.Watch(m.Session)
	}
	switch p.role {
	case messages.RoleClient:
		f := newChatFrame(p)
		r.toOperators(ctx, f, "")
		r.log.Info("client joined", "socket", p.id, "name", p.displayName().V, "operators", len(r.pr.operators))
	case messages.RoleOperator:
		clients := ordered(r.pr.clients)
		for _, c := range clients {
			ctx.Send(p.session, &messages.Deliver{Frame: newChatFrame(c)})
		}
		r.log.Info("operator joined", "socket", p.id, "operatorId", p.operatorID.String(), "name", p.name.V, "clients", len(clients))
	}
}

func newChatFrame(c *participant) *messages.Frame {
	return messages.MustFrame(messages.EventNewChat, &messages.NewChat{ClientID: c.id, Username: c.displayName(), Phone: c.phone})
}

func (r *router) clientMessage(ctx actor.Context, m *messages.ClientMessage) {
	if r.sender(m.From, messages.RoleClient, "clientMessage") == nil {
		return
	}
	ts := m.Payload.Timestamp.V // the client's own timestamp wins, as on the Node server
	if ts == "" {
		ts = messages.ISOTime(r.now())
	}
	f := messages.MustFrame(messages.EventIncomingMessage, &messages.IncomingMessage{
		From:      m.From,
		Content:   m.Payload.Content,
		Size:      m.Payload.Size,
		Timestamp: ts,
	})
	r.toOperators(ctx, f, "")
	if r.log.Enabled(context.Background(), slog.LevelDebug) {
		r.log.Debug("client message", "socket", m.From, "type", m.Payload.Type.String(), "operators", len(r.pr.operators))
	}
}

func (r *router) operatorMessage(ctx actor.Context, m *messages.OperatorMessage) {
	if r.sender(m.From, messages.RoleOperator, "operatorMessage") == nil {
		return
	}
	c := r.pr.clients[m.Payload.To]
	if c == nil {
		if r.log.Enabled(context.Background(), slog.LevelDebug) {
			r.log.Debug("operator message to unknown client", "socket", m.From, "to", m.Payload.To)
		}
		return
	}
	ts := messages.ISOTime(r.now())
	ctx.Send(c.session, &messages.Deliver{Frame: messages.MustFrame(messages.EventOperatorMessage, &messages.OperatorMessageOut{
		Content:      m.Payload.Content,
		OperatorName: m.Payload.OperatorName,
		Timestamp:    ts,
	})})
	r.toOperators(ctx, messages.MustFrame(messages.EventOperatorBroadcast, &messages.OperatorBroadcast{
		ClientID:     c.id,
		OperatorID:   m.Payload.OperatorID,
		OperatorName: m.Payload.OperatorName,
		Content:      m.Payload.Content,
		Timestamp:    ts,
	}), m.From)
}

func (r *router) endChat(ctx actor.Context, m *messages.EndChat) {
	p := r.pr.byID[m.From]
	if p == nil {
		return
	}
	clientID := m.From
	if p.role == messages.RoleOperator {
		if !m.Payload.ClientID.Set || m.Payload.ClientID.V == "" {
			return
		}
		clientID = m.Payload.ClientID.V
	}
	// As on the Node server, operators hear of the end even when the client
	// is already gone, so that every CRM closes the conversation.
	r.toOperators(ctx, messages.MustFrame(messages.EventChatEnded, &messages.ChatEnded{ClientID: clientID}), "")
	if p.role == messages.RoleOperator {
		if c := r.pr.clients[clientID]; c != nil {
			ctx.Send(c.session, &messages.Deliver{Frame: endedByOperator})
		}
	}
	r.log.Info("chat ended", "client", clientID, "by", p.role.String(), "socket", m.From)
}

func (r *router) leave(ctx actor.Context, session *actor.PID) {
	p := r.pr.removeSession(session)
	if p == nil {
		return
	}
	if p.role == messages.RoleClient {
		r.toOperators(ctx, messages.MustFrame(messages.EventChatEnded, &messages.ChatEnded{ClientID: p.id, Reason: messages.ReasonDisconnect}), "")
	}
	r.log.Info("participant left", "socket", p.id, "role", p.role.String(), "connectedFor", time.Since(p.connectedAt).Round(time.Millisecond).String())
}

// toOperators hands one frame to every joined operator except the socket
// `except` (empty for none).
func (r *router) toOperators(ctx actor.Context, f *messages.Frame, except string) {
	d := &messages.Deliver{Frame: f}
	for id, op := range r.pr.operators {
		if id != except {
			ctx.Send(op.session, d)
		}
	}
}

func (r *router) stats() *messages.Stats {
	s := &messages.Stats{
		Clients:   make([]messages.ClientInfo, 0, len(r.pr.clients)),
		Operators: make([]messages.OperatorInfo, 0, len(r.pr.operators)),
	}
	for _, c := range ordered(r.pr.clients) {
		s.Clients = append(s.Clients, messages.ClientInfo{SocketID: c.id, Name: c.name, Username: c.username, ConnectedAt: messages.ISOTime(c.connectedAt)})
	}
	for _, o := range ordered(r.pr.operators) {
		s.Operators = append(s.Operators, messages.OperatorInfo{SocketID: o.id, Name: o.name, OperatorID: o.operatorID, ConnectedAt: messages.ISOTime(o.connectedAt)})
	}
	return s
}
