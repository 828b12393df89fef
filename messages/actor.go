package messages

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Messages to the router. Sessions send them on behalf of their socket.
type RouterMessage interface {
	// Src is who sent the event and how to answer it.
	Src() *Origin
}

// AckFunc answers an event whose sender passed an acknowledgement callback.
// Only the sender's session calls it: it writes to the socket.
type AckFunc func(reply *AckReply)

// Origin says who sent an event and how to answer it. From is the sending
// socket's id, set by the transport, never taken from a payload.
type Origin struct {
	From string
	// Session is the sender's session actor, set by the session.
	Session *actor.PID
	// Ack is nil unless the sender asked for an acknowledgement.
	Ack AckFunc
	// At is when the transport received the event.
	At time.Time
}

// Src returns the origin itself; embedding it gives every event the method.
func (o *Origin) Src() *Origin { return o }

// Join asks the router to record a socket as a client or an operator.
type Join struct {
	Origin
	Payload JoinPayload
	// Verified is set when the handshake's token proved who the socket is;
	// its fields win over the payload's.
	Verified *Identity
	// Resumed is set on the first join of a socket that resumed a player's
	// conversation after a reload: operators already have the chat, so they
	// get no second newChat.
	Resumed bool
}

// ClientMessage is a client's chat message.
type ClientMessage struct {
	Origin
	Payload ClientMessagePayload
}

// OperatorMessage is an operator's reply to one client.
type OperatorMessage struct {
	Origin
	Payload OperatorMessagePayload
}

// ClientTyping is a client's typing indicator.
type ClientTyping struct {
	Origin
	IsTyping bool
}

// OperatorTyping is an operator's typing indicator to one client.
type OperatorTyping struct {
	Origin
	Payload TypingPayload
}

// EndChat ends a chat: the sender's own when a client sends it.
type EndChat struct {
	Origin
	Payload EndChatPayload
}

// Identity is what a verified token says about a socket.
type Identity struct {
	Role Role
	// Subject is the token's sub: a player's stable identity, with which a
	// reloaded page may resume its conversation.
	Subject    string
	OperatorID ID
	Name       Str
	Username   Str
	Phone      Str
	// MaxChats is an operator token's maxChats claim: how many chats it may
	// own at once under routing (0: the server's default).
	MaxChats int
}

// HealthQuery asks the router for its counts; it responds with *Health.
type HealthQuery struct{}

// StatsQuery asks the router for its presence list; it responds with *Stats.
type StatsQuery struct{}

// Messages to a session.

// Deliver hands a session a frame to write to its socket.
type Deliver struct {
	Frame *Frame
}

// Refused tells a session that one of its socket's events was refused; the
// session answers through the ack when there is one, else with chatError.
type Refused struct {
	Event  string
	Code   string
	Reason string
	Ack    AckFunc
}

// Accepted tells a session that an event with an ack was accepted. Queued
// and Away say it was kept for later delivery (AckReply).
type Accepted struct {
	Ack       AckFunc
	ID        string
	Timestamp string
	Queued    bool
	Away      bool
	// ClientID is set on a player's accepted join with recovery on: its
	// session adds the resume token a reloaded page may present.
	ClientID string
}

// Unknown is an event the contract does not name: it delivers nothing, but
// counts against its socket's rate like any other.
type Unknown struct {
	Event string
	Ack   AckFunc
}

// Away tells the router that a participant's transport dropped without a
// goodbye: it stays joined, and its session keeps what it is sent, for the
// recovery window.
type Away struct {
	Session *actor.PID
}

// Back tells the router that an away participant recovered.
type Back struct {
	Session *actor.PID
}

// Health is the router's answer to HealthQuery. Clients and Operators
// count this node's sockets (shutdown waits for them to reach zero).
type Health struct {
	Clients   int
	Operators int
	// Away counts this node's participants whose transport dropped within
	// the recovery window (included in Clients and Operators).
	Away int
	// Cluster is nil on a node without a cluster.
	Cluster *ClusterHealth
}

// ClusterHealth is what a node in a cluster adds to /health.
type ClusterHealth struct {
	Node string `json:"node"`
	// Redis is "ok" or "unreachable": then the node serves its own sockets only.
	Redis string `json:"redis"`
	// Nodes is how many nodes this one sees alive, itself included.
	Nodes int `json:"nodes"`
	// Clients and Operators count the whole cluster's joined sockets.
	Clients   int `json:"-"`
	Operators int `json:"-"`
}

// Stats is the router's answer to StatsQuery: presence in join order,
// the whole cluster's when there is one.
type Stats struct {
	Clients   []ClientInfo
	Operators []OperatorInfo
	// Node and Nodes are set in a cluster: this node's id, and the counts
	// per node.
	Node  string
	Nodes []NodeInfo
}

// NodeInfo is one node's counts in /stats.
type NodeInfo struct {
	Node      string `json:"node"`
	Clients   int    `json:"clients"`
	Operators int    `json:"operators"`
}

// ClientInfo is one client in /stats.
type ClientInfo struct {
	SocketID    string `json:"socketId"`
	Name        Str    `json:"name,omitzero"`
	Username    Str    `json:"username,omitzero"`
	ConnectedAt string `json:"connectedAt"`
	Node        string `json:"node,omitempty"` // in a cluster: the node it is on
	// Under routing (claim or auto): who owns the chat, or its place in
	// the queue while it waits (1 is next).
	Owner         ID  `json:"owner,omitzero"`
	OwnerName     Str `json:"ownerName,omitzero"`
	QueuePosition int `json:"queuePosition,omitempty"`
}

// OperatorInfo is one operator in /stats.
type OperatorInfo struct {
	SocketID    string `json:"socketId"`
	Name        Str    `json:"name,omitzero"`
	OperatorID  ID     `json:"operatorId,omitzero"`
	ConnectedAt string `json:"connectedAt"`
	Node        string `json:"node,omitempty"` // in a cluster: the node it is on
	// Under routing (claim or auto): whether it takes new chats, how many
	// it owns, and how many it may.
	Status   string `json:"status,omitempty"`
	Load     *int   `json:"load,omitempty"`
	Capacity int    `json:"capacity,omitempty"`
}
