package transport

import (
	"log/slog"
	"sync/atomic"

	"github.com/switchboard/switchboard/messages"
	"github.com/zishang520/socket.io/servers/socket/v3"
	"github.com/zishang520/socket.io/v3/pkg/types"
)

// noWriteOptions is shared by every write: the engine copies what it keeps.
var noWriteOptions = &socket.WriteOptions{}

// socketConn is a Socket.IO socket as a session actor sees it.
type socketConn struct {
	sock   *socket.Socket
	id     string
	log    *slog.Logger
	closed atomic.Bool
}

func (c *socketConn) ID() string { return c.id }

// Write hands the frame's bytes to the engine, which buffers them per
// transport; the frame itself is shared and never modified.
func (c *socketConn) Write(f *messages.Frame) {
	c.sock.Client().WriteToEngine([]types.BufferInterface{types.NewStringBuffer(f.Packet)}, noWriteOptions)
}

// Close disconnects the socket and its underlying connection.
func (c *socketConn) Close(reason string) {
	if c.closed.Swap(true) {
		return
	}
	c.log.Info("closing socket", "socket", c.id, "reason", reason)
	c.sock.Disconnect(true)
}
