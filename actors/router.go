package actors

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard/switchboard/messages"
	"github.com/switchboard/switchboard/metrics"
)

// router owns presence and all fan-out. Each event is encoded once into a
// frame, and the same frame is handed to every session that receives it;
// the router itself never does I/O.
type router struct {
	pr  *presence
	log *slog.Logger
	now func() time.Time
	ids *idSource
	met *metrics.Metrics
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
		if r.sender(ctx, &m.Origin, messages.RoleClient, "clientTyping") == nil {
			return
		}
		r.toOperators(ctx, messages.MustFrameAt(messages.EventClientTyping, &messages.ClientTypingOut{From: m.From, IsTyping: m.IsTyping}, m.At), "")
		r.accept(ctx, &m.Origin, "")
	case *messages.OperatorTyping:
		if r.sender(ctx, &m.Origin, messages.RoleOperator, "operatorTyping") == nil {
			return
		}
		c := r.target(ctx, &m.Origin, m.Payload.To, "operatorTyping")
		if c == nil {
			return
		}
		ctx.Send(c.session, &messages.Deliver{Frame: messages.MustFrameAt(messages.EventOperatorTyping, &messages.OperatorTypingOut{IsTyping: m.Payload.IsTyping}, m.At)})
		r.accept(ctx, &m.Origin, "")
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
// role that the event needs; otherwise the event delivers nothing and its
// sender is told why.
func (r *router) sender(ctx actor.Context, o *messages.Origin, role messages.Role, event string) *participant {
	p := r.pr.byID[o.From]
	switch {
	case p == nil:
		r.refuse(ctx, o, event, messages.CodeNotJoined, "join first")
		return nil
	case p.role != role:
		r.refuse(ctx, o, event, messages.CodeWrongRole, "only a "+role.String()+" may send "+event)
		return nil
	}
	return p
}

// target returns the joined client that an operator's event names.
func (r *router) target(ctx actor.Context, o *messages.Origin, to, event string) *participant {
	c := r.pr.clients[to]
	if c == nil {
		r.refuse(ctx, o, event, messages.CodeUnknownTarget, "to does not name a connected client")
	}
	return c
}

func (r *router) refuse(ctx actor.Context, o *messages.Origin, event, code, reason string) {
	if r.log.Enabled(context.Background(), slog.LevelDebug) {
		r.log.Debug("event refused", "event", event, "socket", o.From, "code", code)
	}
	if o.Session != nil {
		ctx.Send(o.Session, &messages.Refused{Event: event, Code: code, Reason: reason, Ack: o.Ack})
	}
}

// accept answers an event's acknowledgement, if its sender asked for one.
func (r *router) accept(ctx actor.Context, o *messages.Origin, ts string) {
	if o.Ack == nil || o.Session == nil {
		return
	}
	if ts == "" {
		ts = messages.ISOTime(r.now())
	}
	ctx.Send(o.Session, &messages.Accepted{Ack: o.Ack, ID: r.ids.next(), Timestamp: ts})
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
	if v := m.Verified; v != nil {
		p.verified = true
		if v.OperatorID.Kind != messages.IDAbsent {
			p.operatorID = v.OperatorID
		}
		if v.Name.Set {
			p.name = v.Name
		}
		if v.Username.Set {
			p.username = v.Username
		}
		if v.Phone.Set {
			p.phone = v.Phone
		}
	}
	old := r.pr.byID[p.id]
	if r.pr.upsert(p) {
		ctx.Watch(m.Session)
		r.met.Joined("none", p.role.String())
	} else {
		r.met.Joined(old.role.String(), p.role.String())
	}
	switch p.role {
	case messages.RoleClient:
		r.toOperators(ctx, newChatFrame(p), "")
		r.log.Info("client joined", "socket", p.id, "name", p.displayName().V, "verified", m.Verified != nil, "operators", len(r.pr.operators))
	case messages.RoleOperator:
		clients := ordered(r.pr.clients)
		for _, c := range clients {
			ctx.Send(p.session, &messages.Deliver{Frame: newChatFrame(c)})
		}
		r.log.Info("operator joined", "socket", p.id, "operatorId", p.operatorID.String(), "name", p.name.V, "verified", m.Verified != nil, "clients", len(clients))
	}
	r.accept(ctx, &m.Origin, "")
}

func newChatFrame(c *participant) *messages.Frame {
	return messages.MustFrame(messages.EventNewChat, &messages.NewChat{ClientID: c.id, Username: c.displayName(), Phone: c.phone})
}

func (r *router) clientMessage(ctx actor.Context, m *messages.ClientMessage) {
	if r.sender(ctx, &m.Origin, messages.RoleClient, "clientMessage") == nil {
		return
	}
	ts := m.Payload.Timestamp.V // the client's own timestamp wins, as on the Node server
	if ts == "" {
		ts = messages.ISOTime(r.now())
	}
	f := messages.MustFrameAt(messages.EventIncomingMessage, &messages.IncomingMessage{
		From:      m.From,
		Content:   m.Payload.Content,
		Size:      m.Payload.Size,
		Timestamp: ts,
	}, m.At)
	r.toOperators(ctx, f, "")
	r.accept(ctx, &m.Origin, ts)
	if r.log.Enabled(context.Background(), slog.LevelDebug) {
		r.log.Debug("client message", "socket", m.From, "type", m.Payload.Type.String(), "operators", len(r.pr.operators))
	}
}

func (r *router) operatorMessage(ctx actor.Context, m *messages.OperatorMessage) {
	op := r.sender(ctx, &m.Origin, messages.RoleOperator, "operatorMessage")
	if op == nil {
		return
	}
	c := r.target(ctx, &m.Origin, m.Payload.To, "operatorMessage")
	if c == nil {
		return
	}
	if op.verified {
		m.Payload.OperatorID, m.Payload.OperatorName = op.operatorID, op.name
	}
	ts := messages.ISOTime(r.now())
	ctx.Send(c.session, &messages.Deliver{Frame: messages.MustFrameAt(messages.EventOperatorMessage, &messages.OperatorMessageOut{
		Content:      m.Payload.Content,
		OperatorName: m.Payload.OperatorName,
		Timestamp:    ts,
	}, m.At)})
	r.toOperators(ctx, messages.MustFrameAt(messages.EventOperatorBroadcast, &messages.OperatorBroadcast{
		ClientID:     c.id,
		OperatorID:   m.Payload.OperatorID,
		OperatorName: m.Payload.OperatorName,
		Content:      m.Payload.Content,
		Timestamp:    ts,
	}, m.At), m.From)
	r.accept(ctx, &m.Origin, ts)
}

func (r *router) endChat(ctx actor.Context, m *messages.EndChat) {
	p := r.pr.byID[m.From]
	if p == nil {
		r.refuse(ctx, &m.Origin, "endChat", messages.CodeNotJoined, "join first")
		return
	}
	clientID := m.From
	if p.role == messages.RoleOperator {
		if !m.Payload.ClientID.Set || m.Payload.ClientID.V == "" {
			r.refuse(ctx, &m.Origin, "endChat", messages.CodeInvalidPayload, "clientId is required")
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
	r.accept(ctx, &m.Origin, "")
	r.log.Info("chat ended", "client", clientID, "by", p.role.String(), "socket", m.From)
}

func (r *router) leave(ctx actor.Context, session *actor.PID) {
	p := r.pr.removeSession(session)
	if p == nil {
		return
	}
	r.met.Left(p.role.String())
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

// idSource makes the ids that acknowledgements carry: unique within a
// process start, short, and cheap.
type idSource struct {
	prefix string
	seq    uint64
}

func newIDSource(now time.Time) *idSource {
	return &idSource{prefix: strconv.FormatInt(now.UnixMilli(), 36) + "-"}
}

func (s *idSource) next() string {
	s.seq++
	return s.prefix + strconv.FormatUint(s.seq, 36)
}
