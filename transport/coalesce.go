package transport

import (
	"bufio"
	"net"
	"net/http"
	"sync"
	"time"
)

// The Socket.IO library writes each packet to a websocket as its own
// message, and gorilla/websocket sends each message with its own write(2):
// under load a third of the server's CPU went to those system calls
// (docs/PERFORMANCE.md). A websocket's connection is therefore wrapped so
// that the frames written within a short window leave in one system call.
// Frames stay separate websocket messages, as Engine.IO requires.

// coalesceMax flushes at once past this many pending bytes, bounding the
// memory a connection holds here.
const coalesceMax = 64 << 10

// coalesceWebSockets wraps the response of websocket upgrade requests so
// that the hijacked connection coalesces writes within window.
func coalesceWebSockets(window time.Duration, next http.Handler) http.Handler {
	if window <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			w = &hijacker{ResponseWriter: w, window: window}
		}
		next.ServeHTTP(w, r)
	})
}

type hijacker struct {
	http.ResponseWriter
	window time.Duration
}

func (h *hijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	return &coalescingConn{Conn: conn, window: h.window}, brw, nil
}

// coalescingConn buffers writes for at most window, then writes them at
// once. Its buffer comes from a pool and goes back after each flush, so an
// idle connection holds none.
type coalescingConn struct {
	net.Conn
	window time.Duration

	mu      sync.Mutex
	buf     *[]byte
	timer   *time.Timer
	pending bool // a flush is scheduled
	err     error
}

var coalesceBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if c.buf == nil {
		c.buf = coalesceBufs.Get().(*[]byte)
	}
	*c.buf = append(*c.buf, p...)
	if len(*c.buf) >= coalesceMax {
		return len(p), c.flushLocked()
	}
	if !c.pending {
		c.pending = true
		if c.timer == nil {
			c.timer = time.AfterFunc(c.window, c.flushLater)
		} else {
			c.timer.Reset(c.window)
		}
	}
	return len(p), nil
}

func (c *coalescingConn) flushLater() {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.flushLocked()
}

// flushLocked writes what is pending; the caller holds mu. A write error
// is kept and returned to every later Write, as the socket is then dead.
func (c *coalescingConn) flushLocked() error {
	c.pending = false
	if c.buf == nil {
		return c.err
	}
	if len(*c.buf) > 0 && c.err == nil {
		_, c.err = c.Conn.Write(*c.buf)
	}
	*c.buf = (*c.buf)[:0]
	if cap(*c.buf) <= coalesceMax*2 {
		coalesceBufs.Put(c.buf)
	}
	c.buf = nil
	return c.err
}

// Close sends what is pending first: a close frame must not be lost.
func (c *coalescingConn) Close() error {
	c.mu.Lock()
	_ = c.flushLocked()
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.err == nil {
		c.err = net.ErrClosed
	}
	c.mu.Unlock()
	return c.Conn.Close()
}
