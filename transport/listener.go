package transport

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// A connection counts against its address from its first byte, before
// net/http has read a request line: addrListener counts the TCP
// connections open per peer address and closes those past the cap at
// accept, so that one address cannot hold hundreds of connections that
// are still sending their headers (slowloris) or were never used.
//
// This count is separate from the gate's (actors/gate.go), which counts
// Engine.IO connections from their handshake: a polling session may hold
// two TCP connections at once (its long-poll and a POST), and an
// upgrading socket its polling connections beside its websocket, so the
// TCP cap is twice the connection cap (tcpCapFactor). Behind a trusted
// proxy every connection comes from the proxy, and only the gate, which
// reads X-Forwarded-For, can tell clients apart: no TCP cap then.

// tcpCapFactor is how many TCP connections an address may hold per
// connection the gate allows it.
const tcpCapFactor = 2

// tcpRefusal is written to a connection refused at accept, best effort:
// a client reads why before the connection closes.
const tcpRefusal = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json; charset=utf-8\r\n" +
	"Retry-After: 1\r\nConnection: close\r\nContent-Length: 75\r\n\r\n" +
	`{"code":"rate_limited","message":"too many connections from this address"}` + "\n"

type addrListener struct {
	net.Listener
	max       int
	loopback  bool // loopback addresses are counted too
	onRefused func(addr string)

	mu   sync.Mutex
	open map[string]int
}

// limitListener wraps ln with the per-address TCP cap, or returns it as
// it is when there is none.
func (s *Server) limitListener(ln net.Listener) net.Listener {
	if s.cfg.IPMaxConnections <= 0 || s.cfg.TrustProxy {
		return ln
	}
	return &addrListener{
		Listener: ln,
		max:      tcpCapFactor * s.cfg.IPMaxConnections,
		loopback: s.cfg.IPLimitLoopback,
		open:     map[string]int{},
		onRefused: func(addr string) {
			s.met.Refused("connection", "rate_limited")
			s.log.Debug("connection refused: too many from its address", "remote", addr)
		},
	}
}

func (l *addrListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr := hostOf(c.RemoteAddr())
		if !l.loopback {
			if ip := net.ParseIP(addr); ip != nil && ip.IsLoopback() {
				return c, nil
			}
		}
		l.mu.Lock()
		if l.open[addr] >= l.max {
			l.mu.Unlock()
			l.refuse(c, addr)
			continue
		}
		l.open[addr]++
		l.mu.Unlock()
		return &countedConn{Conn: c, l: l, addr: addr}, nil
	}
}

// refuse answers 429 on a fresh connection, whose send buffer is empty
// (the write cannot wait), and closes it.
func (l *addrListener) refuse(c net.Conn, addr string) {
	_ = c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	_, _ = c.Write([]byte(tcpRefusal))
	_ = c.Close()
	l.onRefused(addr)
}

func (l *addrListener) release(addr string) {
	l.mu.Lock()
	if n := l.open[addr] - 1; n > 0 {
		l.open[addr] = n
	} else {
		delete(l.open, addr) // no entry outlives its connections
	}
	l.mu.Unlock()
}

// countedConn gives its address's place back when it is closed, once,
// whoever closes it: net/http, the websocket server that hijacked it, or
// the parker holding a long-poll's connection. All of them close the
// descriptor through Close.
type countedConn struct {
	net.Conn
	l    *addrListener
	addr string
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.addr) })
	return err
}

// SyscallConn exposes the descriptor to the websocket server's and the
// parker's pollers, as the connection itself would.
func (c *countedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("connection has no file descriptor")
	}
	return sc.SyscallConn()
}

func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
