package test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/switchboard/switchboard/config"
	"github.com/switchboard/switchboard/test/wsframe"
)

// What a peer can make the server hold, through the Engine.IO and
// Socket.IO layers and the settings that bound it: each attack gets its
// answer (a close code, an HTTP status) and an honest bystander on the
// same server notices nothing.

// sendRaw writes bytes straight to the socket under the websocket.
func (r *rawSocket) sendRaw(b []byte) {
	r.t.Helper()
	if _, err := r.ws.UnderlyingConn().Write(b); err != nil {
		r.t.Fatal(err)
	}
}

// closeCode waits for the server's close frame and returns its code (0
// when the connection ended without one).
func (r *rawSocket) closeCode() int {
	r.t.Helper()
	_ = r.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := r.ws.ReadMessage()
		if err == nil {
			continue
		}
		var ce *gws.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
			r.t.Fatal("still open after 10 s")
		}
		return 0
	}
}

// bystander is one joined operator and one joined player that exchange a
// message on demand.
type bystander struct {
	t      *testing.T
	op, cl *client
}

func newBystander(t *testing.T, s *server) *bystander {
	t.Helper()
	op := ws(t, s, "bystander op", nil, nil)
	op.join(s, map[string]any{"role": "operator", "name": "Ana", "operatorId": 1})
	cl := ws(t, s, "bystander player", nil, nil)
	cl.join(s, map[string]any{"role": "client", "name": "Bob"})
	op.expect("newChat")
	return &bystander{t: t, op: op, cl: cl}
}

// check sends a message each way and expects both within a second.
func (b *bystander) check() {
	b.t.Helper()
	start := time.Now()
	b.cl.emit("clientMessage", map[string]any{"type": "text", "message": "still there?"})
	b.op.expectWithin("incomingMessage", time.Second)
	b.op.emit("operatorMessage", map[string]any{"to": b.cl.id(), "type": "text", "message": "yes", "operatorId": 1, "operatorName": "Ana"})
	b.cl.expectWithin("operatorMessage", time.Second)
	if d := time.Since(start); d > 500*time.Millisecond {
		b.t.Logf("bystander round trip took %s", d)
	}
}

// SWITCHBOARD_MAX_BUFFERED_BYTES and SWITCHBOARD_MESSAGE_TIMEOUT reach the
// websocket server: past the budget a socket is told to try again later
// (1013), and a message left unfinished ends its socket with 1008.
func TestBufferBudgetAndMessageTimeoutFromConfig(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		c.MaxImageBytes = 100_000    // largest message 264 KB
		c.MaxBufferedBytes = 200_000 // one half-sent 200 KB frame (a 128 KiB buffer) fits, two do not
		c.MessageTimeout = 400 * time.Millisecond
	})
	by := newBystander(t, s)
	first := rawConnect(t, s)
	first.connect()
	start := time.Now()
	first.sendRaw(append(wsframe.Header(1, true, 200_000), strings.Repeat("x", 100_000)...))
	time.Sleep(50 * time.Millisecond) // the first is read before the second
	second := rawConnect(t, s)
	second.connect()
	second.sendRaw(append(wsframe.Header(1, true, 200_000), strings.Repeat("x", 100_000)...))
	if code := second.closeCode(); code != gws.CloseTryAgainLater {
		t.Fatalf("over the buffer budget: close %d, want 1013", code)
	}
	by.check()
	if code := first.closeCode(); code != gws.ClosePolicyViolation {
		t.Fatalf("unfinished message: close %d, want 1008", code)
	}
	if d := time.Since(start); d < 400*time.Millisecond || d > 3*time.Second {
		t.Fatalf("unfinished message closed after %s, want about 400 ms", d)
	}
	by.check()
}

// An event the contract does not name is turned down from its first bytes
// and its rest dropped as it arrives: one larger than the whole buffer
// budget costs its socket nothing (no 1013), the socket goes on, and a
// known event of the same size is still held to the budget.
func TestUnknownEventsAreNotKept(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		c.MaxImageBytes = 100_000    // largest message 264 KB
		c.MaxBufferedBytes = 100_000 // less than one of the 120 KB events below
	})
	by := newBystander(t, s)
	event := func(name string) []byte {
		return []byte(`42["` + name + `",{"type":"text","message":"` + strings.Repeat("é", 60_000) + `"}]`)
	}
	r := rawConnect(t, s)
	r.connect()
	// Unknown names plain, escaped (decoded as any JSON parser would),
	// longer than the head the server judges from, escaped and long, and
	// behind more whitespace than that head.
	for _, unknown := range [][]byte{event("x-unknown"), event(`x-\u0075nknown`), event(strings.Repeat("y", 300)),
		event(strings.Repeat(`\u0079`, 40)), append([]byte("42["+strings.Repeat(" ", 200)), event("x")[3:]...)} {
		r.sendRaw(wsframe.Header(1, true, len(unknown)))
		for p := unknown; len(p) > 0; p = p[min(len(p), 16<<10):] {
			r.sendRaw(p[:min(len(p), 16<<10)])
			time.Sleep(time.Millisecond) // read in pieces, as a slow sender's
		}
	}
	r.send(`421["join",{"role":"client","name":"Eve"}]`)
	if p := r.read(); !strings.HasPrefix(p, `431[{"ok":true`) {
		t.Fatalf("after five unknown events past the budget: join answered %q", p)
	}
	by.op.expect("newChat")
	by.check()

	known := rawConnect(t, s)
	known.connect()
	known.send(`42["join",{"role":"client","name":"Kim"}]`)
	by.op.expect("newChat")
	msg := event("clientMessage")
	known.sendRaw(wsframe.Header(1, true, len(msg)))
	known.sendRaw(msg)
	if code := known.closeCode(); code != gws.CloseTryAgainLater {
		t.Fatalf("a known event past the budget: close %d, want 1013", code)
	}
	by.op.expect("chatAway") // Kim may come back within the recovery window
	by.check()
}

// pollSession is an Engine.IO long-polling session driven by hand.
type pollSession struct {
	t   *testing.T
	url string
}

func pollOpen(t *testing.T, s *server) (*pollSession, int) {
	t.Helper()
	res, err := http.Get(s.URL + s.cfg.Path + "/?EIO=4&transport=polling")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		return nil, res.StatusCode
	}
	var hs struct{ SID string }
	if len(b) == 0 || json.Unmarshal(b[1:], &hs) != nil || hs.SID == "" {
		t.Fatalf("polling handshake %q", b)
	}
	return &pollSession{t: t, url: s.URL + s.cfg.Path + "/?EIO=4&transport=polling&sid=" + hs.SID}, 200
}

func (p *pollSession) post(body string) int {
	p.t.Helper()
	res, err := http.Post(p.url, "text/plain;charset=UTF-8", strings.NewReader(body))
	if err != nil {
		p.t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// packets is what the next GET answers (pings answered), or nil once the
// session is gone.
func (p *pollSession) packets() []string {
	p.t.Helper()
	for {
		res, err := (&http.Client{Timeout: 10 * time.Second}).Get(p.url)
		if err != nil {
			p.t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 {
			return nil
		}
		var out []string
		for _, pkt := range strings.Split(string(b), "\x1e") {
			if pkt == "2" {
				p.post("3")
				continue
			}
			out = append(out, pkt)
		}
		if len(out) > 0 {
			return out
		}
	}
}

// closedWithin reads until the session's close packet comes, within d.
func (p *pollSession) closedWithin(d time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		got := p.packets()
		if got == nil || got[len(got)-1] == "1" {
			return
		}
	}
	p.t.Fatalf("polling session still open after %s", d)
}

// A binary event counts as one message: its JSON and its attachments
// together are bounded by the largest message (1009 past it) and by the
// server's buffer budget (1013), and must be whole within the message
// timeout (1008); on websocket and on polling alike.
func TestUnfinishedBinaryEventsAreBounded(t *testing.T) {
	const timeout = 500 * time.Millisecond
	s := startServer(t, func(c *config.Config) {
		c.MaxImageBytes = 100_000    // largest message 264 KB
		c.MaxBufferedBytes = 700_000 // a frame is counted twice while its attachment is copied
		c.MessageTimeout = timeout
	})
	by := newBystander(t, s)
	event := `["clientMessage",{"type":"image","image":{"_placeholder":true,"num":0}}]`
	binary := func(r *rawSocket, n int) {
		r.t.Helper()
		if err := r.ws.WriteMessage(gws.BinaryMessage, make([]byte, n)); err != nil {
			r.t.Fatal(err)
		}
	}

	// Never whole: closed after the timeout, on both transports.
	waiting := rawConnect(t, s)
	waiting.connect()
	start := time.Now()
	waiting.send("452-" + event)
	binary(waiting, 1000)
	if code := waiting.closeCode(); code != gws.ClosePolicyViolation {
		t.Fatalf("unfinished binary event: close %d, want 1008", code)
	}
	if d := time.Since(start); d < timeout || d > timeout+2*time.Second {
		t.Fatalf("unfinished binary event closed after %s, want %s", d, timeout)
	}
	polling, _ := pollOpen(t, s)
	polling.post("40")
	polling.packets()
	polling.post("452-" + event + "\x1eb" + base64.StdEncoding.EncodeToString(make([]byte, 1000)))
	start = time.Now()
	polling.closedWithin(timeout + 3*time.Second)
	if d := time.Since(start); d < timeout-100*time.Millisecond {
		t.Fatalf("polling binary event closed after %s, want %s", d, timeout)
	}
	by.check()

	// Larger than the largest message, all attachments together.
	big := rawConnect(t, s)
	big.connect()
	big.send("453-" + event)
	binary(big, 150_000)
	binary(big, 150_000)
	if code := big.closeCode(); code != gws.CloseMessageTooBig {
		t.Fatalf("attachments over the largest message: close %d, want 1009", code)
	}

	// Past the server's budget: two events of 250 KB unfinished.
	held := rawConnect(t, s)
	held.connect()
	held.send("452-" + event)
	binary(held, 250_000)
	time.Sleep(100 * time.Millisecond)
	over := rawConnect(t, s)
	over.connect()
	over.send("452-" + event)
	binary(over, 250_000)
	if code := over.closeCode(); code != gws.CloseTryAgainLater {
		t.Fatalf("attachments past the buffer budget: close %d, want 1013", code)
	}
	by.check()
	if code := held.closeCode(); code != gws.ClosePolicyViolation {
		t.Fatalf("the held event: close %d, want 1008 at its timeout", code)
	}
	by.check()
}

// A connection counts against its address from its handshake, whether or
// not it ever sends CONNECT, and one that does not is closed after the
// connect timeout, which gives its place back.
func TestNeverConnectedSocketsCountAndTimeOut(t *testing.T) {
	const timeout = 500 * time.Millisecond
	s := startServer(t, func(c *config.Config) {
		c.IPLimitLoopback, c.IPMaxConnections = true, 6
		c.IPHandshakeRate, c.IPHandshakeBurst = 1000, 1000
		c.ConnectTimeout = timeout
	})
	by := newBystander(t, s) // two of the six
	var silent []*rawSocket
	for range 2 {
		silent = append(silent, rawConnect(t, s))
	}
	p1, code := pollOpen(t, s)
	if code != 200 {
		t.Fatalf("polling handshake %d", code)
	}
	if _, code := pollOpen(t, s); code != 200 {
		t.Fatalf("polling handshake %d", code)
	}
	if _, code := pollOpen(t, s); code != http.StatusTooManyRequests {
		t.Fatalf("seventh connection from the address: %d, want 429", code)
	}
	url := "ws" + strings.TrimPrefix(s.URL, "http") + s.cfg.Path + "/?EIO=4&transport=websocket"
	if _, res, err := gws.DefaultDialer.Dial(url, nil); err == nil || res == nil || res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("seventh connection over websocket: %v, want 429", err)
	}
	for _, r := range silent {
		r.closed()
	}
	p1.closedWithin(3 * time.Second)
	waitFor(t, 3*time.Second, func() error {
		r, code := pollOpen(t, s)
		if code != 200 {
			return errorf("after the connect timeout: %d", code)
		}
		r.post("40")
		return nil
	})
	by.check()
}

// Packets the server reads and drops (noops, pongs nobody asked for,
// acknowledgements, other namespaces, events before CONNECT) are counted
// like refused events: past the socket's rate each is a strike, and the
// abuse limit of them closes the socket with 1008. So are websocket pings
// past the rate. A client's Engine.IO ping is an error in Engine.IO 4: the
// first closes the socket (1002), as Node's engine.io does.
func TestDroppedPacketsAreLimited(t *testing.T) {
	s := startServer(t, nil)
	by := newBystander(t, s)
	for _, tc := range []struct {
		name, packet string
		connect      bool
		want         int
	}{
		{"noop", "6", true, gws.ClosePolicyViolation},
		{"unsolicited pong", "3", true, gws.ClosePolicyViolation},
		{"websocket ping", "", true, gws.ClosePolicyViolation},
		{"client ping", "2", true, gws.CloseProtocolError},
		{"acknowledgement", `43["nobody asked"]`, true, gws.ClosePolicyViolation},
		{"other namespace", `42/admin,["join",{}]`, true, gws.ClosePolicyViolation},
		{"CONNECT to another namespace", "40/admin,", false, gws.ClosePolicyViolation},
		{"event before CONNECT", `42["join",{"role":"client"}]`, false, gws.ClosePolicyViolation},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rawConnect(t, s)
			if tc.connect {
				r.connect()
			}
			for range 500 {
				write := func() error { return r.ws.WriteMessage(gws.TextMessage, []byte(tc.packet)) }
				if tc.packet == "" {
					write = func() error { return r.ws.WriteControl(gws.PingMessage, nil, time.Now().Add(time.Second)) }
				}
				if write() != nil {
					break // closed meanwhile
				}
			}
			if code := r.closeCode(); code != tc.want {
				t.Fatalf("500 × %q: close %d, want %d", tc.packet, code, tc.want)
			}
		})
	}
	by.check()
}
