package messages

import "fmt"

// Error codes that a refused event is answered with.
const (
	CodeInvalidPayload = "invalid_payload"
	CodeInvalidType    = "invalid_type"
	CodeTooLarge       = "too_large"
	CodeNotJoined      = "not_joined"
	CodeWrongRole      = "wrong_role"
	CodeUnknownTarget  = "unknown_target"
	CodeRateLimited    = "rate_limited"
	CodeUnauthorized   = "unauthorized"
	CodeQueueFull      = "queue_full"
	// CodeUnavailable answers a message whose write to the cluster's
	// store failed (Redis unreachable or too slow): it may or may not
	// reach its player, and the sender knows it was not acknowledged.
	// Under routing in a cluster it also answers a request that Redis
	// could not decide.
	CodeUnavailable = "unavailable"
	// Not sent to anyone: the reason a reader too slow for its writes was
	// cut off, as /metrics counts it.
	CodeSlowConsumer = "slow_consumer"
	// Routing (SWITCHBOARD_ROUTING claim or auto).
	CodeRoutingOff      = "routing_off"      // a routing event while chats are broadcast
	CodeAlreadyClaimed  = "already_claimed"  // another operator owns the chat
	CodeNotYours        = "not_yours"        // the chat is another operator's, or nobody's
	CodeUnknownOperator = "unknown_operator" // transferChat names no joined operator
	CodeOverCapacity    = "over_capacity"    // the operator has its most chats already
	CodeOperatorAway    = "operator_away"    // transferChat to an operator who is away
	CodeUnknownChat     = "unknown_chat"     // clientId names no chat waiting or open
)

// PayloadError says why an inbound payload was refused, naming the field.
type PayloadError struct {
	Code   string
	Field  string
	Reason string
}

func (e *PayloadError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", e.Code, e.Reason)
	}
	return fmt.Sprintf("%s: %s %s", e.Code, e.Field, e.Reason)
}
