package actors

import (
	"cmp"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard/switchboard/messages"
)

// A cluster is several nodes that act as one: every operator sees every
// player, whichever node either is on. Each node's router stays the owner of
// its local presence; a bridge actor beside it (the hub's child "cluster")
// carries presence changes and cross-node deliveries to the other nodes and
// back. The bridge owns every piece of cluster state (which nodes exist,
// what each one has published); the router keeps only a read model of the
// remote participants, fed by the bridge's messages, so that fan-out and
// /stats never wait on the network. cluster_redis.go is the one bridge.

// ClusterOptions switch a node into cluster mode. The zero value (no URL)
// is one node in process, with no cluster code on any hot path.
type ClusterOptions struct {
	// RedisURL is redis://[:password@]host:port[/db] or rediss://.
	RedisURL string
	// NodeID names this node in logs, /health, /stats and Redis keys.
	NodeID string
	// Heartbeat is how often the node refreshes its liveness and presence
	// and reads the other nodes' (default 2s): one pipelined round trip.
	Heartbeat time.Duration
	// DeadAfter is how long another node's heartbeat may stay unchanged
	// before its players' chats are ended (default 8s). A dead node is
	// noticed within DeadAfter plus two heartbeats (12 s by default).
	DeadAfter time.Duration
	// TTL of the keys a node writes (default 10s, or DeadAfter plus two
	// heartbeats when that is longer): what a dead node leaves
	// in Redis is gone after it.
	TTL time.Duration
	// Prefix of every key and channel (default "switchboard").
	Prefix string
}

func (o *ClusterOptions) enabled() bool { return o.RedisURL != "" }

func (o *ClusterOptions) defaults() {
	if o.Heartbeat <= 0 {
		o.Heartbeat = 2 * time.Second
	}
	if o.DeadAfter <= 0 {
		o.DeadAfter = 8 * time.Second
	}
	if o.TTL <= 0 {
		// Past a dead node's detection: its keys outlive no live node's.
		o.TTL = max(10*time.Second, o.DeadAfter+2*o.Heartbeat)
	}
	if o.Prefix == "" {
		o.Prefix = "switchboard"
	}
}

// Member is one participant as the cluster carries it between nodes.
type Member struct {
	Node        string       `json:"-"`
	ID          string       `json:"id"`
	Role        string       `json:"role"`
	Name        messages.Str `json:"name,omitzero"`
	Username    messages.Str `json:"username,omitzero"`
	Phone       messages.Str `json:"phone,omitzero"`
	OperatorID  messages.ID  `json:"operatorId,omitzero"`
	ConnectedAt int64        `json:"connectedAt"` // Unix milliseconds
	Seq         uint64       `json:"seq"`         // join order on its node
	// Away: its transport is down within the recovery window. Quiet: this
	// change is no new chat (away or back, a move from another node, a
	// reloaded page's join), so other nodes send no newChat for it.
	Away  bool `json:"away,omitempty"`
	Quiet bool `json:"quiet,omitempty"`
}

func memberOf(p *participant) *Member {
	return &Member{
		ID: p.id, Role: p.role.String(), Name: p.name, Username: p.username, Phone: p.phone,
		OperatorID: p.operatorID, ConnectedAt: p.connectedAt.UnixMilli(), Seq: p.seq, Away: p.away,
	}
}

// participant turns a remote member into the router's participant type, so
// that newChat and /stats treat local and remote alike. It has no session.
func (m *Member) participant() *participant {
	role := messages.RoleClient
	if m.Role == messages.RoleOperator.String() {
		role = messages.RoleOperator
	}
	return &participant{
		id: m.ID, node: m.Node, role: role, name: m.Name, username: m.Username, phone: m.Phone,
		operatorID: m.OperatorID, connectedAt: time.UnixMilli(m.ConnectedAt), seq: m.Seq, away: m.Away,
	}
}

// Messages from the router to the bridge.

// clusterJoined says that a local participant joined (or joined again).
type clusterJoined struct {
	m *Member
	// anchor: an operator's join anchor (cluster_operators.go), stored
	// with its record so that another node can take it over.
	anchor string
}

// clusterLeft says that a local participant left; moved: it went on
// another node, which took its session over (no chat ends).
type clusterLeft struct {
	id    string
	moved bool
}

// clusterDeliver asks the bridge to hand an encoded frame to other nodes:
// to every operator but the socket Except, or to the client ToClient on
// node ToNode.
type clusterDeliver struct {
	frame    *messages.Frame
	except   string
	toClient string
	toNode   string
	// seq: a frame with an offset for a player, sequenced in its stored
	// conversation (cluster_store.go) on its way.
	seq bool
	// toAgents: the sockets on other nodes of these operators (routing:
	// a chat's owner and watchers), but the socket except.
	toAgents []string
	// acked: a player's message to every operator, whose acknowledgement
	// waits for this feed write (ackAfterStore), as seq frames' do.
	acked bool
	// announce: a player's newChat or chatEnded, told to every operator
	// by the player's node alone through the feed (this player's id).
	announce string
	// gone: a gone node's player's chatAway ("a") or chatEnded ("e"),
	// which every node asks for and one writes to the feed; goneKey
	// names it, goneNode is the player's dead node.
	gone, goneKey, goneNode, goneID string
}

// catchUp asks the bridge for a player's stored frames after its last
// (a frame of its conversation went missing on the way, or it was just
// taken over); the answer is a *caughtUp for the session.
type catchUp struct {
	id    string
	after uint64
}

// caughtUp carries stored frames to a player's session, oldest first.
type caughtUp struct {
	id     string
	frames []*messages.Frame
}

// forgetSession asks the bridge to delete a stored session that ended,
// unless another node owns it now.
type forgetSession struct{ id, node string }

// drainBridge asks the bridge to flush what waits for Redis; done is
// closed when it has (a stopping node's last frames must be stored).
type drainBridge struct{ done chan struct{} }

// movedOut tells the router that another node (node) took a local
// player's session over: it goes quietly.
type movedOut struct{ id, node string }

// resubscribed tells the router that the bridge's subscription was down:
// sessions catch up from their stored conversations.
type resubscribed struct{}

// Messages from the bridge to the router.

// RemoteJoined adds or updates a participant of another node.
type RemoteJoined struct {
	Member *Member
	// Resync: found by reading the node's presence again (events were
	// missed), not by a live presence event.
	Resync bool
}

// RemoteLeft removes a participant of another node that left it.
type RemoteLeft struct {
	Node, ID string
	// Moved: its session went to another node, which announces it.
	Moved bool
	// Resync: as RemoteJoined's.
	Resync bool
}

// NodeGone drops every participant of a node that died or left the
// cluster; the router ends its clients' chats for the local operators.
type NodeGone struct {
	Node   string
	Reason string
	// Since is when the node was last known alive: with recovery on its
	// players are away until Since plus the recovery window.
	Since time.Time
	// Inc is the incarnation that is gone (a restarted node's earlier one).
	Inc string
}

// RemoteDeliver is a frame from another node for local sockets: every
// local operator but Except, or the local client ToClient.
type RemoteDeliver struct {
	Frame    *messages.Frame
	Except   string
	ToClient string
	// ToAgents: this node's sockets of these operators (by agent key).
	ToAgents []string
	// FeedID: the feed entry it came in (for operators' anchors).
	FeedID string
	// Announce: a player's newChat or chatEnded from its node (its id).
	Announce string
}

// ClusterState is the bridge's view of the cluster, for /health.
type ClusterState struct {
	Node  string
	Up    bool // Redis reachable
	Nodes int  // live nodes, this one included
}

// clusterAttached gives the router the bridge's PID.
type clusterAttached struct{ pid *actor.PID }

// remotePresence is the router's read model of other nodes' participants,
// indexed by id, by role and by node. The router owns it like presence.
type remotePresence struct {
	byID      map[string]*participant
	clients   map[string]*participant
	operators map[string]*participant
	byNode    map[string]map[string]*participant
}

func newRemotePresence() *remotePresence {
	return &remotePresence{
		byID:      make(map[string]*participant),
		clients:   make(map[string]*participant),
		operators: make(map[string]*participant),
		byNode:    make(map[string]map[string]*participant),
	}
}

// upsert records a remote participant; it returns the one it replaced.
func (rp *remotePresence) upsert(p *participant) (old *participant) {
	old = rp.remove(p.id)
	rp.byID[p.id] = p
	rp.roleIndex(p.role)[p.id] = p
	n := rp.byNode[p.node]
	if n == nil {
		n = make(map[string]*participant)
		rp.byNode[p.node] = n
	}
	n[p.id] = p
	return old
}

// remove forgets a remote participant, if it is known.
func (rp *remotePresence) remove(id string) *participant {
	p := rp.byID[id]
	if p == nil {
		return nil
	}
	delete(rp.byID, id)
	delete(rp.roleIndex(p.role), id)
	if n := rp.byNode[p.node]; n != nil {
		delete(n, id)
		if len(n) == 0 {
			delete(rp.byNode, p.node)
		}
	}
	return p
}

// dropNode forgets every participant of a node and returns them in join order.
func (rp *remotePresence) dropNode(node string) []*participant {
	gone := ordered(rp.byNode[node])
	for _, p := range gone {
		rp.remove(p.id)
	}
	return gone
}

func (rp *remotePresence) roleIndex(r messages.Role) map[string]*participant {
	if r == messages.RoleOperator {
		return rp.operators
	}
	return rp.clients
}

// merged lists local and remote participants of a role in join order
// across the cluster: by join time, then node and per-node order.
func merged(local, remote map[string]*participant) []*participant {
	if len(remote) == 0 {
		return ordered(local)
	}
	out := make([]*participant, 0, len(local)+len(remote))
	for _, p := range local {
		out = append(out, p)
	}
	for _, p := range remote {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *participant) int {
		if c := a.connectedAt.Compare(b.connectedAt); c != 0 {
			return c
		}
		if c := cmp.Compare(a.node, b.node); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	return out
}
