package transport_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/switchboard/switchboard/config"
	"github.com/switchboard/switchboard/transport"
)

// Parked long-polls and idle connections (park.go), over raw keep-alive
// connections so that the test's own client holds no goroutine per
// connection either.

// rawConn is one keep-alive HTTP connection to the server.
type rawConn struct {
	t  *testing.T
	s  *testServer
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, s *testServer) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{t: t, s: s, c: c, br: bufio.NewReader(c)}
}

// send writes one request; body "" is a GET.
func (r *rawConn) send(sid, body string) {
	r.t.Helper()
	path := r.s.cfg.Path + "/?EIO=4&transport=polling&sid=" + sid
	req := "GET " + path + " HTTP/1.1\r\nHost: switchboard\r\nOrigin: https://crm.example\r\n\r\n"
	if body != "" {
		req = "POST " + path + " HTTP/1.1\r\nHost: switchboard\r\nOrigin: https://crm.example\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: " +
			itoa(len(body)) + "\r\n\r\n" + body
	}
	if _, err := r.c.Write([]byte(req)); err != nil {
		r.t.Fatal(err)
	}
}

// answer reads one response within d.
func (r *rawConn) answer(d time.Duration) (*http.Response, string) {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(d))
	res, err := http.ReadResponse(r.br, nil)
	if err != nil {
		r.t.Fatalf("response: %v", err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil {
		r.t.Fatalf("body: %v", err)
	}
	_ = res.Body.Close()
	return res, string(b)
}

// parkSoon parks every waiting GET after d, and every POST's connection
// (d 0), for the rest of the test.
func parkSoon(t *testing.T, d time.Duration) {
	t.Cleanup(transport.SetParkAfter(d)) // runs after the server's cleanup
}

func TestPollingParkedGetHoldsNoGoroutine(t *testing.T) {
	parkSoon(t, 20*time.Millisecond)
	s := startServer(t, nil)
	const n = 100
	ps := make([]*poller, n)
	for i := range ps {
		ps[i] = handshake(t, s)
		ps[i].connect()
	}
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()
	conns := make([]*rawConn, n)
	for i, p := range ps {
		conns[i] = dialRaw(t, s)
		conns[i].send(p.sid, "")
	}
	// Every GET waits: nothing is queued for these sessions.
	held := goroutinesAbove(before, n/10)
	t.Logf("%d waiting GETs: %d goroutines more", n, held)
	if held >= n/10 {
		t.Fatalf("%d waiting GETs hold %d goroutines", n, held)
	}

	// A parked GET is answered with what comes, CORS headers included,
	// and its connection serves the next request (parked again).
	p, c := ps[0], conns[0]
	p.post(`427["clientMessage",{"type":"text","message":"hi"}]`)
	res, b := c.answer(5 * time.Second)
	if res.StatusCode != 200 || !strings.HasPrefix(b, `437[{"ok":true`) ||
		res.Header.Get("Content-Type") != "text/plain; charset=UTF-8" || res.Header.Get("Access-Control-Allow-Origin") != "https://crm.example" {
		t.Fatalf("parked GET answered %d %v %q", res.StatusCode, res.Header, b)
	}
	c.send(p.sid, "")
	time.Sleep(100 * time.Millisecond)
	p.post(`428["clientMessage",{"type":"text","message":"again"}]`)
	if _, b := c.answer(5 * time.Second); !strings.HasPrefix(b, `438[{"ok":true`) {
		t.Fatalf("second GET on the connection answered %q", b)
	}
	// The others are still served.
	ps[n-1].post(`429["clientMessage",{"type":"text","message":"last"}]`)
	if _, b := conns[n-1].answer(5 * time.Second); !strings.HasPrefix(b, `439[{"ok":true`) {
		t.Fatalf("another parked GET answered %q", b)
	}
}

func TestPollingHangUpOfParkedGetEndsSession(t *testing.T) {
	parkSoon(t, 20*time.Millisecond)
	s := startServer(t, func(c *config.Config) { c.RecoveryWindow = 0 })
	bystander := handshake(t, s)
	bystander.connect()
	p := handshake(t, s)
	p.connect()
	if got := clients(t, s); got != 2 {
		t.Fatalf("clients: %d, want 2", got)
	}
	c := dialRaw(t, s)
	c.send(p.sid, "")
	time.Sleep(100 * time.Millisecond) // parked
	_ = c.c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for clients(t, s) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the session outlived its client's hang-up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	bystander.roundTrip(4)
}

func TestPollingIdleConnectionIsParkedThenClosed(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.HTTPIdleTimeout = 300 * time.Millisecond })
	p := handshake(t, s)
	c := dialRaw(t, s)
	c.send(p.sid, "40")
	if res, b := c.answer(5 * time.Second); res.StatusCode != 200 || b != "ok" || res.Header.Get("Content-Type") != "text/html" {
		t.Fatalf("POST answered %d %v %q", res.StatusCode, res.Header, b)
	}
	// Idle a while, then the connection serves the next request.
	time.Sleep(100 * time.Millisecond)
	c.send(p.sid, "")
	if _, b := c.answer(5 * time.Second); !strings.HasPrefix(b, `40{"sid":"`) {
		t.Fatalf("GET on the parked connection answered %q", b)
	}
	// Idle past the timeout: closed by the server.
	start := time.Now()
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.br.ReadByte()
	if !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: %v, want EOF", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("idle connection closed after %s, idle timeout 300ms", d)
	}
	bystander := handshake(t, s)
	bystander.connect()
	bystander.roundTrip(2)
}

func clients(t *testing.T, s *testServer) int {
	t.Helper()
	_, b := do(t, "GET", s.url+"/health", nil, 0)
	var h struct {
		Connections struct {
			Clients int `json:"clients"`
		} `json:"connections"`
	}
	if err := json.Unmarshal([]byte(b), &h); err != nil {
		t.Fatalf("health %q: %v", b, err)
	}
	return h.Connections.Clients
}

// A client may send its next POST, on another connection, the moment it
// reads "ok": the session must be done with the first one by then.
func TestPollingNextPostRightAfterOk(t *testing.T) {
	parkSoon(t, 0)
	s := startServer(t, func(c *config.Config) { c.TypingRate, c.TypingBurst = 1e6, 1_000_000 })
	p := handshake(t, s)
	p.connect()
	conns := [2]*rawConn{dialRaw(t, s), dialRaw(t, s)}
	for i := range 300 {
		c := conns[i%2]
		c.send(p.sid, `42["clientTyping",{"isTyping":true}]`)
		if res, b := c.answer(5 * time.Second); res.StatusCode != 200 || b != "ok" {
			t.Fatalf("POST %d: %d %q", i, res.StatusCode, b)
		}
	}
	p.roundTrip(9)
}

// The connection of a session's last poll, which the probe answers with a
// noop, waits parked for the client's next request, as an answered POST's
// does, instead of on a goroutine of net/http's with its buffers: after
// an arrival of upgrading clients those connections idle by the thousand.
func TestPollingLastPollBeforeUpgradeIsParked(t *testing.T) {
	// Idle connections outlive the test, parked or not.
	s := startServer(t, func(c *config.Config) { c.HTTPIdleTimeout = time.Minute })
	const n = 50
	ps := make([]*poller, n)
	for i := range ps {
		ps[i] = handshake(t, s)
		ps[i].connect()
	}
	http.DefaultClient.CloseIdleConnections()
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()
	conns := make([]*rawConn, n)
	probes := make([]*gws.Conn, n)
	for i, p := range ps {
		conns[i] = dialRaw(t, s)
		conns[i].send(p.sid, "")
		time.Sleep(5 * time.Millisecond) // waiting, not yet parked (parkAfter is 1 s)
		c, _, err := gws.DefaultDialer.Dial("ws"+strings.TrimPrefix(p.url("websocket"), "http"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		probeOK(t, c)
		if res, b := conns[i].answer(5 * time.Second); res.StatusCode != 200 || b != "6" ||
			res.Header.Get("Content-Type") != "text/plain; charset=UTF-8" || res.Header.Get("Access-Control-Allow-Origin") != "https://crm.example" {
			t.Fatalf("last poll answered %d %v %q", res.StatusCode, res.Header, b)
		}
		if err := c.WriteMessage(gws.TextMessage, []byte("5")); err != nil {
			t.Fatal(err)
		}
		probes[i] = c
	}
	held := goroutinesAbove(before, n/5)
	t.Logf("%d idle connections of upgraded sessions: %d goroutines more", n, held)
	if held >= n/5 {
		t.Fatalf("%d idle connections of upgraded sessions hold %d goroutines", n, held)
	}
	// A parked connection serves the client's next request: a new
	// session's handshake, as a browser's pool would reuse it.
	c := conns[0]
	if _, err := c.c.Write([]byte("GET " + s.cfg.Path + "/?EIO=4&transport=polling HTTP/1.1\r\nHost: switchboard\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if res, b := c.answer(5 * time.Second); res.StatusCode != 200 || !strings.HasPrefix(b, `0{"sid":"`) {
		t.Fatalf("handshake on the parked connection answered %d %q", res.StatusCode, b)
	}
	// The upgraded sessions are served over their websockets.
	if err := probes[n-1].WriteMessage(gws.TextMessage, []byte(`4211["clientMessage",{"type":"text","message":"ws"}]`)); err != nil {
		t.Fatal(err)
	}
	if got := readWS(t, probes[n-1]); !strings.HasPrefix(got, `4311[{"ok":true`) {
		t.Fatalf("after upgrade: %q", got)
	}
}

// goroutinesAbove is how many goroutines there are more than before, once
// they have fallen under limit or 5 s have passed (goroutines end a little
// after the requests that ran them).
func goroutinesAbove(before, limit int) int {
	deadline := time.Now().Add(5 * time.Second)
	for {
		time.Sleep(50 * time.Millisecond)
		if held := runtime.NumGoroutine() - before; held < limit || time.Now().After(deadline) {
			return held
		}
	}
}
