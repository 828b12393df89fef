package test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/switchboard/switchboard/config"
)

// The edge of the HTTP server after the security review: tokens must
// expire, CORS never answers "*" beside credentials, idle keep-alive
// connections are closed, and headers are bounded.

const edgePlayerSecret = "player-secret-player-secret-0123456789"

// refusedJoin joins with an acknowledgement and checks it is refused as
// unauthorized, with want in its message.
func refusedJoin(t *testing.T, c *client, payload map[string]any, want string) {
	t.Helper()
	r := c.emitAck("join", payload)
	e, _ := r["error"].(map[string]any)
	msg, _ := e["message"].(string)
	if r["ok"] != false || e["code"] != "unauthorized" || !strings.Contains(msg, want) {
		t.Fatalf("%s: join ack %v, want unauthorized with %q", c.label, r, want)
	}
}

// A token without exp would be valid forever: it is refused, for
// operators and for players, with a reason that says so; a token that
// expires still works, and SWITCHBOARD_JWT_ALLOW_NO_EXP lets the old
// tokens through on purpose.
func TestEdgeJWTWithoutExpIsRefused(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.JWTSecret, c.ClientSecret = testSecret, edgePlayerSecret })
	exp := time.Now().Add(time.Hour).Unix()

	forever := ws(t, s, "op-forever", map[string]any{"token": sign(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.MapClaims{"sub": "op-1", "name": "Forever"})}, nil)
	refusedJoin(t, forever, map[string]any{"role": "operator", "name": "Forever", "operatorId": 1}, "token has no exp claim")
	player := ws(t, s, "player-forever", map[string]any{"token": sign(t, jwt.SigningMethodHS256, []byte(edgePlayerSecret), jwt.MapClaims{"username": "forever"})}, nil)
	refusedJoin(t, player, map[string]any{"role": "client", "name": "F"}, "token has no exp claim")

	// The honest operator and player, with exp, chat as before; the refused
	// operator hears nothing of it.
	op := ws(t, s, "op", map[string]any{"token": sign(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.MapClaims{"sub": "op-42", "name": "Ana", "exp": exp})}, nil)
	if r := op.emitAck("join", map[string]any{"role": "operator", "name": "Ana", "operatorId": 42}); r["ok"] != true {
		t.Fatalf("honest operator: join ack %v", r)
	}
	cl := ws(t, s, "cl", map[string]any{"token": sign(t, jwt.SigningMethodHS256, []byte(edgePlayerSecret), jwt.MapClaims{"username": "bob", "exp": exp})}, nil)
	cl.emit("join", map[string]any{"role": "client", "name": "Bob"})
	op.expectJSON("newChat", fmt.Sprintf(`{"clientId":%q,"username":"bob"}`, cl.id()), false)
	cl.emit("clientMessage", map[string]any{"type": "text", "message": "hola"})
	op.expect("incomingMessage")
	forever.expectNothing()
	if h := health(t, s); h.Connections.Operators != 1 || h.Connections.Clients != 1 {
		t.Fatalf("joined: %+v, want the honest operator and player only", h.Connections)
	}

	lax := startServer(t, func(c *config.Config) { c.JWTSecret, c.JWTAllowNoExp = testSecret, true })
	old := ws(t, lax, "op-old", map[string]any{"token": sign(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.MapClaims{"sub": "op-1"})}, nil)
	if r := old.emitAck("join", map[string]any{"role": "operator", "name": "Old", "operatorId": 1}); r["ok"] != true {
		t.Fatalf("with SWITCHBOARD_JWT_ALLOW_NO_EXP: join ack %v", r)
	}
	expired := ws(t, lax, "op-expired", map[string]any{"token": sign(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.MapClaims{"sub": "op-2", "exp": time.Now().Add(-time.Hour).Unix()})}, nil)
	refusedJoin(t, expired, map[string]any{"role": "operator", "name": "Expired", "operatorId": 2}, "expired")
}

// corsRequest sends method path with origin ("" for none) and returns the
// answer's status and headers.
func corsRequest(t *testing.T, s *server, method, path, origin string) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if method == http.MethodOptions {
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode, res.Header
}

func varies(h http.Header) bool {
	for _, v := range h.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), "Origin") {
				return true
			}
		}
	}
	return false
}

// With CORS_ORIGIN=* the answer names the caller's origin, never "*"
// (which browsers refuse beside credentials), and varies by Origin; a
// request without an Origin gets no CORS headers. A configured list
// behaves the same for its origins and refuses others.
func TestEdgeCORSOriginIsEchoedNeverStar(t *testing.T) {
	star := startServer(t, nil)
	list := startServer(t, func(c *config.Config) { c.CORSOrigins = []string{"https://crm.example.com"} })
	paths := []struct{ method, path string }{
		{http.MethodGet, "/chat/?EIO=4&transport=polling"},
		{http.MethodOptions, "/chat/?EIO=4&transport=polling"},
		{http.MethodGet, "/health"},
		{http.MethodGet, "/stats"},
	}
	for _, c := range []struct {
		name   string
		s      *server
		origin string
	}{
		{"star", star, "http://widget.example.org"},
		{"list", list, "https://crm.example.com"},
	} {
		for _, p := range paths {
			what := fmt.Sprintf("%s: %s %s from %s", c.name, p.method, p.path, c.origin)
			status, h := corsRequest(t, c.s, p.method, p.path, c.origin)
			if status != http.StatusOK && status != http.StatusNoContent {
				t.Errorf("%s: status %d", what, status)
			}
			if got := h.Get("Access-Control-Allow-Origin"); got != c.origin {
				t.Errorf("%s: Access-Control-Allow-Origin %q, want %q", what, got, c.origin)
			}
			if got := h.Get("Access-Control-Allow-Credentials"); got != "true" {
				t.Errorf("%s: Access-Control-Allow-Credentials %q", what, got)
			}
			if !varies(h) {
				t.Errorf("%s: no Vary: Origin in %v", what, h.Values("Vary"))
			}
			// Without an Origin: answered, with no CORS headers at all.
			status, h = corsRequest(t, c.s, p.method, p.path, "")
			if status != http.StatusOK && status != http.StatusNoContent {
				t.Errorf("%s %s without Origin: status %d", c.name, p.path, status)
			}
			if got := h.Values("Access-Control-Allow-Origin"); len(got) != 0 || h.Get("Access-Control-Allow-Credentials") != "" {
				t.Errorf("%s %s without Origin: CORS headers %v", c.name, p.path, h)
			}
			if !varies(h) {
				t.Errorf("%s %s without Origin: no Vary: Origin", c.name, p.path)
			}
		}
	}
	status, h := corsRequest(t, list, http.MethodGet, "/health", "https://evil.example.com")
	if status != http.StatusForbidden || h.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("foreign origin: %d, Allow-Origin %q", status, h.Get("Access-Control-Allow-Origin"))
	}
}

// rawGet sends a GET on conn and reads its answer.
func rawGet(t *testing.T, conn net.Conn, br *bufio.Reader, path string) *http.Response {
	t.Helper()
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: switchboard\r\n\r\n", path); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

const edgeIdle = 300 * time.Millisecond

// A keep-alive connection without a request is closed after
// SWITCHBOARD_HTTP_IDLE_TIMEOUT (it used to be held forever), and not
// before: requests in quick succession share it.
func TestEdgeIdleKeepAliveIsClosed(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.HTTPIdleTimeout = edgeIdle })
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for range 3 {
		if res := rawGet(t, conn, br, "/health"); res.StatusCode != http.StatusOK || res.Close {
			t.Fatalf("keep-alive GET /health: %d, close %v", res.StatusCode, res.Close)
		}
		time.Sleep(edgeIdle / 3)
	}
	idleSince := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = br.ReadByte()
	waited := time.Since(idleSince)
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(fmt.Sprint(err), "reset") {
		t.Fatalf("idle connection: read %v after %s, want it closed by the server", err, waited)
	}
	if waited < edgeIdle-edgeIdle/3-50*time.Millisecond || waited > 3*time.Second {
		t.Fatalf("idle connection closed after %s, want about %s", waited, edgeIdle)
	}
}

// Websockets (native and the library's) and long-polling sockets are not
// idle connections: they outlive several idle timeouts and still chat.
func TestEdgeIdleTimeoutSparesSockets(t *testing.T) {
	for mode, m := range transportModes {
		if m.zishang || m.name == "upgrade" {
			continue
		}
		t.Run(m.name, func(t *testing.T) {
			s := startServer(t, func(c *config.Config) {
				c.HTTPIdleTimeout = edgeIdle
				if f := modeConfig(mode); f != nil {
					f(c)
				}
			})
			op := dial(t, s, "op", mode, nil)
			op.join(s, map[string]any{"role": "operator", "name": "Ana", "operatorId": 1})
			cl := dial(t, s, "cl", mode, nil)
			cl.join(s, map[string]any{"role": "client", "name": "Bob"})
			op.expect("newChat")
			time.Sleep(4 * edgeIdle)
			cl.emit("clientMessage", map[string]any{"type": "text", "message": "still here"})
			if ev := op.expect("incomingMessage"); ev.Data["message"] != "still here" {
				t.Fatalf("incomingMessage %v", ev.Data)
			}
			op.emit("operatorMessage", map[string]any{"to": cl.id(), "type": "text", "message": "me too"})
			cl.expect("operatorMessage")
			if h := health(t, s); h.Connections.Operators != 1 || h.Connections.Clients != 1 {
				t.Fatalf("after %s idle: %+v", 4*edgeIdle, h.Connections)
			}
		})
	}
}

// A pending long-poll GET is a request in flight, not an idle connection:
// held by the server for several idle timeouts, it still brings the answer.
func TestEdgeIdleTimeoutSparesLongPoll(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.HTTPIdleTimeout = edgeIdle })
	base := s.URL + s.cfg.Path + "/?EIO=4&transport=polling"
	get := func(url string) string {
		t.Helper()
		res, err := http.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", url, res.StatusCode, b)
		}
		return string(b)
	}
	post := func(url, body string) {
		t.Helper()
		res, err := http.Post(url, "text/plain;charset=UTF-8", strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s: %v", body, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d %s", body, res.StatusCode, b)
		}
	}
	open := get(base)
	i := strings.Index(open, `"sid":"`)
	if !strings.HasPrefix(open, "0{") || i < 0 {
		t.Fatalf("handshake %q", open)
	}
	sid := open[i+7:]
	sid = sid[:strings.IndexByte(sid, '"')]
	poll := base + "&sid=" + sid
	post(poll, "40")
	if got := get(poll); !strings.HasPrefix(got, "40") {
		t.Fatalf("CONNECT answer %q", got)
	}
	type answer struct {
		body string
		took time.Duration
	}
	polled := make(chan answer, 1)
	go func() {
		start := time.Now()
		res, err := http.Get(poll)
		if err != nil {
			polled <- answer{"error: " + err.Error(), time.Since(start)}
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		polled <- answer{string(b), time.Since(start)}
	}()
	time.Sleep(4 * edgeIdle)
	post(poll, `421["join",{"role":"client","name":"Poller"}]`)
	select {
	case a := <-polled:
		if !strings.HasPrefix(a.body, "431[") || a.took < 3*edgeIdle {
			t.Fatalf("long-poll answered %q after %s, want the join's ack after at least %s", a.body, a.took, 3*edgeIdle)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("long-poll never answered")
	}
}

// Headers past 16 KiB (and net/http's 4 KiB slack) are answered 431 at
// once; ordinary requests, a bearer token and cookies included, pass.
func TestEdgeHeaderLimit(t *testing.T) {
	s := startServer(t, nil)
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/health", nil)
	req.Header.Set("Cookie", "big="+strings.Repeat("x", 64<<10))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /health with 64 KiB of headers: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB of headers: %d, want 431", res.StatusCode)
	}
	req, _ = http.NewRequest(http.MethodGet, s.URL+"/health", nil)
	req.Header.Set("Cookie", "session="+strings.Repeat("x", 8<<10))
	req.Header.Set("Authorization", "Bearer "+strings.Repeat("t", 2<<10))
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /health with 10 KiB of headers: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("10 KiB of headers: %d, want 200", res.StatusCode)
	}
}
