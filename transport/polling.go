package transport

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/transport/ws"
)

// Engine.IO 4 long-polling, as the engine.io 6 server speaks it. A GET
// without sid opens a session; a GET with it takes every queued packet,
// or waits until one is queued (a ping comes every interval); a POST
// carries packets from the client. Packets of one body are separated by
// the record separator 0x1e (JSON escapes it, so no packet contains it).
// A session is its eioSocket and a pollConn: the queue, the waiting GET,
// and after an upgrade the websocket that took over (upgrade.go). A GET
// that must wait is parked (park.go): it holds no goroutine.

const recordSep = 0x1e

// Why a polling session ends; Closed reports them as "transport error",
// as Socket.IO does.
var (
	errGetOverlap  = errors.New("polling: a second GET while one is pending")
	errPostOverlap = errors.New("polling: a second POST while one is under way")
	errGetGone     = errors.New("polling: the client left its pending GET")
	errTooLarge    = errors.New("polling: body over maxPayload")
	errBadBody     = errors.New("polling: body not readable")
	errBinaryBody  = errors.New("polling: binary body (Engine.IO 4 sends base64)")
)

// pollState is where a polling session is in its life.
type pollState uint8

const (
	statePolling  pollState = iota
	stateProbed             // a websocket answered 3probe: GETs end with a noop
	stateMoving             // the client sent 5: the queue moves to the websocket
	stateUpgraded           // every write goes to the websocket
	stateClosed             // the close packet waits for the last GET
)

// polls finds polling sessions by sid; it is plumbing, with no chat state.
type polls struct {
	mu sync.Mutex
	m  map[string]*pollConn

	// Set by serveBack before the server serves; nil: GETs wait on their
	// goroutine.
	park *parker
	back *backListener
}

func (ps *polls) add(p *pollConn) {
	ps.mu.Lock()
	if ps.m == nil {
		ps.m = make(map[string]*pollConn)
	}
	ps.m[p.sid] = p
	ps.mu.Unlock()
}

func (ps *polls) get(sid string) *pollConn {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.m[sid]
}

func (ps *polls) remove(p *pollConn) {
	ps.mu.Lock()
	if ps.m[p.sid] == p {
		delete(ps.m, p.sid)
	}
	ps.mu.Unlock()
}

// each calls fn for every session, outside the lock (fn may close it).
func (ps *polls) each(fn func(*pollConn)) {
	ps.mu.Lock()
	all := make([]*pollConn, 0, len(ps.m))
	for _, p := range ps.m {
		all = append(all, p)
	}
	ps.mu.Unlock()
	for _, p := range all {
		fn(p)
	}
}

// pollConn is the transport of one Engine.IO session that began with
// long-polling: an engineConn for its eioSocket.
type pollConn struct {
	srv  *Server
	sid  string
	e    *eioSocket
	wake chan struct{} // capacity 1: tells the waiting GET that something changed

	// ws is the websocket after an upgrade; writes go straight to it.
	ws atomic.Pointer[ws.Conn]

	// rmu lets one reader at a time hand packets to the socket: a POST,
	// or the upgrade, which waits for the POST under way.
	rmu sync.Mutex

	mu       sync.Mutex
	out      []byte // queued packets, separated by recordSep; nil when none
	state    pollState
	getting  bool      // a GET is waiting
	posting  bool      // a POST is under way
	lastGet  time.Time // when the last GET was answered
	lastPost time.Time // when the last POST came
	probe    *ws.Conn  // the websocket probing or holding the upgrade
	probing  bool      // a websocket upgrade is under way (probe may still be nil)
	linger   *time.Timer

	parked    *parkedConn // the waiting GET, when parked (getting is true)
	answering bool        // answerT will answer parked
	answerT   *time.Timer // answers the parked GET a write window after a write
}

// pollHandshake opens a polling session: the answer is the open packet.
func (s *Server) pollHandshake(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		engineError(w, engineBadHandshake)
		return
	}
	sid := newID()
	p := &pollConn{srv: s, sid: sid, wake: make(chan struct{}, 1), lastGet: time.Now()}
	p.e = s.newSocket(p, r, s.clientAddr(r), bearer(r))
	p.e.start()
	s.polls.add(p)
	body := append([]byte{'0'}, s.openPacket(sid, true)...)
	writePoll(w, body, false)
}

// poll serves a GET or POST of a polling session.
func (s *Server) poll(w http.ResponseWriter, r *http.Request, sid string) {
	p := s.polls.get(sid)
	if p == nil {
		engineError(w, engineUnknownSID)
		return
	}
	switch r.Method {
	case http.MethodGet:
		p.get(w, r)
	case http.MethodPost:
		p.post(w, r)
	default:
		engineError(w, engineBadRequest)
	}
}

// get answers with every queued packet, waiting for one if none is.
func (p *pollConn) get(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	if p.getting {
		p.mu.Unlock()
		engineError(w, engineBadRequest)
		p.Close(ws.CloseNormal, errGetOverlap) // the pending GET gets the close packet
		return
	}
	if p.state == stateMoving || p.state == stateUpgraded || (p.state == stateClosed && p.out == nil) {
		p.mu.Unlock()
		engineError(w, engineBadRequest)
		return
	}
	// A GET that waits parkAfter is parked; one answered sooner (a busy
	// session's) stays on this goroutine, which is cheaper.
	var parkC <-chan time.Time
	if p.out == nil && p.state == statePolling && p.srv.polls.parkable(r) {
		t := time.NewTimer(parkAfter)
		defer t.Stop()
		parkC = t.C
	}
	for p.out == nil && p.state == statePolling {
		p.getting = true
		p.mu.Unlock()
		select {
		case <-p.wake:
		case <-parkC:
			parkC = nil
			g, err := p.srv.polls.hijack(p, w)
			p.mu.Lock()
			if err == nil {
				p.park(g)
				p.mu.Unlock()
				return
			}
			p.getting = false // not taken from net/http: wait here
			continue
		case <-r.Context().Done():
			p.mu.Lock()
			p.getting, p.lastGet = false, time.Now()
			closed := p.state == stateClosed
			p.mu.Unlock()
			if closed { // nobody is left to take the close packet
				p.forget()
				return
			}
			p.Close(ws.CloseNormal, errGetGone) // as engine.io: the poll closed prematurely
			return
		}
		if d := p.srv.cfg.WriteCoalesce; d > 0 {
			time.Sleep(d) // the write window: what else is written leaves with it
		}
		p.mu.Lock()
		p.getting = false
	}
	body, upgraded, last := p.takeAnswer()
	final := p.state == stateProbed
	p.mu.Unlock()
	// The client's last poll before its upgrade: its connection goes idle
	// for good, or until the client reuses it, so it waits parked rather
	// than on a goroutine of net/http's with its buffers.
	if !final || !p.srv.polls.answerIdle(w, r, pollContentType, body) {
		writePoll(w, body, upgraded)
	}
	putBuf(body)
	if last {
		p.forget()
	}
}

// takeAnswer takes what a GET answers: the queue, a noop when the
// websocket is taking over; last is true once the close packet leaves.
// The caller holds mu.
func (p *pollConn) takeAnswer() (body []byte, upgraded, last bool) {
	switch p.state {
	case statePolling, stateClosed:
		body, p.out = p.out, nil
	case stateProbed: // the client's last poll before it upgrades
		body, p.out = appendPacket(p.out, "6", nil), nil
	default: // the queue is the websocket's now
		body, upgraded = []byte{'6'}, true
	}
	p.lastGet = time.Now()
	return body, upgraded, p.state == stateClosed
}

const pollContentType = "text/plain; charset=UTF-8"

// park keeps g until something is queued, watched for a hang-up; the
// caller holds mu and has set getting.
func (p *pollConn) park(g *parkedConn) {
	p.parked = g
	if p.out != nil || p.state != statePolling { // came while hijacking
		p.answerSoon()
		return
	}
	if err := p.srv.polls.park.add(g); err != nil {
		// Unwatched, a hang-up is found by the heartbeat instead.
		p.srv.log.Debug("parked GET not watched", "err", err)
	}
}

// answerSoon answers the parked GET a write window from now, so that what
// else is written meanwhile leaves with it. The caller holds mu.
func (p *pollConn) answerSoon() {
	if p.answering {
		return
	}
	p.answering = true
	if p.answerT == nil {
		p.answerT = time.AfterFunc(p.srv.cfg.WriteCoalesce, p.answerParked)
	} else {
		p.answerT.Reset(p.srv.cfg.WriteCoalesce)
	}
}

// answerParked answers the parked GET, on the timer's goroutine.
func (p *pollConn) answerParked() {
	p.mu.Lock()
	p.answering = false
	g := p.parked
	if g == nil || (p.out == nil && p.state == statePolling) {
		p.mu.Unlock()
		return
	}
	p.parked, p.getting = nil, false
	body, upgraded, last := p.takeAnswer()
	final := p.state == stateProbed // as in get
	p.mu.Unlock()
	p.srv.polls.park.remove(g)
	p.srv.polls.answer(g, body, upgraded, final)
	putBuf(body)
	if last {
		p.forget()
	}
}

// hungUp ends the session whose parked GET's client went away, as the
// waiting GET's cancelled context does.
func (p *pollConn) hungUp(g *parkedConn) {
	p.mu.Lock()
	if p.parked != g {
		p.mu.Unlock()
		return
	}
	p.parked, p.getting, p.lastGet = nil, false, time.Now()
	closed := p.state == stateClosed
	p.mu.Unlock()
	p.srv.polls.park.remove(g)
	_ = g.conn.Close()
	if closed {
		p.forget()
		return
	}
	p.Close(ws.CloseNormal, errGetGone)
}

// writePoll answers a GET. After an upgrade the HTTP connection is closed
// too: the client will not poll on it again.
func writePoll(w http.ResponseWriter, body []byte, closeConn bool) {
	h := w.Header()
	h.Set("Content-Type", pollContentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if closeConn {
		h.Set("Connection", "close")
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// post hands the body's packets to the socket and answers "ok".
func (p *pollConn) post(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	p.mu.Lock()
	quiet := now.Sub(p.lastPost) > parkAfter
	p.lastPost = now
	p.mu.Unlock()
	// Answered only once receive is done with the session: the client may
	// send its next POST the moment it reads "ok".
	if !p.receive(w, r) || p.srv.polls.answerPost(w, r, quiet) {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html")
	h.Set("Content-Length", "2")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("ok"))
}

// receive hands a POST's packets to the socket; false: it has answered
// the POST with an error.
func (p *pollConn) receive(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Content-Type") == "application/octet-stream" {
		engineError(w, engineBadRequest)
		p.Close(ws.CloseNormal, errBinaryBody)
		return false
	}
	p.mu.Lock()
	if p.posting {
		p.mu.Unlock()
		engineError(w, engineBadRequest)
		p.Close(ws.CloseNormal, errPostOverlap)
		return false
	}
	if p.state == stateMoving || p.state == stateUpgraded {
		p.mu.Unlock()
		engineError(w, engineBadRequest)
		return false
	}
	p.posting = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.posting = false
		p.mu.Unlock()
	}()

	held := 0 // of the server's budget for unfinished input, until handled
	defer func() { p.srv.wss.Release(held); p.e.reading.Store(0) }()
	body, err := readBody(r.Body, r.ContentLength, p.srv.wssMaxPayload, func(n int) bool {
		if !p.srv.wss.Reserve(n) {
			return false
		}
		held += n
		p.e.reading.Store(int64(held))
		return true
	})
	if err != nil {
		putBuf(body)
		switch {
		case errors.Is(err, errTooLarge):
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		case errors.Is(err, errBusy):
			w.Header().Set("Retry-After", "5")
			w.WriteHeader(http.StatusServiceUnavailable)
			err = reasonBusy
		default:
			engineError(w, engineBadRequest)
		}
		p.Close(ws.CloseNormal, err)
		return false
	}
	p.rmu.Lock()
	p.mu.Lock()
	late := p.state == stateMoving || p.state == stateUpgraded
	p.mu.Unlock()
	if late { // the websocket took over while the body was read
		p.rmu.Unlock()
		putBuf(body)
		engineError(w, engineBadRequest)
		return false
	}
	p.packets(body)
	p.rmu.Unlock()
	putBuf(body)
	return true
}

// packets hands each packet of a POST body to the socket: a pass over the
// body with nothing allocated but binary attachments (a million noops cost
// a scan, not a million allocations). The caller holds rmu.
func (p *pollConn) packets(body []byte) {
	for len(body) > 0 && !p.e.closed.Load() {
		pkt := body
		if i := bytes.IndexByte(body, recordSep); i >= 0 {
			pkt, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		if len(pkt) > 0 && pkt[0] == 'b' {
			data := make([]byte, base64.StdEncoding.DecodedLen(len(pkt)-1))
			n, err := base64.StdEncoding.Decode(data, pkt[1:])
			if err != nil {
				p.e.shut(reasonParse, "binary packet is not base64")
				return
			}
			p.e.Message(nil, false, data[:n])
			continue
		}
		p.e.Message(nil, true, pkt)
	}
}

// readBody reads at most limit bytes of body; a longer one is errTooLarge,
// found without buffering more than limit+1 bytes, with or without a
// Content-Length. The buffer grows with what arrived, to at most twice
// that: a Content-Length is a promise, not bytes, and a stalled body
// holds only what was sent. Each growth is first taken with reserve (the
// server's budget of unfinished input), or the read ends with errBusy.
func readBody(body io.Reader, length int64, limit int, reserve func(int) bool) ([]byte, error) {
	if length > int64(limit) {
		return nil, errTooLarge
	}
	end := limit + 1
	if length >= 0 {
		end = int(length) + 1 // room to see the end without growing
	}
	buf := getBuf(min(end, 4<<10))
	if !reserve(cap(buf)) {
		return buf, errBusy
	}
	for {
		if len(buf) == cap(buf) {
			size := min(2*cap(buf), max(end, len(buf)+1))
			if !reserve(size - cap(buf)) {
				return buf, errBusy
			}
			grown := make([]byte, len(buf), size)
			copy(grown, buf)
			putBuf(buf)
			buf = grown
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return buf, errTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, errBadBody
		}
	}
}

// WriteText queues one packet for the next GET (or, after an upgrade,
// writes it to the websocket). Past MaxPendingBytes it queues nothing and
// returns ws.ErrSlow, as a websocket does.
func (p *pollConn) WriteText(prefix string, payload []byte) error {
	if c := p.ws.Load(); c != nil {
		return c.WriteText(prefix, payload)
	}
	p.mu.Lock()
	if c := p.ws.Load(); c != nil {
		p.mu.Unlock()
		return c.WriteText(prefix, payload)
	}
	if p.state == stateClosed {
		p.mu.Unlock()
		return ws.ErrClosed
	}
	if max := p.srv.cfg.MaxPendingBytes; max > 0 && len(p.out)+1+len(prefix)+len(payload) > max {
		p.mu.Unlock()
		return ws.ErrSlow
	}
	p.out = appendPacket(p.out, prefix, payload)
	if p.getting {
		p.signal()
	}
	p.mu.Unlock()
	return nil
}

// signal wakes the waiting GET, or answers the parked one; a wake
// already pending is enough. The caller holds mu.
func (p *pollConn) signal() {
	if p.parked != nil {
		p.answerSoon()
		return
	}
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Pending is the number of bytes queued and not yet answered.
func (p *pollConn) Pending() int {
	if c := p.ws.Load(); c != nil {
		return c.Pending()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.out)
}

// Close ends the session: the close packet follows what is queued, for
// the waiting GET or the next one (the session lingers for it a while);
// the socket hears of it at once.
func (p *pollConn) Close(code int, why error) {
	if c := p.ws.Load(); c != nil {
		c.Close(code, why)
		return
	}
	p.mu.Lock()
	switch p.state {
	case stateClosed:
		p.mu.Unlock()
		return
	case stateMoving, stateUpgraded: // the websocket ends it, and reports
		c := p.probe
		p.mu.Unlock()
		c.Close(code, why)
		return
	}
	p.state = stateClosed
	probe := p.probe
	p.probe, p.probing = nil, false
	p.out = appendPacket(p.out, "1", nil)
	if p.getting {
		p.signal()
	} else {
		p.linger = time.AfterFunc(p.srv.cfg.PingTimeout, p.forget)
	}
	p.mu.Unlock()
	if probe != nil {
		probe.Close(ws.CloseNormal, why)
	}
	p.e.Closed(nil, why)
}

// forget drops a closed session once its close packet is delivered or
// nobody came for it.
func (p *pollConn) forget() {
	p.srv.polls.remove(p)
	p.mu.Lock()
	if p.linger != nil {
		p.linger.Stop()
	}
	if p.answerT != nil {
		p.answerT.Stop()
	}
	g := p.parked
	p.parked = nil
	putBuf(p.out)
	p.out = nil
	p.mu.Unlock()
	if g != nil {
		p.srv.polls.park.remove(g)
		_ = g.conn.Close()
	}
}

// stale tells whether the client has stopped polling: no GET waiting and
// none for a ping interval and timeout. The heartbeat ends such a session.
func (p *pollConn) stale() bool {
	if p.ws.Load() != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state == statePolling && !p.getting &&
		time.Since(p.lastGet) > p.srv.cfg.PingInterval+p.srv.cfg.PingTimeout
}

// appendPacket adds one packet to a queue of them.
func appendPacket(out []byte, prefix string, payload []byte) []byte {
	if out == nil {
		out = getBuf(len(prefix) + len(payload))
	} else {
		out = append(out, recordSep)
	}
	out = append(out, prefix...)
	return append(out, payload...)
}

// Buffers for queues and bodies come from a pool and go back once
// answered, so an idle session holds none; large ones are left to the GC.
const pooledBuf = 64 << 10

var pollBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4<<10); return &b }}

func getBuf(n int) []byte {
	if n > pooledBuf {
		return make([]byte, 0, n)
	}
	b := *pollBufs.Get().(*[]byte)
	if cap(b) < n {
		return make([]byte, 0, n)
	}
	return b[:0]
}

func putBuf(b []byte) {
	if b == nil || cap(b) > pooledBuf || cap(b) < 512 {
		return
	}
	b = b[:0]
	pollBufs.Put(&b)
}
