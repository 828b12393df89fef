package transport

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// A long-poll GET with nothing to answer yet is parked: its connection is
// taken from net/http (hijacked), watched for a hang-up by the parker
// (park_linux.go), and answered on a timer's goroutine once something is
// queued; the connection then goes back to the same http.Server through
// backListener, which serves the client's next request as any other. A
// POST's connection is parked likewise once answered, until the client's
// next request on it (or the idle timeout). net/http holds about 25 KB
// per connection it serves (two goroutines' stacks, 4 KB read and write
// buffers, the request); a parked one holds its descriptor and a
// parkedConn. Where parking is not possible (no epoll, a request that asks
// to close its connection, a server not started by Serve) the request is
// served on its goroutine as before.

// parkAfter is how long a GET waits on its goroutine before it is parked,
// and how long a POST's session must have been quiet for its connection to
// be parked: parking and the way back cost more than a wait or an idle
// keep-alive, so a busy session (an operator's) is served as before.
var parkAfter = time.Second // a variable for the tests

// answerTimeout bounds how long writing one answer may take: a client
// that stops reading its poll must not hold a goroutine for good.
const answerTimeout = 20 * time.Second

// parkedConn is a GET whose connection has been taken from net/http.
type parkedConn struct {
	p    *pollConn
	conn net.Conn // what goes back to the server
	raw  net.Conn // the socket itself, watched by the parker
	fd   int
	head []byte // the status line and the headers set before parking (CORS)

	// An idle connection (p nil): when it is closed unless it stirs, and
	// its place in the parker's list.
	expires    time.Time
	prev, next *parkedConn
}

// backListener hands the connections of answered GETs back to the
// http.Server that served them.
type backListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func (l *backListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *backListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *backListener) Addr() net.Addr { return l.addr }

// give hands c back, or closes it once the server has stopped.
func (l *backListener) give(c net.Conn) {
	select {
	case l.ch <- c:
	case <-l.done:
		_ = c.Close()
	}
}

// serveBack lets srv take back the connections of parked GETs; called by
// Serve before it serves the listener at addr. Without it nothing parks.
func (ps *polls) serveBack(srv *http.Server, addr net.Addr) {
	k, err := newParker(srv.IdleTimeout)
	if err != nil {
		return
	}
	l := &backListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
	k.back = l
	ps.park, ps.back = k, l
	go func() {
		_ = srv.Serve(l) // returns when srv shuts down or closes
		k.stop()
	}()
}

// parkable tells whether r may be parked.
func (ps *polls) parkable(r *http.Request) bool {
	return ps.park != nil && r.ProtoAtLeast(1, 1) && !r.Close
}

// hijack takes the connection of p's GET from net/http.
func (ps *polls) hijack(p *pollConn, w http.ResponseWriter) (*parkedConn, error) {
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 200 OK\r\n")
	h := w.Header()
	h.Del("Content-Type")
	h.Del("Content-Length")
	_ = h.Write(&head)
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return nil, fmt.Errorf("park: %w", err)
	}
	g := &parkedConn{p: p, conn: conn, raw: conn, head: head.Bytes()}
	if n := brw.Reader.Buffered(); n > 0 {
		// The client sent more on this connection (pipelining): those
		// bytes are its next request, read first once it is handed back.
		pre, _ := brw.Reader.Peek(n)
		g.conn = &prefixedConn{Conn: conn, r: io.MultiReader(bytes.NewReader(bytes.Clone(pre)), conn)}
	}
	return g, nil
}

// answer writes a parked GET's answer in one write, then hands its
// connection back to the server (the client's next GET follows at once),
// or parks it idle when it was the session's last poll (idle), or closes
// it after an upgrade (the client will not poll on it again) or a failed
// write.
func (ps *polls) answer(g *parkedConn, body []byte, closeConn, idle bool) {
	b := appendResponse(getBuf(len(g.head)+len(body)+96), g.head, pollContentType, body, closeConn)
	_ = g.conn.SetWriteDeadline(time.Now().Add(answerTimeout))
	_, err := g.conn.Write(b)
	putBuf(b)
	if err != nil || closeConn {
		_ = g.conn.Close()
		return
	}
	_ = g.conn.SetWriteDeadline(time.Time{})
	if idle {
		ps.parkIdle(g)
		return
	}
	ps.back.give(g.conn)
}

// appendResponse appends a response to b: the status line and headers
// set before the connection was taken (head), then the body's.
func appendResponse(b, head []byte, contentType string, body []byte, closeConn bool) []byte {
	b = append(b, head...)
	b = append(b, "Content-Type: "...)
	b = append(b, contentType...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	if closeConn {
		b = append(b, "\r\nConnection: close"...)
	}
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}

// parkIdle parks an answered POST's connection until the client's next
// request on it: the client may well send that on another connection.
func (ps *polls) parkIdle(g *parkedConn) {
	g.p, g.head = nil, nil
	if g.conn != g.raw || ps.park.add(g) != nil { // the next request is here already
		ps.back.give(g.conn)
	}
}

// answerPost answers a POST "ok" on its connection, taken from net/http,
// and parks the connection until the client's next request on it; only
// when the session had been quiet (quiet). false: not taken, answer as
// usual.
func (ps *polls) answerPost(w http.ResponseWriter, r *http.Request, quiet bool) bool {
	if !quiet || !ps.parkable(r) {
		return false
	}
	return ps.answerIdle(w, r, "text/html", []byte("ok"))
}

// answerIdle answers a request with body on its connection, taken from
// net/http, and parks the connection until the client's next request on
// it. false: not taken, answer as usual.
func (ps *polls) answerIdle(w http.ResponseWriter, r *http.Request, contentType string, body []byte) bool {
	if !ps.parkable(r) {
		return false
	}
	g, err := ps.hijack(nil, w)
	if err != nil {
		return false
	}
	b := appendResponse(getBuf(len(g.head)+len(body)+96), g.head, contentType, body, false)
	// On the request's goroutine, as net/http would have written it: "ok",
	// or a last poll's body (what was queued, then a noop), within the
	// same deadline as any answer: a peer that stops reading cannot hold
	// the goroutine.
	_ = g.conn.SetWriteDeadline(time.Now().Add(answerTimeout))
	_, err = g.conn.Write(b)
	_ = g.conn.SetWriteDeadline(time.Time{})
	putBuf(b)
	if err != nil {
		_ = g.conn.Close()
	} else {
		ps.parkIdle(g)
	}
	return true
}

// prefixedConn reads bytes that net/http had buffered before its
// connection's own.
type prefixedConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixedConn) Read(b []byte) (int, error) { return c.r.Read(b) }
