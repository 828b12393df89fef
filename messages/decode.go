package messages

import (
	"unicode/utf8"
)

// Limits bound what an inbound payload may carry. Zero means no limit.
type Limits struct {
	// MaxText is the longest `message`, in characters.
	MaxText int
	// MaxImage is the longest `image`, in bytes of base64 (or data URL).
	MaxImage int
	// MaxField is the longest of every other string (name, username, ids...).
	MaxField int
	// ImageTypes are the allowed image MIME types; empty allows any image
	// (then only its base64 is checked).
	ImageTypes []string
}

// The decoders below read the generic values that the Socket.IO parser
// produces (map[string]any, float64, string, bool) into typed payloads.
// Anything malformed becomes a *PayloadError; nothing here panics.

// DecodeJoin reads a `join` payload.
func DecodeJoin(v any, l *Limits) (JoinPayload, error) {
	var p JoinPayload
	m, err := object(v)
	if err != nil {
		return p, err
	}
	role, err := str(m, "role", l.MaxField)
	if err != nil {
		return p, err
	}
	switch role.V {
	case "client":
		p.Role = RoleClient
	case "operator":
		p.Role = RoleOperator
	default:
		return p, &PayloadError{Code: CodeInvalidPayload, Field: "role", Reason: "must be 'client' or 'operator'"}
	}
	if p.Name, err = str(m, "name", l.MaxField); err != nil {
		return p, err
	}
	if p.Username, err = str(m, "username", l.MaxField); err != nil {
		return p, err
	}
	if p.Phone, err = str(m, "phone", l.MaxField); err != nil {
		return p, err
	}
	p.OperatorID, err = id(m, "operatorId", l.MaxField)
	return p, err
}

// DecodeClientMessage reads a `clientMessage` payload.
func DecodeClientMessage(v any, l *Limits) (ClientMessagePayload, error) {
	var p ClientMessagePayload
	m, err := object(v)
	if err != nil {
		return p, err
	}
	if p.Content, err = content(m, l); err != nil {
		return p, err
	}
	if p.Size, err = num(m, "size"); err != nil {
		return p, err
	}
	p.Timestamp, err = str(m, "timestamp", l.MaxField)
	return p, err
}

// DecodeOperatorMessage reads an `operatorMessage` payload.
func DecodeOperatorMessage(v any, l *Limits) (OperatorMessagePayload, error) {
	var p OperatorMessagePayload
	m, err := object(v)
	if err != nil {
		return p, err
	}
	if p.To, err = target(m, l); err != nil {
		return p, err
	}
	if p.Content, err = content(m, l); err != nil {
		return p, err
	}
	if p.OperatorID, err = id(m, "operatorId", l.MaxField); err != nil {
		return p, err
	}
	p.OperatorName, err = str(m, "operatorName", l.MaxField)
	return p, err
}

// DecodeClientTyping reads a `clientTyping` payload.
func DecodeClientTyping(v any, l *Limits) (TypingPayload, error) {
	var p TypingPayload
	m, err := object(v)
	if err != nil {
		return p, err
	}
	p.IsTyping, err = boolean(m, "isTyping")
	return p, err
}

// DecodeOperatorTyping reads an `operatorTyping` payload.
func DecodeOperatorTyping(v any, l *Limits) (TypingPayload, error) {
	var p TypingPayload
	m, err := object(v)
	if err != nil {
		return p, err
	}
	if p.To, err = target(m, l); err != nil {
		return p, err
	}
	p.IsTyping, err = boolean(m, "isTyping")
	return p, err
}

// DecodeEndChat reads an `endChat` payload. A client may send nothing at all.
func DecodeEndChat(v any, l *Limits) (EndChatPayload, error) {
	var p EndChatPayload
	if v == nil {
		return p, nil
	}
	m, err := object(v)
	if err != nil {
		return p, err
	}
	if p.ClientID, err = str(m, "clientId", l.MaxField); err != nil {
		return p, err
	}
	p.OperatorID, err = id(m, "operatorId", l.MaxField)
	return p, err
}

func content(m map[string]any, l *Limits) (Content, error) {
	var c Content
	t, err := str(m, "type", l.MaxField)
	if err != nil {
		return c, err
	}
	switch t.V {
	case "text":
		c.Type = KindText
	case "image":
		c.Type = KindImage
	default:
		return c, &PayloadError{Code: CodeInvalidType, Field: "type", Reason: "must be 'text' or 'image'"}
	}
	if c.Message, err = str(m, "message", 0); err != nil {
		return c, err
	}
	if l.MaxText > 0 && c.Message.Set && len(c.Message.V) > l.MaxText && utf8.RuneCountInString(c.Message.V) > l.MaxText {
		return c, &PayloadError{Code: CodeTooLarge, Field: "message", Reason: "is too long"}
	}
	if c.Image, err = str(m, "image", l.MaxImage); err != nil {
		return c, err
	}
	if c.Name, err = str(m, "name", l.MaxField); err != nil {
		return c, err
	}
	if c.MimeType, err = str(m, "mimeType", l.MaxField); err != nil {
		return c, err
	}
	switch {
	case c.Type == KindImage && !c.Image.Set:
		return c, &PayloadError{Code: CodeInvalidPayload, Field: "image", Reason: "is required for an image message"}
	case c.Image.Set:
		if err := validateImage(c.Image.V, c.MimeType, l.ImageTypes); err != nil {
			return c, err
		}
	case c.Type == KindText && !c.Message.Set:
		return c, &PayloadError{Code: CodeInvalidPayload, Field: "message", Reason: "is required for a text message"}
	}
	return c, nil
}

func target(m map[string]any, l *Limits) (string, error) {
	to, err := str(m, "to", l.MaxField)
	if err != nil {
		return "", err
	}
	if to.V == "" {
		return "", &PayloadError{Code: CodeInvalidPayload, Field: "to", Reason: "is required"}
	}
	return to.V, nil
}

func object(v any) (map[string]any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, &PayloadError{Code: CodeInvalidPayload, Reason: "payload must be an object"}
	}
	return m, nil
}

// str reads an optional string; null counts as absent.
func str(m map[string]any, key string, max int) (Str, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return Str{}, nil
	}
	s, ok := v.(string)
	if !ok {
		return Str{}, &PayloadError{Code: CodeInvalidType, Field: key, Reason: "must be a string"}
	}
	if max > 0 && len(s) > max && utf8.RuneCountInString(s) > max {
		return Str{}, &PayloadError{Code: CodeTooLarge, Field: key, Reason: "is too long"}
	}
	return S(s), nil
}

// num reads an optional number.
func num(m map[string]any, key string) (Num, error) {
	v, ok := m[key]
	if !ok || v == nil {
		return Num{}, nil
	}
	f, ok := v.(float64)
	if !ok {
		return Num{}, &PayloadError{Code: CodeInvalidType, Field: key, Reason: "must be a number"}
	}
	return N(f), nil
}

// id reads an optional number-or-string identifier.
func id(m map[string]any, key string, max int) (ID, error) {
	switch v := m[key].(type) {
	case nil:
		return ID{}, nil
	case float64:
		return ID{Num: v, Kind: IDNumber}, nil
	case string:
		if max > 0 && len(v) > max {
			return ID{}, &PayloadError{Code: CodeTooLarge, Field: key, Reason: "is too long"}
		}
		return ID{Str: v, Kind: IDString}, nil
	}
	return ID{}, &PayloadError{Code: CodeInvalidType, Field: key, Reason: "must be a number or a string"}
}

// boolean reads a required boolean.
func boolean(m map[string]any, key string) (bool, error) {
	b, ok := m[key].(bool)
	if !ok {
		return false, &PayloadError{Code: CodeInvalidType, Field: key, Reason: "must be a boolean"}
	}
	return b, nil
}
