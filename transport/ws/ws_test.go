//go:build linux

package ws

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
)

// echo answers every text message with "echo:" and the message, and
// records how its connections ended.
type echo struct {
	mu     sync.Mutex
	closed []error
	done   chan struct{}
	binary int
	texts  int
	// binaryAtText is binary when the last text message came.
	binaryAtText int
}

type echoConn struct {
	e *echo
	c *Conn
}

func (h *echoConn) Message(c *Conn, text bool, data []byte) {
	if !text {
		h.e.mu.Lock()
		h.e.binary++
		h.e.mu.Unlock()
		return
	}
	h.e.mu.Lock()
	h.e.texts++
	h.e.binaryAtText = h.e.binary
	h.e.mu.Unlock()
	if string(data) == "close-me" {
		c.Close(CloseNormal, errors.New("asked to"))
		return
	}
	_ = c.WriteText("echo:", data)
}

func (h *echoConn) Closed(_ *Conn, err error) {
	h.e.mu.Lock()
	h.e.closed = append(h.e.closed, err)
	h.e.mu.Unlock()
	select {
	case h.e.done <- struct{}{}:
	default:
	}
}

func (e *echo) waitClosed(t *testing.T) error {
	t.Helper()
	select {
	case <-e.done:
	case <-time.After(5 * time.Second):
		t.Fatal("handler never heard that the connection closed")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed[len(e.closed)-1]
}

func start(t *testing.T, o Options) (*Server, *echo, string) {
	t.Helper()
	srv, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{done: make(chan struct{}, 16)}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = srv.Upgrade(w, r, func(c *Conn) Handler { return &echoConn{e: e, c: c} })
	}))
	t.Cleanup(func() { srv.Close(); hs.Close() })
	return srv, e, "ws" + strings.TrimPrefix(hs.URL, "http")
}

func dialWS(t *testing.T, url string) *gws.Conn {
	t.Helper()
	c, _, err := gws.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func readText(t *testing.T, c *gws.Conn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	mt, p, err := c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	if mt != gws.TextMessage {
		t.Fatalf("message type %d, want text", mt)
	}
	return string(p)
}

func TestEchoSmallLargeAndFragmented(t *testing.T) {
	for _, window := range []time.Duration{0, time.Millisecond} {
		t.Run(fmt.Sprint("window=", window), func(t *testing.T) {
			_, _, url := start(t, Options{MaxMessage: 4 << 20, WriteWindow: window})
			c := dialWS(t, url)
			// Many small ones in a row: they share reads and writes.
			for i := range 200 {
				if err := c.WriteMessage(gws.TextMessage, fmt.Appendf(nil, "m%d", i)); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 200 {
				if got, want := readText(t, c), fmt.Sprintf("echo:m%d", i); got != want {
					t.Fatalf("got %q, want %q", got, want)
				}
			}
			// Larger than the poller's 64 KB read buffer, and sizes around
			// the 16-bit length boundary.
			for _, n := range []int{125, 126, 65535, 65536, 3 << 20} {
				big := bytes.Repeat([]byte("abcdefghij"), n/10+1)[:n]
				if err := c.WriteMessage(gws.TextMessage, big); err != nil {
					t.Fatal(err)
				}
				if got := readText(t, c); got != "echo:"+string(big) {
					t.Fatalf("%d bytes: echo differs (got %d bytes)", n, len(got))
				}
			}
			// A message in three fragments, with a ping between them.
			raw := rawDial(t, url)
			raw.frame(opText, false, []byte("one,"))
			raw.frame(opContinuation, false, []byte("two,"))
			raw.frame(opPing, true, []byte("p"))
			raw.frame(opContinuation, true, []byte("three"))
			if op, p := raw.read(); op != opPong || string(p) != "p" {
				t.Fatalf("got op %d %q, want the pong", op, p)
			}
			if op, p := raw.read(); op != opText || string(p) != "echo:one,two,three" {
				t.Fatalf("got op %d %q", op, p)
			}
		})
	}
}

func TestPeerCloseIsAnsweredAndReported(t *testing.T) {
	_, e, url := start(t, Options{})
	c := dialWS(t, url)
	_ = c.WriteMessage(gws.CloseMessage, gws.FormatCloseMessage(gws.CloseNormalClosure, "bye"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err := c.ReadMessage()
	var ce *gws.CloseError
	if !errors.As(err, &ce) || ce.Code != gws.CloseNormalClosure {
		t.Fatalf("got %v, want the server's close frame echoing 1000", err)
	}
	if err := e.waitClosed(t); !IsPeerClose(err) {
		t.Fatalf("handler told %v, want a peer close", err)
	}
}

func TestServerCloseSendsCodeAndQueuedFrames(t *testing.T) {
	_, e, url := start(t, Options{WriteWindow: time.Millisecond})
	c := dialWS(t, url)
	_ = c.WriteMessage(gws.TextMessage, []byte("before"))
	_ = c.WriteMessage(gws.TextMessage, []byte("close-me"))
	if got := readText(t, c); got != "echo:before" {
		t.Fatalf("got %q", got)
	}
	_, _, err := c.ReadMessage()
	var ce *gws.CloseError
	if !errors.As(err, &ce) || ce.Code != CloseNormal {
		t.Fatalf("got %v, want a close frame with 1000", err)
	}
	_ = c.Close()
	if err := e.waitClosed(t); err == nil || err.Error() != "asked to" {
		t.Fatalf("handler told %v, want the server's reason", err)
	}
}

func TestProtocolViolationsCloseWithTheirCode(t *testing.T) {
	cases := []struct {
		name string
		send func(r *raw)
		code int
	}{
		{"unmasked frame", func(r *raw) { r.write([]byte{finBit | opText, 2, 'h', 'i'}) }, CloseProtocol},
		{"reserved bits", func(r *raw) { r.frameHeader(0x40|finBit|opText, []byte("x")) }, CloseProtocol},
		{"unknown opcode", func(r *raw) { r.frame(0x3, true, []byte("x")) }, CloseProtocol},
		{"continuation first", func(r *raw) { r.frame(opContinuation, true, []byte("x")) }, CloseProtocol},
		{"fragmented ping", func(r *raw) { r.frame(opPing, false, []byte("x")) }, CloseProtocol},
		{"invalid UTF-8", func(r *raw) { r.frame(opText, true, []byte{0xff, 0xfe}) }, CloseInvalid},
		{"too big", func(r *raw) { r.frame(opText, true, make([]byte, 2000)) }, CloseTooBig},
		{"too big in fragments", func(r *raw) {
			r.frame(opText, false, make([]byte, 600))
			r.frame(opContinuation, false, make([]byte, 600))
		}, CloseTooBig},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, e, url := start(t, Options{MaxMessage: 1000})
			bystander := dialWS(t, url)
			r := rawDial(t, url)
			tc.send(r)
			op, p := r.read()
			if op != opClose || len(p) < 2 || int(binary.BigEndian.Uint16(p)) != tc.code {
				t.Fatalf("got op %d %v, want close %d", op, p, tc.code)
			}
			if err := e.waitClosed(t); err == nil {
				t.Fatal("handler told no reason")
			}
			// The other connection is untouched.
			_ = bystander.WriteMessage(gws.TextMessage, []byte("still here"))
			if got := readText(t, bystander); got != "echo:still here" {
				t.Fatalf("bystander got %q", got)
			}
			if n := srv.Len(); n != 1 {
				t.Fatalf("%d connections open, want 1", n)
			}
		})
	}
}

func TestBadHandshakeIs400(t *testing.T) {
	_, _, url := start(t, Options{})
	u := "http" + strings.TrimPrefix(url, "ws")
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13") // no key
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
}

// A client that stops reading costs at most MaxPending: past it WriteText
// refuses, and nothing blocks.
func TestStalledReaderIsBounded(t *testing.T) {
	srv, err := NewServer(Options{MaxPending: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *Conn, 1)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = srv.Upgrade(w, r, func(c *Conn) Handler { got <- c; return &echoConn{e: &echo{done: make(chan struct{}, 1)}, c: c} })
	}))
	t.Cleanup(func() { srv.Close(); hs.Close() })
	_ = dialWS(t, "ws"+strings.TrimPrefix(hs.URL, "http")) // never reads
	c := <-got
	chunk := make([]byte, 16<<10)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.WriteText("", chunk)
		if errors.Is(err, ErrSlow) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("writes never refused")
		}
	}
	if p := c.Pending(); p > 256<<10 {
		t.Fatalf("%d bytes pending, limit 256 KiB", p)
	}
}

// raw is a websocket client written byte by byte, to send what no library
// would.
type raw struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func rawDial(t *testing.T, url string) *raw { return rawDialWith(t, url, nil) }

// rawDialWith sends early right behind the handshake, in the same write.
func rawDialWith(t *testing.T, url string, early []byte) *raw {
	t.Helper()
	nc, err := net.Dial("tcp", strings.TrimPrefix(url, "ws://"))
	if err != nil {
		t.Fatal(err)
	}
	return rawHandshake(t, nc, early)
}

// rawHandshake upgrades nc, sending early right behind the request.
func rawHandshake(t *testing.T, nc net.Conn, early []byte) *raw {
	t.Helper()
	t.Cleanup(func() { _ = nc.Close() })
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := nc.Write(append([]byte(req), early...)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake: %d %q", resp.StatusCode, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	return &raw{t: t, nc: nc, br: br}
}

func (r *raw) write(b []byte) {
	if _, err := r.nc.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

func (r *raw) frame(op byte, fin bool, p []byte) {
	b0 := op
	if fin {
		b0 |= finBit
	}
	r.frameHeader(b0, p)
}

// frameHeader sends a masked frame whose first byte is b0.
func (r *raw) frameHeader(b0 byte, p []byte) {
	key := []byte{1, 2, 3, 4}
	b := []byte{b0}
	switch {
	case len(p) <= 125:
		b = append(b, 0x80|byte(len(p)))
	default:
		b = append(b, 0x80|126, byte(len(p)>>8), byte(len(p)))
	}
	b = append(b, key...)
	m := bytes.Clone(p)
	for i := range m {
		m[i] ^= key[i&3]
	}
	r.write(append(b, m...))
}

// read returns the next frame from the server, which must be unmasked.
func (r *raw) read() (byte, []byte) {
	_ = r.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		r.t.Fatal(err)
	}
	if h[1]&0x80 != 0 {
		r.t.Fatal("server frame is masked")
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		_, _ = io.ReadFull(r.br, l[:])
		n = int(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		_, _ = io.ReadFull(r.br, l[:])
		n = int(binary.BigEndian.Uint64(l[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r.br, p); err != nil {
		r.t.Fatal(err)
	}
	return h[0] & 0x0f, p
}

// Bytes sent right behind the handshake, before the 101 arrives, are read
// from the HTTP server's buffer; a violation there closes the connection
// before it is ever watched.
func TestFramesBehindTheHandshake(t *testing.T) {
	srv, _, url := start(t, Options{})
	hello := []byte{finBit | opText, 0x80 | 2, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2}
	for _, tc := range []struct {
		name  string
		frame []byte
		want  string
	}{{"masked text", hello, "echo:hi"}, {"unmasked", []byte{finBit | opText, 2, 'h', 'i'}, ""}} {
		t.Run(tc.name, func(t *testing.T) {
			r := rawDialWith(t, url, tc.frame)
			op, p := r.read()
			if tc.want != "" {
				if op != opText || string(p) != tc.want {
					t.Fatalf("got op %d %q, want %q", op, p, tc.want)
				}
				return
			}
			if op != opClose || int(binary.BigEndian.Uint16(p)) != CloseProtocol {
				t.Fatalf("got op %d %v, want close 1002", op, p)
			}
			time.Sleep(50 * time.Millisecond)
			if n := srv.Len(); n != 0 {
				t.Fatalf("%d connections watched, want 0", n)
			}
		})
	}
}
