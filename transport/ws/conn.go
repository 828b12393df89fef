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

// A Screener is a Handler that judges a long text message from its first
// bytes, while the rest is still arriving: Screen returns false when it
// has dealt with the message (refused it), and the server then drops the
// rest as it comes instead of keeping it, and never calls Message for it.
// It runs on the poller, like Message.
type Screener interface {
	Screen(c *Conn, head []byte) bool
}

// A Pinger is a Handler that judges each websocket ping before it is
// answered: Ping returns false to leave it unanswered (the handler counts
// it, and may close the connection). Browsers never send pings; without a
// bound a peer could make the server answer millions a second. It runs on
// the poller, like Message.
type Pinger interface {
	Ping(c *Conn) bool
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
	// MaxBuffered bounds the bytes held, across all connections, for
	// frames and fragmented messages not yet whole (0: 256 MiB, about a
	// dozen 20 MB images arriving at once, and never less than MaxMessage;
	// negative: no limit). A connection whose next bytes would pass it is
	// closed with 1013 (try again later). Each connection holds at most
	// twice what it sent of its unfinished message (at least 4 KiB), and
	// never more than MaxMessage.
	MaxBuffered int
	// MessageTimeout is how long a message may take to arrive whole,
	// from its first byte to its last (0: 30 s, a 20 MB image at
	// 700 KB/s; negative: no limit). A connection that takes longer is
	// closed with 1008 (policy violation). Only connections with something
	// incomplete are watched, by their poller: an idle one costs nothing.
	MessageTimeout time.Duration
}

// Defaults for Options left at 0.
const (
	DefaultMaxMessage     = 1 << 20
	DefaultMaxBuffered    = 256 << 20
	DefaultMessageTimeout = 30 * time.Second
)

// withDefaults fills what o leaves at 0.
func (o Options) withDefaults() Options {
	if o.MaxMessage <= 0 {
		o.MaxMessage = DefaultMaxMessage
	}
	if o.MaxBuffered == 0 {
		o.MaxBuffered = max(DefaultMaxBuffered, o.MaxMessage)
	}
	if o.MessageTimeout == 0 {
		o.MessageTimeout = DefaultMessageTimeout
	}
	o.Pollers = max(o.Pollers, 1)
	return o
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
	errBusy          = errors.New("websocket: server buffer budget exhausted")
	errTimeout       = errors.New("websocket: message incomplete for too long")
)

// lingerBytes is how much a peer may still send after the server's close
// frame before the connection is dropped without waiting for its close: a
// flooder that reads nothing would otherwise be read (and its input
// parsed) for the whole linger.
const lingerBytes = 256 << 10

// Close codes (RFC 6455 7.4.1).
const (
	CloseNormal     = 1000
	CloseGoingAway  = 1001
	CloseProtocol   = 1002
	CloseInvalid    = 1007
	ClosePolicy     = 1008
	CloseTooBig     = 1009
	CloseTryAgain   = 1013
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
	// pongBacklog is how many unsent bytes a connection may have for a
	// ping still to be answered at once: past it only the latest ping is
	// remembered, and answered when the output drains (RFC 6455 5.5.3),
	// so pings from a peer that does not read cost nothing more.
	pongBacklog = 4 << 10
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
	c.rd.maxMessage, c.rd.budget = s.opts.MaxMessage, s.budget
	c.h = newHandler(c)
	// The reader is held until the connection is watched and its timeout
	// set, so the poller reads nothing before the bytes already here.
	c.rmu.Lock()
	if n := brw.Reader.Buffered(); n > 0 {
		// Bytes the client sent right behind its handshake.
		early, _ := brw.Reader.Peek(n)
		c.consume(early)
		if c.state.Load() == stateClosed {
			c.rd.release()
			c.rmu.Unlock()
			return nil, ErrClosed // its descriptor is closed: never register it
		}
	}
	if err := s.register(c); err != nil {
		c.rd.release()
		c.rmu.Unlock()
		c.finish(err)
		return nil, err
	}
	c.timeIncomplete()
	c.rmu.Unlock()
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

	// Read side: held by the goroutine reading (the poller, or Upgrade
	// for bytes that came with the handshake).
	rmu   sync.Mutex
	rd    frameReader
	timed bool   // the poller times what is incomplete
	epoch uint64 // rd.boundaries when the timing began

	// The poller's list of connections with something incomplete, oldest
	// first; guarded by the poller's mu.
	prev, next *Conn
	since      int64 // mono() when the incomplete part began
	listed     bool
	lingered   int // bytes read since the server's close frame; c.rmu

	// The poller's own, touched by its loop alone: bulk says the last read
	// filled what it was given (the peer has more than a round reads
	// lightly), turn is the poller's round in which it was last read in
	// bulk.
	bulk bool
	turn uint64

	state atomic.Int32

	mu      sync.Mutex
	out     []byte // frames, written up to off
	off     int
	queued  bool // waiting for the poller's flusher
	waiting bool // waiting for the socket to be writable
	linger  *time.Timer
	why     error  // why the server closed it
	pong    []byte // the latest ping's payload, to answer once out drains
	pongDue bool
}

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

// Pending is the number of bytes written and not yet sent.
func (c *Conn) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.out) - c.off
}

// Holding is the memory the connection holds for its peer: bytes of an
// unfinished message and bytes written and not yet sent. It may be called
// from any goroutine; the server's memory guard ranks connections by it.
func (c *Conn) Holding() int64 { return c.rd.holding.Load() + int64(c.Pending()) }

// Reserve takes n bytes from the server-wide budget of unfinished input
// (Options.MaxBuffered), for input held above the websocket layer (a
// Socket.IO binary event waiting for its attachments); false when they do
// not fit, and then nothing is taken.
func (s *Server) Reserve(n int) bool { return s.budget.take(n) }

// Release gives back bytes that Reserve took.
func (s *Server) Release(n int) { s.budget.give(n) }

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

// Shed closes the connection as Close does, and gives back at once what it
// holds of an unfinished message: for a server that must free memory now.
// What the peer still sends is parsed afresh and dropped.
func (c *Conn) Shed(code int, why error) {
	c.Close(code, why)
	if c.rmu.TryLock() { // else the reader is busy, and drops it as it closes
		c.rd.release()
		c.rmu.Unlock()
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
	if c.rmu.TryLock() {
		// Otherwise the reader is busy (maybe on this goroutine) and gives
		// its memory back when done: see read.
		c.rd.release()
		c.rmu.Unlock()
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
	if c.off == len(c.out) && c.pongDue {
		c.pongDue = false
		if c.state.Load() == stateOpen { // never after a close frame
			c.out = appendHeader(c.out[:0], opPong, len(c.pong))
			c.out, c.off = append(c.out, c.pong...), 0
			c.pong = nil
			return c.flushLocked()
		}
	}
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

// readable reads once what has arrived, at most len(buf) bytes (the
// poller decides how much: see poller.read), and handles it. It returns
// how many bytes it read.
func (c *Conn) readable(buf []byte) (n int) {
	c.read(func() {
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
			c.timeIncomplete()
			if c.state.Load() == stateClosing {
				if c.lingered += n; c.lingered > lingerBytes {
					c.finish(errLinger)
				}
			}
		}
	})
	return max(n, 0)
}

// read runs fn with the reader held; once the connection is closed the
// reader's memory goes back, here if finish could not take it.
func (c *Conn) read(fn func()) {
	c.rmu.Lock()
	if c.state.Load() != stateClosed {
		fn()
	}
	if c.state.Load() == stateClosed {
		c.rd.release()
	}
	c.rmu.Unlock()
}

// consume parses frames out of data, keeping an incomplete one for later.
// c.rmu is held.
func (c *Conn) consume(data []byte) {
	c.rd.discard = c.state.Load() != stateOpen
	if err := c.rd.feed(data, c); err != nil {
		c.fail(err)
	}
}

// timeIncomplete asks the poller to time what is incomplete, from when it
// began, or to stop. c.rmu is held.
func (c *Conn) timeIncomplete() {
	p := c.p // set before the connection was watched, and never again
	if p == nil || c.srv.opts.MessageTimeout < 0 {
		return
	}
	pending := c.rd.pending() && c.state.Load() != stateClosed
	switch {
	case pending && (!c.timed || c.epoch != c.rd.boundaries):
		c.timed, c.epoch = true, c.rd.boundaries
		p.track(c)
	case !pending && c.timed:
		c.timed = false
		p.untrack(c)
	}
}

// expire ends a connection whose message stayed incomplete too long; the
// poller calls it after taking c off its list.
func (c *Conn) expire() {
	c.read(func() {
		if !c.timed || !c.rd.pending() {
			return
		}
		c.timed = false
		c.fail(fmt.Errorf("%w (%v)", errTimeout, c.srv.opts.MessageTimeout))
	})
}

// Incoming is the size of the message being read as far as its frames
// have announced it: what has arrived and what its current frame still
// holds. Only for a Screener, during Screen (on the poller).
func (c *Conn) Incoming() int { return len(c.rd.msg) + c.rd.remaining }

// message is the reader's news of a whole message. c.rmu is held.
func (c *Conn) message(text bool, data []byte) bool {
	if c.state.Load() != stateOpen {
		return true // closing: what still arrives is dropped
	}
	c.h.Message(c, text, data)
	return c.state.Load() != stateClosed
}

// screen shows the handler the start of a long text message. c.rmu is held.
func (c *Conn) screen(head []byte) bool {
	if sc, ok := c.h.(Screener); ok && c.state.Load() == stateOpen {
		return sc.Screen(c, head)
	}
	return true
}

// control is the reader's news of a whole control frame. c.rmu is held.
func (c *Conn) control(op byte, payload []byte) bool {
	switch op {
	case opClose:
		c.closeReceived(payload)
		return false
	case opPing:
		if p, ok := c.h.(Pinger); !ok || p.Ping(c) {
			c.answerPing(payload)
		}
	}
	return c.state.Load() != stateClosed
}

// answerPing queues the pong, unless the peer is not reading what was
// already sent: then only this latest ping is remembered, and answered
// once the output drains.
func (c *Conn) answerPing(payload []byte) {
	c.mu.Lock()
	if c.state.Load() != stateOpen {
		c.mu.Unlock()
		return
	}
	if len(c.out)-c.off > pongBacklog {
		if c.pong == nil {
			c.pong = make([]byte, 0, maxControl)
		}
		c.pong, c.pongDue = append(c.pong[:0], payload...), true
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	if err := c.write(opPong, "", payload); errors.Is(err, ErrSlow) {
		// A pending-bytes limit under pongBacklog: the peer reads nothing.
		c.Close(ClosePolicy, fmt.Errorf("websocket: slow consumer, no room for a pong: %w", err))
	}
}

// closeReceived answers the peer's close frame and ends the connection: a
// valid code is echoed; a code not allowed on the wire or a 1-byte body
// is answered with 1002, a reason that is not UTF-8 with 1007.
func (c *Conn) closeReceived(payload []byte) {
	code := closeNoStatus
	switch {
	case len(payload) == 1:
		c.fail(fmt.Errorf("%w: close frame with a 1-byte body", errProtocol))
		return
	case len(payload) >= 2:
		code = int(binary.BigEndian.Uint16(payload))
		if !closeCodeAllowed(code) {
			c.fail(fmt.Errorf("%w: close code %d is not allowed on the wire", errProtocol, code))
			return
		}
		if !utf8.Valid(payload[2:]) {
			c.fail(fmt.Errorf("%w: in the close reason", errInvalidUTF8))
			return
		}
	}
	if c.state.Load() == stateOpen {
		c.mu.Lock()
		if c.state.CompareAndSwap(stateOpen, stateClosing) {
			c.out = appendClose(c.out, code)
			_ = c.flushLocked()
		}
		c.mu.Unlock()
	}
	c.finish(errCloseReceived)
}

// closeCodeAllowed tells whether a peer may send code (RFC 6455 7.4 and
// the IANA registry): 1000-1003, 1007-1014, and 3000-4999 for libraries
// and applications. 1004 is reserved, 1005, 1006 and 1015 must never be
// sent, the rest below 3000 is unassigned or for extensions (none agreed).
func closeCodeAllowed(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// fail ends the connection for a protocol violation, telling the peer
// why. c.rmu is held.
func (c *Conn) fail(err error) {
	code := CloseProtocol
	switch {
	case errors.Is(err, errTooBig):
		code = CloseTooBig
	case errors.Is(err, errInvalidUTF8):
		code = CloseInvalid
	case errors.Is(err, errBusy):
		code = CloseTryAgain
	case errors.Is(err, errTimeout):
		code = ClosePolicy
	}
	c.rd.release()
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
