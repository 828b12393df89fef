package test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/switchboard/switchboard/config"
)

// The native websocket server (transport/ws with transport/eio.go) speaks
// Engine.IO 4 and Socket.IO 5 itself. These tests send it, byte for byte,
// what a well-behaved client would not, and check that each bad input gets
// its answer and that nobody else notices.

// rawSocket is an Engine.IO connection driven packet by packet.
type rawSocket struct {
	t  *testing.T
	ws *gws.Conn
}

func rawConnect(t *testing.T, s *server) *rawSocket {
	t.Helper()
	url := "ws" + strings.TrimPrefix(s.URL, "http") + s.cfg.Path + "/?EIO=4&transport=websocket"
	c, _, err := gws.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	r := &rawSocket{t: t, ws: c}
	open := r.read()
	var hs struct {
		SID          string   `json:"sid"`
		Upgrades     []string `json:"upgrades"`
		PingInterval int      `json:"pingInterval"`
		PingTimeout  int      `json:"pingTimeout"`
		MaxPayload   int      `json:"maxPayload"`
	}
	if open[0] != '0' || json.Unmarshal([]byte(open[1:]), &hs) != nil || len(hs.SID) != 20 || hs.Upgrades == nil ||
		hs.PingInterval != int(s.cfg.PingInterval.Milliseconds()) || hs.PingTimeout != int(s.cfg.PingTimeout.Milliseconds()) || hs.MaxPayload == 0 {
		t.Fatalf("open packet %q", open)
	}
	return r
}

func (r *rawSocket) send(p string) {
	r.t.Helper()
	if err := r.ws.WriteMessage(gws.TextMessage, []byte(p)); err != nil {
		r.t.Fatal(err)
	}
}

// read returns the next packet, answering pings on the way.
func (r *rawSocket) read() string {
	r.t.Helper()
	for {
		_ = r.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, p, err := r.ws.ReadMessage()
		if err != nil {
			r.t.Fatalf("read: %v", err)
		}
		if string(p) == "2" {
			r.send("3")
			continue
		}
		return string(p)
	}
}

// closed waits for the server to end the connection, returning the
// packets it sent before.
func (r *rawSocket) closed() []string {
	r.t.Helper()
	var got []string
	_ = r.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, p, err := r.ws.ReadMessage()
		if err != nil {
			if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
				r.t.Fatalf("still open after 5 s; got %q", got)
			}
			return got
		}
		got = append(got, string(p))
	}
}

func (r *rawSocket) connect() string {
	r.t.Helper()
	r.send("40")
	p := r.read()
	if !strings.HasPrefix(p, `40{"sid":"`) {
		r.t.Fatalf("CONNECT answered %q", p)
	}
	var reply struct {
		SID string `json:"sid"`
		PID string `json:"pid"`
	}
	if err := json.Unmarshal([]byte(p[2:]), &reply); err != nil || reply.SID == "" {
		r.t.Fatalf("CONNECT answered %q: %v", p, err)
	}
	return reply.SID
}

func TestNativeHandshakeNamespacesAndAcks(t *testing.T) {
	s := startServer(t, nil)
	r := rawConnect(t, s)
	r.send("40/admin,")
	if p := r.read(); p != `44/admin,{"message":"Invalid namespace"}` {
		t.Fatalf("other namespace answered %q", p)
	}
	r.send(`42["join",{"role":"client"}]`) // before CONNECT: dropped
	id := r.connect()
	if len(id) != 20 {
		t.Fatalf("socket id %q", id)
	}
	r.send(`4217["join",{"role":"client","username":"raw"}]`)
	ack := r.read()
	if !strings.HasPrefix(ack, `4317[{"ok":true`) {
		t.Fatalf("join ack %q", ack)
	}
	r.send(`42["noSuchEvent",{}]`) // not in the contract: ignored
	r.send(`4218["clientMessage",{"type":"text","message":"hi"}]`)
	if p := r.read(); !strings.HasPrefix(p, `4318[{"ok":true,"id":"`) {
		t.Fatalf("message ack %q", p)
	}
	if h := health(t, s); h.Connections.Clients != 1 {
		t.Fatalf("health %+v, want one client", h.Connections)
	}
	r.send("41") // the client leaves its namespace
	r.closed()
	waitFor(t, 3*time.Second, func() error {
		if h := health(t, s); h.Connections.Total != 0 {
			return errorf("still %d connections", h.Connections.Total)
		}
		return nil
	})
}

func TestNativeBadPacketsCloseOnlyTheirSocket(t *testing.T) {
	bad := []struct{ name, packet string }{
		{"unknown Engine.IO type", "x"},
		{"empty packet", ""},
		{"unknown Socket.IO type", "49"},
		{"event not an array", `42{"join":1}`},
		{"event name not a string", `42[1,{}]`},
		{"truncated JSON", `42["clientMessage",{"type":"te`},
		{"bad attachment count", `45x-["clientMessage",{}]`},
		{"too many attachments", `4599-["clientMessage",{}]`},
		{"auth not an object", `40"token"`},
	}
	s := startServer(t, nil)
	op := joinOperator(t, s, 0, "op", 1)
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			r := rawConnect(t, s)
			if !strings.HasPrefix(tc.packet, "40") {
				r.connect()
				r.send(`42["join",{"role":"client"}]`)
				op.expect("newChat")
			}
			r.send(tc.packet)
			r.closed()
			if !strings.HasPrefix(tc.packet, "40") {
				ended := op.expect("chatEnded")
				if ended.Data["reason"] != "disconnect" {
					t.Fatalf("chatEnded %s", ended.Raw)
				}
			}
		})
	}
	// The operator was never disturbed.
	cl := joinClient(t, s, 0, "cl", map[string]any{"role": "client"})
	op.expect("newChat")
	cl.emit("clientMessage", map[string]any{"type": "text", "message": "after"})
	op.expect("incomingMessage")
}

func TestNativeBinaryAttachmentIsRefusedWithAnAnswer(t *testing.T) {
	s := startServer(t, nil)
	r := rawConnect(t, s)
	r.connect()
	r.send(`42["join",{"role":"client"}]`)
	r.send(`451-["clientMessage",{"type":"image","message":{"_placeholder":true,"num":0}}]`)
	if err := r.ws.WriteMessage(gws.BinaryMessage, []byte{0x89, 'P', 'N', 'G'}); err != nil {
		t.Fatal(err)
	}
	p := r.read()
	if !strings.HasPrefix(p, `42["chatError",{"code":"`) || !strings.Contains(p, `"event":"clientMessage"`) {
		t.Fatalf("got %q, want a chatError for the clientMessage", p)
	}
	// A binary frame with no event waiting for it is a protocol error.
	if err := r.ws.WriteMessage(gws.BinaryMessage, []byte{1}); err != nil {
		t.Fatal(err)
	}
	r.closed()
}

func TestNativePingTimeoutEndsTheSocket(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		c.PingInterval, c.PingTimeout = 200*time.Millisecond, 200*time.Millisecond
		c.RecoveryWindow = 500 * time.Millisecond
	})
	op := joinOperator(t, s, 0, "op", 1)
	r := rawConnect(t, s)
	r.connect()
	r.send(`42["join",{"role":"client"}]`)
	op.expect("newChat")
	// Never answer the pings.
	start := time.Now()
	got := r.closed()
	if len(got) == 0 || got[0] != "2" {
		t.Fatalf("got %q before the close, want a ping", got)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed after %v, want about 400 ms", d)
	}
	// A silent peer may be on a train: away first, ended after the window.
	if away := op.expect("chatAway"); away.Data["clientId"] == nil {
		t.Fatalf("chatAway %s", away.Raw)
	}
	if ended := op.expect("chatEnded"); ended.Data["reason"] != "disconnect" {
		t.Fatalf("chatEnded %s", ended.Raw)
	}
	// A socket that answers its pings stays.
	r2 := rawConnect(t, s)
	r2.connect()
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		_ = r2.ws.SetReadDeadline(deadline)
		_, p, err := r2.ws.ReadMessage()
		if err != nil {
			if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
				break
			}
			t.Fatalf("a socket answering its pings was closed: %v", err)
		}
		if string(p) == "2" {
			r2.send("3")
		}
	}
}
