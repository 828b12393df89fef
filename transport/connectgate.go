package transport

import (
	"sync"
	"time"

	"github.com/zishang520/socket.io/servers/engine/v3"
	"github.com/zishang520/socket.io/servers/socket/v3"
)

// The Socket.IO library answers a client's CONNECT on the socket's task
// goroutine and registers the socket with its connection only afterwards,
// while the connection's reader goroutine goes on decoding. A client that
// emits the moment it is connected (the widget's `join`) can have its
// event judged "invalid state" in that gap, and its connection force-closed.
// connectGate closes the gap: after a CONNECT, the reader holds the
// connection's next packet until the library reports the socket connected.

// connectWait bounds the hold, for a CONNECT that is refused.
const connectWait = 5 * time.Second

type connectGate struct {
	// connected gets a token per completed CONNECT.
	connected chan struct{}
	// pending is touched only by the connection's reader goroutine.
	pending bool
}

// connectGates maps an Engine.IO connection id to its gate.
type connectGates struct{ m sync.Map }

// guard wraps a new engine connection's data listeners with a gate.
func (gs *connectGates) guard(args ...any) {
	conn, ok := args[0].(engine.Socket)
	if !ok {
		return
	}
	// Engine.IO 3 clients are connected to "/" without a CONNECT packet.
	g := &connectGate{connected: make(chan struct{}, 4), pending: conn.Protocol() == 3}
	gs.m.Store(conn.Id(), g)
	listeners := conn.Listeners("data")
	conn.RemoveAllListeners("data")
	_ = conn.On("data", func(data ...any) {
		if len(data) > 0 {
			g.hold(data[0])
		}
		for _, l := range listeners {
			l(data...)
		}
	})
	_ = conn.Once("close", func(...any) { gs.m.Delete(conn.Id()) })
}

// connected releases the reader of the socket's connection.
func (gs *connectGates) connected(args ...any) {
	sock, ok := args[0].(*socket.Socket)
	if !ok {
		return
	}
	if g, ok := gs.m.Load(sock.Conn().Id()); ok {
		select {
		case g.(*connectGate).connected <- struct{}{}:
		default:
		}
	}
}

func (g *connectGate) hold(data any) {
	if packetType(data) == '0' { // CONNECT: the next packet must wait for it
		g.pending = true
		return
	}
	if g.pending {
		g.pending = false
		select {
		case <-g.connected:
		case <-time.After(connectWait):
		}
	}
}

// packetType is a Socket.IO packet's first byte, without consuming it.
func packetType(data any) byte {
	switch d := data.(type) {
	case string:
		if len(d) > 0 {
			return d[0]
		}
	case interface{ Bytes() []byte }:
		if b := d.Bytes(); len(b) > 0 {
			return b[0]
		}
	}
	return 0
}
