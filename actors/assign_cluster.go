package actors

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard/switchboard/messages"
)

// Routing across nodes (SWITCHBOARD_ROUTING claim or auto with REDIS_URL).
// Every decision is one script in Redis (assign_redis.go), run by the
// router's worker off its goroutine; the script publishes what it decided,
// and every node's router applies each decision, in the one order Redis
// gave them, to its table (its read model) and sends the frames to its own
// sockets: chatAssigned and chatQueued to its operators, newChat to its
// sockets of the new owner, queued and operatorAssigned to its players.
// A chat's conversation reaches the owner's and watchers' sockets on other
// nodes through the bridge, addressed to those operators on those nodes.

// RoutingEvent is one decision as Redis published it (the bridge hands
// every one to the router, this node's own too).
type RoutingEvent struct {
	Body []byte
	// FeedID is its entry in the operators' feed: the frames it makes
	// here are anchored there (cluster_operators.go).
	FeedID string
}

// routeEvent is a decision's JSON, as the scripts write it.
type routeEvent struct {
	T    string `json:"t"` // open, assign, queue, close, watch, status
	C    string `json:"c"`
	O    string `json:"o"`
	S    uint64 `json:"s"`
	By   string `json:"by"`
	Away bool   `json:"away"`
	Cap  int    `json:"cap"`
	On   bool   `json:"on"`
	// P is a queued chat's position in Redis's queue as the decision left
	// it (open and queue): what every node tells, and a takeover replays.
	P int `json:"p"`
}

// clustered tells whether decisions are taken in Redis.
func (r *router) clustered() bool { return r.cl != nil && r.asg.rw != nil }

// decide hands a decision to the worker, starting it on first use. A full
// queue refuses the request that asked for it.
func (r *router) decide(ctx actor.Context, j *routeJob) {
	w := r.asg.rw
	if !w.started {
		root, self := ctx.ActorSystem().Root, ctx.Self()
		if err := w.start(func(m any) { root.Send(self, m) }); err != nil {
			r.log.Error("routing worker", "err", err)
			if j.join {
				r.accept(ctx, j.origin, "")
			} else if j.origin != nil {
				r.refuse(ctx, j.origin, j.event, messages.CodeUnavailable, "routing is unavailable: try again")
			}
			return
		}
	}
	if !w.submit(j) {
		r.log.Warn("routing: decisions queue full", "event", j.event, "client", j.client)
		if j.join {
			r.accept(ctx, j.origin, "")
		} else if j.origin != nil {
			r.refuse(ctx, j.origin, j.event, messages.CodeRateLimited, "too many routing decisions waiting; try again")
		}
	}
}

// routeDone answers the request behind a decision.
func (r *router) routeDone(ctx actor.Context, m *routeDone) {
	j := m.job
	if j.join {
		r.accept(ctx, j.origin, "")
		return
	}
	if m.err != nil {
		r.log.Warn("routing decision failed", "err", m.err)
		if j.origin != nil {
			r.refuse(ctx, j.origin, j.event, messages.CodeUnavailable, "routing is unavailable (Redis unreachable): nothing changed; try again")
		}
		return
	}
	if j.origin == nil {
		return
	}
	if m.code != "" {
		reason := ""
		if m.code == messages.CodeAlreadyClaimed && m.owner != "" {
			reason = "this chat is owned by " + m.owner
		}
		if reason == "" {
			r.refuseRouting(ctx, j.origin, j.event, m.code, nil)
			return
		}
		r.refuse(ctx, j.origin, j.event, m.code, reason)
		return
	}
	r.accept(ctx, j.origin, "")
}

// clusterRequest turns an operator's routing request into a decision.
func (r *router) clusterRequest(ctx actor.Context, m *messages.RoutingRequest, g *agent) {
	event := m.Kind.Event()
	client := m.Payload.ClientID
	j := &routeJob{client: client, op: g.key, origin: &m.Origin, event: event}
	switch m.Kind {
	case messages.RouteClaim:
		j.kind = routeClaim
	case messages.RouteRelease:
		j.kind = routeRelease
		if c := r.asg.chats[client]; c != nil && c.owner != g && slices.Contains(c.watchers, g) {
			j.kind = routeWatch // a watcher's release: it stops watching
		}
	case messages.RouteTransfer:
		to := m.Payload.ToOperatorID.String()
		t := r.asg.agents[to]
		if t == nil {
			t = r.asg.bySocket[to]
		}
		if t == nil || len(t.sockets) == 0 {
			r.refuseRouting(ctx, &m.Origin, event, messages.CodeUnknownOperator, nil)
			return
		}
		j.kind, j.arg = routeTransfer, t.key
	case messages.RouteSetStatus:
		j.kind, j.arg = routeStatus, "available"
		if m.Payload.Status == messages.StatusAway {
			j.arg = "away"
		}
	case messages.RouteWatch:
		c := r.asg.chats[client]
		if c != nil && (c.owner == g || slices.Contains(c.watchers, g)) {
			r.accept(ctx, &m.Origin, "")
			return
		}
		j.kind, j.flag = routeWatch, true
	}
	r.decide(ctx, j)
}

// clusterOpen records a local player's new chat until its decision comes
// back (seq 0: not in the queue yet; its messages wait as a waiting
// chat's do), and asks for it.
func (r *router) clusterOpen(ctx actor.Context, p *participant) *chat {
	c := r.asg.chats[p.id]
	if c == nil {
		c = &chat{client: p.id}
		r.asg.chats[p.id] = c
	}
	if r.asg.mode == RoutingClaim {
		r.toOperators(ctx, r.newChatFrame(p), "")
	}
	r.decide(ctx, &routeJob{kind: routeOpen, client: p.id})
	return c
}

// clusterClose forgets a chat here at once (a new one of the same player
// may start before the decision comes back) and asks for its end.
func (r *router) clusterClose(ctx actor.Context, client string) {
	if r.asg.chats[client] != nil {
		r.asg.chatClosed(client)
	}
	r.decide(ctx, &routeJob{kind: routeClose, client: client})
	r.tellPositions(ctx)
}

// clusterOperatorJoined tells Redis that the operator takes chats. The
// join is acknowledged once Redis counts the new socket: a CRM that
// closes its old tab on another node then is never taken for gone.
func (r *router) clusterOperatorJoined(ctx actor.Context, g *agent, maxChats int, o *messages.Origin) {
	r.clusterHereFor(ctx, g, maxChats, o)
}

// clusterHere tells Redis how many sockets the operator has on this node
// and how many are up: Redis adds up every node's count, so that an
// operator whose last socket leaves one node as it joins another is
// never gone in between.
func (r *router) clusterHere(ctx actor.Context, g *agent, maxChats int) {
	r.clusterHereFor(ctx, g, maxChats, nil)
}

// clusterHereFor is clusterHere answering the join o once it is done
// (accepted even if Redis cannot count it now: the join itself holds).
func (r *router) clusterHereFor(ctx actor.Context, g *agent, maxChats int, o *messages.Origin) {
	n, up := 0, 0
	for _, s := range g.sockets {
		if s.session != nil {
			n++
			if !s.away {
				up++
			}
		}
	}
	j := &routeJob{kind: routeHere, op: g.key, n: n, up: up, cap: maxChats}
	if o != nil && o.Ack != nil {
		j.origin, j.event, j.join = o, "join", true
	}
	r.decide(ctx, j)
}

// clusterSocketGone forgets an operator socket of this node; Redis
// counts what is left of it here.
func (r *router) clusterSocketGone(ctx actor.Context, id string) {
	if g := r.asg.socketLeft(id); g != nil {
		r.clusterHere(ctx, g, 0)
	}
}

// clusterOperatorAway follows a local operator socket's transport.
func (r *router) clusterOperatorAway(ctx actor.Context, p *participant, away bool) {
	if g := r.asg.bySocket[p.id]; g != nil {
		r.clusterHere(ctx, g, 0)
	}
}

// routeNodeGone is the end of a gone node's recovery window: its
// operators' sockets are forgotten in Redis.
type routeNodeGone struct{ where string }

// clusterNodeGone settles the operators of a node that died or left: at
// once they take no new chats, and when the recovery window (from when
// the node was last alive) is over, the chats of those that have no
// socket left anywhere go back to the queue in their order. Every live
// node asks; Redis does it once.
func (r *router) clusterNodeGone(ctx actor.Context, m *NodeGone) {
	if m.Inc == "" {
		return
	}
	where := m.Node + "/" + m.Inc
	left := time.Until(m.Since.Add(r.cl.window))
	if left <= 0 {
		r.decide(ctx, &routeJob{kind: routeNode, where: where, arg: "gone"})
		return
	}
	r.decide(ctx, &routeJob{kind: routeNode, where: where, arg: "down"})
	self, sys := ctx.Self(), ctx.ActorSystem()
	time.AfterFunc(left, func() { sys.Root.Send(self, &routeNodeGone{where: where}) })
}

// routingRedisBack counts this node's operators' sockets in Redis again
// when it is reachable after an outage: the other nodes may have taken
// this node for dead meanwhile and forgotten them (or Redis lost them).
func (r *router) routingRedisBack(ctx actor.Context) {
	for _, g := range r.asg.agents {
		if slices.ContainsFunc(g.sockets, func(s *participant) bool { return s.session != nil }) {
			r.clusterHere(ctx, g, g.capacity)
		}
	}
}

// goneNodeChatEnded closes in Redis the chat of a player whose node died
// or left and who did not come back within the window: its own node
// cannot any more. Every live node asks; the first closes it, and its
// owner's room goes to the next waiting chat.
func (r *router) goneNodeChatEnded(ctx actor.Context, id string) {
	if r.clustered() && r.asg.chats[id] != nil {
		r.clusterClose(ctx, id)
	}
}

// routingEvent applies one decision to the table and tells this node's
// sockets.
func (r *router) routingEvent(ctx actor.Context, m *RoutingEvent) {
	if !r.asg.enabled() {
		return
	}
	if m.FeedID != "" && r.cl != nil && r.cl.opAdopt {
		r.cl.feedAt = m.FeedID
	}
	var e routeEvent
	if err := json.Unmarshal(m.Body, &e); err != nil {
		r.log.Warn("routing: decision ignored", "err", err)
		return
	}
	c := r.asg.chats[e.C]
	if c != nil && e.T != "open" && e.T != "status" && c.seq != e.S {
		c = nil // a decision about an earlier chat of the same player
	}
	switch e.T {
	case "open":
		if c != nil && c.seq == e.S {
			return
		}
		if c != nil && c.seq != 0 {
			r.asg.chatClosed(e.C) // an earlier chat whose end we missed
			c = nil
		}
		if c == nil {
			c = &chat{client: e.C}
			r.asg.chats[e.C] = c
		}
		c.seq = e.S
		r.asg.seq = max(r.asg.seq, e.S)
		if e.O != "" {
			r.asg.assign(c, r.asg.agentFor(e.O))
			r.clusterAssigned(ctx, c, true)
		} else {
			r.asg.enqueue(c)
			r.toLocalOperators(ctx, r.frame(messages.EventChatQueued, &messages.ChatQueued{ClientID: c.client, Position: queuedAt(&e, r.asg.position(c))}, time.Time{}), "")
		}
	case "assign":
		if c == nil {
			return
		}
		r.asg.assign(c, r.asg.agentFor(e.O))
		r.clusterAssigned(ctx, c, r.asg.mode == RoutingAuto)
	case "queue":
		if c == nil {
			return
		}
		if g := c.owner; g != nil {
			g.chats = slices.DeleteFunc(g.chats, func(x *chat) bool { return x == c })
			c.owner = nil
			r.asg.forgetIdle(g)
		}
		r.asg.enqueue(c)
		r.toLocalOperators(ctx, r.frame(messages.EventChatQueued, &messages.ChatQueued{ClientID: c.client, Position: queuedAt(&e, r.asg.position(c))}, time.Time{}), "")
	case "close":
		if c == nil {
			return
		}
		r.asg.chatClosed(e.C)
		if g := c.owner; g != nil {
			r.asg.forgetIdle(g)
		}
	case "watch":
		if c == nil {
			return
		}
		g := r.asg.agentFor(e.O)
		if !e.On {
			c.watchers = slices.DeleteFunc(c.watchers, func(w *agent) bool { return w == g })
			g.watching = slices.DeleteFunc(g.watching, func(x *chat) bool { return x == c })
			return
		}
		if _, started, _ := r.asg.watch(g, e.C); started && r.asg.mode == RoutingAuto {
			if p := r.client(e.C); p != nil {
				r.toLocalAgent(ctx, g, r.newChatFrame(p))
			}
		}
	case "status":
		if g := r.asg.agents[e.O]; g != nil {
			g.away = e.Away
			if e.Cap > 0 {
				g.capacity = e.Cap
			}
		}
	}
	r.tellPositions(ctx)
}

// queuedAt is where a decision left a queued chat: Redis's own count
// when the script said (one answer on every node, and in a takeover's
// replay), else this node's table's.
func queuedAt(e *routeEvent, local int) int {
	if e.P > 0 {
		return e.P
	}
	return local
}

// clusterAssigned tells this node's sockets of a chat's new owner: its
// operators (chatAssigned), the owner's sockets here (newChat first, when
// introduced), and, when the player is here, the player and what it said
// while it waited (to the owner's sockets wherever they are).
func (r *router) clusterAssigned(ctx actor.Context, c *chat, introduce bool) {
	g := c.owner
	intro, assigned := r.assignedFrames(c, introduce)
	if intro != nil {
		r.toLocalAgent(ctx, g, intro)
	}
	r.toLocalOperators(ctx, assigned, "")
	local := r.pr.clients[c.client]
	if local == nil {
		return
	}
	if frames := r.queue.takeClient(c.client); len(frames) > 0 {
		for _, f := range frames {
			r.toChat(ctx, c, f, "")
		}
		r.met.Queue("delivered", len(frames), -len(frames))
	}
	r.toClient(ctx, local, r.frame(messages.EventOperatorAssigned, &messages.OperatorAssigned{OperatorName: g.name}, time.Time{}))
}

// assignedFrames makes what clusterAssigned tells: the owner's newChat
// (nil unless introduced and the player is known here) and everyone's
// chatAssigned. Both come from one feed entry, so the newChat's offset
// says that the entry was seen in part (sub 1), as a takeover's replay
// stamps it: an operator whose node died after it read only the newChat
// is then replayed the chatAssigned.
func (r *router) assignedFrames(c *chat, introduce bool) (intro, assigned *messages.Frame) {
	g := c.owner
	if p := r.client(c.client); introduce && p != nil {
		intro = r.frameSub(messages.EventNewChat, &messages.NewChat{ClientID: p.id, Username: p.displayName(), Phone: p.phone}, time.Time{}, 1)
	}
	assigned = r.frame(messages.EventChatAssigned, &messages.ChatAssigned{ClientID: c.client, OperatorID: g.id, OperatorName: g.name}, time.Time{})
	return intro, assigned
}

// introduceLate sends newChat to this node's sockets of a chat's owner
// and watchers when Redis's decision came before the player's presence
// (auto mode: they could not be told then).
func (r *router) introduceLate(ctx actor.Context, p *participant) {
	c := r.asg.chats[p.id]
	if c == nil || c.owner == nil || r.asg.mode != RoutingAuto {
		return
	}
	f := r.newChatFrame(p)
	r.toLocalAgent(ctx, c.owner, f)
	for _, w := range c.watchers {
		r.toLocalAgent(ctx, w, f)
	}
}

// tellPositions tells this node's waiting players their new places.
func (r *router) tellPositions(ctx actor.Context) {
	r.asg.moved(func(c *chat, position int) {
		if p := r.pr.clients[c.client]; p != nil {
			r.toClient(ctx, p, r.frame(messages.EventQueued, &messages.QueuedOut{Position: position}, time.Time{}))
		}
	})
}

// toLocalAgent hands a frame to one operator's sockets on this node.
func (r *router) toLocalAgent(ctx actor.Context, g *agent, f *messages.Frame) {
	d := &messages.Deliver{Frame: f}
	for _, s := range g.sockets {
		if s.session != nil {
			ctx.Send(s.session, d)
		}
	}
}

// toRemoteAgents hands a frame to the sockets of the given operators on
// other nodes: one message through the feed, naming the operators that
// have sockets elsewhere; each node hands it to its own sockets of them.
// With operators taken over across nodes it names them all, those whose
// sockets are all here too (whose node skips its own entry): the feed is
// what a takeover replays, and a delivery made here alone would be lost
// with this node if the operator had not read it yet (as broadcast mode
// writes every player's message there). Volatile frames, never replayed,
// go only where they must.
func (r *router) toRemoteAgents(ctx actor.Context, f *messages.Frame, except string, owner *agent, watchers []*agent) {
	var keys []string
	every := r.cl.opAdopt && !messages.Volatile(f.Event)
	add := func(g *agent) {
		if g == nil {
			return
		}
		if every || len(g.sockets) == 0 && r.cl.opAdopt {
			// Wherever its sockets are; those on a gone node too: the
			// feed keeps it for whichever node takes it over in the window.
			keys = append(keys, g.key)
			return
		}
		for _, s := range g.sockets {
			if s.session == nil && s.node != "" && s.id != except {
				keys = append(keys, g.key)
				return
			}
		}
	}
	add(owner)
	for _, w := range watchers {
		add(w)
	}
	if len(keys) > 0 {
		d := &clusterDeliver{frame: f, except: except, toAgents: keys}
		if r.cl.ackRemote {
			d.acked = true
			r.cl.storedFor = ctx.Message()
		}
		r.toBridge(ctx, d)
	}
}

// remoteToAgents delivers a frame from another node to this node's sockets
// of the operators it names.
func (r *router) remoteToAgents(ctx actor.Context, m *RemoteDeliver) {
	if m.FeedID != "" && r.cl.opAdopt {
		r.cl.feedAt = m.FeedID
	}
	var d *messages.Deliver
	for _, key := range m.ToAgents {
		g := r.asg.agents[key]
		if g == nil {
			continue
		}
		for _, s := range g.sockets {
			if s.session != nil && s.id != m.Except {
				if d == nil {
					// Stamped once, when a socket here is to have it.
					d = &messages.Deliver{Frame: r.localStamp(m.Frame)}
				}
				ctx.Send(s.session, d)
			}
		}
	}
}

// localStamp gives a frame from another node this node's own offset, so
// that its operators' sessions keep it for a blip: its packet carries the
// offset of the node that made it, which no session here can find
// (socket.io-client names the last offset it saw). Volatile frames, and
// any when recovery is off, go as they are.
func (r *router) localStamp(f *messages.Frame) *messages.Frame {
	switch {
	case r.offsets == nil:
		return f
	case r.cl.opAdopt:
		return restamp(f, r.offsets.nextAnchored(r.cl.feedAt))
	}
	return restamp(f, r.offsets.next())
}
