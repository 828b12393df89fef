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
