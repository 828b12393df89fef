package transport

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/switchboard/switchboard/messages"
	"github.com/switchboard/switchboard/metrics"
	"github.com/zishang520/socket.io/parsers/engine/v3/packet"
	"github.com/zishang520/socket.io/servers/engine/v3/transports"
	"github.com/zishang520/socket.io/servers/socket/v3"
	"github.com/zishang520/socket.io/v3/pkg/types"
)

// noWriteOptions is shared by every write: the engine copies what it keeps.
var noWriteOptions = &packet.Options{}

// socketConn is a Socket.IO socket as a session actor sees it.
type socketConn struct {
	sock   *socket.Socket
	id     string
	addr   string
	log    *slog.Logger
	closed atomic.Bool
	// pending counts bytes handed to the engine and not yet written to
	// the network; past maxPending the socket is a slow consumer. The
	// engine's own queues are unbounded, so this is what bounds memory.
	pending    atomic.Int64
	maxPending int64
	met        *metrics.Metrics
}

func (c *socketConn) ID() string { return c.id }

// Write hands the frame's bytes to the engine, which queues them per
// transport; the frame itself is shared and never modified. A socket whose
// unsent bytes would pass the limit is disconnected instead: it has stopped
// reading, and must not hold memory or anyone else up.
func (c *socketConn) Write(f *messages.Frame) {
	n := int64(len(f.Packet))
	if c.maxPending > 0 && c.pending.Load()+n > c.maxPending {
		if !c.closed.Load() {
			c.met.Refused("write", messages.CodeSlowConsumer)
		}
		c.Close(fmt.Sprintf("slow consumer: %d bytes unsent", c.pending.Load()))
		return
	}
	c.pending.Add(n)
	c.sock.Conn().Write(types.NewStringBuffer(f.PacketWithoutOffset()), noWriteOptions, func(transports.Transport) { c.pending.Add(-n) })
}

// Recoverable is false: the library writes CONNECT itself, without the
// private id a client needs to recover, and Engine.IO 3 clients cannot.
func (c *socketConn) Recoverable() bool { return false }

// Confirmed is 0: the library's sockets are not recovered.
func (c *socketConn) Confirmed() uint64 { return 0 }

// Abandon closes the socket; the library's sockets are never replaced.
func (c *socketConn) Abandon() { c.Close("abandoned") }

// Close disconnects the socket and its underlying connection.
func (c *socketConn) Close(reason string) { c.end(reason, false) }

// end closes the socket, once; false if it was closed already. With
// discard (the memory guard) its unsent output is dropped instead of
// drained: the library's own disconnect keeps a polling session's queue
// until the client polls. The discarding close runs on its own goroutine:
// on a websocket whose peer stopped reading it waits for the library's
// write in progress, which has no deadline.
func (c *socketConn) end(reason string, discard bool) bool {
	if c.closed.Swap(true) {
		return false
	}
	c.log.Info("closing socket", "socket", c.id, "reason", reason)
	if discard {
		go c.sock.Conn().Close(true)
	} else {
		c.sock.Disconnect(true)
	}
	return true
}

// librarySockets are the library's sockets, for the memory guard: what
// each holds is its unsent output (socketConn.pending).
type librarySockets struct {
	mu sync.Mutex
	m  map[*socketConn]struct{}
}

func (l *librarySockets) add(c *socketConn) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[*socketConn]struct{})
	}
	l.m[c] = struct{}{}
	l.mu.Unlock()
}

func (l *librarySockets) remove(c *socketConn) {
	l.mu.Lock()
	delete(l.m, c)
	l.mu.Unlock()
}

// each calls fn for every socket, outside the lock (fn may close it).
func (l *librarySockets) each(fn func(*socketConn)) {
	l.mu.Lock()
	all := make([]*socketConn, 0, len(l.m))
	for c := range l.m {
		all = append(all, c)
	}
	l.mu.Unlock()
	for _, c := range all {
		fn(c)
	}
}
