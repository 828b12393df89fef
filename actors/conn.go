// Package actors holds Switchboard's state: one session actor per socket,
// one router actor that owns presence and fan-out, and the hub that
// supervises them. Nothing here touches a network; sockets are reached
// through the Conn that the transport provides.
package actors

import "github.com/switchboard/switchboard/messages"

// Conn is a session's socket as the transport provides it. Its methods are
// called only from the session actor that owns it.
type Conn interface {
	// ID is the Socket.IO socket id: the participant's identity.
	ID() string
	// Write queues a frame for the socket; it must not block on the network.
	Write(f *messages.Frame)
	// Close disconnects the socket, logging reason; closing twice is harmless.
	Close(reason string)
}
