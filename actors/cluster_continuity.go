package actors

import (
	"context"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard/switchboard/messages"
)

// Continuity across nodes, the router's part. A player whose node died or
// left is an orphan on the other nodes: still listed, away, and its
// operators' messages are kept in its stored conversation, until the
// recovery window ends (then each node's operators get one chatEnded) or
// another node takes its session over (then operators get chatBack, and
// no second newChat).

// adopted tells the router that a session of this node took a player over
// from another node (System.Resume): it joins quietly.
type adopted struct {
	session *actor.PID
	member  *Member
}

// shutdownNotice tells the router that the node is stopping: its sessions
// end without their chats ending elsewhere (their players are away and
// recover on another node). It responds with a channel closed once what
// waited for Redis is written.
type shutdownNotice struct{}

// orphanExpired ends an orphan's chat when its window is over.
type orphanExpired struct {
	id  string
	gen int
}

// Messages to a session.
type (
	// needCatchUp asks a player's session to read its stored frames after
	// its last (the bridge's subscription was down).
	needCatchUp struct{}
	// moveOut stops a session that another node took over, quietly.
	moveOut struct{}
)

func (r *router) clusterReceive(ctx actor.Context, msg any) bool {
	switch m := msg.(type) {
	case *adopted:
		r.adopted(ctx, m)
	case *movedOut:
		r.movedOut(ctx, m)
	case *orphanExpired:
		r.orphanExpired(ctx, m)
	case *adoptedOperator:
		r.adoptedOperator(ctx, m)
	case *orphanQuery:
		ctx.Respond(r.orphaned(m.id))
	case *feedPosition:
		if r.cl.feedAt == "" || compareStreamID(m.id, r.cl.feedAt) > 0 {
			r.cl.feedAt = m.id
		}
	case *catchUp:
		r.toBridge(ctx, m)
	case *confirmedMark:
		r.toBridge(ctx, m)
	case *caughtUp:
		if c := r.pr.clients[m.id]; c != nil {
			ctx.Send(c.session, m)
		}
	case *resubscribed:
		for _, c := range r.pr.clients {
			ctx.Send(c.session, &needCatchUp{})
		}
	case *shutdownNotice:
		r.cl.stopping = true
		done := make(chan struct{})
		if r.cl.bridge == nil {
			close(done)
		} else {
			ctx.Send(r.cl.bridge, &drainBridge{done: done})
		}
		ctx.Respond(done)
	default:
		return false
	}
	return true
}

func (r *router) adopted(ctx actor.Context, m *adopted) {
	p := m.member.participant()
	p.node, p.session, p.away = "", m.session, false
	if r.pr.byID[p.id] != nil {
		return // cannot be: the hub had no session for it
	}
	r.cl.remote.remove(p.id)
	delete(r.cl.orphans, p.id)
	r.pr.upsert(p)
	ctx.Watch(m.session)
	r.met.Joined("none", p.role.String())
	mem := memberOf(p)
	mem.Quiet = true
	r.toBridge(ctx, &clusterJoined{m: mem})
	// Its transport dropped with its node: operators hear it is back.
	r.toOperators(ctx, r.frame(messages.EventChatBack, &messages.ChatPresence{ClientID: p.id}, time.Time{}), "")
	r.log.Info("player taken over from another node", "socket", p.id)
}

// movedOut lets a local player go quietly: another node took its session
// over and announces it.
func (r *router) movedOut(ctx actor.Context, m *movedOut) {
	p := r.pr.clients[m.id]
	if p == nil {
		p = r.pr.operators[m.id] // an operator taken over (cluster_operators.go)
	}
	if p == nil {
		return
	}
	r.pr.removeSession(p.session)
	ctx.Unwatch(p.session)
	r.met.Left(p.role.String())
	r.toBridge(ctx, &clusterLeft{id: p.id, moved: true})
	ctx.Send(p.session, &moveOut{})
	if m.node != "" && m.node != r.cl.node {
		// Listed on its new node at once: the quiet join that node
		// announces next updates it, and is no new chat for local
		// operators (they had it; the new node sent them chatBack).
		moved := *p
		moved.session, moved.node, moved.away = nil, m.node, false
		r.cl.remote.upsert(&moved)
	}
	r.log.Info("player taken over by another node", "socket", p.id, "peer", m.node)
}

// orphan makes a dead node's player away until since plus the window.
func (r *router) orphan(ctx actor.Context, p *participant, since time.Time) {
	if _, ok := r.cl.orphans[p.id]; ok {
		return
	}
	left := time.Until(since.Add(r.cl.window))
	if left <= 0 {
		r.cl.remote.remove(p.id)
		r.goneFrame(ctx, r.disconnectedFrame(p.id), p, "e")
		r.goneNodeChatEnded(ctx, p.id)
		r.toBridge(ctx, &forgetSession{id: p.id, node: p.node})
		return
	}
	if !p.away {
		p.away = true
		r.goneFrame(ctx, r.frame(messages.EventChatAway, &messages.ChatPresence{ClientID: p.id}, time.Time{}), p, "a")
	}
	r.expireOrphanIn(ctx, p.id, left)
}

// expireOrphanIn has the router told, after left, that the orphan id's
// window ended, under a new generation: a later call supersedes it.
func (r *router) expireOrphanIn(ctx actor.Context, id string, left time.Duration) {
	r.cl.orphanGen++
	gen, self, sys := r.cl.orphanGen, ctx.Self(), ctx.ActorSystem()
	r.cl.orphans[id] = gen
	time.AfterFunc(left, func() { sys.Root.Send(self, &orphanExpired{id: id, gen: gen}) })
}

func (r *router) orphanExpired(ctx actor.Context, m *orphanExpired) {
	if gen, ok := r.cl.orphans[m.id]; !ok || gen != m.gen {
		return
	}
	delete(r.cl.orphans, m.id)
	p := r.cl.remote.remove(m.id)
	if p == nil {
		return
	}
	if p.role == messages.RoleOperator {
		// Its record goes unless another node took it over.
		r.toBridge(ctx, &forgetSession{id: p.id, node: p.node})
		return
	}
	delete(r.cl.shown, p.id)
	r.goneFrame(ctx, r.disconnectedFrame(p.id), p, "e")
	r.goneNodeChatEnded(ctx, p.id)
	// Every node may do it; only a record its dead node still owns goes.
	r.toBridge(ctx, &forgetSession{id: p.id, node: p.node})
	r.log.Info("away player of a gone node did not come back; chat ended", "socket", p.id, "peer", p.node)
}

// nodeGoneAway is nodeGone with recovery on: players are orphans, away
// until the window ends; operators go.
func (r *router) nodeGoneAway(ctx actor.Context, m *NodeGone) {
	if r.cl.opAdopt {
		if r.cl.goneInc == nil {
			r.cl.goneInc = map[string]string{}
		}
		r.cl.goneInc[m.Node] = m.Inc
	}
	clients, operators := 0, 0
	for _, p := range ordered(r.cl.remote.byNode[m.Node]) {
		if p.role == messages.RoleOperator {
			operators++
			if r.cl.opAdopt {
				// Away, not gone: it may be taken over here or elsewhere.
				r.orphanOperator(ctx, p, m.Since)
				continue
			}
			r.cl.remote.remove(p.id)
			continue
		}
		clients++
		r.orphan(ctx, p, m.Since)
	}
	level := slog.LevelWarn
	if clients == 0 {
		level = slog.LevelInfo
	}
	r.log.Log(context.Background(), level, "node gone; its players are away until the recovery window ends", "peer", m.Node, "reason", m.Reason,
		"clients", clients, "operators", operators, "window", r.cl.window.String())
}

// toClient hands a frame to one client. With stored sessions a frame with
// an offset goes through the store, which numbers it in the player's
// conversation, wherever the player is; while Redis is away it goes the
// direct way (and is not stored: a later recovery on another node from
// an offset the store does not know starts afresh).
func (r *router) toClient(ctx actor.Context, c *participant, f *messages.Frame) {
	if r.cl != nil && r.cl.seq && f.Offset != "" && r.cl.state.Up && r.cl.bridge != nil {
		node := c.node
		if node == "" {
			node = r.cl.node
		}
		ctx.Send(r.cl.bridge, &clusterDeliver{frame: f, toClient: c.id, toNode: node, seq: true})
		r.cl.storedFor = ctx.Message()
		return
	}
	if c.session != nil {
		ctx.Send(c.session, &messages.Deliver{Frame: f})
		return
	}
	r.toBridge(ctx, &clusterDeliver{frame: f, toClient: c.id, toNode: c.node})
}

// toOperatorsStored is toOperators for a player's message with stored
// sessions on: its acknowledgement follows the write to the operators'
// feed, so a message acknowledged is one that every node's operators get
// even if this node dies the next moment. Local operators get it at once.
func (r *router) toOperatorsStored(ctx actor.Context, f *messages.Frame) {
	r.toLocalOperators(ctx, f, "")
	ctx.Send(r.cl.bridge, &clusterDeliver{frame: f, acked: true})
	r.cl.storedFor = ctx.Message()
}

// ackAfterStore hands the acknowledgement of the message being handled to
// the bridge when that message sent a player a stored frame (or was a
// player's message written to the operators' feed): the bridge
// answers it once the store's write succeeded (or says it failed), so an
// acknowledged message is stored even if this node dies the next moment.
// Nothing waits: the session acknowledges when the bridge's answer comes.
func (r *router) ackAfterStore(ctx actor.Context, o *messages.Origin, acc *messages.Accepted) bool {
	if r.cl.storedFor == nil {
		return false
	}
	pending := r.cl.storedFor == ctx.Message()
	r.cl.storedFor = nil
	if !pending {
		return false
	}
	ev := "message"
	if rm, ok := ctx.Message().(messages.RouterMessage); ok {
		ev = eventName(rm)
	}
	ctx.Send(r.cl.bridge, &ackAfterStore{session: o.Session, acc: acc, event: ev})
	return true
}

// ackAfterStore is an acknowledgement that waits for the store's write of
// the frame sent just before it.
type ackAfterStore struct {
	session *actor.PID
	acc     *messages.Accepted
	event   string
}

// confirmedMark tells the store the last stored frame a player is known to
// have read (a reload on another node starts after it).
type confirmedMark struct {
	id string
	n  uint64
}

// storeReloadKeys asks the bridge to store the keys (resume token, token
// sub) under which a reloaded page on any node finds this player.
type storeReloadKeys struct {
	id   string
	keys []string
}
