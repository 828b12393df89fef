package messages

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Messages to the router. Sessions send them on behalf of their socket; From
// is always the sending socket's id, set by the transport, never by a payload.
type RouterMessage interface{ routerMessage() }

// Join asks the router to record a socket as a client or an operator.
type Join struct {
	From    string
	Session *actor.PID
	At      time.Time
	Payload JoinPayload
}

// ClientMessage is a client's chat message.
type ClientMessage struct {
	From    string
	Payload ClientMessagePayload
}

// OperatorMessage is an operator's reply to one client.
type OperatorMessage struct {
	From    string
	Payload OperatorMessagePayload
}

// ClientTyping is a client's typing indicator.
type ClientTyping struct {
	From     string
	IsTyping bool
}

// OperatorTyping is an operator's typing indicator to one client.
type OperatorTyping struct {
	From    string
	Payload TypingPayload
}

// EndChat ends a chat: the sender's own when a client sends it.
type EndChat struct {
	From    string
	Payload EndChatPayload
}

// HealthQuery asks the router for its counts; it responds with *Health.
type HealthQuery struct{}

// StatsQuery asks the router for its presence list; it responds with *Stats.
type StatsQuery struct{}

func (*Join) routerMessage()            {}
func (*ClientMessage) routerMessage()   {}
func (*OperatorMessage) routerMessage() {}
func (*ClientTyping) routerMessage()    {}
func (*OperatorTyping) routerMessage()  {}
func (*EndChat) routerMessage()         {}
func (*HealthQuery) routerMessage()     {}
func (*StatsQuery) routerMessage()      {}

// Messages to a session.

// Deliver hands a session a frame to write to its socket.
type Deliver struct {
	Frame *Frame
}

// Refused tells a session that one of its socket's events was refused; the
// session answers its socket with chatError.
type Refused struct {
	Event  string
	Code   string
	Reason string
}

// SocketClosed tells a session that its socket went away.
type SocketClosed struct {
	Reason string
}

// Health is the router's answer to HealthQuery.
type Health struct {
	Clients   int
	Operators int
}

// Stats is the router's answer to StatsQuery: presence in join order.
type Stats struct {
	Clients   []ClientInfo
	Operators []OperatorInfo
}

// ClientInfo is one client in /stats.
type ClientInfo struct {
	SocketID    string `json:"socketId"`
	Name        Str    `json:"name,omitzero"`
	Username    Str    `json:"username,omitzero"`
	ConnectedAt string `json:"connectedAt"`
}

// OperatorInfo is one operator in /stats.
type OperatorInfo struct {
	SocketID    string `json:"socketId"`
	Name        Str    `json:"name,omitzero"`
	OperatorID  ID     `json:"operatorId,omitzero"`
	ConnectedAt string `json:"connectedAt"`
}
