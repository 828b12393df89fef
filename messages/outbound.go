package messages

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"time"
	"unsafe"
)

// The events that Switchboard emits, with the contract's payloads.

// NewChat tells operators about a joined client.
type NewChat struct {
	ClientID string `json:"clientId"`
	Username Str    `json:"username,omitzero"`
	Phone    Str    `json:"phone,omitzero"`
}

// IncomingMessage is a client's message as operators receive it.
type IncomingMessage struct {
	From string `json:"from"`
	Content
	Size      Num    `json:"size,omitzero"`
	Timestamp string `json:"timestamp"`
}

// OperatorMessageOut is an operator's message as its client receives it
// (without `size`, as the contract says).
type OperatorMessageOut struct {
	Content
	OperatorName Str    `json:"operatorName,omitzero"`
	Timestamp    string `json:"timestamp"`
}

// OperatorBroadcast is an operator's message as the other operators see it.
type OperatorBroadcast struct {
	ClientID     string `json:"clientId"`
	OperatorID   ID     `json:"operatorId,omitzero"`
	OperatorName Str    `json:"operatorName,omitzero"`
	Content
	Timestamp string `json:"timestamp"`
}

// ClientTypingOut is a client's typing indicator as operators see it.
type ClientTypingOut struct {
	From     string `json:"from"`
	IsTyping bool   `json:"isTyping"`
}

// OperatorTypingOut is an operator's typing indicator as its client sees it.
type OperatorTypingOut struct {
	IsTyping bool `json:"isTyping"`
}

// ChatEnded tells operators that a chat ended, or a client that an
// operator ended it (then only Message is set).
type ChatEnded struct {
	ClientID string `json:"clientId,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Message  string `json:"message,omitempty"`
}

// ChatError answers a refused event, to its sender only.
type ChatError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Event   string `json:"event"`
}

// AckReply is what an acknowledgement carries: {ok:true, id, timestamp}
// for an accepted event, {ok:false, error:{code, message}} for a refused one.
// Queued and Away are additive: set only when the message was accepted but
// not yet delivered (no operator online; the player's transport is down
// and the message waits for its return).
type AckReply struct {
	OK        bool   `json:"ok"`
	ID        string `json:"id,omitempty"`
	Timestamp string `json:"timestamp,omitempty"`
	Queued    bool   `json:"queued,omitempty"`
	Away      bool   `json:"away,omitempty"`
	// ClientID and ResumeToken answer a player's join with recovery on: a
	// page reloaded within the recovery window that connects with
	// auth {resumeToken} gets the same clientId back.
	ClientID    string    `json:"clientId,omitempty"`
	ResumeToken string    `json:"resumeToken,omitempty"`
	Error       *AckError `json:"error,omitempty"`
}

// ChatPresence tells operators that a client's transport dropped (chatAway)
// or came back (chatBack) within the recovery window. Additive: CRMs that do
// not know these events ignore them.
type ChatPresence struct {
	ClientID string `json:"clientId"`
}

// AckError says why an event was refused.
type AckError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// EndedByOperatorText is what a client is told when an operator ends its chat.
const EndedByOperatorText = "El operador ha finalizado la conversación"

// ReasonDisconnect is chatEnded's reason when the client's socket went away.
const ReasonDisconnect = "disconnect"

// Event names that Switchboard emits.
const (
	EventNewChat           = "newChat"
	EventIncomingMessage   = "incomingMessage"
	EventOperatorMessage   = "operatorMessage"
	EventOperatorBroadcast = "operatorBroadcast"
	EventClientTyping      = "clientTyping"
	EventOperatorTyping    = "operatorTyping"
	EventChatEnded         = "chatEnded"
	EventChatError         = "chatError"
	EventChatAway          = "chatAway"
	EventChatBack          = "chatBack"
)

// Volatile tells whether an event is never replayed to a recovering socket
// and so carries no offset: a typing indicator or an error answer is stale
// once the moment has passed.
func Volatile(event string) bool {
	switch event {
	case EventClientTyping, EventOperatorTyping, EventChatError:
		return true
	}
	return false
}

// Frame is one Socket.IO event packet, encoded once and written unchanged
// to every socket that receives it. It is never modified after creation.
type Frame struct {
	Event string
	// At is when the event that caused this frame was received (zero for
	// frames that no event caused): delivery latency is measured from it.
	At time.Time
	// Packet is the Socket.IO packet text: `2["event",{...}]`, or with
	// connection-state recovery `2["event",{...},"offset"]`.
	Packet []byte
	// Offset is the frame's position id for recovery (empty: volatile, or
	// recovery off). The same for every socket that receives the frame, as
	// in Socket.IO, so the frame is still encoded once.
	Offset string
}

// EncodeFrame encodes an event with one payload as a Socket.IO EVENT packet.
// Strings are written as JavaScript's JSON.stringify writes them (no HTML
// escaping), which every Socket.IO client decodes.
func EncodeFrame(event string, payload any) (*Frame, error) {
	return EncodeFrameOffset(event, payload, "")
}

// EncodeFrameOffset is EncodeFrame with the recovery offset as the last
// argument, as socket.io-client 4.6+ reads it; offset "" adds none.
//
// With recovery on, every frame lives in the replay logs of the sessions
// it went to until a heartbeat confirms it (up to a ping interval, 25 s):
// at 5,000 msg/s that is a hundred thousand frames or more, and their
// size and number of objects are the collector's work on every cycle.
// So the packet is encoded in a reused scratch buffer and kept in one
// allocation of its exact size (a growing bytes.Buffer kept about twice
// the bytes, in two or three allocations), and the offset is read from
// the packet's own bytes rather than kept as one more object.
func EncodeFrameOffset(event string, payload any, offset string) (*Frame, error) {
	buf := scratch.Get().(*bytes.Buffer)
	defer putScratch(buf)
	buf.Reset()
	buf.WriteString(`2[`)
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(event); err != nil {
		return nil, fmt.Errorf("encode %s: %w", event, err)
	}
	buf.Truncate(buf.Len() - 1) // Encode's newline
	buf.WriteByte(',')
	if err := enc.Encode(payload); err != nil {
		return nil, fmt.Errorf("encode %s: %w", event, err)
	}
	buf.Truncate(buf.Len() - 1)
	if offset != "" {
		// Offsets are made of URL-safe characters: no escaping needed.
		buf.WriteString(`,"`)
		buf.WriteString(offset)
		buf.WriteByte('"')
	}
	buf.WriteByte(']')
	packet := bytes.Clone(buf.Bytes())
	f := &Frame{Event: event, Packet: packet}
	if offset != "" {
		// The packet is never modified (see Frame), so a string over its
		// bytes is as immutable as any.
		f.Offset = unsafe.String(&packet[len(packet)-len(offset)-2], len(offset))
	}
	return f, nil
}

// scratch holds encoding buffers between frames.
var scratch = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// putScratch returns a buffer to scratch, unless an image made it large.
func putScratch(b *bytes.Buffer) {
	if b.Cap() <= 64<<10 {
		scratch.Put(b)
	}
}

// PacketWithoutOffset is the packet as a client that cannot recover gets
// it (Engine.IO 3 clients, the library's sockets): without the offset. It
// allocates only when the frame has one.
func (f *Frame) PacketWithoutOffset() []byte {
	if f.Offset == "" {
		return f.Packet
	}
	n := len(f.Packet) - len(f.Offset) - 4 // `,"` offset `"]`
	out := make([]byte, n+1)
	copy(out, f.Packet[:n])
	out[n] = ']'
	return out
}

// MustFrameAt is MustFrame for a frame caused by an event received at `at`.
func MustFrameAt(event string, payload any, at time.Time) *Frame {
	f := MustFrame(event, payload)
	f.At = at
	return f
}

// MustFrame is EncodeFrame for payloads that cannot fail to encode (every
// type in this file): a failure is a programming error.
func MustFrame(event string, payload any) *Frame {
	f, err := EncodeFrame(event, payload)
	if err != nil {
		panic(err)
	}
	return f
}
