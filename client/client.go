// Package client is a small Socket.IO v5 (Engine.IO v4) client: websocket,
// long-polling, and polling upgraded to websocket. The Go test suites and
// the load tool use it: it costs one goroutine and a few KB per
// connection, and its polling sends while a long-poll is pending, as
// browsers do. With Options.Reconnect it also does what socket.io-client
// 4.6+ does after a network blip: it reconnects by itself and asks the
// server to recover its session (reconnect.go).
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/switchboard/switchboard/internal/jsonscan"
)

// Transport is how a client connects.
type Transport string

// The transports of Engine.IO; Upgrade starts on polling and upgrades.
const (
	WebSocket Transport = "websocket"
	Polling   Transport = "polling"
	Upgrade   Transport = "upgrade"
)

// Options configure Dial.
type Options struct {
	// Path is the Socket.IO path; default /chat.
	Path string
	// Transport defaults to WebSocket.
	Transport Transport
	// Auth is the handshake's auth object (Socket.IO's `auth` option).
	Auth map[string]any
	// Header is sent with every HTTP request (Origin, Authorization...).
	Header http.Header
	// OnEvent receives every event, on the client's reader goroutine; the
	// payload is the raw JSON of the first argument. Nil: use Events().
	OnEvent func(name string, payload json.RawMessage)
	// OnClose is called once when the connection ends for good, with the
	// reason; with Reconnect, a transport that drops does not end it.
	OnClose func(reason string)
	// HTTPClient is used for polling; default a client with no timeout.
	HTTPClient *http.Client
	// Dialer is used for websocket; default websocket.DefaultDialer.
	Dialer *websocket.Dialer

	// Reconnect: when the transport closes without a Socket.IO DISCONNECT
	// from the server (a network blip, a server restarting), reconnect
	// over the same transport, as socket.io-client does, and ask the server
	// to recover the socket (its pid and the last offset seen go in the
	// CONNECT). Emits made while disconnected are buffered and sent once
	// connected again. Off by default: the test suites want to see drops.
	Reconnect bool
	// ReconnectDelay is the first wait before a reconnection attempt,
	// doubled for each failed one up to ReconnectDelayMax, each ±50 % at
	// random so a crowd dropped at once does not come back at once.
	// Default 1 s and 5 s, socket.io-client's.
	ReconnectDelay, ReconnectDelayMax time.Duration
	// ReconnectAttempts before giving up (OnClose then says why); 0 never
	// gives up, as socket.io-client.
	ReconnectAttempts int
	// ConnectTimeout bounds one reconnection attempt's handshake; default
	// 20 s, socket.io-client's `timeout`.
	ConnectTimeout time.Duration
	// OnReconnect reports each reconnection on the reader goroutine, once
	// the server has answered the CONNECT and before anything buffered is
	// sent: recovered says the server restored the socket (same ID, still
	// joined, the missed events delivered just before); otherwise it is a
	// fresh socket, with a new ID, that must join again. took runs from
	// the drop to the server's CONNECT.
	OnReconnect func(recovered bool, took time.Duration)
	// Rejoin, if set, is emitted first on a fresh socket after a
	// reconnection that the server could not recover, before what was
	// buffered: what a widget does on 'connect'. (socket.io-client sends
	// its buffer before 'connect' listeners run, so a widget's buffered
	// messages would reach the server before its join.)
	Rejoin *Emission
}

// Emission is one event to emit, with an optional acknowledgement.
type Emission struct {
	Event   string
	Payload any
	Ack     func(json.RawMessage)
}

// Event is one received event.
type Event struct {
	Name string
	// Payload is the first argument, the offset aside.
	Payload json.RawMessage
	// Offset is the server's offset of this event when connection-state
	// recovery is on (the last argument, a string); "" for volatile events.
	Offset string
	// Ack is set when the event was an acknowledgement (name is "").
	AckID int
}

// Client is one Socket.IO connection to the main namespace, over one
// Engine.IO session at a time (several in its life with Reconnect).
type Client struct {
	opts   Options
	base   *url.URL
	events chan Event

	// sendMu orders the socket's packets: emits, and on a reconnection the
	// rejoin and the buffer, which must go before any later emit.
	sendMu sync.Mutex
	mu     sync.Mutex // guards the fields below and websocket writes
	cur    *session   // the current Engine.IO session
	id     string     // Socket.IO socket id
	pid    string     // private id, for recovery; "" when the server does not recover
	offset string     // the last event's offset
	// connected: the namespace is connected, emits go out; otherwise they
	// are buffered until a reconnection completes.
	connected bool
	buffered  [][]byte
	recovered bool
	ackSeq    int
	acks      map[int]func(json.RawMessage)
	names     map[string]string // event names seen, each kept once (eventName)

	reconnecting atomic.Bool // one reconnection loop at a time
	closeOnce    sync.Once
	done         chan struct{}
	ctx          context.Context // cancelled on shutdown: ends every session
	cancel       context.CancelFunc
	reason       string
}

// ErrRefused is returned when the server refuses the namespace connection
// (a CONNECT_ERROR packet), with the server's message.
var ErrRefused = errors.New("connection refused")

var errClosed = errors.New("closed")

// Dial connects to baseURL (http or https) and waits for the Socket.IO
// handshake to complete.
func Dial(ctx context.Context, baseURL string, o Options) (*Client, error) {
	if o.Path == "" {
		o.Path = "/chat"
	}
	if o.Transport == "" {
		o.Transport = WebSocket
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{}
	}
	if o.Dialer == nil {
		o.Dialer = websocket.DefaultDialer
	}
	if o.ReconnectDelay <= 0 {
		o.ReconnectDelay = time.Second
	}
	if o.ReconnectDelayMax < o.ReconnectDelay {
		o.ReconnectDelayMax = max(5*time.Second, o.ReconnectDelay)
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 20 * time.Second
	}
	switch o.Transport {
	case WebSocket, Polling, Upgrade:
	default:
		return nil, fmt.Errorf("dial: unknown transport %q", o.Transport)
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	u.Path = strings.TrimRight(o.Path, "/") + "/"
	c := &Client{opts: o, base: u, done: make(chan struct{}), acks: map[int]func(json.RawMessage){}}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if o.OnEvent == nil {
		c.events = make(chan Event, 4096)
	}
	if _, err := c.open(ctx, time.Time{}, false); err != nil {
		c.shutdown("dial failed")
		return nil, fmt.Errorf("dial %s: %w", o.Transport, err)
	}
	return c, nil
}

// ID is the Socket.IO socket id that the server assigned; it changes when
// a reconnection is not recovered.
func (c *Client) ID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.id
}

// Recovered reports whether the last reconnection was recovered by the
// server (false before any).
func (c *Client) Recovered() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recovered
}

// Offset is the offset of the last event received ("" if none yet, or the
// server does not recover sessions).
func (c *Client) Offset() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offset
}

// Connected reports whether the namespace is connected now (false while a
// reconnection is under way).
func (c *Client) Connected() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.connected
}

// Events is the stream of received events when Options.OnEvent is nil.
func (c *Client) Events() <-chan Event { return c.events }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Upgraded reports whether the client now talks over websocket.
func (c *Client) Upgraded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur != nil && c.cur.ws != nil
}

// Emit sends an event with one JSON payload.
func (c *Client) Emit(event string, payload any) error {
	p, err := c.packet(event, payload, nil)
	if err != nil {
		return err
	}
	return c.send(p)
}

// EmitAck sends an event and calls ack with the first argument of the
// server's acknowledgement.
func (c *Client) EmitAck(event string, payload any, ack func(json.RawMessage)) error {
	p, err := c.packet(event, payload, ack)
	if err != nil {
		return err
	}
	return c.send(p)
}

// packet encodes an EVENT, registering its ack if it has one:
// 42<id>["event",payload], as encoding/json writes the two.
func (c *Client) packet(event string, payload any, ack func(json.RawMessage)) ([]byte, error) {
	b := make([]byte, 0, 96)
	b = append(b, "42"...)
	if ack != nil {
		c.mu.Lock()
		c.ackSeq++
		id := c.ackSeq
		c.acks[id] = ack
		c.mu.Unlock()
		b = strconv.AppendInt(b, int64(id), 10)
	}
	b = append(b, '[')
	if plainName(event) {
		b = append(append(append(b, '"'), event...), '"')
	} else {
		n, err := json.Marshal(event)
		if err != nil {
			return nil, fmt.Errorf("emit %s: %w", event, err)
		}
		b = append(b, n...)
	}
	if payload != nil {
		v, err := json.Marshal(payload)
		if err != nil {
			return nil, fmt.Errorf("emit %s: %w", event, err)
		}
		b = append(append(b, ','), v...)
	}
	return append(b, ']'), nil
}

// plainName reports whether encoding/json writes s unchanged between its
// quotes: printable ASCII, nothing it escapes.
func plainName(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// firstArg is the first element of an ACK's argument list, nil if there
// is none or the list is malformed.
func firstArg(b []byte) json.RawMessage {
	it := jsonscan.NewArray(b)
	if !it.Next() {
		return nil
	}
	first := it.Value()
	for it.Next() {
	}
	if it.Err() != nil {
		return nil
	}
	return first
}

// SendRaw sends one Engine.IO packet as it is, for tests of malformed input.
func (c *Client) SendRaw(packet string) error { return c.send([]byte(packet)) }

// Close disconnects from the namespace and closes the connection.
func (c *Client) Close() {
	c.sendMu.Lock()
	c.mu.Lock()
	s, connected := c.cur, c.connected
	upgraded := s != nil && s.ws != nil
	c.mu.Unlock()
	if s != nil && connected {
		_ = s.write([]byte("41"))
		if !upgraded {
			_ = s.write([]byte("1")) // Engine.IO close: ends the pending long-poll
		}
	}
	c.sendMu.Unlock()
	c.shutdown("client close")
}

// Kill drops the connection without a goodbye, as a crashed browser does;
// it never reconnects.
func (c *Client) Kill() { c.shutdown("killed") }

func (c *Client) shutdown(reason string) {
	c.closeOnce.Do(func() {
		c.reason = reason
		c.cancel()
		c.mu.Lock()
		c.connected = false
		c.buffered = nil
		if c.cur != nil && c.cur.ws != nil {
			_ = c.cur.ws.Close()
		}
		c.mu.Unlock()
		close(c.done)
		if c.opts.OnClose != nil {
			c.opts.OnClose(reason)
		}
	})
}

func (c *Client) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// send writes one Socket.IO packet of the application's, or buffers it
// while a reconnection is under way.
func (c *Client) send(p []byte) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.mu.Lock()
	if c.closed() {
		c.mu.Unlock()
		return errClosed
	}
	if !c.connected {
		c.buffered = append(c.buffered, p)
		c.mu.Unlock()
		return nil
	}
	s := c.cur
	c.mu.Unlock()
	err := s.write(p)
	if errors.Is(err, errUnsent) && c.opts.Reconnect {
		// The websocket broke before the frame was out: the reconnection
		// that follows sends it, as socket.io-client's buffer does.
		c.mu.Lock()
		if !c.closed() {
			c.buffered = append(c.buffered, p)
			err = nil
		}
		c.mu.Unlock()
	}
	return err
}

// handleSocketIO processes one Socket.IO packet of session s; it reports
// false when the session's reader must stop.
func (c *Client) handleSocketIO(s *session, p []byte) bool {
	if len(p) == 0 {
		return true
	}
	switch p[0] {
	case '0': // CONNECT {sid, pid?}
		var h struct {
			Sid string `json:"sid"`
			Pid string `json:"pid"`
		}
		if err := json.Unmarshal(p[1:], &h); err != nil || h.Sid == "" {
			s.connectedWith(fmt.Errorf("bad CONNECT %q", p))
			return false
		}
		c.onConnect(s, h.Sid, h.Pid)
	case '4': // CONNECT_ERROR {message}
		var e struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(p[1:], &e)
		s.connectedWith(fmt.Errorf("%w: %s", ErrRefused, e.Message))
		return false
	case '1': // DISCONNECT: "io server disconnect", never reconnected
		c.shutdown("io server disconnect")
		return false
	case '2': // EVENT
		if ev, err := c.parseEvent(p[1:]); err == nil {
			c.deliver(ev)
		}
	case '3': // ACK: volatile, it never carries an offset
		i := 1
		for i < len(p) && p[i] >= '0' && p[i] <= '9' {
			i++
		}
		id, err := strconv.Atoi(string(p[1:i]))
		if err != nil {
			id = 0
		}
		c.mu.Lock()
		fn := c.acks[id]
		delete(c.acks, id)
		c.mu.Unlock()
		if fn != nil {
			fn(firstArg(p[i:]))
		}
	}
	return true
}

// onConnect takes the server's CONNECT. On a reconnection it reports the
// outcome, rejoins a fresh socket, and sends what was buffered, all before
// any later emit (they wait on sendMu).
func (c *Client) onConnect(s *session, sid, pid string) {
	c.mu.Lock()
	recovered := s.reconnect && pid != "" && pid == c.pid
	if s.reconnect && !recovered {
		c.offset = "" // the old socket's offsets mean nothing to the new one
	}
	c.id, c.pid = sid, pid
	if s.reconnect {
		c.recovered = recovered
	}
	c.mu.Unlock()
	s.established.Store(true)
	if !s.reconnect {
		c.mu.Lock()
		c.connected = !s.ended.Load()
		c.mu.Unlock()
		s.connectedWith(nil)
		return
	}
	if fn := c.opts.OnReconnect; fn != nil {
		fn(recovered, time.Since(s.since))
	}
	c.flush(s, !recovered)
	s.connectedWith(nil)
}

// flush sends, on a reconnected session, the rejoin (for a fresh socket)
// and then the buffer, and lets emits through again.
func (c *Client) flush(s *session, fresh bool) {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	var out [][]byte
	if fresh && c.opts.Rejoin != nil {
		r := c.opts.Rejoin
		if p, err := c.packet(r.Event, r.Payload, r.Ack); err == nil {
			out = append(out, p)
		}
	}
	c.mu.Lock()
	out = append(out, c.buffered...)
	c.buffered = nil
	c.mu.Unlock()
	for i, p := range out {
		if err := s.write(p); err != nil {
			// The new session broke already: keep the rest for the next.
			c.mu.Lock()
			if !c.closed() {
				c.buffered = append(out[i:len(out):len(out)], c.buffered...)
			}
			c.mu.Unlock()
			return
		}
	}
	c.mu.Lock()
	c.connected = c.cur == s && !s.ended.Load() && !c.closed()
	c.mu.Unlock()
}

func (c *Client) deliver(ev Event) {
	if c.opts.OnEvent != nil {
		c.opts.OnEvent(ev.Name, ev.Payload)
		return
	}
	select {
	case c.events <- ev:
	case <-c.done:
	}
}

// parseEvent reads `["name", payload?, offset?]`. As socket.io-client
// does, once the server has given a pid, an event whose last argument is a
// string carries its offset there; it is recorded before the event is
// delivered, on the reader goroutine, so the offset sent on a reconnection
// is always that of the last event delivered. The payload is a slice of b
// (each packet is read into a buffer of its own), and b is refused
// whenever encoding/json would refuse it.
func (c *Client) parseEvent(b []byte) (Event, error) {
	var first, second, last []byte
	n := 0
	for it := jsonscan.NewArray(b); ; {
		if !it.Next() {
			if it.Err() != nil || n == 0 {
				return Event{}, fmt.Errorf("bad event %q", b)
			}
			break
		}
		switch n {
		case 0:
			first = it.Value()
		case 1:
			second = it.Value()
		}
		last = it.Value()
		n++
	}
	var ev Event
	plain, isPlain := jsonscan.Plain(first)
	if !isPlain {
		if name, ok := jsonscan.Unquote(first); ok {
			ev.Name = name
		} else if err := json.Unmarshal(first, &ev.Name); err != nil { // null, or not a string
			return Event{}, fmt.Errorf("bad event name %q: %w", first, err)
		}
	}
	rest := n - 1
	c.mu.Lock()
	defer c.mu.Unlock()
	if isPlain {
		ev.Name = c.eventName(plain)
	}
	if c.pid != "" && rest > 0 && last[0] == '"' {
		if off, ok := jsonscan.Unquote(last); ok {
			ev.Offset, c.offset = off, off
			rest--
		}
	}
	if rest > 0 {
		ev.Payload = second
	}
	return ev, nil
}

// maxNames bounds the event names a client keeps (a server could send
// any); past it, names are copied from each packet.
const maxNames = 64

// eventName returns name as a string, the same one for each event of that
// name: a server sends a few names, tens of thousands of times a second
// to a load test. c.mu is held.
func (c *Client) eventName(name []byte) string {
	if s, ok := c.names[string(name)]; ok {
		return s
	}
	s := string(name)
	if len(c.names) < maxNames {
		if c.names == nil {
			c.names = map[string]string{}
		}
		c.names[s] = s
	}
	return s
}

// connectPacket is the CONNECT: the auth, plus on a reconnection the pid
// and the last offset, for the server to recover the socket.
func (c *Client) connectPacket() []byte {
	c.mu.Lock()
	pid, offset := c.pid, c.offset
	c.mu.Unlock()
	if c.opts.Auth == nil && pid == "" {
		return []byte("40")
	}
	auth := make(map[string]any, len(c.opts.Auth)+2)
	for k, v := range c.opts.Auth {
		auth[k] = v
	}
	if pid != "" {
		auth["pid"] = pid
		if offset != "" {
			auth["offset"] = offset
		}
	}
	b, _ := json.Marshal(auth)
	return append([]byte("40"), b...)
}
