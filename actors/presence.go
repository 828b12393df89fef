package actors

import (
	"cmp"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard/switchboard/messages"
)

// participant is one joined socket, as the router knows it.
type participant struct {
	id string
	// session is nil for a participant of another node; node names it.
	session     *actor.PID
	node        string
	role        messages.Role
	name        messages.Str
	username    messages.Str
	phone       messages.Str
	operatorID  messages.ID
	connectedAt time.Time
	// verified is set when a token proved the operator's id and name: they
	// then win over what its messages claim.
	verified bool
	// away is set while the participant's transport is down within the
	// recovery window: it stays joined, and its session keeps its frames.
	away bool
	// seq orders participants by first join, as the Node server's Map does.
	seq uint64
}

// displayName is what operators see: the username, else the name.
func (p *participant) displayName() messages.Str {
	return p.username.Or(p.name)
}

// presence is who has joined, indexed by socket id, by session and by role,
// so that no event needs to scan every connection. Only the router touches
// it; it outlives a router restart so that a crash loses no one.
type presence struct {
	byID      map[string]*participant
	bySession map[string]*participant // keyed by the session PID's Id
	clients   map[string]*participant
	operators map[string]*participant
	seq       uint64
	// away counts participants whose transport is down (participant.away).
	away int
}

func newPresence() *presence {
	return &presence{
		byID:      make(map[string]*participant),
		bySession: make(map[string]*participant),
		clients:   make(map[string]*participant),
		operators: make(map[string]*participant),
	}
}

// upsert records a join; a socket that joins again keeps its place and
// takes its new role. It reports whether the socket is new.
func (pr *presence) upsert(p *participant) (isNew bool) {
	old, ok := pr.byID[p.id]
	if ok {
		p.seq = old.seq
		pr.removeFromRole(old)
	} else {
		pr.seq++
		p.seq = pr.seq
	}
	pr.byID[p.id] = p
	pr.bySession[p.session.Id] = p
	pr.roleIndex(p.role)[p.id] = p
	return !ok
}

// removeSession forgets the participant of a session, if it had joined.
func (pr *presence) removeSession(pid *actor.PID) *participant {
	p, ok := pr.bySession[pid.Id]
	if !ok {
		return nil
	}
	delete(pr.bySession, pid.Id)
	delete(pr.byID, p.id)
	if p.away {
		pr.away--
	}
	pr.removeFromRole(p)
	return p
}

func (pr *presence) removeFromRole(p *participant) {
	delete(pr.roleIndex(p.role), p.id)
}

func (pr *presence) roleIndex(r messages.Role) map[string]*participant {
	if r == messages.RoleOperator {
		return pr.operators
	}
	return pr.clients
}

// ordered returns a role's participants in join order. Only joins of
// operators and /stats need it, never a chat message.
func ordered(m map[string]*participant) []*participant {
	out := make([]*participant, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *participant) int { return cmp.Compare(a.seq, b.seq) })
	return out
}
