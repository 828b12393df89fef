// Package actors holds Switchboard's state: one session actor per socket,
// one router actor that owns presence and fan-out, and the hub that
// supervises them. Nothing here touches a network; sockets are reached
// through the Conn that the transport provides, and the transport reaches
// the actors only through System and Session.
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
	// Confirmed is how many of the frames written with Write the client is
	// known to have read (a heartbeat answered after them); 0 when the
	// transport cannot tell.
	Confirmed() uint64
	// Abandon drops a transport that a recovered socket replaced: closed
	// without a goodbye, and its close is not reported as the session's.
	Abandon()
}
