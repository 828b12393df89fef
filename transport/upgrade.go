package transport

import (
	"bytes"
	"errors"
	"net/http"
	"time"

	"github.com/switchboard/switchboard/transport/ws"
)

// The upgrade from long-polling to a websocket, as engine.io 6 does it:
// the client opens a websocket with the session's sid and sends "2probe";
// the server answers "3probe" and ends the pending GET with a noop "6" so
// the client's polling pauses; the client sends "5" on the websocket, and
// from then on the session's packets, those still queued first, go there.
// A probe that closes before "5" leaves the session on polling.

// upgradeTimeout is how long a probe websocket may take to send "5"
// (engine.io's upgradeTimeout, 10 s).
const upgradeTimeout = 10 * time.Second

var (
	errProbe          = errors.New("upgrade: the probe sent something other than 2probe or 5")
	errUpgradeRefused = errors.New("upgrade: the session is no longer polling")
	errUpgradeTimeout = errors.New("upgrade: no upgrade packet in time")
)

// upgradeConn is the ws.Handler of a websocket that upgrades a polling
// session: it answers the probe, then passes every message to the socket.
type upgradeConn struct {
	p     *pollConn
	c     *ws.Conn
	timer *time.Timer // the probe's deadline
}

// upgrade serves a websocket asking to take over polling session sid.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request, sid string) {
	p := s.polls.get(sid)
	if p == nil {
		engineError(w, engineUnknownSID)
		return
	}
	if !p.reserveProbe() {
		engineError(w, engineBadRequest)
		return
	}
	u := &upgradeConn{p: p}
	_, err := s.wss.Upgrade(w, r, func(c *ws.Conn) ws.Handler {
		u.c = c
		u.timer = time.AfterFunc(upgradeTimeout, func() {
			if p.ws.Load() != c {
				c.Close(ws.CloseNormal, errUpgradeTimeout)
			}
		})
		p.probeOpened(c)
		return u
	})
	if err != nil {
		if u.c == nil { // never opened: nothing will report its end
			p.probeClosed(nil)
		}
		s.log.Debug("upgrade websocket failed", "remote", s.clientAddr(r), "err", err)
	}
}

// Message answers the probe and the upgrade, then serves the socket.
func (u *upgradeConn) Message(c *ws.Conn, text bool, data []byte) {
	if u.p.ws.Load() == c {
		u.p.e.Message(c, text, data)
		return
	}
	switch {
	case text && string(data) == "2probe":
		_ = c.WriteText("3probe", nil)
		u.p.probed(c)
	case text && string(data) == "5":
		u.timer.Stop()
		if !u.p.takeOver(c) {
			c.Close(ws.CloseNormal, errUpgradeRefused)
		}
	default:
		c.Close(ws.CloseProtocol, errProbe)
	}
}

// Screen judges a long message for the socket once the websocket carries
// it; a probe's messages are all short.
func (u *upgradeConn) Screen(c *ws.Conn, head []byte) bool {
	return u.p.ws.Load() != c || u.p.e.Screen(c, head)
}

// Ping counts the websocket's pings as the socket's, the probe's too:
// they come from the same peer.
func (u *upgradeConn) Ping(c *ws.Conn) bool { return u.p.e.Ping(c) }

// Closed ends the socket if the websocket had taken over; a probe that
// ends earlier leaves the session on polling.
func (u *upgradeConn) Closed(c *ws.Conn, err error) {
	u.timer.Stop()
	if u.p.probeClosed(c) {
		u.p.e.Closed(c, err)
	}
}

// shutdown ends the socket it carries, or the probe.
func (u *upgradeConn) shutdown() {
	if u.p.ws.Load() == u.c {
		u.p.e.shut(reasonShutdown, "")
		return
	}
	u.c.Close(ws.CloseGoingAway, reasonShutdown)
}

// reserveProbe admits one probe at a time, and only while polling.
func (p *pollConn) reserveProbe() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state != statePolling || p.probing {
		return false
	}
	p.probing = true
	return true
}

func (p *pollConn) probeOpened(c *ws.Conn) {
	p.mu.Lock()
	closed := p.state == stateClosed
	if !closed {
		p.probe = c
	}
	p.mu.Unlock()
	if closed {
		c.Close(ws.CloseNormal, errUpgradeRefused)
	}
}

// probed marks the probe answered: the waiting GET, and any GET until the
// upgrade, ends with a noop so that the client's polling pauses.
func (p *pollConn) probed(c *ws.Conn) {
	p.mu.Lock()
	if p.probe == c && p.state == statePolling {
		p.state = stateProbed
		if p.getting {
			p.signal()
		}
	}
	p.mu.Unlock()
}

// takeOver moves the session to c: the packets still queued are written
// to it first, in order, then every write goes to it. Writes that come
// meanwhile join the queue and move with it. The lock is not held while
// writing to c (its end may call back into probeClosed).
func (p *pollConn) takeOver(c *ws.Conn) bool {
	p.rmu.Lock() // a POST under way is handled first: its packets came first
	defer p.rmu.Unlock()
	p.mu.Lock()
	if p.probe != c || (p.state != statePolling && p.state != stateProbed) {
		p.mu.Unlock()
		return false
	}
	p.state = stateMoving
	for p.out != nil {
		batch := p.out
		p.out = nil
		p.mu.Unlock()
		for rest := batch; rest != nil; {
			pkt := rest
			if i := bytes.IndexByte(rest, recordSep); i >= 0 {
				pkt, rest = rest[:i], rest[i+1:]
			} else {
				rest = nil
			}
			_ = c.WriteText("", pkt) // on a closed websocket, probeClosed ends the socket
		}
		putBuf(batch)
		p.mu.Lock()
	}
	p.ws.Store(c)
	p.state = stateUpgraded
	if p.getting {
		p.signal() // a GET still waiting ends with a noop
	}
	p.mu.Unlock()
	p.srv.polls.remove(p) // later polling requests: 400
	return true
}

// probeClosed reports whether c carried the session (the socket then ends
// with it); a probe that ends before the upgrade is forgotten.
func (p *pollConn) probeClosed(c *ws.Conn) bool {
	if c != nil && p.ws.Load() == c {
		return true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.probe != c {
		return false
	}
	if c != nil && (p.state == stateMoving || p.state == stateUpgraded) {
		return true
	}
	p.probe, p.probing = nil, false
	if p.state == stateProbed {
		p.state = statePolling
	}
	return false
}
