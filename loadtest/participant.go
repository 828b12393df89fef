package loadtest

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gorilla/websocket"
	"github.com/switchboard/switchboard/client"
)

// env is what every participant shares. Everything in it is either
// immutable after start or safe for concurrent use.
type env struct {
	sc      *Scenario
	m       *Metrics
	clk     clock
	root    *actor.RootContext
	sched   *scheduler
	ready   *readiness
	reg     *registry
	players []*playerLedger
	ops     []*operatorLedger
	mix     mix
	dialer  *websocket.Dialer
	http    *http.Client
	tokens  *tokens
	pay     payloads
	log     *slog.Logger
	// owners[i] is the set {operator i}: under routing a message must
	// reach its chat's owner alone.
	owners []*opSet
}

// Messages that both kinds of participant receive.
type (
	// dialNow starts a connection attempt.
	dialNow struct{}
	// dialed is the outcome of an attempt.
	dialed struct {
		attempt int
		c       *client.Client
		err     error
		took    time.Duration
	}
	// closed says that an attempt's connection ended.
	closed struct {
		attempt int
		reason  string
	}
	// joinAcked is the server's answer to a join sent with an ack; servers
	// without acks (the Node server) never send it.
	joinAcked struct {
		attempt int
		refused string // the error code, or "" when accepted
	}
	// stopSending ends the load: no new messages or replies.
	stopSending struct{}
)

// failure is why a participant panics: its supervisor counts the kind
// and restarts it.
type failure struct {
	kind string
	err  error
}

func (f *failure) Error() string { return f.kind + ": " + f.err.Error() }

// link is the connection side that players and operators share: the
// current attempt and its client, with what the ledger keeps across the
// actor's restarts (the attempt holder, the failures that pace the
// backoff). Each actor embeds one and keeps its own role's state beside it.
type link struct {
	e        *env
	operator bool
	label    string // "player 3", "operator 2"
	conn     *conn
	failures *int
	forget   func() // the actor's own drop of the connection
	t        client.Transport
	attempt  int
	c        *client.Client
	acked    bool // the server acknowledged this connection's join: it answers acks
	counted  bool // in the connected gauge
	sending  bool
	stopped  bool // the load is over: no new messages, no reconnects
}

// receive handles the messages that both kinds of participant treat
// alike, and reports whether m was one of them.
func (k *link) receive(ctx actor.Context) bool {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		k.e.startDialing(ctx, *k.failures)
	case *blip:
		k.blip(m)
	case *stopSending:
		k.stopped, k.sending = true, false
		if ctx.Sender() != nil {
			ctx.Respond(m)
		}
	case *closed:
		if m.attempt != k.attempt || k.c == nil {
			return true // an old connection, or one that *dialed will report
		}
		k.forget()
		*k.failures++
		panic(&failure{kind: "disconnected (" + string(k.t) + "): " + m.reason, err: fmt.Errorf("%s: %s", k.label, m.reason)})
	case *actor.Restarting:
		k.forget()
		k.conn.next()
	case *actor.Stopping:
		k.forget()
		k.conn.stop()
	default:
		return false
	}
	return true
}

// next starts a new connection attempt; false once the load is over.
func (k *link) next() bool {
	if k.stopped {
		return false
	}
	k.attempt = k.conn.next()
	k.c, k.sending, k.acked = nil, false, false
	return true
}

// accept takes the outcome of a dial and counts the connection; false if
// it is an old attempt's. A failed dial panics, for the supervisor to
// restart the actor.
func (k *link) accept(m *dialed) bool {
	if m.attempt != k.attempt {
		return false
	}
	if m.err != nil {
		*k.failures++
		panic(&failure{kind: "connect: " + errKind(m.err), err: m.err})
	}
	select {
	case <-m.c.Done(): // closed before this message arrived; its *closed was ignored
		*k.failures++
		panic(&failure{kind: "disconnected while joining", err: errors.New(k.label)})
	default:
	}
	k.c = m.c
	k.e.m.dialed(k.operator, m.took)
	k.counted = true
	k.e.m.connected(k.operator, 1)
	return true
}

// join writes the join, asking for an ack; then the participant may send.
func (k *link) join(ctx actor.Context, payload join) {
	if err := k.c.EmitAck("join", payload, k.e.ackHandler(ctx.Self(), k.attempt)); err != nil {
		k.forget()
		*k.failures++
		panic(&failure{kind: "write join: " + errKind(err), err: err})
	}
	k.sending = !k.stopped
}

// joinAcked takes the server's answer to the join; false if it is an old
// attempt's. A refusal panics.
func (k *link) joinAcked(m *joinAcked) bool {
	if m.attempt != k.attempt {
		return false
	}
	if m.refused != "" {
		*k.failures++
		panic(joinRefused(k.label, m.refused))
	}
	*k.failures = 0
	k.acked = true
	return true
}

// release forgets the connection: what every actor's drop does.
func (k *link) release() {
	if k.counted {
		k.e.m.connected(k.operator, -1)
		k.counted = false
	}
	k.c = nil
	k.sending = false
}

// startDialing begins a participant's (re)start: at once the first time,
// after a growing backoff once it has failed.
func (e *env) startDialing(ctx actor.Context, failures int) {
	if d := backoff(failures); d > 0 {
		e.sched.after(d, ctx.Self(), &dialNow{})
	} else {
		ctx.Send(ctx.Self(), &dialNow{})
	}
}

// joinRefused is the failure of a participant (e.g. "operator 3") whose
// join the server refused with code.
func joinRefused(who, code string) *failure {
	return &failure{kind: "join refused: " + code, err: fmt.Errorf("%s: join refused: %s", who, code)}
}

// dial connects in the background and reports to self with *dialed, so an
// actor never blocks on the network while its mailbox fills.
// With reconnections on, r says how the connection rejoins.
func (e *env) dial(self *actor.PID, operator bool, cn *conn, attempt int, t client.Transport, auth map[string]any, onEvent func(string, json.RawMessage), r *rejoin) {
	e.m.dialStarted(operator)
	cn.pending.Add(1)
	go func() {
		defer cn.pending.Done()
		ctx, cancel := context.WithTimeout(context.Background(), e.sc.ConnectTimeout)
		defer cancel()
		start := time.Now()
		o := client.Options{
			Path:       e.sc.Path,
			Transport:  t,
			Auth:       auth,
			OnEvent:    onEvent,
			OnClose:    func(reason string) { e.root.Send(self, &closed{attempt: attempt, reason: reason}) },
			HTTPClient: e.http,
			Dialer:     e.dialer,
		}
		var cl atomic.Pointer[client.Client]
		e.reconnectOptions(&o, r, &cl)
		c, err := client.Dial(ctx, e.sc.URL, o)
		cl.Store(c)
		if err == nil && !cn.adopt(attempt, c) {
			c.Close() // the participant moved on (stopped, restarted) while this dial ran
			return
		}
		e.root.Send(self, &dialed{attempt: attempt, c: c, err: err, took: time.Since(start)})
	}()
}

// ackHandler turns a join acknowledgement into *joinAcked.
func (e *env) ackHandler(self *actor.PID, attempt int) func(json.RawMessage) {
	return func(raw json.RawMessage) {
		e.root.Send(self, &joinAcked{attempt: attempt, refused: refusal(raw)})
	}
}

// chatError counts a server refusal by code and event.
func (e *env) chatError(raw json.RawMessage) {
	var ce struct {
		Code  string `json:"code"`
		Event string `json:"event"`
	}
	_ = json.Unmarshal(raw, &ce)
	e.m.Error(fmt.Sprintf("chatError %s (%s)", ce.Code, ce.Event))
}

// emit sends an event and counts a failed write. With an ack, the server
// answers whether it accepted the event (servers that acknowledge joins
// acknowledge every event).
func (e *env) emit(c *client.Client, event string, payload any, ack ...func(json.RawMessage)) bool {
	var err error
	if len(ack) > 0 && ack[0] != nil {
		err = c.EmitAck(event, payload, ack[0])
	} else {
		err = c.Emit(event, payload)
	}
	if err != nil {
		e.m.Error("write " + event + ": " + errKind(err))
		return false
	}
	return true
}

// errKind reduces an error to a stable kind, so that thousands of
// participants failing alike make one line of the report, not thousands.
func errKind(err error) string {
	var ne interface{ Timeout() bool }
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, client.ErrRefused):
		return "refused by the server"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no free local port"
	case errors.Is(err, websocket.ErrBadHandshake):
		return "websocket handshake refused"
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && i+2 < len(s) {
		s = s[i+2:] // the innermost cause; outer layers name ids and URLs
	}
	s = strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return '#'
		}
		return r
	}, s)
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

// newHTTPClient is shared by every polling participant. The default
// transport keeps two idle connections per host, so thousands of
// long-polls would open and close a connection per request.
func newHTTPClient(insecure bool, participants int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 0
	t.MaxIdleConnsPerHost = max(participants, 64)
	t.IdleConnTimeout = 90 * time.Second
	if insecure { // staging behind a self-signed certificate
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	return &http.Client{Transport: t}
}

// newDialer is shared by every websocket participant. Write buffers come
// from a pool: an idle participant then holds only its read buffer.
func newDialer(insecure bool, timeout time.Duration) *websocket.Dialer {
	d := &websocket.Dialer{
		Proxy:            http.ProxyFromEnvironment,
		HandshakeTimeout: timeout,
		ReadBufferSize:   4096,
		WriteBufferSize:  4096,
		WriteBufferPool:  &sync.Pool{},
	}
	if insecure {
		d.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	return d
}
