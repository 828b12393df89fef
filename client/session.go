package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// session is one Engine.IO session: a websocket, or a polling session
// that may upgrade to one. A client has one at a time; a reconnection
// opens a new one.
type session struct {
	c         *Client
	sid       string
	ws        *websocket.Conn // guarded by c.mu; set once the session talks websocket
	ctx       context.Context // cancelled when the session ends: ends a pending poll or POST
	cancel    context.CancelFunc
	postMu    sync.Mutex    // Engine.IO allows one POST at a time per session
	upgrading atomic.Bool   // a websocket probe is under way: polling may end
	polling   chan struct{} // closed when the poll loop has ended

	reconnect   bool      // this session's CONNECT asks to recover the socket
	since       time.Time // the drop that this reconnection repairs
	connected   chan error
	established atomic.Bool // the server answered the CONNECT
	ended       atomic.Bool
	droppedAt   time.Time // set by Drop, guarded by c.mu
}

// errUnsent marks a write that certainly did not reach the server.
var errUnsent = errors.New("not sent")

// open starts a session: the transport, the CONNECT, the server's answer,
// and for Upgrade the switch to websocket. The session is current from
// its transport's open on, so the CONNECT precedes anything else on it.
func (c *Client) open(ctx context.Context, since time.Time, reconnect bool) (*session, error) {
	s := &session{c: c, polling: make(chan struct{}), connected: make(chan error, 1), reconnect: reconnect, since: since}
	s.ctx, s.cancel = context.WithCancel(c.ctx)
	var err error
	if c.opts.Transport == WebSocket {
		err = s.dialWebSocket(ctx)
	} else {
		err = s.dialPolling(ctx)
	}
	if err == nil {
		select {
		case err = <-s.connected:
		case <-ctx.Done():
			err = ctx.Err()
		case <-c.done:
			err = fmt.Errorf("%w: %s", errClosed, c.reason)
		}
	}
	if err == nil && c.opts.Transport == Upgrade {
		if err = s.upgrade(ctx); err != nil {
			err = fmt.Errorf("upgrade: %w", err)
		}
	}
	if err != nil {
		s.end()
		return nil, err
	}
	return s, nil
}

// connectedWith reports the CONNECT's outcome to open, once.
func (s *session) connectedWith(err error) {
	select {
	case s.connected <- err:
	default:
	}
}

// end closes the session's transport; it reports whether this call ended
// it.
func (s *session) end() bool {
	if !s.ended.CompareAndSwap(false, true) {
		return false
	}
	s.cancel()
	c := s.c
	c.mu.Lock()
	if s.ws != nil {
		_ = s.ws.Close()
	}
	if c.cur == s {
		c.connected = false
	}
	c.mu.Unlock()
	return true
}

// lost is a transport that closed under the session: its open fails if
// the CONNECT had not come yet; otherwise the client reconnects, or ends.
func (s *session) lost(reason string) {
	if !s.end() {
		return
	}
	s.connectedWith(errors.New(reason))
	c := s.c
	if !s.established.Load() || c.closed() {
		return // its open reports it
	}
	if !c.opts.Reconnect {
		c.shutdown(reason)
		return
	}
	c.mu.Lock()
	since := s.droppedAt
	c.mu.Unlock()
	if since.IsZero() {
		since = time.Now()
	}
	if c.reconnecting.CompareAndSwap(false, true) {
		go c.reconnect(since)
	}
}

// write sends one Engine.IO packet on this session.
func (s *session) write(p []byte) error {
	c := s.c
	c.mu.Lock()
	if ws := s.ws; ws != nil {
		err := ws.WriteMessage(websocket.TextMessage, p)
		c.mu.Unlock()
		if err != nil {
			return fmt.Errorf("%w: %w", errUnsent, err)
		}
		return nil
	}
	c.mu.Unlock()
	if s.ended.Load() {
		return fmt.Errorf("%w: session ended", errUnsent)
	}
	return s.post(p)
}

// handle processes one Engine.IO packet; it reports false when the
// session's reader must stop.
func (s *session) handle(p []byte) bool {
	if len(p) == 0 {
		return true
	}
	switch p[0] {
	case '2': // ping
		if string(p) == "2probe" {
			return true
		}
		_ = s.write([]byte("3"))
	case '1': // close: the transport ends, not the socket
		s.lost("transport close")
		return false
	case '4': // message: a Socket.IO packet
		return s.c.handleSocketIO(s, p[1:])
	}
	return true
}

func (s *session) query(transport string) url.Values {
	q := url.Values{"EIO": {"4"}, "transport": {transport}}
	if s.sid != "" {
		q.Set("sid", s.sid)
	}
	return q
}

// --- websocket ---

func (s *session) dialWebSocket(ctx context.Context) error {
	c := s.c
	u := *c.base
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	u.RawQuery = s.query("websocket").Encode()
	ws, res, err := c.opts.Dialer.DialContext(ctx, u.String(), c.opts.Header)
	if err != nil {
		if res != nil {
			body, _ := io.ReadAll(io.LimitReader(res.Body, 512))
			return fmt.Errorf("%w: %d %s", err, res.StatusCode, body)
		}
		return err
	}
	_, open, err := ws.ReadMessage()
	if err != nil || len(open) == 0 || open[0] != '0' {
		ws.Close()
		return fmt.Errorf("bad open packet %q: %v", open, err)
	}
	c.mu.Lock()
	s.ws = ws
	c.cur = s
	c.mu.Unlock()
	if err := s.write(c.connectPacket()); err != nil {
		return err
	}
	go s.readWebSocket(ws)
	return nil
}

func (s *session) readWebSocket(ws *websocket.Conn) {
	for {
		_, p, err := ws.ReadMessage()
		if err != nil {
			s.lost("transport close")
			return
		}
		if !s.handle(p) {
			return
		}
	}
}

// cut closes a websocket's TCP connection without a close frame. The
// write side is shut first, so what was written reaches the server before
// the end of the stream (a bare close with unread input would reset the
// connection and could discard it).
func cut(ws *websocket.Conn) {
	if tc, ok := ws.NetConn().(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_ = ws.NetConn().Close()
}

// --- polling ---

func (s *session) dialPolling(ctx context.Context) error {
	body, err := s.get(ctx)
	if err != nil {
		return err
	}
	if len(body) == 0 || body[0] != '0' {
		return fmt.Errorf("bad open packet %q", body)
	}
	var open struct {
		Sid string `json:"sid"`
	}
	if err := json.Unmarshal(body[1:], &open); err != nil {
		return fmt.Errorf("bad open packet %q: %w", body, err)
	}
	s.sid = open.Sid
	c := s.c
	c.mu.Lock()
	c.cur = s
	c.mu.Unlock()
	if err := s.post(c.connectPacket()); err != nil {
		return err
	}
	go s.pollLoop()
	return nil
}

func (s *session) pollLoop() {
	defer close(s.polling)
	for {
		body, err := s.get(s.ctx)
		if err != nil {
			if !s.upgrading.Load() {
				s.lost("transport error")
			}
			return
		}
		for _, p := range bytes.Split(body, []byte{0x1e}) {
			if len(p) == 1 && p[0] == '6' { // noop: the upgrade completed
				return
			}
			if !s.handle(p) {
				return
			}
		}
	}
}

func (s *session) get(ctx context.Context) ([]byte, error) {
	u := *s.c.base
	u.RawQuery = s.query("polling").Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	return s.do(req)
}

func (s *session) post(p []byte) error {
	s.postMu.Lock()
	defer s.postMu.Unlock()
	u := *s.c.base
	u.RawQuery = s.query("polling").Encode()
	req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, u.String(), bytes.NewReader(p))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	_, err = s.do(req)
	return err
}

func (s *session) do(req *http.Request) ([]byte, error) {
	for k, v := range s.c.opts.Header {
		req.Header[k] = v
	}
	res, err := s.c.opts.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %d %s", req.Method, res.StatusCode, bytes.TrimSpace(body))
	}
	return body, nil
}

// upgrade probes a websocket for the polling session and switches to it.
func (s *session) upgrade(ctx context.Context) error {
	c := s.c
	u := *c.base
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	u.RawQuery = s.query("websocket").Encode()
	ws, _, err := c.opts.Dialer.DialContext(ctx, u.String(), c.opts.Header)
	if err != nil {
		return err
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte("2probe")); err != nil {
		ws.Close()
		return err
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, p, err := ws.ReadMessage()
	if err != nil || string(p) != "3probe" {
		ws.Close()
		return fmt.Errorf("probe answered %q: %v", p, err)
	}
	_ = ws.SetReadDeadline(time.Time{})
	// As browsers do: let the pending long-poll finish (the server answers
	// it with a noop) before switching, so no packet is read twice or lost.
	s.upgrading.Store(true)
	select {
	case <-s.polling:
	case <-time.After(5 * time.Second):
		ws.Close()
		return errors.New("polling did not pause")
	}
	c.mu.Lock()
	if s.ended.Load() {
		c.mu.Unlock()
		ws.Close()
		return errors.New("session ended while upgrading")
	}
	err = ws.WriteMessage(websocket.TextMessage, []byte("5"))
	s.ws = ws
	c.mu.Unlock()
	if err != nil {
		return err
	}
	go s.readWebSocket(ws)
	return nil
}
