package ws

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
)

// Handler receives one connection's messages and its end. Its methods are
// called from a poller goroutine (Message) or from whichever goroutine
// ends the connection (Closed); neither may block.
type Handler interface {
	// Message is one whole message; data is valid only during the call.
	Message(c *Conn, text bool, data []byte)
	// Closed is called once, after the connection is gone; err says why.
	Closed(c *Conn, err error)
}

// Options tune a Server.
type Options struct {
	// MaxMessage is the largest message accepted, in bytes; a larger one
	// closes the connection with 1009 (message too big).
	MaxMessage int
	// MaxPending is how many unsent bytes a connection may hold before
	// WriteText refuses with ErrSlow (0: no limit).
	MaxPending int
	// WriteWindow is how long written frames may wait to leave together
	// (0: each write goes out at once).
	WriteWindow time.Duration
	// Pollers is the number of epoll loops (default 1).
	Pollers int
}

// Errors a connection ends with or a write returns.
var (
	ErrClosed        = errors.New("websocket closed")
	ErrSlow          = errors.New("websocket: too many unsent bytes")
	ErrServerClosed  = errors.New("websocket server closed")
	errProtocol      = errors.New("websocket: protocol error")
	errTooBig        = errors.New("websocket: message too big")
	errInvalidUTF8   = errors.New("websocket: invalid UTF-8 in a text message")
	errCloseReceived = errors.New("websocket: closed by peer")
	errLinger        = errors.New("websocket: peer did not close in time")
)

// Close codes (RFC 6455 7.4.1).
const (
	CloseNormal     = 1000
	CloseGoingAway  = 1001
	CloseProtocol   = 1002
	CloseInvalid    = 1007
	CloseTooBig     = 1009
	closeNoStatus   = 1005
	lingerTimeout   = 2 * time.Second
	maxControl      = 125
	opContinuation  = 0x0
	opText          = 0x1
	opBinary        = 0x2
	opClose         = 0x8
	opPing          = 0x9
	opPong          = 0xA
	finBit          = 0x80
	outBufferPooled = 64 << 10
)

const (
	stateOpen int32 = iota
	stateClosing
	stateClosed
)

// Upgrade answers a websocket handshake, takes the connection over from
// the HTTP server and starts watching it; the Handler that newHandler
// returns gets its messages (newHandler may already write). A request
// that is not a valid handshake is answered 400 here.
func (s *Server) Upgrade(w http.ResponseWriter, r *http.Request, newHandler func(*Conn) Handler) (*Conn, error) {
	accept, err := checkHandshake(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return nil, err
	}
	if s.closed.Load() {
		http.Error(w, "server closing", http.StatusServiceUnavailable)
		return nil, ErrServerClosed
	}
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, fmt.Errorf("websocket hijack: %w", err)
	}
	c, err := s.adopt(nc, brw, accept, newHandler)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	return c, nil
}

func (s *Server) adopt(nc net.Conn, brw *bufio.ReadWriter, accept string, newHandler func(*Conn) Handler) (*Conn, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, errors.New("websocket: connection has no file descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("websocket: %w", err)
	}
	_ = nc.SetDeadline(time.Time{})
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n"
	if _, err := io.WriteString(nc, resp); err != nil {
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	c := &Conn{srv: s, nc: nc, rc: rc}
	c.h = newHandler(c)
	if n := brw.Reader.Buffered(); n > 0 {
		// Bytes the client sent right behind its handshake.
		early, _ := brw.Reader.Peek(n)
		c.consume(early)
		if c.state.Load() == stateClosed {
			return nil, ErrClosed // its descriptor is closed: never register it
		}
	}
	if err := s.register(c); err != nil {
		c.finish(err)
		return nil, err
	}
	return c, nil
}

// Conn is one websocket connection.
type Conn struct {
	srv *Server
	p   *poller
	nc  net.Conn
	rc  syscall.RawConn
	fd  int
	h   Handler

	// Read side: touched only by the goroutine reading (the poller).
	in     []byte // bytes of an incomplete frame
	frag   []byte // the fragments of an unfinished message
	fragOp byte

	state atomic.Int32

	mu      sync.Mutex
	out     []byte // frames, written up to off
	off     int
	queued  bool // waiting for the poller's flusher
	waiting bool // waiting for the socket to be writable
	linger  *time.Timer
	why     error // why the server closed it
}

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// Pending is the number of bytes written and not yet sent.
func (c *Conn) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.out) - c.off
}

// WriteText queues one text message, prefix followed by payload. It never
// blocks on the network: past the pending-bytes limit it returns ErrSlow
// and queues nothing.
func (c *Conn) WriteText(prefix string, payload []byte) error {
	return c.write(opText, prefix, payload)
}

func (c *Conn) write(op byte, prefix string, payload []byte) error {
	n := len(prefix) + len(payload)
	c.mu.Lock()
	if c.state.Load() != stateOpen {
		c.mu.Unlock()
		return ErrClosed
	}
	if max := c.srv.opts.MaxPending; max > 0 && len(c.out)-c.off+n > max {
		c.mu.Unlock()
		return ErrSlow
	}
	if c.out == nil {
		c.out = getBuffer(n + 10)
	}
	c.out = appendHeader(c.out, op, n)
	c.out = append(c.out, prefix...)
	c.out = append(c.out, payload...)
	if c.waiting {
		c.mu.Unlock() // the poller sends it once the socket drains
		return nil
	}
	if c.srv.opts.WriteWindow <= 0 || c.p == nil {
		err := c.flushLocked()
		c.mu.Unlock()
		if err != nil {
			c.finish(err)
		}
		return nil
	}
	if c.queued {
		c.mu.Unlock()
		return nil
	}
	c.queued = true
	c.mu.Unlock()
	c.p.enqueue(c)
	return nil
}

// Close ends the connection from the server's side: what is queued is
// sent, then a close frame with code; the connection is released when the
// peer answers or after a short wait.
func (c *Conn) Close(code int, why error) {
	c.mu.Lock()
	if !c.state.CompareAndSwap(stateOpen, stateClosing) {
		c.mu.Unlock()
		return
	}
	c.why = why
	if c.out == nil {
		c.out = getBuffer(4)
	}
	c.out = appendClose(c.out, code)
	err := c.flushLocked()
	if err == nil && len(c.out) > c.off {
		err = ErrSlow // cannot even send the close frame: do not wait on it
	}
	if err == nil {
		if tc, ok := c.nc.(interface{ CloseWrite() error }); ok {
			_ = tc.CloseWrite()
		}
		c.linger = time.AfterFunc(lingerTimeout, func() { c.finish(errLinger) })
	}
	c.mu.Unlock()
	if err != nil {
		c.finish(why)
	}
}

// finish releases the connection and tells the handler, once.
func (c *Conn) finish(err error) {
	c.mu.Lock()
	if c.state.Swap(stateClosed) == stateClosed {
		c.mu.Unlock()
		return
	}
	if c.why != nil {
		err = c.why
	}
	if c.linger != nil {
		c.linger.Stop()
	}
	putBuffer(c.out)
	c.out, c.off = nil, 0
	p := c.p
	c.mu.Unlock()
	if p != nil {
		p.remove(c)
	}
	_ = c.nc.Close()
	c.h.Closed(c, err)
}

// flushLocked writes what is queued without blocking; what the socket
// does not take waits for it to drain. c.mu is held.
func (c *Conn) flushLocked() error {
	if len(c.out) == c.off {
		return nil
	}
	var n int
	var werr error
	err := c.rc.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), c.out[c.off:])
		return true
	})
	if err == nil && werr != nil && werr != syscall.EAGAIN && werr != syscall.EINTR {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("websocket write: %w", err)
	}
	c.off += max(n, 0)
	if c.off == len(c.out) {
		putBuffer(c.out)
		c.out, c.off = nil, 0
		if c.waiting {
			c.waiting = false
			return c.p.watch(c, false)
		}
		return nil
	}
	if c.off > len(c.out)/2 {
		// Reclaim the written half, rather than move the rest on every
		// partial write of a large frame.
		c.out = c.out[:copy(c.out, c.out[c.off:])]
		c.off = 0
	}
	if !c.waiting && c.p != nil {
		c.waiting = true
		return c.p.watch(c, true)
	}
	return nil
}

// flushQueued is the flusher's turn at this connection.
func (c *Conn) flushQueued() {
	c.mu.Lock()
	c.queued = false
	var err error
	if c.state.Load() != stateClosed && !c.waiting {
		err = c.flushLocked()
	}
	c.mu.Unlock()
	if err != nil {
		c.finish(err)
	}
}

// writable is the poller's news that a full socket drained.
func (c *Conn) writable() {
	c.mu.Lock()
	var err error
	if c.state.Load() != stateClosed {
		err = c.flushLocked()
	}
	c.mu.Unlock()
	if err != nil {
		c.finish(err)
	}
}

// readable reads what has arrived into buf (the poller's) and handles it.
func (c *Conn) readable(buf []byte) {
	if c.state.Load() == stateClosed {
		return
	}
	var n int
	var rerr error
	err := c.rc.Read(func(fd uintptr) bool {
		n, rerr = syscall.Read(int(fd), buf)
		return true
	})
	switch {
	case err != nil:
		c.finish(err)
	case rerr == syscall.EAGAIN || rerr == syscall.EINTR:
	case rerr != nil:
		c.finish(rerr)
	case n == 0:
		c.finish(io.EOF)
	default:
		c.consume(buf[:n])
	}
}

// consume parses frames out of data, keeping an incomplete one for later.
func (c *Conn) consume(data []byte) {
	buffered := len(c.in) > 0
	if buffered {
		c.in = append(c.in, data...)
		data = c.in
	}
	for len(data) > 0 {
		size, hdr, err := c.frameSize(data)
		if err != nil {
			c.fail(err)
			return
		}
		if size < 0 || len(data) < size {
			c.keep(data, size, buffered)
			return
		}
		if !c.frame(data[:hdr], data[hdr:size]) {
			return
		}
		data = data[size:]
	}
	c.keep(nil, 0, buffered)
}

// keep saves the bytes of an incomplete frame (rest, a suffix of c.in when
// buffered), with room for the whole frame once its size is known.
func (c *Conn) keep(rest []byte, size int, buffered bool) {
	switch {
	case len(rest) == 0:
		if cap(c.in) > outBufferPooled {
			c.in = nil
		} else {
			c.in = c.in[:0]
		}
		return
	case buffered:
		c.in = c.in[:copy(c.in, rest)]
	default:
		c.in = append(c.in[:0], rest...)
	}
	if size > cap(c.in) {
		grown := make([]byte, len(c.in), size)
		copy(grown, c.in)
		c.in = grown
	}
}

// frameSize reads a frame header: the whole frame's size and the header's,
// or size -1 when the header itself is incomplete.
func (c *Conn) frameSize(d []byte) (size, hdr int, err error) {
	if len(d) < 2 {
		return -1, 0, nil
	}
	if d[1]&0x80 == 0 {
		return 0, 0, fmt.Errorf("%w: unmasked client frame", errProtocol)
	}
	hdr = 2
	n := uint64(d[1] & 0x7f)
	switch n {
	case 126:
		if len(d) < 4 {
			return -1, 0, nil
		}
		n, hdr = uint64(binary.BigEndian.Uint16(d[2:])), 4
	case 127:
		if len(d) < 10 {
			return -1, 0, nil
		}
		n, hdr = binary.BigEndian.Uint64(d[2:]), 10
	}
	hdr += 4 // mask key
	if n > uint64(c.srv.opts.MaxMessage-len(c.frag)) {
		return 0, 0, errTooBig
	}
	return hdr + int(n), hdr, nil
}

// frame handles one complete frame; false once the connection is ending.
func (c *Conn) frame(hdr, payload []byte) bool {
	b0 := hdr[0]
	fin, op := b0&finBit != 0, b0&0x0f
	if b0&0x70 != 0 {
		c.fail(fmt.Errorf("%w: reserved bits set (no extension was agreed)", errProtocol))
		return false
	}
	unmask(payload, hdr[len(hdr)-4:])
	if op >= opClose {
		if !fin || len(payload) > maxControl {
			c.fail(fmt.Errorf("%w: bad control frame", errProtocol))
			return false
		}
		switch op {
		case opClose:
			c.closeReceived(payload)
			return false
		case opPing:
			_ = c.write(opPong, "", payload)
		case opPong:
		default:
			c.fail(fmt.Errorf("%w: unknown opcode %d", errProtocol, op))
			return false
		}
		return true
	}
	switch {
	case op == opContinuation && c.frag == nil:
		c.fail(fmt.Errorf("%w: continuation without a message", errProtocol))
		return false
	case op != opContinuation && c.frag != nil:
		c.fail(fmt.Errorf("%w: new message inside a fragmented one", errProtocol))
		return false
	case op != opContinuation && op != opText && op != opBinary:
		c.fail(fmt.Errorf("%w: unknown opcode %d", errProtocol, op))
		return false
	}
	if !fin {
		if c.frag == nil {
			c.fragOp = op
			c.frag = make([]byte, 0, len(payload))
		}
		c.frag = append(c.frag, payload...)
		return true
	}
	if op == opContinuation {
		op = c.fragOp
		payload = append(c.frag, payload...)
		c.frag = nil
	}
	if op == opText && !utf8.Valid(payload) {
		c.fail(errInvalidUTF8)
		return false
	}
	if c.state.Load() != stateOpen {
		return true // closing: what still arrives is dropped
	}
	c.h.Message(c, op == opText, payload)
	return c.state.Load() != stateClosed
}

// closeReceived answers the peer's close frame and ends the connection.
func (c *Conn) closeReceived(payload []byte) {
	if c.state.Load() == stateOpen {
		code := closeNoStatus
		if len(payload) >= 2 {
			code = int(binary.BigEndian.Uint16(payload))
		}
		c.mu.Lock()
		if c.state.CompareAndSwap(stateOpen, stateClosing) {
			c.out = appendClose(c.out, code)
			_ = c.flushLocked()
		}
		c.mu.Unlock()
	}
	c.finish(errCloseReceived)
}

// fail ends the connection for a protocol violation, telling the peer why.
func (c *Conn) fail(err error) {
	code := CloseProtocol
	switch {
	case errors.Is(err, errTooBig):
		code = CloseTooBig
	case errors.Is(err, errInvalidUTF8):
		code = CloseInvalid
	}
	c.in, c.frag = nil, nil
	c.Close(code, err)
	c.finish(err)
}

// IsPeerClose tells whether err is the peer closing normally.
func IsPeerClose(err error) bool {
	return errors.Is(err, errCloseReceived) || errors.Is(err, io.EOF)
}

func appendHeader(b []byte, op byte, n int) []byte {
	switch {
	case n <= 125:
		return append(b, finBit|op, byte(n))
	case n <= 0xffff:
		return append(b, finBit|op, 126, byte(n>>8), byte(n))
	default:
		b = append(b, finBit|op, 127)
		return binary.BigEndian.AppendUint64(b, uint64(n))
	}
}

// appendClose appends a close frame with code, or with no body for
// closeNoStatus, which must not be sent on the wire.
func appendClose(b []byte, code int) []byte {
	if code == closeNoStatus {
		return appendHeader(b, opClose, 0)
	}
	return binary.BigEndian.AppendUint16(appendHeader(b, opClose, 2), uint16(code))
}

// unmask XORs p with the 4-byte key, eight bytes at a time.
func unmask(p, key []byte) {
	k := binary.LittleEndian.Uint32(key)
	k8 := uint64(k) | uint64(k)<<32
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])^k8)
	}
	for ; i < len(p); i++ {
		p[i] ^= key[i&3]
	}
}

var buffers = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func getBuffer(n int) []byte {
	if n > outBufferPooled {
		return make([]byte, 0, n)
	}
	return (*buffers.Get().(*[]byte))[:0]
}

func putBuffer(b []byte) {
	if b == nil || cap(b) > outBufferPooled {
		return
	}
	b = b[:0]
	buffers.Put(&b)
}
