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
var InboundEvents = []string{EventJoin, "clientMessage", EventOperatorMessage, EventClientTyping, EventOperatorTyping, EventEndChat}

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
	}
	return nil, false, nil
}
