//go:build linux

package transport

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// parker watches parked connections (park.go) with one epoll descriptor,
// itself watched by Go's runtime poller as transport/ws does. For a parked
// GET only hang-ups are asked for (EPOLLRDHUP, and the EPOLLHUP and
// EPOLLERR that epoll always reports), so a client's bytes never wake it;
// an idle keep-alive connection wakes on anything and goes back to the
// server, or is closed once idle for the server's idle timeout.
type parker struct {
	epfd int
	ep   *os.File
	idle time.Duration
	back *backListener

	mu      sync.Mutex
	gets    map[int]*parkedConn
	stopped bool
	// Idle connections, oldest first (all wait the same timeout); while
	// there are some, ep has a read deadline at the oldest's expiry.
	oldest, newest *parkedConn
}

func newParker(idle time.Duration) (*parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll: %w", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("epoll: %w", err)
	}
	k := &parker{epfd: epfd, ep: os.NewFile(uintptr(epfd), "epoll"), idle: idle, gets: map[int]*parkedConn{}}
	rc, err := k.ep.SyscallConn()
	if err != nil {
		_ = k.ep.Close()
		return nil, fmt.Errorf("epoll: %w", err)
	}
	go k.run(rc)
	return k, nil
}

// add watches g's connection until remove.
func (k *parker) add(g *parkedConn) error {
	sc, ok := g.raw.(syscall.Conn)
	if !ok {
		return errors.New("park: connection has no descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("park: %w", err)
	}
	if err := rc.Control(func(fd uintptr) { g.fd = int(fd) }); err != nil {
		return fmt.Errorf("park: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return errors.New("park: stopped")
	}
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(g.fd)}
	if g.p == nil {
		ev.Events |= unix.EPOLLIN
	}
	if err := unix.EpollCtl(k.epfd, unix.EPOLL_CTL_ADD, g.fd, &ev); err != nil {
		return fmt.Errorf("park: epoll add: %w", err)
	}
	k.gets[g.fd] = g
	if g.p == nil {
		g.expires = time.Now().Add(k.idle)
		g.prev = k.newest
		if k.newest != nil {
			k.newest.next = g
		} else {
			k.oldest = g
			_ = k.ep.SetReadDeadline(g.expires)
		}
		k.newest = g
	}
	return nil
}

// remove stops watching g; it runs before g's connection is closed or
// handed back, so a reused descriptor never reaches the wrong GET.
func (k *parker) remove(g *parkedConn) {
	k.mu.Lock()
	k.removeLocked(g)
	k.mu.Unlock()
}

// removeLocked is remove; the caller holds mu. It reports whether g was
// still watched (whoever removes it first owns it).
func (k *parker) removeLocked(g *parkedConn) bool {
	if k.gets[g.fd] != g {
		return false
	}
	delete(k.gets, g.fd)
	if !k.stopped {
		_ = unix.EpollCtl(k.epfd, unix.EPOLL_CTL_DEL, g.fd, nil)
	}
	if g.p == nil { // unlink from the idle list
		if g.prev != nil {
			g.prev.next = g.next
		} else {
			k.oldest = g.next
		}
		if g.next != nil {
			g.next.prev = g.prev
		} else {
			k.newest = g.prev
		}
		g.prev, g.next = nil, nil
	}
	return true
}

// run hands each hang-up to its GET's session, and each idle connection
// that stirs back to the server.
func (k *parker) run(rc syscall.RawConn) {
	events := make([]unix.EpollEvent, 128)
	for {
		var n int
		err := rc.Read(func(fd uintptr) bool {
			var werr error
			n, werr = unix.EpollWait(int(fd), events, 0)
			if werr != nil {
				n = 0
			}
			return n > 0
		})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			k.sweep()
			continue
		}
		if err != nil {
			return // stopped
		}
		for i := range n {
			k.mu.Lock()
			g := k.gets[int(events[i].Fd)]
			if g != nil && g.p == nil && !k.removeLocked(g) {
				g = nil
			}
			k.mu.Unlock()
			switch {
			case g == nil:
			case g.p != nil:
				g.p.hungUp(g)
			default: // a request, or the client's close: the server reads it
				k.back.give(g.conn)
			}
		}
	}
}

// sweep closes the idle connections whose time is up.
func (k *parker) sweep() {
	now := time.Now()
	var expired []*parkedConn
	k.mu.Lock()
	for g := k.oldest; g != nil && !g.expires.After(now); g = k.oldest {
		k.removeLocked(g)
		expired = append(expired, g)
	}
	next := time.Time{}
	if k.oldest != nil {
		next = k.oldest.expires
	}
	if !k.stopped {
		_ = k.ep.SetReadDeadline(next)
	}
	k.mu.Unlock()
	for _, g := range expired {
		// A request that came just before the deadline is served, not
		// reset: the deadline is seen before the epoll events are read.
		var b [1]byte
		if n, _, err := unix.Recvfrom(g.fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT); err == nil && n > 0 {
			k.back.give(g.conn)
			continue
		}
		_ = g.conn.Close()
	}
}

// stop closes the idle connections and stops watching; parked GETs are
// their sessions' to answer.
func (k *parker) stop() {
	k.mu.Lock()
	var idle []*parkedConn
	for g := k.oldest; g != nil; g = k.oldest {
		k.removeLocked(g)
		idle = append(idle, g)
	}
	if !k.stopped {
		k.stopped = true
		_ = k.ep.Close()
	}
	k.mu.Unlock()
	for _, g := range idle {
		_ = g.conn.Close()
	}
}
