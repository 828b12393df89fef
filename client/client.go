// Package client is a small Socket.IO v5 (Engine.IO v4) client: websocket,
// long-polling, and polling upgraded to websocket. The Go test suites and
// the load tool use it: it costs one goroutine and a few KB per
// connection, and its polling sends while a long-poll is pending, as
// browsers do.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
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
	// OnClose is called once when the connection ends, with the reason.
	OnClose func(reason string)
	// HTTPClient is used for polling; default a client with no timeout.
	HTTPClient *http.Client
	// Dialer is used for websocket; default websocket.DefaultDialer.
	Dialer *websocket.Dialer
}

// Event is one received event.
type Event struct {
	Name    string
	Payload json.RawMessage
	// Ack is set when the event was an acknowledgement (name is "").
	AckID int
}

// Client is one Socket.IO connection to the main namespace.
type Client struct {
	opts   Options
	base   *url.URL
	sid    string // Engine.IO session
	id     string // Socket.IO socket id
	events chan Event

	mu     sync.Mutex // guards ws writes, transport switch, acks
	postMu sync.Mutex // Engine.IO allows one POST at a time per session
	ws     *websocket.Conn
	ackSeq int
	acks   map[int]func(json.RawMessage)

	closeOnce sync.Once
	done      chan struct{}
	ctx       context.Context // cancelled on shutdown: ends a pending poll
	cancel    context.CancelFunc
	reason    string
	upgraded  chan struct{}
	upgrading atomic.Bool   // a websocket probe is under way: polling may end
	polling   chan struct{} // closed when the poll loop has ended
}

// ErrRefused is returned when the server refuses the namespace connection
// (a CONNECT_ERROR packet), with the server's message.
var ErrRefused = errors.New("connection refused")

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
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	u.Path = strings.TrimRight(o.Path, "/") + "/"
	c := &Client{opts: o, base: u, done: make(chan struct{}), acks: map[int]func(json.RawMessage){}, upgraded: make(chan struct{}), polling: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if o.OnEvent == nil {
		c.events = make(chan Event, 4096)
	}
	connected := make(chan error, 1)
	switch o.Transport {
	case WebSocket:
		err = c.dialWebSocket(ctx, connected)
	case Polling, Upgrade:
		err = c.dialPolling(ctx, connected)
	default:
		err = fmt.Errorf("unknown transport %q", o.Transport)
	}
	if err != nil {
		c.shutdown("dial failed")
		return nil, fmt.Errorf("dial %s: %w", o.Transport, err)
	}
	select {
	case err := <-connected:
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("dial %s: %w", o.Transport, err)
		}
	case <-ctx.Done():
		c.Close()
		return nil, fmt.Errorf("dial %s: %w", o.Transport, ctx.Err())
	case <-c.done:
		return nil, fmt.Errorf("dial %s: closed: %s", o.Transport, c.reason)
	}
	if o.Transport == Upgrade {
		if err := c.upgrade(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("upgrade: %w", err)
		}
	}
	return c, nil
}

// ID is the Socket.IO socket id that the server assigned.
func (c *Client) ID() string { return c.id }

// Events is the stream of received events when Options.OnEvent is nil.
func (c *Client) Events() <-chan Event { return c.events }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Upgraded reports whether the client now talks over websocket.
func (c *Client) Upgraded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ws != nil
}

// Emit sends an event with one JSON payload.
func (c *Client) Emit(event string, payload any) error {
	return c.emit(event, payload, -1)
}

// EmitAck sends an event and calls ack with the first argument of the
// server's acknowledgement.
func (c *Client) EmitAck(event string, payload any, ack func(json.RawMessage)) error {
	c.mu.Lock()
	c.ackSeq++
	id := c.ackSeq
	c.acks[id] = ack
	c.mu.Unlock()
	return c.emit(event, payload, id)
}

func (c *Client) emit(event string, payload any, ackID int) error {
	var b bytes.Buffer
	b.WriteString("42")
	if ackID >= 0 {
		fmt.Fprint(&b, ackID)
	}
	args := []any{event}
	if payload != nil {
		args = append(args, payload)
	}
	if err := json.NewEncoder(&b).Encode(args); err != nil {
		return fmt.Errorf("emit %s: %w", event, err)
	}
	return c.send(bytes.TrimRight(b.Bytes(), "\n"))
}

// SendRaw sends one Engine.IO packet as it is, for tests of malformed input.
func (c *Client) SendRaw(packet string) error { return c.send([]byte(packet)) }

// Close disconnects from the namespace and closes the connection.
func (c *Client) Close() {
	_ = c.send([]byte("41"))
	if !c.Upgraded() {
		_ = c.send([]byte("1")) // Engine.IO close: ends the pending long-poll
	}
	c.shutdown("client close")
}

// Kill drops the connection without a goodbye, as a crashed browser does.
func (c *Client) Kill() { c.shutdown("killed") }

func (c *Client) shutdown(reason string) {
	c.closeOnce.Do(func() {
		c.reason = reason
		c.cancel()
		c.mu.Lock()
		if c.ws != nil {
			_ = c.ws.Close()
		}
		c.mu.Unlock()
		close(c.done)
		if c.opts.OnClose != nil {
			c.opts.OnClose(reason)
		}
	})
}

func (c *Client) send(p []byte) error {
	select {
	case <-c.done:
		return errors.New("closed")
	default:
	}
	c.mu.Lock()
	ws := c.ws
	if ws != nil {
		err := ws.WriteMessage(websocket.TextMessage, p)
		c.mu.Unlock()
		return err
	}
	c.mu.Unlock()
	return c.post(p)
}

// handle processes one Engine.IO packet; it reports false when the
// connection must end.
func (c *Client) handle(p []byte, connected chan<- error) bool {
	if len(p) == 0 {
		return true
	}
	switch p[0] {
	case '2': // ping
		if string(p) == "2probe" {
			return true
		}
		_ = c.send([]byte("3"))
	case '1': // close
		c.shutdown("transport close")
		return false
	case '4': // message: a Socket.IO packet
		return c.handleSocketIO(p[1:], connected)
	}
	return true
}

func (c *Client) handleSocketIO(p []byte, connected chan<- error) bool {
	if len(p) == 0 {
		return true
	}
	switch p[0] {
	case '0': // CONNECT {sid}
		var h struct {
			Sid string `json:"sid"`
		}
		if err := json.Unmarshal(p[1:], &h); err != nil || h.Sid == "" {
			connected <- fmt.Errorf("bad CONNECT %q", p)
			return false
		}
		c.id = h.Sid
		connected <- nil
	case '4': // CONNECT_ERROR {message}
		var e struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(p[1:], &e)
		connected <- fmt.Errorf("%w: %s", ErrRefused, e.Message)
		return false
	case '1': // DISCONNECT
		c.shutdown("io server disconnect")
		return false
	case '2': // EVENT
		name, payload, err := splitEvent(p[1:])
		if err == nil {
			c.deliver(Event{Name: name, Payload: payload})
		}
	case '3': // ACK
		i := 1
		for i < len(p) && p[i] >= '0' && p[i] <= '9' {
			i++
		}
		var id int
		fmt.Sscan(string(p[1:i]), &id)
		var args []json.RawMessage
		_ = json.Unmarshal(p[i:], &args)
		c.mu.Lock()
		fn := c.acks[id]
		delete(c.acks, id)
		c.mu.Unlock()
		if fn != nil {
			var first json.RawMessage
			if len(args) > 0 {
				first = args[0]
			}
			fn(first)
		}
	}
	return true
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

// splitEvent reads `["name", payload?]`.
func splitEvent(b []byte) (string, json.RawMessage, error) {
	var args []json.RawMessage
	if err := json.Unmarshal(b, &args); err != nil || len(args) == 0 {
		return "", nil, fmt.Errorf("bad event %q", b)
	}
	var name string
	if err := json.Unmarshal(args[0], &name); err != nil {
		return "", nil, err
	}
	if len(args) > 1 {
		return name, args[1], nil
	}
	return name, nil, nil
}

func (c *Client) connectPacket() []byte {
	if c.opts.Auth == nil {
		return []byte("40")
	}
	b, _ := json.Marshal(c.opts.Auth)
	return append([]byte("40"), b...)
}

func (c *Client) query(transport string) url.Values {
	q := url.Values{"EIO": {"4"}, "transport": {transport}}
	if c.sid != "" {
		q.Set("sid", c.sid)
	}
	return q
}

// --- websocket ---

func (c *Client) dialWebSocket(ctx context.Context, connected chan error) error {
	u := *c.base
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	u.RawQuery = c.query("websocket").Encode()
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
	c.ws = ws
	c.mu.Unlock()
	if err := c.send(c.connectPacket()); err != nil {
		return err
	}
	go c.readWebSocket(ws, connected)
	return nil
}

func (c *Client) readWebSocket(ws *websocket.Conn, connected chan error) {
	for {
		_, p, err := ws.ReadMessage()
		if err != nil {
			c.shutdown("transport close")
			return
		}
		if !c.handle(p, connected) {
			return
		}
	}
}

// --- polling ---

func (c *Client) dialPolling(ctx context.Context, connected chan error) error {
	body, err := c.get(ctx)
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
	c.sid = open.Sid
	if err := c.post(c.connectPacket()); err != nil {
		return err
	}
	go c.pollLoop(connected)
	return nil
}

func (c *Client) pollLoop(connected chan error) {
	defer close(c.polling)
	for {
		select {
		case <-c.done:
			return
		default:
		}
		body, err := c.get(c.ctx)
		if err != nil {
			if !c.upgrading.Load() {
				c.shutdown("transport error")
			}
			return
		}
		for _, p := range bytes.Split(body, []byte{0x1e}) {
			if len(p) == 1 && p[0] == '6' { // noop: the upgrade completed
				return
			}
			if !c.handle(p, connected) {
				return
			}
		}
	}
}

func (c *Client) get(ctx context.Context) ([]byte, error) {
	u := *c.base
	u.RawQuery = c.query("polling").Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	return c.do(req)
}

func (c *Client) post(p []byte) error {
	c.postMu.Lock()
	defer c.postMu.Unlock()
	u := *c.base
	u.RawQuery = c.query("polling").Encode()
	req, err := http.NewRequest(http.MethodPost, u.String(), bytes.NewReader(p))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	_, err = c.do(req)
	return err
}

func (c *Client) do(req *http.Request) ([]byte, error) {
	for k, v := range c.opts.Header {
		req.Header[k] = v
	}
	res, err := c.opts.HTTPClient.Do(req)
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
func (c *Client) upgrade(ctx context.Context) error {
	u := *c.base
	u.Scheme = strings.Replace(u.Scheme, "http", "ws", 1)
	u.RawQuery = c.query("websocket").Encode()
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
	c.upgrading.Store(true)
	select {
	case <-c.polling:
	case <-time.After(5 * time.Second):
		ws.Close()
		return errors.New("polling did not pause")
	}
	c.mu.Lock()
	err = ws.WriteMessage(websocket.TextMessage, []byte("5"))
	c.ws = ws
	c.mu.Unlock()
	if err != nil {
		return err
	}
	close(c.upgraded)
	go c.readWebSocket(ws, make(chan error, 1))
	return nil
}
