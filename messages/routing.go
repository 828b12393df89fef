package messages

// Routing: chats assigned to operators (SWITCHBOARD_ROUTING claim or auto).
// Every event here is additive: in broadcast mode, the default, none is sent
// and the inbound ones are refused with routing_off.

// Inbound routing events, operator → server.
const (
	EventClaimChat    = "claimChat"
	EventReleaseChat  = "releaseChat"
	EventTransferChat = "transferChat"
	EventSetStatus    = "setStatus"
	EventWatchChat    = "watchChat"
)

// Outbound routing events: to operators (chatAssigned, chatQueued) and to
// the player (queued, operatorAssigned).
const (
	EventChatAssigned     = "chatAssigned"
	EventChatQueued       = "chatQueued"
	EventQueued           = "queued"
	EventOperatorAssigned = "operatorAssigned"
)

// RoutingKind says which routing request an operator sent.
type RoutingKind uint8

// The routing requests.
const (
	RouteClaim RoutingKind = iota + 1
	RouteRelease
	RouteTransfer
	RouteSetStatus
	RouteWatch
)

// Event is the request's event name.
func (k RoutingKind) Event() string {
	switch k {
	case RouteClaim:
		return EventClaimChat
	case RouteRelease:
		return EventReleaseChat
	case RouteTransfer:
		return EventTransferChat
	case RouteSetStatus:
		return EventSetStatus
	case RouteWatch:
		return EventWatchChat
	}
	return "routing"
}

// OperatorStatus is what an operator says of itself with setStatus:
// away operators get no new chats.
type OperatorStatus uint8

// The statuses of setStatus.
const (
	StatusAvailable OperatorStatus = iota
	StatusAway
)

// String returns the contract's name.
func (s OperatorStatus) String() string {
	if s == StatusAway {
		return "away"
	}
	return "available"
}

// RoutingPayload is one routing request: claimChat, releaseChat and
// watchChat carry {clientId}; transferChat {clientId, toOperatorId};
// setStatus {status}.
type RoutingPayload struct {
	ClientID     string
	ToOperatorID ID
	Status       OperatorStatus
}

// RoutingRequest is an operator's routing request, for the router.
type RoutingRequest struct {
	Origin
	Kind    RoutingKind
	Payload RoutingPayload
}

// DecodeRouting reads a routing request's payload.
func DecodeRouting(k RoutingKind, v any, l *Limits) (RoutingPayload, error) {
	var p RoutingPayload
	m, err := object(v)
	if err != nil {
		return p, err
	}
	if k == RouteSetStatus {
		s, err := str(m, "status", l.MaxField)
		if err != nil {
			return p, err
		}
		switch s.V {
		case "available":
			p.Status = StatusAvailable
		case "away":
			p.Status = StatusAway
		case "":
			return p, &PayloadError{Code: CodeInvalidPayload, Field: "status", Reason: "is required"}
		default:
			return p, &PayloadError{Code: CodeInvalidType, Field: "status", Reason: "must be 'available' or 'away'"}
		}
		return p, nil
	}
	c, err := str(m, "clientId", l.MaxField)
	if err != nil {
		return p, err
	}
	if c.V == "" {
		return p, &PayloadError{Code: CodeInvalidPayload, Field: "clientId", Reason: "is required"}
	}
	p.ClientID = c.V
	if k == RouteTransfer {
		if p.ToOperatorID, err = id(m, "toOperatorId", l.MaxField); err != nil {
			return p, err
		}
		if p.ToOperatorID.Kind == IDAbsent || p.ToOperatorID.String() == "" {
			return p, &PayloadError{Code: CodeInvalidPayload, Field: "toOperatorId", Reason: "is required"}
		}
	}
	return p, nil
}

// ChatAssigned tells operators who owns a chat now.
type ChatAssigned struct {
	ClientID     string `json:"clientId"`
	OperatorID   ID     `json:"operatorId"`
	OperatorName Str    `json:"operatorName,omitzero"`
}

// ChatQueued tells operators that a chat waits for an operator, and where.
type ChatQueued struct {
	ClientID string `json:"clientId"`
	Position int    `json:"position"`
}

// QueuedOut tells a waiting player its place in the queue (1 is next).
type QueuedOut struct {
	Position int `json:"position"`
}

// OperatorAssigned tells a player who answers it now.
type OperatorAssigned struct {
	OperatorName Str `json:"operatorName,omitzero"`
}
