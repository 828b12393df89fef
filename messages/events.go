package messages

// The inbound vocabulary: the events a participant may send, and how each
// becomes the router's message. The transport only looks names up here.

// Inbound event names, as the contract spells them.
const (
	EventJoin = "join"
	// clientMessage, operatorMessage, clientTyping and operatorTyping share
	// their names with the outbound events of the same name.
	EventEndChat = "endChat"
)

// InboundEvents is every event name Decode knows.
var InboundEvents = []string{EventJoin, "clientMessage", EventOperatorMessage, EventClientTyping, EventOperatorTyping, EventEndChat,
	EventClaimChat, EventReleaseChat, EventTransferChat, EventSetStatus, EventWatchChat}

// Decode turns one received event's payload into the router's message.
// known is false for an event the contract does not name; err says why a
// known event's payload was refused (a *PayloadError when it can name the
// field).
func Decode(event string, payload any, o Origin, l *Limits) (msg RouterMessage, known bool, err error) {
	switch event {
	case EventJoin:
		p, err := DecodeJoin(payload, l)
		return &Join{Origin: o, Payload: p}, true, err
	case "clientMessage":
		p, err := DecodeClientMessage(payload, l)
		return &ClientMessage{Origin: o, Payload: p}, true, err
	case EventOperatorMessage:
		p, err := DecodeOperatorMessage(payload, l)
		return &OperatorMessage{Origin: o, Payload: p}, true, err
	case EventClientTyping:
		p, err := DecodeClientTyping(payload, l)
		return &ClientTyping{Origin: o, IsTyping: p.IsTyping}, true, err
	case EventOperatorTyping:
		p, err := DecodeOperatorTyping(payload, l)
		return &OperatorTyping{Origin: o, Payload: p}, true, err
	case EventEndChat:
		p, err := DecodeEndChat(payload, l)
		return &EndChat{Origin: o, Payload: p}, true, err
	case EventClaimChat:
		return decodeRouting(RouteClaim, payload, o, l)
	case EventReleaseChat:
		return decodeRouting(RouteRelease, payload, o, l)
	case EventTransferChat:
		return decodeRouting(RouteTransfer, payload, o, l)
	case EventSetStatus:
		return decodeRouting(RouteSetStatus, payload, o, l)
	case EventWatchChat:
		return decodeRouting(RouteWatch, payload, o, l)
	}
	return nil, false, nil
}

func decodeRouting(k RoutingKind, payload any, o Origin, l *Limits) (RouterMessage, bool, error) {
	p, err := DecodeRouting(k, payload, l)
	return &RoutingRequest{Origin: o, Kind: k, Payload: p}, true, err
}
