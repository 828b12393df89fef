package messages

// Role is what a socket joined as.
type Role uint8

// The roles of the contract. RoleNone is a socket that has not joined.
const (
	RoleNone Role = iota
	RoleClient
	RoleOperator
)

// String returns the contract's name for the role.
func (r Role) String() string {
	switch r {
	case RoleClient:
		return "client"
	case RoleOperator:
		return "operator"
	}
	return "none"
}

// Kind is a chat message's type: text or image.
type Kind uint8

// The message kinds of the contract.
const (
	KindText Kind = iota + 1
	KindImage
)

// String returns the contract's name for the kind.
func (k Kind) String() string {
	if k == KindImage {
		return "image"
	}
	return "text"
}

// MarshalJSON writes the contract's name.
func (k Kind) MarshalJSON() ([]byte, error) {
	if k == KindImage {
		return []byte(`"image"`), nil
	}
	return []byte(`"text"`), nil
}

// UnmarshalJSON reads the contract's name.
func (k *Kind) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `"text"`:
		*k = KindText
	case `"image"`:
		*k = KindImage
	default:
		return &PayloadError{Code: CodeInvalidType, Field: "type", Reason: "must be 'text' or 'image'"}
	}
	return nil
}

// JoinPayload is the `join` event: `{role, name, username?, phone?, operatorId?}`.
type JoinPayload struct {
	Role       Role
	Name       Str
	Username   Str
	Phone      Str
	OperatorID ID
}

// Content is what a chat message carries, shared by both directions.
type Content struct {
	Type     Kind `json:"type"`
	Message  Str  `json:"message,omitzero"`
	Image    Str  `json:"image,omitzero"`
	Name     Str  `json:"name,omitzero"`
	MimeType Str  `json:"mimeType,omitzero"`
}

// ClientMessagePayload is the `clientMessage` event.
type ClientMessagePayload struct {
	Content
	Size      Num
	Timestamp Str
}

// OperatorMessagePayload is the `operatorMessage` event.
type OperatorMessagePayload struct {
	To string
	Content
	OperatorID   ID
	OperatorName Str
}

// TypingPayload is `clientTyping` ({isTyping}) and `operatorTyping` ({to, isTyping}).
type TypingPayload struct {
	To       string
	IsTyping bool
}

// EndChatPayload is `endChat`: `{}` from a client, `{clientId, operatorId?}` from an operator.
type EndChatPayload struct {
	ClientID   Str
	OperatorID ID
}
