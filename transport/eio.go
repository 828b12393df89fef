package transport

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/actors"
	"github.com/switchboard/switchboard/internal/jsonscan"
	"github.com/switchboard/switchboard/messages"
	"github.com/switchboard/switchboard/transport/ws"
)

// Engine.IO 4 and Socket.IO 5 (namespace "/") are spoken here, over a
// websocket of transport/ws or over long-polling (polling.go, upgrade.go):
// one small struct per socket and no goroutine of its own. Engine.IO 3
// clients go to the Socket.IO library (engine.go).

// maxAttachments bounds the binary attachments one event may announce.
const maxAttachments = 10

// closeReason is why a socket ended, in Socket.IO's words.
type closeReason string

func (r closeReason) Error() string { return string(r) }

const (
	reasonServer      closeReason = "server namespace disconnect"
	reasonClient      closeReason = "client namespace disconnect"
	reasonTransport   closeReason = "transport close"
	reasonPingTimeout closeReason = "ping timeout"
	reasonParse       closeReason = "parse error"
	reasonNoConnect   closeReason = "connect timeout"
	reasonShutdown    closeReason = "server shutting down"
	// Not Socket.IO's: the transport of a socket that recovered elsewhere.
	reasonReplaced       closeReason = "replaced by a recovered connection"
	reasonTransportError closeReason = "transport error"
	// Not Socket.IO's either: bounds on what a peer may make the server hold.
	reasonTooLarge closeReason = "message too large"
	reasonTimeout  closeReason = "message timeout"
	reasonBusy     closeReason = "server busy"
	reasonFlood    closeReason = "too many packets dropped"
)

// serveNative upgrades r and serves it as one Socket.IO connection.
func (s *Server) serveNative(w http.ResponseWriter, r *http.Request) {
	addr, token := s.clientAddr(r), bearer(r)
	_, err := s.wss.Upgrade(w, r, func(c *ws.Conn) ws.Handler {
		e := s.newSocket(c, r, addr, token).start()
		_ = c.WriteText("0", s.openPacket(newID(), false))
		return e
	})
	if err != nil {
		s.log.Debug("websocket upgrade failed", "remote", addr, "err", err)
	}
}

// newSocket makes a native socket on transport c: it counts against its
// address from now on (the handshake's admission); once started, its
// heartbeat runs and it must CONNECT within the connect timeout.
func (s *Server) newSocket(c engineConn, r *http.Request, addr, token string) *eioSocket {
	e := &eioSocket{srv: s, c: c, addr: addr, bearer: token, opened: time.Now()}
	if admitted(r) {
		e.counted = addr
	}
	e.drops = newBucket(s.cfg.MessageRate+s.cfg.TypingRate, s.cfg.MessageBurst+s.cfg.TypingBurst, e.opened)
	return e
}

// start runs the socket's timers: its heartbeat and its connect timeout.
// The caller has finished wiring it (the timers read its transport).
func (e *eioSocket) start() *eioSocket {
	e.mu.Lock()
	e.timer = time.AfterFunc(e.srv.cfg.PingInterval, e.beat)
	e.connectTimer = time.AfterFunc(e.srv.connectTimeout(), e.noConnect)
	e.mu.Unlock()
	return e
}

// connectTimeout is the configured one, or Socket.IO's 45 s for a Config
// not from Load.
func (s *Server) connectTimeout() time.Duration {
	return cmp.Or(s.cfg.ConnectTimeout, 45*time.Second)
}

// messageTimeout bounds how long a message may take to arrive whole.
func (s *Server) messageTimeout() time.Duration {
	return cmp.Or(s.cfg.MessageTimeout, ws.DefaultMessageTimeout)
}

// openPacket is Engine.IO's handshake; a polling session may upgrade.
func (s *Server) openPacket(sid string, upgradable bool) []byte {
	upgrades := "[]"
	if upgradable {
		upgrades = `["websocket"]`
	}
	return fmt.Appendf(nil, `{"sid":"%s","upgrades":%s,"pingInterval":%d,"pingTimeout":%d,"maxPayload":%d}`,
		sid, upgrades, s.cfg.PingInterval.Milliseconds(), s.cfg.PingTimeout.Milliseconds(), s.wssMaxPayload)
}

// newID is a random id of 20 URL-safe characters, as Socket.IO's.
func newID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// eioSocket is one Socket.IO socket on its own Engine.IO connection. It is
// the session actor's Conn; the websocket poller or a polling POST calls
// Message, the session Write. c is its transport: a *ws.Conn, or a
// *pollConn (which after an upgrade writes to its websocket).
type eioSocket struct {
	srv    *Server
	c      engineConn
	addr   string
	bearer string
	opened time.Time

	id         atomic.Pointer[string]         // set at CONNECT (a recovered socket's old id)
	sess       atomic.Pointer[actors.Session] // the session, once connected
	connecting atomic.Bool                    // a CONNECT was taken: only one is
	closed     atomic.Bool

	// counted is the address whose gate counts this connection, from its
	// handshake until Closed ("" when not counted: an exempt address).
	counted  string
	released atomic.Bool
	// binary is an event waiting for its attachments; its bytes are held
	// against the server's buffer budget until it is whole or the socket
	// ends.
	binary atomic.Pointer[binaryEvent]
	// reading is what a polling POST under way holds of its body.
	reading atomic.Int64

	// writes counts frames written; a heartbeat answered after them
	// confirms them (confirmed), so the session can forget them.
	writes    atomic.Uint64
	confirmed atomic.Uint64

	mu           sync.Mutex // heartbeat; orders a CONNECT's end with Closed; what follows
	timer        *time.Timer
	connectTimer *time.Timer
	awaitingPong bool
	pingMark     uint64 // writes before the ping awaiting its pong
	// drops bounds the packets the server reads and drops (noops, acks,
	// other namespaces, events before CONNECT): past it each one is a
	// strike, and AbuseLimit strikes within abuseWindow end the socket, as
	// refused events do in its session.
	drops       bucket
	strikes     int
	strikesFrom time.Time
	// screened is how many bytes of unknown events the websocket server
	// dropped unread for this socket since screenedFrom: a rate of events
	// does not bound bytes when each is as large as maxPayload.
	screened     int64
	screenedFrom time.Time
}

// ID is the Socket.IO socket id ("" before CONNECT).
func (e *eioSocket) ID() string {
	if id := e.id.Load(); id != nil {
		return *id
	}
	return ""
}

// Write queues a frame; a socket that has stopped reading past the
// pending-bytes limit is disconnected instead.
func (e *eioSocket) Write(f *messages.Frame) {
	err := e.c.WriteText("4", f.Packet)
	// Counted once queued, so a ping's mark never covers a frame behind it.
	e.writes.Add(1)
	e.slow(err)
}

// reply queues an answer of the transport's own (a pong, an ack, an
// error), bounded as frames are.
func (e *eioSocket) reply(prefix string, payload []byte) {
	e.slow(e.c.WriteText(prefix, payload))
}

// slow disconnects a socket whose write found it past the pending-bytes
// limit: it has stopped reading.
func (e *eioSocket) slow(err error) {
	if errors.Is(err, ws.ErrSlow) {
		if !e.closed.Load() {
			e.srv.met.Refused("write", messages.CodeSlowConsumer)
		}
		e.Close(fmt.Sprintf("slow consumer: %d bytes unsent", e.c.Pending()))
	}
}

// Confirmed is how many frames the client has been seen to read.
func (e *eioSocket) Confirmed() uint64 { return e.confirmed.Load() }

// Abandon closes a transport that a recovered socket replaced, without a
// DISCONNECT: the client has moved on, and the session ignores its end.
func (e *eioSocket) Abandon() { e.shut(reasonReplaced, "replaced by a recovered connection") }

// Close disconnects the socket as Socket.IO's disconnect(true) does: a
// DISCONNECT packet, then the connection closes.
func (e *eioSocket) Close(reason string) {
	e.shut(reasonServer, reason)
}

func (e *eioSocket) shut(why closeReason, logReason string) {
	e.end(ws.CloseNormal, why, logReason)
}

// end closes the socket's transport with a websocket close code.
func (e *eioSocket) end(code int, why closeReason, logReason string) {
	if e.closed.Swap(true) {
		return
	}
	if logReason != "" {
		e.srv.log.Info("closing socket", "socket", e.ID(), "remote", e.addr, "reason", logReason)
	}
	// Only a server's deliberate disconnect says so: socket.io-client never
	// reconnects after a DISCONNECT ("io server disconnect"), so a shutdown
	// (a deploy) only closes the transport, and every client comes back.
	if why == reasonServer {
		_ = e.c.WriteText("41", nil)
	}
	e.c.Close(code, why)
}

// noConnect ends a connection that sent no CONNECT in time: until then it
// holds a descriptor and counts against its address for nothing.
func (e *eioSocket) noConnect() {
	if e.sess.Load() == nil && !e.connecting.Load() {
		e.shut(reasonNoConnect, fmt.Sprintf("no CONNECT within %s", e.srv.connectTimeout()))
	}
}

// abuseWindow is how long dropped packets' strikes are remembered, as
// refused events' in a session.
const abuseWindow = 10 * time.Second

// dropped counts a packet that the server read and does nothing with, or
// only answers. Within the socket's rate it is free, and true says it may
// be answered; past it, it is a strike, and AbuseLimit strikes within
// abuseWindow close the socket (1008).
func (e *eioSocket) dropped() bool {
	now := time.Now()
	e.mu.Lock()
	if e.drops.take(now) {
		e.mu.Unlock()
		return true
	}
	if now.Sub(e.strikesFrom) > abuseWindow {
		e.strikes, e.strikesFrom = 0, now
	}
	e.strikes++
	over := e.srv.cfg.AbuseLimit > 0 && e.strikes >= e.srv.cfg.AbuseLimit
	e.mu.Unlock()
	if over {
		e.srv.met.Refused("packet", "flood")
		e.end(ws.ClosePolicy, reasonFlood, fmt.Sprintf("%d packets dropped past the rate within %s", e.srv.cfg.AbuseLimit, abuseWindow))
	}
	return false
}

// beat is the heartbeat: a ping every interval, and the end of a socket
// whose pong does not come within the timeout.
func (e *eioSocket) beat() {
	e.mu.Lock()
	late := e.awaitingPong
	if !late {
		e.awaitingPong = true
		e.pingMark = e.writes.Load()
		e.timer.Reset(e.srv.cfg.PingTimeout)
	}
	e.mu.Unlock()
	switch {
	case late, e.pollStale():
		e.shut(reasonPingTimeout, "")
	default:
		_ = e.c.WriteText("2", nil)
	}
}

// pollStale tells whether a polling client has stopped polling.
func (e *eioSocket) pollStale() bool {
	p, ok := e.c.(*pollConn)
	return ok && p.stale()
}

func (e *eioSocket) pong() {
	e.mu.Lock()
	answer := e.awaitingPong
	if answer {
		e.awaitingPong = false
		e.confirmed.Store(e.pingMark)
		e.timer.Reset(e.srv.cfg.PingInterval)
	}
	e.mu.Unlock()
	if !answer {
		e.dropped() // a pong nobody asked for
	}
}

// Ping lets a websocket ping be answered within the socket's rate of
// packets it drops; past it each is a strike, as any dropped packet.
func (e *eioSocket) Ping(*ws.Conn) bool { return e.dropped() }

// Message handles one Engine.IO packet.
func (e *eioSocket) Message(_ *ws.Conn, text bool, data []byte) {
	if !text {
		e.attachment(data)
		return
	}
	if len(data) == 0 {
		e.shut(reasonParse, "empty packet")
		return
	}
	switch data[0] {
	case '4':
		e.packet(data[1:])
	case '3':
		e.pong()
	case '2':
		// Engine.IO 4 heartbeats run from the server; a client's ping
		// (other than the upgrade's probe, answered before this socket
		// sees it) is an error to Node's engine.io, which closes the
		// transport. Echoing it would let a peer make the server write
		// whatever it sends, and hold it if never read.
		e.end(ws.CloseProtocol, reasonTransportError, "invalid heartbeat direction")
	case '1':
		e.shut(reasonTransport, "")
	case '5', '6': // upgrade, noop: nothing to do on a websocket
		e.dropped()
	default:
		e.shut(reasonParse, "unknown Engine.IO packet")
	}
}

// packet handles one Socket.IO packet: type, [namespace,] [ack id,] data.
func (e *eioSocket) packet(p []byte) {
	if len(p) == 0 {
		e.shut(reasonParse, "empty Socket.IO packet")
		return
	}
	typ, rest := p[0], p[1:]
	attachments := 0
	if typ == '5' || typ == '6' {
		i := bytes.IndexByte(rest, '-')
		n, err := strconv.Atoi(string(rest[:max(i, 0)]))
		if i < 1 || err != nil || n < 1 || n > maxAttachments {
			e.shut(reasonParse, "bad attachment count")
			return
		}
		attachments, rest = n, rest[i+1:]
	}
	nsp := "/"
	if len(rest) > 0 && rest[0] == '/' {
		i := bytes.IndexByte(rest, ',')
		if i < 0 {
			i = len(rest)
		}
		nsp = string(rest[:i])
		rest = rest[min(i+1, len(rest)):]
	}
	if e.binary.Load() != nil {
		// Socket.IO's decoder refuses it too: "got plaintext data when
		// reconstructing a packet".
		e.shut(reasonParse, "a packet while a binary event waits for its attachments")
		return
	}
	switch typ {
	case '0':
		e.connect(nsp, rest)
	case '1':
		if nsp == "/" {
			e.shut(reasonClient, "")
			return
		}
		e.dropped()
	case '2', '5':
		if nsp != "/" || e.sess.Load() == nil {
			// Not connected to that namespace: dropped, as Socket.IO does,
			// and counted. A binary event's attachments would follow; they
			// end the socket ("binary frame without an event").
			e.dropped()
			return
		}
		ackID := -1
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' && i < 10 {
			i++
		}
		if i > 0 {
			ackID, _ = strconv.Atoi(string(rest[:i]))
		}
		if typ == '5' {
			e.startBinary(ackID, rest[i:], attachments)
			return
		}
		e.dispatch(rest[i:], ackID, nil)
	case '3', '6': // acknowledgements: Switchboard asks for none
		e.dropped()
	default:
		e.shut(reasonParse, "unknown Socket.IO packet")
	}
}

// connect answers a CONNECT: the socket gets its id and its session, a
// recovered one when it names its private id and may have it back. Token
// verification and the session's spawn wait on other goroutines, so they
// run on one of their own, never on the poller.
func (e *eioSocket) connect(nsp string, auth []byte) {
	if nsp != "/" {
		if e.dropped() {
			e.reply("44", fmt.Appendf(nil, `%s,{"message":"Invalid namespace"}`, nsp))
		}
		return
	}
	var a connectAuth
	if len(bytes.TrimSpace(auth)) > 0 {
		if err := json.Unmarshal(auth, &a); err != nil {
			e.shut(reasonParse, "CONNECT auth is not a JSON object")
			return
		}
	}
	if e.connecting.Swap(true) {
		e.dropped() // a second CONNECT to the main namespace changes nothing
		return
	}
	if a.Token == "" {
		a.Token = e.bearer
	}
	id := newID()
	e.id.Store(&id)
	go e.open(a)
}

func (e *eioSocket) open(a connectAuth) {
	sess, err := e.srv.open(e, e.addr, a, e.transportName())
	if err != nil {
		_ = e.c.WriteText("44", []byte(`{"message":"server unavailable"}`))
		// The client may try again, within the connect timeout.
		e.connecting.Store(false)
		if time.Since(e.opened) > e.srv.connectTimeout() {
			e.noConnect()
		}
		return
	}
	id := sess.ID()
	e.id.Store(&id)
	e.mu.Lock()
	if e.closed.Load() {
		// Closed ran before the session was stored: it is this goroutine's
		// to report, or the session and the address's count would leak.
		e.mu.Unlock()
		e.srv.gone(sess, e, e.addr, string(reasonTransport), false)
		return
	}
	e.sess.Store(sess)
	e.connectTimer.Stop()
	e.mu.Unlock()
	if pid := sess.PrivateID(); pid != "" {
		_ = e.c.WriteText("40", fmt.Appendf(nil, `{"sid":"%s","pid":"%s"}`, id, pid))
		return
	}
	_ = e.c.WriteText("40", fmt.Appendf(nil, `{"sid":"%s"}`, id))
}

// transportName is the socket's current transport, for logs.
func (e *eioSocket) transportName() string {
	if _, ok := e.c.(*pollConn); ok {
		return "polling"
	}
	return "websocket"
}

// Screen judges a long text message from its start (ws.Screener): an
// event the contract does not name, on a connected socket, is refused as
// dispatch would refuse it, before the rest of it has arrived, and the
// websocket server drops that rest as it comes instead of keeping
// megabytes for nothing. Anything else (another packet, a binary event, a
// name that does not fit the head) is kept and handled whole, as before.
func (e *eioSocket) Screen(c *ws.Conn, head []byte) bool {
	if len(head) < 3 || head[0] != '4' || head[1] != '2' || e.sess.Load() == nil || e.binary.Load() != nil {
		return true
	}
	rest := head[2:]
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' && i < 10 {
		i++
	}
	name, ok := peekEvent(rest[i:])
	if !ok {
		// A name still running at the end of the head, already longer
		// than any the contract knows, is not one of them either.
		name, ok = longName(rest[i:])
	}
	if !ok && padded(rest[i:]) {
		// No client pads an event's array with a hundred bytes of
		// whitespace before its name; a sender who does would make the
		// server keep the whole message to find it. Refused unnamed.
		name, ok = "", true
	}
	if !ok || slices.Contains(messages.InboundEvents, name) {
		return true
	}
	ackID := -1
	if i > 0 {
		ackID, _ = strconv.Atoi(string(rest[:i]))
	}
	e.srv.met.Received("unknown")
	e.sess.Load().Unknown(name, e.ackFunc(ackID))
	e.screenedOut(int64(c.Incoming()))
	return false
}

// screenedOut counts an unknown event's bytes that the server drops
// unread; past four times the largest message within abuseWindow the
// socket is closed (1008), as for too many dropped packets: an honest
// client sends no unknown event, and a flooder of 15 MB ones would
// otherwise be read for 100 strikes, gigabytes.
func (e *eioSocket) screenedOut(n int64) {
	now := time.Now()
	e.mu.Lock()
	if now.Sub(e.screenedFrom) > abuseWindow {
		e.screened, e.screenedFrom = 0, now
	}
	e.screened += n
	over := e.srv.wssMaxPayload > 0 && e.screened > 4*int64(e.srv.wssMaxPayload)
	e.mu.Unlock()
	if over {
		e.srv.met.Refused("packet", "flood")
		e.end(ws.ClosePolicy, reasonFlood, fmt.Sprintf("%d bytes of unknown events within %s", e.screened, abuseWindow))
	}
}

// maxEventValues bounds the JSON values (strings, numbers, arrays, objects)
// of one event: the contract's payloads have a dozen, and decoded each
// costs tens of bytes, so 20 MB of `[1,1,…]` would have made 380 MB.
const maxEventValues = 1024

// dispatch decodes an event's arguments and hands it to the session.
func (e *eioSocket) dispatch(data []byte, ackID int, attachments [][]byte) {
	if name, ok := peekEvent(data); ok && !slices.Contains(messages.InboundEvents, name) {
		// An event the contract does not name delivers nothing whatever
		// its payload: it is counted and refused without decoding a byte
		// more, so that a 15 MB unknown event costs the poller a scan of
		// its name, not a core for its JSON.
		e.srv.met.Received("unknown")
		e.sess.Load().Unknown(name, e.ackFunc(ackID))
		return
	}
	// As json.Unmarshal into []any would, several times faster on long
	// strings: a poller decodes the event, and a 10 MB image held it
	// 60–100 ms through encoding/json.
	v, err := jsonscan.Decode(data, maxEventValues)
	args, _ := v.([]any)
	switch {
	case errors.Is(err, jsonscan.ErrTooManyValues):
		e.end(ws.CloseTooBig, reasonTooLarge, fmt.Sprintf("event of more than %d JSON values", maxEventValues))
		return
	case err != nil || len(args) == 0:
		e.shut(reasonParse, "event is not a JSON array")
		return
	}
	event, ok := args[0].(string)
	if !ok {
		e.shut(reasonParse, "event name is not a string")
		return
	}
	var payload any
	if len(args) > 1 {
		payload = args[1]
		if attachments != nil {
			payload = fillPlaceholders(payload, attachments)
		}
	}
	e.srv.event(e.sess.Load(), e.ID(), event, payload, e.ackFunc(ackID))
}

// ackFunc answers an event's acknowledgement id (nil for none).
func (e *eioSocket) ackFunc(ackID int) messages.AckFunc {
	if ackID < 0 {
		return nil
	}
	prefix := "43" + strconv.Itoa(ackID)
	return func(r *messages.AckReply) {
		b, err := json.Marshal([1]*messages.AckReply{r})
		if err == nil {
			e.reply(prefix, b)
		}
	}
}

// peekEvent reads an event's name from the start of its JSON array,
// `["name",` or `["name"]`, without decoding the rest; ok is false when the
// name is not a string (another type, broken JSON), which the full decode
// then judges.
func peekEvent(data []byte) (name string, ok bool) {
	n, after, escaped, ok := eventName(data)
	if !ok || after < 0 {
		return "", false
	}
	if j := skipSpace(data, after); j >= len(data) || (data[j] != ',' && data[j] != ']') {
		return "", false
	}
	if escaped {
		// A name such as "jo\u0069n" is "join" to every JSON parser.
		return unquote(data[after-len(n)-2 : after])
	}
	return string(n), true
}

// unquote decodes a JSON string with its quotes.
func unquote(quoted []byte) (string, bool) {
	var s string
	if json.Unmarshal(quoted, &s) != nil {
		return "", false
	}
	return s, true
}

// longestInbound is the length of the longest event name the contract knows.
var longestInbound = func() int {
	n := 0
	for _, e := range messages.InboundEvents {
		n = max(n, len(e))
	}
	return n
}()

// longName reads the start of an event's name that runs past the end of
// data, when even decoded it is longer than any the contract knows (an
// escape takes at most 6 bytes, or 12 for a surrogate pair, for 1 or 2
// characters' worth, so an escaped one counts a sixth of its bytes).
func longName(data []byte) (string, bool) {
	n, after, escaped, ok := eventName(data)
	if !ok || after >= 0 {
		return "", false
	}
	if escaped {
		if len(n)/6 <= longestInbound {
			return "", false
		}
		return string(n), true
	}
	if len(n) <= longestInbound {
		return "", false
	}
	return string(n), true
}

// eventName scans a JSON array's opening for its first element, a string:
// its bytes as they are (escapes undecoded), whether it holds an escape,
// and the offset in data just past its closing quote, or -1 when it runs
// past the end of data. ok is false for anything else (a control
// character in the string, another type).
func eventName(data []byte) (name []byte, after int, escaped, ok bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '[' {
		return nil, 0, false, false
	}
	i = skipSpace(data, i+1)
	if i >= len(data) || data[i] != '"' {
		return nil, 0, false, false
	}
	start := i + 1
	for end := start; end < len(data); end++ {
		switch c := data[end]; {
		case c == '"':
			return data[start:end], end + 1, escaped, true
		case c == '\\':
			escaped = true
			end++ // the escaped character, which may be a quote
		case c < 0x20:
			return nil, 0, false, false
		}
	}
	return data[start:], -1, escaped, true
}

// padded tells whether data is a JSON array's opening with nothing but
// whitespace after it: the event's name has not begun within data.
func padded(data []byte) bool {
	i := skipSpace(data, 0)
	return i < len(data) && data[i] == '[' && skipSpace(data, i+1) == len(data)
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// binaryEvent is an event whose binary attachments are still arriving.
// Everything it holds (its JSON and its attachments, at most the largest
// message together) is taken from the server's buffer budget, and it must
// be whole within the message timeout. Only the reader adds to it; the
// timeout, Closed and the memory guard may end it from elsewhere.
type binaryEvent struct {
	ack   int
	json  []byte
	want  int
	parts [][]byte
	held  atomic.Int64 // bytes taken from the budget
	timer *time.Timer
}

// startBinary keeps a binary event's JSON until its attachments arrive.
func (e *eioSocket) startBinary(ack int, js []byte, want int) {
	b := &binaryEvent{ack: ack, want: want, parts: make([][]byte, 0, want)}
	if !e.hold(b, len(js)) {
		return
	}
	b.json = bytes.Clone(js)
	b.timer = time.AfterFunc(e.srv.messageTimeout(), func() { e.binaryTimeout(b) })
	e.binary.Store(b)
	if e.closed.Load() { // Closed may have looked before the Store
		e.dropBinary(b)
	}
}

// hold takes n more bytes for b from the socket's bound (the largest
// message) and the server's budget; past either the socket ends (1009 or
// 1013) and b's bytes are given back.
func (e *eioSocket) hold(b *binaryEvent, n int) bool {
	switch {
	case b.held.Load()+int64(n) > int64(e.srv.wssMaxPayload):
		e.end(ws.CloseTooBig, reasonTooLarge, fmt.Sprintf("binary event over %d bytes", e.srv.wssMaxPayload))
	case !e.srv.wss.Reserve(n):
		e.end(ws.CloseTryAgain, reasonBusy, "binary event past the server's buffer budget")
	default:
		b.held.Add(int64(n))
		if !e.closed.Load() {
			return true
		}
		// Whoever closed it set closed before giving b's bytes back, so
		// either it saw n or this does.
	}
	e.dropBinary(b)
	return false
}

// dropBinary forgets b and gives its bytes back.
func (e *eioSocket) dropBinary(b *binaryEvent) {
	e.binary.CompareAndSwap(b, nil)
	if b.timer != nil {
		b.timer.Stop()
	}
	e.srv.wss.Release(int(b.held.Swap(0)))
}

// binaryTimeout ends a socket whose binary event is still not whole.
func (e *eioSocket) binaryTimeout(b *binaryEvent) {
	if e.binary.Load() == b {
		e.end(ws.ClosePolicy, reasonTimeout, fmt.Sprintf("binary event incomplete after %s", e.srv.messageTimeout()))
		e.dropBinary(b)
	}
}

func (e *eioSocket) attachment(data []byte) {
	b := e.binary.Load()
	if b == nil {
		e.shut(reasonParse, "binary frame without an event")
		return
	}
	if !e.hold(b, len(data)) {
		return
	}
	b.parts = append(b.parts, bytes.Clone(data))
	if len(b.parts) < b.want {
		return
	}
	e.dropBinary(b) // handed on: the event's own limits apply from here
	e.dispatch(b.json, b.ack, b.parts)
}

// binaryHeld is what the socket's binary event holds.
func (e *eioSocket) binaryHeld() int64 {
	if b := e.binary.Load(); b != nil {
		return b.held.Load()
	}
	return 0
}

// fillPlaceholders puts binary attachments where the event's JSON has
// {"_placeholder":true,"num":n}.
func fillPlaceholders(v any, parts [][]byte) any {
	switch t := v.(type) {
	case map[string]any:
		if ph, _ := t["_placeholder"].(bool); ph {
			if n, ok := t["num"].(float64); ok && n >= 0 && int(n) < len(parts) {
				return parts[int(n)]
			}
			return nil
		}
		for k, x := range t {
			t[k] = fillPlaceholders(x, parts)
		}
	case []any:
		for i, x := range t {
			t[i] = fillPlaceholders(x, parts)
		}
	}
	return v
}

// Closed is the end of the connection, for whatever reason.
func (e *eioSocket) Closed(_ *ws.Conn, err error) {
	e.closed.Store(true)
	e.mu.Lock()
	e.timer.Stop()
	e.connectTimer.Stop()
	sess := e.sess.Load()
	e.mu.Unlock()
	if b := e.binary.Load(); b != nil {
		e.dropBinary(b)
	}
	if e.counted != "" && !e.released.Swap(true) {
		e.srv.sys.Closed(e.counted)
	}
	if sess == nil {
		return
	}
	var reason closeReason
	if !errors.As(err, &reason) {
		reason = "transport error"
		if ws.IsPeerClose(err) {
			reason = reasonTransport
		}
	}
	e.srv.gone(sess, e, e.addr, string(reason), reason.recoverable())
}

// recoverable tells whether a socket that ended for this reason may come
// back within the recovery window: its transport dropped without either
// side meaning to end the session.
func (r closeReason) recoverable() bool {
	switch r {
	case reasonTransport, reasonTransportError, reasonPingTimeout, reasonShutdown:
		return true
	}
	return false
}

// gone tells the actors that a socket has disconnected. The address's
// count is the transport's to release (admission.go).
func (s *Server) gone(sess *actors.Session, conn actors.Conn, addr, reason string, recoverable bool) {
	s.log.Info("socket disconnected", "socket", sess.ID(), "remote", addr, "reason", reason, "recoverable", recoverable && s.cfg.RecoveryWindow > 0)
	sess.Disconnected(conn, reason, recoverable)
	s.met.Disconnected()
}
