package actors

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/switchboard/switchboard/messages"
)

// RoutingMode says how chats reach operators (SWITCHBOARD_ROUTING).
type RoutingMode uint8

// The routing modes.
const (
	// RoutingBroadcast is the guide's behaviour: every operator gets every
	// chat and may answer any.
	RoutingBroadcast RoutingMode = iota
	// RoutingClaim shows every operator the chats nobody owns; the first
	// to claim one owns it.
	RoutingClaim
	// RoutingAuto assigns each chat to an available operator with room,
	// least busy first; chats wait in a queue when nobody has room.
	RoutingAuto
)

// ParseRoutingMode reads broadcast, claim or auto.
func ParseRoutingMode(s string) (RoutingMode, error) {
	switch s {
	case "", "broadcast":
		return RoutingBroadcast, nil
	case "claim":
		return RoutingClaim, nil
	case "auto":
		return RoutingAuto, nil
	}
	return 0, fmt.Errorf("routing %q: must be broadcast, claim or auto", s)
}

func (m RoutingMode) String() string {
	switch m {
	case RoutingClaim:
		return "claim"
	case RoutingAuto:
		return "auto"
	}
	return "broadcast"
}

// Routing configures chat assignment. The zero value is broadcast.
type Routing struct {
	Mode RoutingMode
	// MaxChatsPerOperator bounds the chats one operator owns at once
	// (default 5); an operator token's maxChats claim overrides it.
	MaxChatsPerOperator int
	// RedisURL, Prefix and NodeID: in a cluster, every decision is taken
	// in Redis (assign_redis.go) and the table is each node's read model.
	RedisURL, Prefix, NodeID string
}

// DefaultMaxChatsPerOperator is the capacity of an operator whose token
// does not say.
const DefaultMaxChatsPerOperator = 5

// assignments is who owns which chat, who watches it, and which chats wait,
// in order. It is pure bookkeeping: the router asks it and sends the frames.
// Like presence it is owned by the router and outlives a router restart.
//
// An operator here is an agent: every socket joined with the same
// operatorId (a CRM open in two tabs, or reloaded) shares one load and
// one set of chats; an operator without an operatorId is its socket.
type assignments struct {
	mode     RoutingMode
	capacity int
	chats    map[string]*chat  // by client socket id: open chats, waiting or owned
	agents   map[string]*agent // by agentKey
	bySocket map[string]*agent // operator socket id → its agent
	// waiting is the queue, ordered by chat.seq: a chat released back keeps
	// its place ahead of those that came after it.
	waiting []*chat
	// dirty is the first queue index whose player may not know its position.
	dirty     int
	seq, tick uint64
	// rw takes the decisions in a cluster (nil on one node).
	rw *routeWorker
}

// chat is one player's conversation under routing.
type chat struct {
	client   string
	seq      uint64 // arrival order
	owner    *agent // nil while waiting
	watchers []*agent
	waiting  bool
	told     int // the position the player was last told (0: none)
	// releasedBy is the operator that released the chat last: auto
	// assignment gives it to someone else.
	releasedBy *agent
}

// agent is one operator, with every socket it joined with.
type agent struct {
	key      string
	id       messages.ID // as chatAssigned carries it: the operatorId, else the socket id
	name     messages.Str
	sockets  []*participant
	capacity int
	away     bool    // setStatus away: no new chats
	chats    []*chat // owned, in the order they were assigned
	watching []*chat
	// since orders operators of equal load: the one whose last assignment
	// (or arrival) is oldest has waited longest, and goes first.
	since uint64
}

func newAssignments(r Routing) *assignments {
	a := &assignments{
		mode:     r.Mode,
		capacity: cmp.Or(r.MaxChatsPerOperator, DefaultMaxChatsPerOperator),
		chats:    map[string]*chat{},
		agents:   map[string]*agent{},
		bySocket: map[string]*agent{},
	}
	if r.RedisURL != "" && r.Mode != RoutingBroadcast {
		a.rw = &routeWorker{url: r.RedisURL, prefix: cmp.Or(r.Prefix, "switchboard"), node: r.NodeID, capacity: a.capacity, auto: r.Mode == RoutingAuto}
	}
	return a
}

// enabled accepts a nil table: a router built without one broadcasts.
func (a *assignments) enabled() bool { return a != nil && a.mode != RoutingBroadcast }

// auto tells whether the router assigns chats itself.
func (a *assignments) auto() bool { return a != nil && a.mode == RoutingAuto }

// agentKey names the agent a socket joins as.
func agentKey(p *participant) string {
	if p.operatorID.Kind != messages.IDAbsent {
		if s := p.operatorID.String(); s != "" {
			return s
		}
	}
	return "socket:" + p.id
}

// online tells whether any of its sockets' transports is up.
func (g *agent) online() bool {
	for _, p := range g.sockets {
		if !p.away {
			return true
		}
	}
	return false
}

// free tells whether the agent may be given a new chat now.
func (g *agent) free() bool {
	return !g.away && len(g.chats) < g.capacity && g.online()
}

func (g *agent) status() string {
	if g.away || !g.online() {
		return messages.StatusAway.String()
	}
	return messages.StatusAvailable.String()
}

// operatorJoined records an operator socket under its agent. maxChats > 0
// sets the agent's capacity (its token said so). A socket that joined
// before under another agent must have left it first (operatorLeft).
func (a *assignments) operatorJoined(p *participant, maxChats int) *agent {
	if g := a.bySocket[p.id]; g != nil {
		for i, s := range g.sockets {
			if s.id == p.id {
				g.sockets[i] = p // a rejoin: the new participant record
			}
		}
		g.name = p.name
		if maxChats > 0 {
			g.capacity = maxChats
		}
		return g
	}
	key := agentKey(p)
	g := a.agents[key]
	if g != nil && len(g.sockets) == 0 {
		// Known from a decision before its presence: its id as it joined.
		g.id = p.operatorID
		if g.id.Kind == messages.IDAbsent {
			g.id = messages.ID{Str: p.id, Kind: messages.IDString}
		}
	}
	if g == nil {
		a.tick++
		g = &agent{key: key, id: p.operatorID, capacity: a.capacity, since: a.tick}
		if g.id.Kind == messages.IDAbsent {
			g.id = messages.ID{Str: p.id, Kind: messages.IDString}
		}
		a.agents[key] = g
	}
	if maxChats > 0 {
		g.capacity = maxChats
	}
	g.name = p.name
	g.sockets = append(g.sockets, p)
	a.bySocket[p.id] = g
	return g
}

// operatorLeft forgets an operator socket. When it was its agent's last,
// the agent goes: its chats go back to the queue in their original order
// (returned, with the agent) and it stops watching.
func (a *assignments) operatorLeft(id string) (gone *agent, released []*chat) {
	g := a.bySocket[id]
	if g == nil {
		return nil, nil
	}
	delete(a.bySocket, id)
	g.sockets = slices.DeleteFunc(g.sockets, func(p *participant) bool { return p.id == id })
	if len(g.sockets) > 0 {
		return nil, nil
	}
	delete(a.agents, g.key)
	for _, c := range g.watching {
		c.watchers = slices.DeleteFunc(c.watchers, func(w *agent) bool { return w == g })
	}
	g.watching = nil
	released = slices.Clone(g.chats)
	sortChats(released)
	for _, c := range released {
		c.owner = nil
		a.enqueue(c)
	}
	g.chats = nil
	return g, released
}

// socketLeft forgets an operator socket and nothing else (in a cluster the
// agent's chats go back only by a decision taken in Redis). It returns the
// socket's agent; an agent without sockets or chats is forgotten.
func (a *assignments) socketLeft(id string) *agent {
	g := a.bySocket[id]
	if g == nil {
		return nil
	}
	delete(a.bySocket, id)
	g.sockets = slices.DeleteFunc(g.sockets, func(p *participant) bool { return p.id == id })
	a.forgetIdle(g)
	return g
}

// forgetIdle drops an agent that has neither sockets nor chats.
func (a *assignments) forgetIdle(g *agent) {
	if len(g.sockets) == 0 && len(g.chats) == 0 && a.agents[g.key] == g {
		for _, c := range g.watching {
			c.watchers = slices.DeleteFunc(c.watchers, func(w *agent) bool { return w == g })
		}
		g.watching = nil
		delete(a.agents, g.key)
	}
}

// agentFor is the agent a decision names; one not known yet (its presence
// is on its way) starts without sockets.
func (a *assignments) agentFor(key string) *agent {
	g := a.agents[key]
	if g == nil {
		a.tick++
		g = &agent{key: key, id: messages.ID{Str: key, Kind: messages.IDString}, capacity: a.capacity, since: a.tick}
		a.agents[key] = g
	}
	return g
}

// chatOpened records a player's new chat, waiting for an operator.
func (a *assignments) chatOpened(client string) *chat {
	if c := a.chats[client]; c != nil {
		return c
	}
	a.seq++
	c := &chat{client: client, seq: a.seq}
	a.chats[client] = c
	a.enqueue(c)
	return c
}

// chatClosed forgets a chat (its player ended it or left). The returned
// chat still names its owner and watchers, who are to be told.
func (a *assignments) chatClosed(client string) *chat {
	c := a.chats[client]
	if c == nil {
		return nil
	}
	delete(a.chats, client)
	if c.waiting {
		a.dequeue(c)
	}
	if g := c.owner; g != nil {
		g.chats = slices.DeleteFunc(g.chats, func(x *chat) bool { return x == c })
	}
	for _, w := range c.watchers {
		w.watching = slices.DeleteFunc(w.watching, func(x *chat) bool { return x == c })
	}
	return c
}

// next returns the free agent that the next chat goes to: the least
// busy, and of those the one that waited longest; nil when none but
// `skip` is free.
func (a *assignments) next(skip *agent) *agent {
	var best *agent
	for _, g := range a.agents {
		if g == skip || !g.free() {
			continue
		}
		if best == nil || len(g.chats) < len(best.chats) ||
			len(g.chats) == len(best.chats) && (g.since < best.since || g.since == best.since && g.key < best.key) {
			best = g
		}
	}
	return best
}

// assign gives a chat to an agent (taking it off the queue).
func (a *assignments) assign(c *chat, g *agent) {
	if c.waiting {
		a.dequeue(c)
	}
	if old := c.owner; old != nil {
		old.chats = slices.DeleteFunc(old.chats, func(x *chat) bool { return x == c })
	}
	c.owner = g
	g.chats = append(g.chats, c)
	// A watcher that now owns the chat sees it as its owner.
	c.watchers = slices.DeleteFunc(c.watchers, func(w *agent) bool { return w == g })
	g.watching = slices.DeleteFunc(g.watching, func(x *chat) bool { return x == c })
	a.tick++
	g.since = a.tick
}

// autoAssign gives waiting chats, oldest first, to free agents while
// there are both, and returns what it assigned in order.
func (a *assignments) autoAssign() []*chat {
	var done []*chat
	for i := 0; i < len(a.waiting); {
		c := a.waiting[i]
		g := a.next(c.releasedBy)
		if g == nil {
			if c.releasedBy == nil || a.next(nil) == nil {
				break // nobody is free
			}
			i++ // only the operator who released it is free: it waits for another
			continue
		}
		a.assign(c, g) // takes it off the queue: the next one is at i now
		done = append(done, c)
	}
	return done
}

// claim gives a waiting chat to the agent that asked for it first.
func (a *assignments) claim(g *agent, client string) (*chat, string) {
	c := a.chats[client]
	switch {
	case c == nil:
		return nil, messages.CodeUnknownChat
	case c.owner == g:
		return c, "" // already its own: asking again changes nothing
	case c.owner != nil:
		return c, messages.CodeAlreadyClaimed
	case len(g.chats) >= g.capacity:
		return c, messages.CodeOverCapacity
	}
	a.assign(c, g)
	return c, ""
}

// release puts the agent's chat back in the queue; a watcher that
// releases a chat stops watching it (watched reports that case).
func (a *assignments) release(g *agent, client string) (c *chat, watched bool, code string) {
	c = a.chats[client]
	switch {
	case c == nil:
		return nil, false, messages.CodeUnknownChat
	case c.owner == g:
		g.chats = slices.DeleteFunc(g.chats, func(x *chat) bool { return x == c })
		c.owner = nil
		a.enqueue(c)
		return c, false, ""
	case slices.Contains(c.watchers, g):
		c.watchers = slices.DeleteFunc(c.watchers, func(w *agent) bool { return w == g })
		g.watching = slices.DeleteFunc(g.watching, func(x *chat) bool { return x == c })
		return c, true, ""
	}
	return c, false, messages.CodeNotYours
}

// transfer hands the agent's chat to the operator `to` names.
func (a *assignments) transfer(g *agent, client string, to messages.ID) (*chat, *agent, string) {
	c := a.chats[client]
	if c == nil {
		return nil, nil, messages.CodeUnknownChat
	}
	if c.owner != g {
		return c, nil, messages.CodeNotYours
	}
	t := a.agents[to.String()]
	if t == nil {
		t = a.bySocket[to.String()] // an operator without an operatorId, by its socket id
	}
	switch {
	case t == nil:
		return c, nil, messages.CodeUnknownOperator
	case t == g:
		return c, t, ""
	case t.away || !t.online():
		return c, t, messages.CodeOperatorAway
	case len(t.chats) >= t.capacity:
		return c, t, messages.CodeOverCapacity
	}
	a.assign(c, t)
	return c, t, ""
}

// watch lets an agent follow a chat it does not own. It reports whether
// the agent started watching now (false: it owns or already watches it).
func (a *assignments) watch(g *agent, client string) (*chat, bool, string) {
	c := a.chats[client]
	switch {
	case c == nil:
		return nil, false, messages.CodeUnknownChat
	case c.owner == g || slices.Contains(c.watchers, g):
		return c, false, ""
	}
	c.watchers = append(c.watchers, g)
	g.watching = append(g.watching, c)
	return c, true, ""
}

// enqueue puts a chat in the queue at its arrival's place.
func (a *assignments) enqueue(c *chat) {
	i, _ := slices.BinarySearchFunc(a.waiting, c.seq, func(x *chat, seq uint64) int { return cmp.Compare(x.seq, seq) })
	a.waiting = slices.Insert(a.waiting, i, c)
	c.waiting = true
	a.dirty = min(a.dirty, i)
}

func (a *assignments) dequeue(c *chat) {
	i, ok := slices.BinarySearchFunc(a.waiting, c.seq, func(x *chat, seq uint64) int { return cmp.Compare(x.seq, seq) })
	if ok {
		a.waiting = slices.Delete(a.waiting, i, i+1)
		a.dirty = min(a.dirty, i)
	}
	c.waiting, c.told = false, 0
}

// position is a waiting chat's place in the queue, 1 first; 0 when it
// does not wait.
func (a *assignments) position(c *chat) int {
	if !c.waiting {
		return 0
	}
	i, ok := slices.BinarySearchFunc(a.waiting, c.seq, func(x *chat, seq uint64) int { return cmp.Compare(x.seq, seq) })
	if !ok {
		return 0
	}
	return i + 1
}

// moved visits the waiting chats whose position changed since their
// players were last told, and marks each position as told.
// Only the part of the queue after the first change is looked at.
func (a *assignments) moved(visit func(c *chat, position int)) {
	for i := a.dirty; i < len(a.waiting); i++ {
		c := a.waiting[i]
		if c.told != i+1 {
			c.told = i + 1
			visit(c, i+1)
		}
	}
	a.dirty = len(a.waiting)
}

// sortChats orders chats by arrival.
func sortChats(cs []*chat) {
	slices.SortFunc(cs, func(x, y *chat) int { return cmp.Compare(x.seq, y.seq) })
}
