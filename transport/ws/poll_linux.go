//go:build linux

package ws

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Supported tells whether this platform has the epoll server.
const Supported = true

// Server watches websocket connections with epoll.
type Server struct {
	opts    Options
	budget  *budget // bytes held for incomplete frames and messages
	pollers []*poller
	next    atomic.Uint32
	closed  atomic.Bool
}

// NewServer starts the pollers.
func NewServer(o Options) (*Server, error) {
	o = o.withDefaults()
	s := &Server{opts: o, budget: newBudget(o.MaxBuffered)}
	for range o.Pollers {
		p, err := newPoller(o.WriteWindow, o.MessageTimeout)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.pollers = append(s.pollers, p)
	}
	return s, nil
}

// Len is the number of open connections.
func (s *Server) Len() int {
	n := 0
	for _, p := range s.pollers {
		p.mu.Lock()
		n += len(p.conns)
		p.mu.Unlock()
	}
	return n
}

// Buffered is the number of bytes the server holds for frames and
// fragmented messages not yet whole, across all connections, and what
// Reserve took (at most Options.MaxBuffered): a metric of what peers make
// it keep.
func (s *Server) Buffered() int64 { return s.budget.n.Load() }

// Each calls fn with every open connection's handler.
func (s *Server) Each(fn func(Handler)) {
	for _, p := range s.pollers {
		p.mu.Lock()
		hs := make([]Handler, 0, len(p.conns))
		for _, c := range p.conns {
			hs = append(hs, c.h)
		}
		p.mu.Unlock()
		for _, h := range hs {
			fn(h)
		}
	}
}

// Close releases every connection at once and stops the pollers. Handlers
// that want a graceful goodbye say it first (Each).
func (s *Server) Close() {
	if s.closed.Swap(true) {
		return
	}
	for _, p := range s.pollers {
		p.mu.Lock()
		cs := make([]*Conn, 0, len(p.conns))
		for _, c := range p.conns {
			cs = append(cs, c)
		}
		p.mu.Unlock()
		for _, c := range cs {
			c.finish(ErrServerClosed)
		}
		p.stop()
	}
}

func (s *Server) register(c *Conn) error {
	if s.closed.Load() {
		return ErrServerClosed
	}
	p := s.pollers[int(s.next.Add(1))%len(s.pollers)]
	var fd int
	if err := c.rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return fmt.Errorf("websocket: %w", err)
	}
	c.mu.Lock() // the handler may already be writing from elsewhere
	c.fd, c.p = fd, p
	c.mu.Unlock()
	p.mu.Lock()
	p.conns[fd] = c
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(fd)}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.mu.Lock()
		delete(p.conns, fd)
		p.mu.Unlock()
		c.mu.Lock()
		c.p = nil
		c.mu.Unlock()
		return fmt.Errorf("websocket: epoll add: %w", err)
	}
	return nil
}

const (
	// lightRead is what a round reads first from each connection: a chat
	// message fits. readChunk is the most one read takes from a connection
	// in bulk, bulkPerRound what a round reads from them all.
	lightRead    = 8 << 10
	readChunk    = 64 << 10
	bulkPerRound = 4 * readChunk
	// yieldBytes is how much a poller reads before it lets the goroutines
	// it woke run. A poller never blocks while its sockets have bytes, so
	// under a flood the actors it hands messages to would otherwise wait
	// for the runtime to preempt it (10 ms).
	yieldBytes = 256 << 10
)

// poller is one epoll loop with its reader buffer and its write flusher.
// The epoll descriptor is itself watched by Go's runtime poller, so the
// loop parks like any goroutine waiting on a socket instead of blocking a
// thread in epoll_wait.
type poller struct {
	epfd    int
	ep      *os.File // epfd, as the runtime poller knows it
	window  time.Duration
	timeout time.Duration // Options.MessageTimeout

	mu      sync.Mutex
	conns   map[int]*Conn
	stopped bool // epfd is closed
	// Connections with something incomplete, oldest first (Conn.prev,
	// next); while there are some, ep has a read deadline to sweep them.
	oldest, newest *Conn
	expired        []*Conn // the sweeper's scratch

	turn uint64 // rounds of the read loop; its own

	dirtyMu sync.Mutex
	dirty   []*Conn
	kick    chan struct{}
	done    chan struct{}
}

func newPoller(window, timeout time.Duration) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("epoll: %w", err)
	}
	p := &poller{epfd: epfd, ep: os.NewFile(uintptr(epfd), "epoll"), window: window, timeout: timeout, conns: map[int]*Conn{},
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	rc, err := p.ep.SyscallConn()
	if err != nil {
		_ = p.ep.Close()
		return nil, fmt.Errorf("epoll: %w", err)
	}
	go p.read(rc)
	go p.flush()
	return p, nil
}

// read waits for connections with something to read (or that drained) and
// serves them, on this goroutine: reading and parsing never block.
//
// A round reads at most lightRead bytes from each ready connection not
// in bulk, then a readChunk from each connection in bulk (whose last read
// filled what it was given), least recently served first, until the round
// has read bulkPerRound from them; the rest stay ready for the next round
// and come first in it. So a peer's small message waits
// behind one round's bulk, not behind every flooding socket's: with 150
// sockets pouring in frames, a round that read readChunk from each read
// 7–10 MB and took 20–48 ms, the time an honest operator's message
// waited to be read.
func (p *poller) read(rc syscall.RawConn) {
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, readChunk)
	var bulk []*Conn
	read := 0 // bytes read since the loop last yielded
	for {
		var n int
		err := rc.Read(func(fd uintptr) bool {
			var werr error
			n, werr = unix.EpollWait(int(fd), events, 0)
			if werr != nil {
				n = 0
			}
			return n > 0 // none ready: park until the epoll descriptor is readable
		})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			p.sweep()
			continue
		}
		if err != nil {
			return // closed
		}
		p.turn++
		for i := range n {
			ev := &events[i]
			fd := int(ev.Fd)
			p.mu.Lock()
			c := p.conns[fd]
			p.mu.Unlock()
			if c == nil {
				continue
			}
			if ev.Events&unix.EPOLLOUT != 0 {
				c.writable()
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
				continue
			}
			if !c.bulk {
				k := c.readable(buf[:lightRead])
				read += k
				if c.bulk = k == lightRead; !c.bulk {
					continue
				}
			}
			bulk = append(bulk, c)
		}
		if len(bulk) > 1 {
			slices.SortFunc(bulk, func(a, b *Conn) int { return cmp.Compare(a.turn, b.turn) })
		}
		spent := 0
		for _, c := range bulk {
			if spent >= bulkPerRound {
				break
			}
			k := c.readable(buf)
			spent += k
			c.bulk, c.turn = k == len(buf), p.turn
		}
		clear(bulk)
		bulk = bulk[:0]
		if read += spent; read >= yieldBytes {
			read = 0
			runtime.Gosched()
		}
	}
}

// flush writes the queued connections' frames: at most once per window,
// so frames written within it leave in one system call per connection.
func (p *poller) flush() {
	var batch []*Conn
	for {
		select {
		case <-p.kick:
		case <-p.done:
			return
		}
		if p.window > 0 {
			time.Sleep(p.window)
		}
		p.dirtyMu.Lock()
		batch, p.dirty = p.dirty, batch[:0]
		p.dirtyMu.Unlock()
		for i, c := range batch {
			c.flushQueued()
			batch[i] = nil
		}
	}
}

func (p *poller) enqueue(c *Conn) {
	p.dirtyMu.Lock()
	p.dirty = append(p.dirty, c)
	p.dirtyMu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// watch asks (or stops asking) to hear when c's socket can take more.
func (p *poller) watch(c *Conn, out bool) error {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(c.fd)}
	if out {
		ev.Events |= unix.EPOLLOUT
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return ErrServerClosed
	}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, c.fd, &ev); err != nil {
		return fmt.Errorf("epoll mod: %w", err)
	}
	return nil
}

// remove stops watching c; it runs before c's descriptor is closed, so a
// reused descriptor never reaches the wrong connection.
func (p *poller) remove(c *Conn) {
	p.mu.Lock()
	if p.conns[c.fd] == c {
		delete(p.conns, c.fd)
		if !p.stopped {
			_ = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
		}
	}
	p.unlink(c)
	p.mu.Unlock()
}

func (p *poller) stop() {
	close(p.done)
	p.mu.Lock()
	p.stopped = true
	_ = p.ep.Close()
	p.mu.Unlock()
}
