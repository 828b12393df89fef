package actors

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
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
	pr *presence
	// cl is nil on a node without a cluster: then no cluster code runs.
	cl  *clusterView
	log *slog.Logger
	now func() time.Time
	ids *idSource
	met *metrics.Metrics
	// offsets numbers the frames a recovering socket may need replayed;
	// nil when recovery is off (frames then carry no offset, as the
	// guide's server sends them).
	offsets *idSource
	queue   *offlineQueue
	// asg is who owns which chat under SWITCHBOARD_ROUTING claim or auto
	// (assign.go); in broadcast mode it is off and every operator gets all.
	asg *assignments
}

// clusterView is what the router knows of the cluster. Like presence it
// outlives a router restart; only the running incarnation touches it.
type clusterView struct {
	node   string
	bridge *actor.PID
	remote *remotePresence
	state  ClusterState
	// seq: players' frames go through their stored sessions
	// (cluster_store.go); window is the recovery window (0: off).
	seq    bool
	window time.Duration
	// orphans are players of gone nodes, away until their window ends;
	// the value tells a stale timer from the current one.
	orphans   map[string]int
	orphanGen int
	// stopping: this node is shutting down; its players recover elsewhere.
	stopping bool
	// Operators across nodes (cluster_operators.go), with stored
	// sessions: opAdopt is on; feedAt is the last feed entry
	// applied ("" before the first read); localOnlyAt is when this node
	// last told its operators something the feed does not hold; skew is
	// how far apart two nodes notice the same thing; opSkip holds the
	// operators taken over here that still await entries their old node
	// had applied (by socket id: that entry's id).
	opAdopt     bool
	feedAt      string
	localOnlyAt time.Time
	skew        time.Duration
	opSkip      map[string]string
	// shown: remote players whose newChat this node's operators were
	// last told (not yet their chatEnded); bySnap: what a presence re-read
	// told them, which the feed may still bring (then it is not told twice).
	shown  map[string]bool
	bySnap map[string]string
	// orphanOps: the operators among orphans (operatorsOnline).
	orphanOps map[string]bool
	// goneInc: the incarnation of each gone node, which names its
	// players' away and end in Redis (one source for every node).
	goneInc map[string]string
	// storedFor is the message being handled when it sent a player a
	// stored frame, or a player's message to the operators' feed: its
	// acknowledgement waits for that write (ackAfterStore).
	storedFor any
	// ackRemote: the frame being handed to owners and watchers on other
	// nodes is a player's message, whose acknowledgement waits for its
	// write to the feed (routing).
	ackRemote bool
}

// endedByOperator is what a client hears when an operator ends its chat.
var endedByOperator = &messages.ChatEnded{Message: messages.EndedByOperatorText}

// frame encodes one outgoing event, with the next offset unless it is
// volatile or recovery is off. Every recipient gets the same frame.
func (r *router) frame(event string, payload any, at time.Time) *messages.Frame {
	return r.frameSub(event, payload, at, 0)
}

// frameSub is frame for one of several frames that a single feed entry
// makes (a routing decision: newChat then chatAssigned): sub counts the
// frames of that entry sent so far, this one included, and the last one
// is sent with 0. An operator whose last offset names a sub frame is
// replayed the rest of the entry by a takeover, not none of it.
func (r *router) frameSub(event string, payload any, at time.Time, sub int) *messages.Frame {
	offset := ""
	if r.offsets != nil && !messages.Volatile(event) {
		if r.cl != nil && r.cl.opAdopt {
			offset = r.offsets.nextAnchored(r.cl.feedAt)
			if sub > 0 {
				offset += string(subSep) + strconv.Itoa(sub)
			}
		} else {
			offset = r.offsets.next()
		}
	}
	f, err := messages.EncodeFrameOffset(event, payload, offset)
	if err != nil {
		panic(err) // every payload type here encodes
	}
	f.At = at
	return f
}

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
		r.toChatOperators(ctx, m.From, r.frame(messages.EventClientTyping, &messages.ClientTypingOut{From: m.From, IsTyping: m.IsTyping}, m.At), "")
		r.accept(ctx, &m.Origin, "")
	case *messages.OperatorTyping:
		op := r.sender(ctx, &m.Origin, messages.RoleOperator, "operatorTyping")
		if op == nil {
			return
		}
		c := r.target(ctx, &m.Origin, m.Payload.To, "operatorTyping")
		if c == nil || r.asg.enabled() && !r.owned(ctx, &m.Origin, op, c.id, "operatorTyping") {
			return
		}
		r.toClient(ctx, c, r.frame(messages.EventOperatorTyping, &messages.OperatorTypingOut{IsTyping: m.Payload.IsTyping}, m.At))
		r.accept(ctx, &m.Origin, "")
	case *messages.EndChat:
		r.endChat(ctx, m)
	case *messages.RoutingRequest:
		r.routingRequest(ctx, m)
	case *actor.Terminated:
		r.leave(ctx, m.Who)
	case *messages.Away:
		r.away(ctx, m.Session, true)
	case *messages.Back:
		r.away(ctx, m.Session, false)
	case *messages.HealthQuery:
		ctx.Respond(r.health())
	case *messages.StatsQuery:
		ctx.Respond(r.stats())
	case *RemoteDeliver:
		r.remoteDeliver(ctx, m)
	case *RoutingEvent:
		r.routingEvent(ctx, m)
	case *routeDone:
		r.routeDone(ctx, m)
	case *routeNodeGone:
		r.decide(ctx, &routeJob{kind: routeNode, where: m.where, arg: "gone"})
	case *RemoteJoined:
		r.remoteJoined(ctx, m)
	case *RemoteLeft:
		r.remoteLeft(ctx, m)
	case *NodeGone:
		r.nodeGone(ctx, m)
	case *ClusterState:
		if r.cl != nil {
			back := m.Up && !r.cl.state.Up
			r.cl.state = *m
			if back && r.clustered() {
				r.routingRedisBack(ctx)
			}
		}
	case *clusterAttached:
		if r.cl != nil {
			r.cl.bridge = m.pid
		}
	case *actor.Restarting:
		r.log.Warn("router restarting; presence kept", "clients", len(r.pr.clients), "operators", len(r.pr.operators))
	default:
		if r.cl != nil {
			r.clusterReceive(ctx, m)
		}
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

// target returns the joined client that an operator's event names, on
// this node or, in a cluster, on another.
func (r *router) target(ctx actor.Context, o *messages.Origin, to, event string) *participant {
	c := r.client(to)
	if c == nil {
		r.refuse(ctx, o, event, messages.CodeUnknownTarget, "to does not name a connected client")
	}
	return c
}

// client is a joined client of this node or of another.
func (r *router) client(id string) *participant {
	if c := r.pr.clients[id]; c != nil || r.cl == nil {
		return c
	}
	return r.cl.remote.clients[id]
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
	r.acceptKept(ctx, o, ts, false, false)
}

// acceptKept is accept for a message kept for later: queued for an
// operator, or held for an away player.
func (r *router) acceptKept(ctx actor.Context, o *messages.Origin, ts string, queued, away bool) {
	if o.Ack == nil || o.Session == nil {
		return
	}
	if ts == "" {
		ts = messages.ISOTime(r.now())
	}
	acc := &messages.Accepted{Ack: o.Ack, ID: r.ids.next(), Timestamp: ts, Queued: queued, Away: away}
	if r.cl != nil && r.ackAfterStore(ctx, o, acc) {
		return
	}
	ctx.Send(o.Session, acc)
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
	if old != nil {
		p.away = old.away // a rejoin does not change whether the transport is up
		if r.asg.enabled() {
			r.rejoinRouting(ctx, old, p)
		}
	}
	if r.pr.upsert(p) {
		ctx.Watch(m.Session)
		r.met.Joined("none", p.role.String())
	} else {
		r.met.Joined(old.role.String(), p.role.String())
	}
	var opJoined *clusterJoined // sent once its join's list is made
	var before opAnchor
	if r.cl != nil {
		mem := memberOf(p)
		mem.Quiet = m.Resumed && old != nil && old.role == p.role
		cj := &clusterJoined{m: mem}
		if p.role == messages.RoleOperator && r.cl.opAdopt {
			// Stored with its record, so that another node can take it
			// over: where its join's list (newChat, and under routing
			// chatAssigned and chatQueued; made next) starts and ends.
			before = opAnchor{prefix: r.offsets.prefix, seq: r.offsets.seq, feed: r.cl.feedAt}
			opJoined = cj
		} else {
			r.toBridge(ctx, cj)
		}
	}
	deferred := false // the join's answer waits for Redis (routing in a cluster)
	switch p.role {
	case messages.RoleClient:
		if m.Resumed && old != nil && old.role == messages.RoleClient {
			// A reloaded page took its conversation back: operators have it.
			r.log.Info("client rejoined after a reload", "socket", p.id)
			break
		}
		// Operators of other nodes hear of the join from the bridge's
		// presence event: each node encodes its own newChat.
		switch {
		case r.asg.enabled():
			r.clientJoinedRouting(ctx, p)
		case r.cl != nil && r.cl.opAdopt:
			// Told to every node's operators by this node alone, through
			// the feed, where an operator taken over elsewhere finds it.
			r.announce(ctx, r.newChatFrame(p), p.id)
		default:
			r.toLocalOperators(ctx, r.newChatFrame(p), "")
		}
		r.log.Info("client joined", "socket", p.id, "name", p.displayName().V, "verified", m.Verified != nil, "operators", len(r.pr.operators))
	case messages.RoleOperator:
		clients := 0
		if r.asg.enabled() {
			clients, deferred = r.operatorJoinedRouting(ctx, p, maxChats(m.Verified), &m.Origin)
		} else {
			for _, c := range r.allClients() {
				ctx.Send(p.session, &messages.Deliver{Frame: r.newChatFrame(c)})
				clients++
			}
		}
		if opJoined != nil {
			opJoined.anchor = joinAnchor{before: before, listEnd: r.offsets.seq}.encode()
			r.toBridge(ctx, opJoined)
		}
		r.log.Info("operator joined", "socket", p.id, "operatorId", p.operatorID.String(), "name", p.name.V, "verified", m.Verified != nil, "clients", clients)
		// Right after its newChat list, what players said while nobody was there.
		r.flushQueue(ctx)
	}
	if p.role == messages.RoleClient && r.offsets != nil && m.Ack != nil && m.Session != nil {
		ctx.Send(m.Session, &messages.Accepted{Ack: m.Ack, ID: r.ids.next(), Timestamp: messages.ISOTime(r.now()), ClientID: p.id})
		return
	}
	if !deferred {
		r.accept(ctx, &m.Origin, "")
	}
}

func (r *router) newChatFrame(c *participant) *messages.Frame {
	return r.frame(messages.EventNewChat, &messages.NewChat{ClientID: c.id, Username: c.displayName(), Phone: c.phone}, time.Time{})
}

func (r *router) clientMessage(ctx actor.Context, m *messages.ClientMessage) {
	p := r.sender(ctx, &m.Origin, messages.RoleClient, "clientMessage")
	if p == nil {
		return
	}
	ts := m.Payload.Timestamp.V // the client's own timestamp wins, as on the Node server
	if ts == "" {
		ts = messages.ISOTime(r.now())
	}
	f := r.frame(messages.EventIncomingMessage, &messages.IncomingMessage{
		From:      m.From,
		Content:   m.Payload.Content,
		Size:      m.Payload.Size,
		Timestamp: ts,
	}, m.At)
	if r.asg.enabled() {
		r.clientMessageRouting(ctx, m, p, f, ts)
		return
	}
	if r.queue.enabled() && r.operatorsOnline() == 0 {
		r.enqueue(ctx, m, f, ts)
		return
	}
	if r.cl != nil && r.cl.seq && r.cl.bridge != nil {
		r.toOperatorsStored(ctx, f)
	} else {
		r.toOperators(ctx, f, "")
	}
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
	if c == nil || r.asg.enabled() && !r.owned(ctx, &m.Origin, op, c.id, "operatorMessage") {
		return
	}
	if op.verified {
		m.Payload.OperatorID, m.Payload.OperatorName = op.operatorID, op.name
	}
	ts := messages.ISOTime(r.now())
	r.toClient(ctx, c, r.frame(messages.EventOperatorMessage, &messages.OperatorMessageOut{
		Content:      m.Payload.Content,
		OperatorName: m.Payload.OperatorName,
		Timestamp:    ts,
	}, m.At))
	if r.chatFollowed(c.id, m.From) {
		r.toChatOperators(ctx, c.id, r.frame(messages.EventOperatorBroadcast, &messages.OperatorBroadcast{
			ClientID:     c.id,
			OperatorID:   m.Payload.OperatorID,
			OperatorName: m.Payload.OperatorName,
			Content:      m.Payload.Content,
			Timestamp:    ts,
		}, m.At), m.From)
	}
	// An away player's session keeps the message for its return.
	r.acceptKept(ctx, &m.Origin, ts, false, c.away)
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
		if r.asg.enabled() && !r.mayEnd(ctx, &m.Origin, p, clientID) {
			return
		}
	}
	// As on the Node server, operators hear of the end even when the client
	// is already gone, so that every CRM closes the conversation.
	r.toOperators(ctx, r.frame(messages.EventChatEnded, &messages.ChatEnded{ClientID: clientID}, time.Time{}), "")
	if p.role == messages.RoleOperator {
		if c := r.client(clientID); c != nil {
			r.toClient(ctx, c, r.frame(messages.EventChatEnded, endedByOperator, time.Time{}))
		}
	}
	if r.asg.enabled() {
		r.chatClosed(ctx, clientID)
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
	if r.cl != nil && len(r.cl.opSkip) > 0 {
		// An operator taken over here that leaves before the feed caught
		// up with its old node: nothing is left to skip for it, and while
		// any entry stays every feed delivery takes the slower path.
		delete(r.cl.opSkip, p.id)
	}
	if r.cl != nil && r.cl.stopping && r.cl.window > 0 {
		// Shutting down: the node's bye makes its players away elsewhere,
		// and their stored sessions stay for another node to take over.
		return
	}
	if r.cl != nil {
		r.toBridge(ctx, &clusterLeft{id: p.id})
	}
	if p.role == messages.RoleClient {
		if r.cl != nil && r.cl.opAdopt {
			r.announce(ctx, r.disconnectedFrame(p.id), p.id)
		} else {
			// As for newChat, other nodes encode chatEnded from the presence event.
			r.toLocalOperators(ctx, r.disconnectedFrame(p.id), "")
		}
		if n := r.queue.drop(p.id); n > 0 {
			r.met.Queue("abandoned", n, -n)
			r.log.Warn("player left with messages no operator saw", "socket", p.id, "messages", n)
		}
		if r.asg.enabled() {
			r.chatClosed(ctx, p.id)
		}
	} else if r.asg.enabled() {
		r.operatorLeftRouting(ctx, p.id)
	}
	r.log.Info("participant left", "socket", p.id, "role", p.role.String(), "connectedFor", time.Since(p.connectedAt).Round(time.Millisecond).String())
}

func (r *router) disconnectedFrame(clientID string) *messages.Frame {
	return r.frame(messages.EventChatEnded, &messages.ChatEnded{ClientID: clientID, Reason: messages.ReasonDisconnect}, time.Time{})
}

// away records that a participant's transport dropped (or came back)
// within the recovery window; operators hear of a player's.
func (r *router) away(ctx actor.Context, session *actor.PID, away bool) {
	p := r.pr.bySession[session.Id]
	if p == nil || p.away == away {
		return
	}
	p.away = away
	if away {
		r.pr.away++
	} else {
		r.pr.away--
	}
	if r.cl != nil {
		mem := memberOf(p)
		mem.Quiet = true
		r.toBridge(ctx, &clusterJoined{m: mem})
	}
	switch {
	case p.role == messages.RoleClient:
		event := messages.EventChatBack
		if away {
			event = messages.EventChatAway
		}
		r.toChatOperators(ctx, p.id, r.frame(event, &messages.ChatPresence{ClientID: p.id}, time.Time{}), "")
	case r.clustered():
		r.clusterOperatorAway(ctx, p, away)
		if !away {
			r.flushQueue(ctx)
		}
	case !away:
		// An operator back online: what waited for one is its to read.
		r.flushQueue(ctx)
	}
}

// operatorsOnline counts operators who would read a message now: joined
// and not away, on any node.
func (r *router) operatorsOnline() int {
	n := 0
	for _, op := range r.pr.operators {
		if !op.away {
			n++
		}
	}
	if r.cl != nil {
		n += len(r.cl.remote.operators)
		// A gone node's operators are away until their window ends (a
		// few ids: the loop forgets those no longer orphans).
		for id := range r.cl.orphanOps {
			if _, ok := r.cl.orphans[id]; ok && r.cl.remote.operators[id] != nil {
				n--
			} else {
				delete(r.cl.orphanOps, id)
			}
		}
	}
	return n
}

// enqueue keeps a player's message until an operator is online, or
// refuses it with queue_full: nothing is dropped silently.
func (r *router) enqueue(ctx actor.Context, m *messages.ClientMessage, f *messages.Frame, ts string) {
	now := r.now()
	if n := r.queue.expire(now); n > 0 {
		r.met.Queue("expired", n, -n)
		r.log.Warn("queued messages expired unread", "messages", n, "maxAge", r.queue.lim.MaxAge.String())
	}
	if why := r.queue.add(m.From, f, now); why != "" {
		r.met.Queue("refused", 1, 0)
		r.refuse(ctx, &m.Origin, "clientMessage", messages.CodeQueueFull, why)
		return
	}
	r.met.Queue("queued", 1, 1)
	r.acceptKept(ctx, &m.Origin, ts, true, false)
}

// flushQueue hands every waiting message, in order, to the operators
// online now; the queue is then empty, so later operators get no replay.
func (r *router) flushQueue(ctx actor.Context) {
	if r.asg.auto() {
		r.settle(ctx) // waiting messages go to whom their chats are assigned
		return
	}
	if r.queue.len() == 0 || r.operatorsOnline() == 0 {
		return
	}
	if n := r.queue.expire(r.now()); n > 0 {
		r.met.Queue("expired", n, -n)
		r.log.Warn("queued messages expired unread", "messages", n, "maxAge", r.queue.lim.MaxAge.String())
	}
	frames := r.queue.take()
	for _, f := range frames {
		r.toOperators(ctx, f, "")
	}
	r.met.Queue("delivered", len(frames), -len(frames))
	r.log.Info("queued messages delivered", "messages", len(frames), "operators", r.operatorsOnline())
}

// toOperators hands one frame to every joined operator except the socket
// `except` (empty for none), on every node.
func (r *router) toOperators(ctx actor.Context, f *messages.Frame, except string) {
	r.toLocalOperators(ctx, f, except)
	if r.cl != nil {
		// Published even when no remote operator is known yet: one that
		// joined a moment ago elsewhere must not miss it.
		r.toBridge(ctx, &clusterDeliver{frame: f, except: except})
	}
}

// toLocalOperators hands one frame to this node's operators but `except`.
func (r *router) toLocalOperators(ctx actor.Context, f *messages.Frame, except string) {
	d := &messages.Deliver{Frame: f}
	for id, op := range r.pr.operators {
		if id != except {
			ctx.Send(op.session, d)
		}
	}
}

func (r *router) toBridge(ctx actor.Context, msg any) {
	if r.cl.bridge != nil {
		ctx.Send(r.cl.bridge, msg)
	}
}

// allClients is every client of the cluster in join order.
func (r *router) allClients() []*participant {
	if r.cl == nil {
		return ordered(r.pr.clients)
	}
	return merged(r.pr.clients, r.cl.remote.clients)
}

func (r *router) health() *messages.Health {
	h := &messages.Health{Clients: len(r.pr.clients), Operators: len(r.pr.operators), Away: r.pr.away}
	if r.cl != nil {
		redis := "ok"
		if !r.cl.state.Up {
			redis = "unreachable"
		}
		h.Cluster = &messages.ClusterHealth{
			Node: r.cl.node, Redis: redis, Nodes: max(r.cl.state.Nodes, 1),
			Clients:   h.Clients + len(r.cl.remote.clients),
			Operators: h.Operators + len(r.cl.remote.operators),
		}
	}
	return h
}

func (r *router) stats() *messages.Stats {
	clients, operators := r.pr.clients, r.pr.operators
	var remoteClients, remoteOperators map[string]*participant
	if r.cl != nil {
		remoteClients, remoteOperators = r.cl.remote.clients, r.cl.remote.operators
	}
	s := &messages.Stats{
		Clients:   make([]messages.ClientInfo, 0, len(clients)+len(remoteClients)),
		Operators: make([]messages.OperatorInfo, 0, len(operators)+len(remoteOperators)),
	}
	node := func(p *participant) string { return p.node }
	if r.cl != nil {
		s.Node = r.cl.node
		node = func(p *participant) string { return cmp.Or(p.node, r.cl.node) }
	}
	for _, c := range merged(clients, remoteClients) {
		s.Clients = append(s.Clients, messages.ClientInfo{SocketID: c.id, Name: c.name, Username: c.username, ConnectedAt: messages.ISOTime(c.connectedAt), Node: node(c)})
	}
	for _, o := range merged(operators, remoteOperators) {
		s.Operators = append(s.Operators, messages.OperatorInfo{SocketID: o.id, Name: o.name, OperatorID: o.operatorID, ConnectedAt: messages.ISOTime(o.connectedAt), Node: node(o)})
	}
	if r.cl != nil {
		s.Nodes = append(s.Nodes, messages.NodeInfo{Node: r.cl.node, Clients: len(clients), Operators: len(operators)})
		for n, ps := range r.cl.remote.byNode {
			ni := messages.NodeInfo{Node: n}
			for _, p := range ps {
				if p.role == messages.RoleOperator {
					ni.Operators++
				} else {
					ni.Clients++
				}
			}
			s.Nodes = append(s.Nodes, ni)
		}
		slices.SortFunc(s.Nodes[1:], func(a, b messages.NodeInfo) int { return cmp.Compare(a.Node, b.Node) })
	}
	r.routingStats(s)
	return s
}

// Messages from the cluster bridge. They change only the read model of
// remote participants and deliver only to local sockets.

func (r *router) remoteDeliver(ctx actor.Context, m *RemoteDeliver) {
	if len(m.ToAgents) > 0 {
		r.remoteToAgents(ctx, m)
		return
	}
	if m.ToClient == "" {
		if r.cl == nil || !r.cl.opAdopt {
			if len(r.pr.operators) > 0 {
				r.toLocalOperators(ctx, r.localStamp(m.Frame), m.Except)
			}
			return
		}
		if m.Announce != "" && !r.announced(m) {
			if m.FeedID != "" {
				r.cl.feedAt = m.FeedID
			}
			return
		}
		f := r.opStamp(m)
		if len(r.cl.opSkip) > 0 {
			r.toLocalOperatorsSkipping(ctx, f, m.Except, m.FeedID)
			return
		}
		r.toLocalOperators(ctx, f, m.Except)
		return
	}
	if c := r.pr.clients[m.ToClient]; c != nil {
		ctx.Send(c.session, &messages.Deliver{Frame: m.Frame})
	}
}

func (r *router) remoteJoined(ctx actor.Context, m *RemoteJoined) {
	if r.cl == nil || r.pr.byID[m.Member.ID] != nil {
		return // a socket id is unique: a local socket wins
	}
	p := m.Member.participant()
	old := r.cl.remote.upsert(p)
	routed := r.asg.enabled()
	switch {
	case routed && p.role == messages.RoleOperator:
		r.asg.operatorJoined(p, 0) // its node tells Redis; here the table learns its socket
	case routed && old == nil:
		// The player's node announced the chat (claim) or its owner
		// hears of it at its assignment (auto), unless that came first.
		r.introduceLate(ctx, p)
	}
	if p.role == messages.RoleClient {
		_, orphan := r.cl.orphans[p.id]
		delete(r.cl.orphans, p.id)
		switch {
		case routed:
		case r.cl.opAdopt:
			r.remoteJoinedAnnounce(ctx, m, p, old, orphan)
		case !m.Member.Quiet || (old == nil && !orphan):
			r.toLocalOperators(ctx, r.newChatFrame(p), "")
		}
	} else {
		delete(r.cl.orphans, p.id) // taken over on its new node
		r.flushQueue(ctx)
	}
	if r.log.Enabled(context.Background(), slog.LevelDebug) {
		r.log.Debug("remote participant joined", "socket", p.id, "role", p.role.String(), "peer", p.node)
	}
}

func (r *router) remoteLeft(ctx actor.Context, m *RemoteLeft) {
	if r.cl == nil {
		return
	}
	if m.Moved {
		return // the node that took it over announces it
	}
	if p := r.cl.remote.byID[m.ID]; p == nil || p.node != m.Node {
		return // it is on another node now
	}
	delete(r.cl.orphans, m.ID)
	p := r.cl.remote.remove(m.ID)
	if p != nil && p.role == messages.RoleOperator && r.asg.enabled() {
		r.asg.socketLeft(p.id)
	}
	if p != nil && p.role == messages.RoleClient {
		if r.cl.opAdopt {
			r.remoteLeftAnnounce(ctx, m, p.id)
			return
		}
		r.toLocalOperators(ctx, r.disconnectedFrame(p.id), "")
	}
}

func (r *router) nodeGone(ctx actor.Context, m *NodeGone) {
	if r.cl == nil {
		return
	}
	if r.asg.enabled() {
		for id, p := range r.cl.remote.byNode[m.Node] {
			if p.role == messages.RoleOperator {
				r.asg.socketLeft(id)
			}
		}
		if r.clustered() {
			r.clusterNodeGone(ctx, m)
		}
	}
	if r.cl.window > 0 {
		r.nodeGoneAway(ctx, m)
		return
	}
	gone := r.cl.remote.dropNode(m.Node)
	clients := 0
	for _, p := range gone {
		if p.role == messages.RoleClient {
			clients++
			r.toLocalOperators(ctx, r.disconnectedFrame(p.id), "")
			r.goneNodeChatEnded(ctx, p.id)
		}
	}
	level := slog.LevelWarn
	if clients == 0 {
		level = slog.LevelInfo
	}
	r.log.Log(context.Background(), level, "node gone; its players' chats ended", "peer", m.Node, "reason", m.Reason, "clients", clients, "operators", len(gone)-clients)
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

// newOffsetSource numbers frames for recovery. A session's log may mix
// frames of several nodes (cross-node deliveries) and of several process
// starts, so the prefix adds random bits to the start time.
func newOffsetSource(now time.Time) *idSource {
	return &idSource{prefix: strconv.FormatInt(now.UnixMilli(), 36) + newPrivateID()[:4] + "-"}
}

func (s *idSource) next() string {
	s.seq++
	return s.prefix + strconv.FormatUint(s.seq, 36)
}
