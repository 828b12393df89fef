package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard/switchboard/messages"
)

// The router's side of routing (SWITCHBOARD_ROUTING claim or auto): it asks
// the assignment table (assign.go) and sends the frames. Who hears what:
//
//   - a chat's conversation (incomingMessage, clientTyping, the owner's
//     operatorBroadcast, chatAway/chatBack) reaches its owner's sockets and
//     its watchers only; while nobody owns it, in claim mode every operator
//     (each may claim it), in auto mode nobody (its messages wait for the
//     operator it will be assigned to);
//   - what changes the board (chatAssigned, chatQueued, chatEnded) reaches
//     every operator: rare, once per chat and not per message;
//   - newChat: every operator in claim mode, the owner (and a watcher) in
//     auto mode;
//   - the player hears queued {position} whenever its place changes and
//     operatorAssigned {operatorName} when someone takes it.

// routingRequest answers an operator's claimChat, releaseChat,
// transferChat, setStatus or watchChat.
func (r *router) routingRequest(ctx actor.Context, m *messages.RoutingRequest) {
	event := m.Kind.Event()
	op := r.sender(ctx, &m.Origin, messages.RoleOperator, event)
	if op == nil {
		return
	}
	if !r.asg.enabled() {
		r.refuse(ctx, &m.Origin, event, messages.CodeRoutingOff, "chats are not assigned: SWITCHBOARD_ROUTING is broadcast")
		return
	}
	g := r.asg.bySocket[op.id]
	if g == nil {
		r.refuse(ctx, &m.Origin, event, messages.CodeNotJoined, "join as an operator first")
		return
	}
	if r.clustered() {
		r.clusterRequest(ctx, m, g)
		return
	}
	client := m.Payload.ClientID
	switch m.Kind {
	case messages.RouteClaim:
		c, code := r.asg.claim(g, client)
		if code != "" {
			r.refuseRouting(ctx, &m.Origin, event, code, c)
			return
		}
		r.assigned(ctx, c, false)
		r.settle(ctx)
	case messages.RouteRelease:
		c, watched, code := r.asg.release(g, client)
		if code != "" {
			r.refuseRouting(ctx, &m.Origin, event, code, c)
			return
		}
		if !watched {
			c.releasedBy = g
			r.log.Info("chat released", "client", client, "operator", g.key)
			r.settle(ctx, c)
		}
	case messages.RouteTransfer:
		c, to, code := r.asg.transfer(g, client, m.Payload.ToOperatorID)
		if code != "" {
			r.refuseRouting(ctx, &m.Origin, event, code, c)
			return
		}
		if to != g {
			r.assigned(ctx, c, r.asg.mode == RoutingAuto)
			r.log.Info("chat transferred", "client", client, "from", g.key, "to", to.key)
			r.settle(ctx) // the sender has room for a waiting chat now
		}
	case messages.RouteSetStatus:
		g.away = m.Payload.Status == messages.StatusAway
		r.log.Info("operator status", "operator", g.key, "status", m.Payload.Status.String())
		if !g.away {
			r.settle(ctx)
		}
	case messages.RouteWatch:
		c, started, code := r.asg.watch(g, client)
		if code != "" {
			r.refuseRouting(ctx, &m.Origin, event, code, c)
			return
		}
		if started && r.asg.mode == RoutingAuto {
			// In auto mode only its owner heard of the chat.
			if p := r.client(c.client); p != nil {
				r.toAgent(ctx, g, r.newChatFrame(p), "")
			}
		}
	}
	r.accept(ctx, &m.Origin, "")
}

// refuseRouting answers a refused routing request with why.
func (r *router) refuseRouting(ctx actor.Context, o *messages.Origin, event, code string, c *chat) {
	reason := code
	switch code {
	case messages.CodeUnknownChat:
		reason = "clientId names no open chat"
	case messages.CodeAlreadyClaimed:
		reason = "another operator owns this chat"
		if c != nil && c.owner != nil {
			reason = "this chat is owned by " + c.owner.id.String()
		}
	case messages.CodeNotYours:
		reason = "this chat is not yours"
	case messages.CodeUnknownOperator:
		reason = "toOperatorId names no joined operator"
	case messages.CodeOverCapacity:
		reason = "the operator already has as many chats as it may"
	case messages.CodeOperatorAway:
		reason = "the operator is away"
	}
	r.refuse(ctx, o, event, code, reason)
}

// assigned tells everyone that a chat has a new owner: every operator
// (chatAssigned), the owner (in auto mode newChat first, then what the
// player said while it waited) and the player (operatorAssigned).
func (r *router) assigned(ctx actor.Context, c *chat, introduce bool) {
	g := c.owner
	c.releasedBy = nil
	p := r.client(c.client)
	if introduce && p != nil {
		r.toAgent(ctx, g, r.newChatFrame(p), "")
	}
	r.toOperators(ctx, r.frame(messages.EventChatAssigned, &messages.ChatAssigned{ClientID: c.client, OperatorID: g.id, OperatorName: g.name}, time.Time{}), "")
	if frames := r.queue.takeClient(c.client); len(frames) > 0 {
		d := make([]*messages.Deliver, len(frames))
		for i, f := range frames {
			d[i] = &messages.Deliver{Frame: f}
		}
		for _, s := range g.sockets {
			if s.session != nil {
				for _, m := range d {
					ctx.Send(s.session, m)
				}
			}
		}
		r.met.Queue("delivered", len(frames), -len(frames))
	}
	if p != nil {
		r.toClient(ctx, p, r.frame(messages.EventOperatorAssigned, &messages.OperatorAssigned{OperatorName: g.name}, time.Time{}))
	}
}

// settle runs after every change to the table: in auto mode it gives
// waiting chats to free operators; then every operator hears of the chats
// that entered the queue and stayed there, and every waiting player whose
// place changed hears its new position.
func (r *router) settle(ctx actor.Context, entered ...*chat) {
	if r.asg.mode == RoutingAuto && !r.clustered() {
		for _, c := range r.asg.autoAssign() {
			r.assigned(ctx, c, true)
		}
	}
	for _, c := range entered {
		if c.waiting {
			r.toOperators(ctx, r.frame(messages.EventChatQueued, &messages.ChatQueued{ClientID: c.client, Position: r.asg.position(c)}, time.Time{}), "")
		}
	}
	r.asg.moved(func(c *chat, position int) {
		if p := r.client(c.client); p != nil {
			r.toClient(ctx, p, r.frame(messages.EventQueued, &messages.QueuedOut{Position: position}, time.Time{}))
		}
	})
}

// chatOpened routes a player's new chat (its join, or its first message
// after its last chat ended).
func (r *router) chatOpened(ctx actor.Context, p *participant) *chat {
	if r.clustered() {
		return r.clusterOpen(ctx, p)
	}
	c := r.asg.chatOpened(p.id)
	if r.asg.mode == RoutingClaim {
		r.toOperators(ctx, r.newChatFrame(p), "")
	}
	r.settle(ctx, c)
	return c
}

// chatClosed forgets a chat that ended; its owner's room goes to the
// next waiting chat.
func (r *router) chatClosed(ctx actor.Context, client string) {
	if r.clustered() {
		r.clusterClose(ctx, client)
		return
	}
	if c := r.asg.chatClosed(client); c != nil {
		r.settle(ctx)
	}
}

// operatorJoinedRouting records an operator and sends it what it may see
// of the chats already open: in claim mode newChat for every player (as in
// broadcast) then who owns what and what waits; in auto mode its own and
// watched chats, and what waits.
//
// In a cluster it answers the join o itself (deferred reports that), once
// Redis counts the socket.
func (r *router) operatorJoinedRouting(ctx actor.Context, p *participant, maxChats int, o *messages.Origin) (n int, deferred bool) {
	g := r.asg.operatorJoined(p, maxChats)
	if r.clustered() {
		r.clusterOperatorJoined(ctx, g, maxChats, o)
		deferred = o != nil && o.Ack != nil
	}
	send := func(f *messages.Frame) { ctx.Send(p.session, &messages.Deliver{Frame: f}) }
	if r.asg.mode == RoutingClaim {
		for _, cl := range r.allClients() {
			send(r.newChatFrame(cl))
			n++
		}
		for _, c := range r.openChats() {
			if c.owner != nil {
				send(r.frame(messages.EventChatAssigned, &messages.ChatAssigned{ClientID: c.client, OperatorID: c.owner.id, OperatorName: c.owner.name}, time.Time{}))
			}
		}
	} else {
		for _, list := range [][]*chat{g.chats, g.watching} {
			for _, c := range list {
				if cl := r.client(c.client); cl != nil {
					send(r.newChatFrame(cl))
					n++
				}
				if c.owner != nil {
					send(r.frame(messages.EventChatAssigned, &messages.ChatAssigned{ClientID: c.client, OperatorID: c.owner.id, OperatorName: c.owner.name}, time.Time{}))
				}
			}
		}
	}
	for i, c := range r.asg.waiting {
		send(r.frame(messages.EventChatQueued, &messages.ChatQueued{ClientID: c.client, Position: i + 1}, time.Time{}))
	}
	return n, deferred
}

// openChats is every open chat in arrival order.
func (r *router) openChats() []*chat {
	out := make([]*chat, 0, len(r.asg.chats))
	for _, c := range r.asg.chats {
		out = append(out, c)
	}
	sortChats(out)
	return out
}

// operatorLeftRouting forgets an operator socket; when it was its
// operator's last, that operator's chats go back to the queue in their
// original order, and on to others.
func (r *router) operatorLeftRouting(ctx actor.Context, id string) {
	if r.clustered() {
		r.clusterSocketGone(ctx, id)
		return
	}
	g, released := r.asg.operatorLeft(id)
	if g == nil {
		return
	}
	if len(released) > 0 {
		r.log.Info("operator gone; its chats back in the queue", "operator", g.key, "chats", len(released))
	}
	r.settle(ctx, released...)
}

// clientMessageRouting delivers a player's message under routing: to its
// chat's owner and watchers; while nobody owns it, to every operator in
// claim mode, or kept for the operator it will be assigned to in auto.
func (r *router) clientMessageRouting(ctx actor.Context, m *messages.ClientMessage, p *participant, f *messages.Frame, ts string) {
	c := r.asg.chats[m.From]
	if c == nil {
		c = r.chatOpened(ctx, p) // its last chat ended: this message opens a new one
	}
	// With stored sessions, as in broadcast mode, a player's message to
	// operators on other nodes is acknowledged once it is in the feed.
	stored := r.cl != nil && r.cl.seq && r.cl.bridge != nil
	switch {
	case c.owner != nil:
		if stored {
			r.cl.ackRemote = true
		}
		r.toChat(ctx, c, f, "")
		if stored {
			r.cl.ackRemote = false
		}
		r.accept(ctx, &m.Origin, ts)
	case r.asg.mode == RoutingClaim && r.operatorsOnline() > 0:
		if stored {
			r.toOperatorsStored(ctx, f)
		} else {
			r.toOperators(ctx, f, "")
		}
		r.accept(ctx, &m.Origin, ts)
	case !r.queue.enabled():
		r.refuse(ctx, &m.Origin, "clientMessage", messages.CodeQueueFull, "no operator has taken this chat yet, and waiting messages are not kept")
	default:
		r.enqueue(ctx, m, f, ts)
	}
}

// owned checks that an operator's event names a chat its operator owns.
func (r *router) owned(ctx actor.Context, o *messages.Origin, op *participant, client, event string) bool {
	c := r.asg.chats[client]
	if c != nil && c.owner != nil && c.owner == r.asg.bySocket[op.id] {
		return true
	}
	reason := "claim this chat first"
	if c != nil && c.owner != nil {
		reason = "this chat is owned by " + c.owner.id.String()
	}
	r.refuse(ctx, o, event, messages.CodeNotYours, reason)
	return false
}

// toChatOperators hands a frame of one chat's conversation to the
// operators who follow it: every operator in broadcast mode (the guide's
// behaviour), else its owner and watchers, or while nobody owns it every
// operator in claim mode and nobody in auto mode.
func (r *router) toChatOperators(ctx actor.Context, client string, f *messages.Frame, except string) {
	if !r.asg.enabled() {
		r.toOperators(ctx, f, except)
		return
	}
	c := r.asg.chats[client]
	switch {
	case c == nil:
	case c.owner != nil:
		r.toChat(ctx, c, f, except)
	case r.asg.mode == RoutingClaim:
		r.toOperators(ctx, f, except)
	}
}

// chatFollowed says whether toChatOperators would hand a frame of the
// chat to anyone but the socket except, so that a frame for nobody is not
// encoded: in auto mode an owner's reply usually has no other socket and
// no watcher to go to, and its operatorBroadcast was a JSON encoding per
// message for nothing. With a cluster, operators elsewhere may follow it.
func (r *router) chatFollowed(client, except string) bool {
	if !r.asg.enabled() || r.cl != nil {
		return true
	}
	c := r.asg.chats[client]
	switch {
	case c == nil:
		return false
	case c.owner == nil:
		return r.asg.mode == RoutingClaim
	}
	if c.owner.reaches(except) {
		return true
	}
	for _, w := range c.watchers {
		if w.reaches(except) {
			return true
		}
	}
	return false
}

// reaches says whether the operator has a socket here other than except.
func (g *agent) reaches(except string) bool {
	for _, s := range g.sockets {
		if s.id != except && s.session != nil {
			return true
		}
	}
	return false
}

// toChat hands a frame to a chat's owner and watchers, but `except`: the
// work is O(their sockets), whatever the number of operators.
func (r *router) toChat(ctx actor.Context, c *chat, f *messages.Frame, except string) {
	d := &messages.Deliver{Frame: f}
	if c.owner != nil {
		for _, s := range c.owner.sockets {
			if s.id != except && s.session != nil {
				ctx.Send(s.session, d)
			}
		}
	}
	for _, w := range c.watchers {
		for _, s := range w.sockets {
			if s.id != except && s.session != nil {
				ctx.Send(s.session, d)
			}
		}
	}
	if r.cl != nil {
		r.toRemoteAgents(ctx, f, except, c.owner, c.watchers)
	}
}

// toAgent hands a frame to every socket of one operator but `except`.
func (r *router) toAgent(ctx actor.Context, g *agent, f *messages.Frame, except string) {
	d := &messages.Deliver{Frame: f}
	for _, s := range g.sockets {
		if s.id != except && s.session != nil {
			ctx.Send(s.session, d)
		}
	}
}

// routingStats adds owners, queue positions and loads to /stats.
func (r *router) routingStats(s *messages.Stats) {
	if !r.asg.enabled() {
		return
	}
	for i := range s.Clients {
		ci := &s.Clients[i]
		c := r.asg.chats[ci.SocketID]
		switch {
		case c == nil:
		case c.owner != nil:
			ci.Owner, ci.OwnerName = c.owner.id, c.owner.name
		default:
			ci.QueuePosition = r.asg.position(c)
		}
	}
	for i := range s.Operators {
		oi := &s.Operators[i]
		if g := r.asg.bySocket[oi.SocketID]; g != nil {
			load := len(g.chats)
			oi.Status, oi.Load, oi.Capacity = g.status(), &load, g.capacity
		}
	}
}

// clientJoinedRouting routes a player's join: a new chat, or for a
// rejoin of an open one, newChat again to whom follows it (as broadcast
// repeats it to every operator).
func (r *router) clientJoinedRouting(ctx actor.Context, p *participant) {
	c := r.asg.chats[p.id]
	switch {
	case c == nil:
		r.chatOpened(ctx, p)
	case r.asg.mode == RoutingClaim:
		r.toOperators(ctx, r.newChatFrame(p), "")
	default:
		r.toChat(ctx, c, r.newChatFrame(p), "")
	}
}

// rejoinRouting handles a socket that joins again with another role or
// as another operator: what it held under its old identity goes.
func (r *router) rejoinRouting(ctx actor.Context, old, p *participant) {
	switch {
	case old.role == messages.RoleOperator && (p.role != messages.RoleOperator || agentKey(old) != agentKey(p)):
		r.operatorLeftRouting(ctx, old.id)
	case old.role == messages.RoleClient && p.role != messages.RoleClient:
		if r.asg.chats[old.id] != nil {
			r.toOperators(ctx, r.frame(messages.EventChatEnded, &messages.ChatEnded{ClientID: old.id}, time.Time{}), "")
			r.chatClosed(ctx, old.id)
		}
	}
}

// mayEnd checks that an operator may end a chat: one that nobody else owns.
func (r *router) mayEnd(ctx actor.Context, o *messages.Origin, op *participant, client string) bool {
	c := r.asg.chats[client]
	if c == nil || c.owner == nil || c.owner == r.asg.bySocket[op.id] {
		return true
	}
	r.refuse(ctx, o, "endChat", messages.CodeNotYours, "this chat is owned by "+c.owner.id.String())
	return false
}

// maxChats is what an operator's token says of its capacity (0: nothing).
func maxChats(id *messages.Identity) int {
	if id == nil {
		return 0
	}
	return id.MaxChats
}
