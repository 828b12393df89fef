package transport_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/switchboard/switchboard/config"
	sbserver "github.com/switchboard/switchboard/server"
)

// Native Engine.IO 4 long-polling and its upgrade, driven byte for byte
// over loopback HTTP against a whole server.

type testServer struct {
	url string
	cfg *config.Config
}

func startServer(t *testing.T, mutate func(*config.Config)) *testServer {
	t.Helper()
	cfg, err := config.Load(nil, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	cfg.Host, cfg.Port = "127.0.0.1", 0
	if mutate != nil {
		mutate(cfg)
	}
	level := slog.LevelError
	if os.Getenv("SWITCHBOARD_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	node, err := sbserver.New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	if err != nil {
		t.Fatalf("server: %v", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- node.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := node.HTTP.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		_ = node.Actors.Stop(2 * time.Second)
	})
	return &testServer{url: "http://" + ln.Addr().String(), cfg: cfg}
}

// poller is an Engine.IO polling session driven request by request.
type poller struct {
	t   *testing.T
	s   *testServer
	sid string
}

var sidRe = regexp.MustCompile(`"sid":"([^"]+)"`)

func (s *testServer) endpoint(query string) string {
	return s.url + s.cfg.Path + "/?EIO=4&" + query
}

func do(t *testing.T, method, url string, body io.Reader, length int64) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.ContentLength = length
		req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

func handshake(t *testing.T, s *testServer) *poller {
	t.Helper()
	res, body := do(t, "GET", s.endpoint("transport=polling"), nil, 0)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/plain; charset=UTF-8" {
		t.Fatalf("handshake: %d %q %s", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	m := sidRe.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("handshake body %q", body)
	}
	return &poller{t: t, s: s, sid: m[1]}
}

func (p *poller) url(transport string) string {
	return p.s.endpoint("transport=" + transport + "&sid=" + p.sid)
}

func (p *poller) get() (int, string) {
	p.t.Helper()
	res, body := do(p.t, "GET", p.url("polling"), nil, 0)
	return res.StatusCode, body
}

// packets is the next GET's packets, answering pings on the way.
func (p *poller) packets() []string {
	p.t.Helper()
	for {
		code, body := p.get()
		if code != 200 {
			p.t.Fatalf("GET: %d %s", code, body)
		}
		var out []string
		for _, pkt := range strings.Split(body, "\x1e") {
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

func (p *poller) post(body string) {
	p.t.Helper()
	res, b := do(p.t, "POST", p.url("polling"), strings.NewReader(body), int64(len(body)))
	if res.StatusCode != 200 || b != "ok" || res.Header.Get("Content-Type") != "text/html" {
		p.t.Fatalf("POST %.40q: %d %q %s", body, res.StatusCode, res.Header.Get("Content-Type"), b)
	}
}

// connect sends CONNECT and joins as a client; it returns the socket id.
func (p *poller) connect() string {
	p.t.Helper()
	p.post("40")
	got := p.packets()
	if len(got) != 1 || !strings.HasPrefix(got[0], `40{"sid":"`) {
		p.t.Fatalf("CONNECT answered %q", got)
	}
	p.post(`421["join",{"role":"client","username":"poll"}]`)
	if got := p.packets(); len(got) != 1 || !strings.HasPrefix(got[0], `431[{"ok":true`) {
		p.t.Fatalf("join answered %q", got)
	}
	return got[0]
}

// roundTrip checks that an event with an ack still works.
func (p *poller) roundTrip(ack int) {
	p.t.Helper()
	p.post(`42` + itoa(ack) + `["clientMessage",{"type":"text","message":"hi"}]`)
	if got := p.packets(); len(got) != 1 || !strings.HasPrefix(got[0], `43`+itoa(ack)+`[{"ok":true`) {
		p.t.Fatalf("ack %d: got %q", ack, got)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func expectEngineError(t *testing.T, code int, body string, wantCode int, what string) {
	t.Helper()
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if code != 400 || json.Unmarshal([]byte(body), &e) != nil || e.Code != wantCode {
		t.Fatalf("%s: %d %s, want 400 with Engine.IO code %d", what, code, body, wantCode)
	}
}

func TestPollingHandshakeFields(t *testing.T) {
	s := startServer(t, nil)
	_, body := do(t, "GET", s.endpoint("transport=polling"), nil, 0)
	var hs struct {
		SID          string   `json:"sid"`
		Upgrades     []string `json:"upgrades"`
		PingInterval int      `json:"pingInterval"`
		PingTimeout  int      `json:"pingTimeout"`
		MaxPayload   int      `json:"maxPayload"`
	}
	if body[0] != '0' || json.Unmarshal([]byte(body[1:]), &hs) != nil {
		t.Fatalf("open packet %q", body)
	}
	if len(hs.SID) != 20 || len(hs.Upgrades) != 1 || hs.Upgrades[0] != "websocket" ||
		hs.PingInterval != int(s.cfg.PingInterval.Milliseconds()) || hs.PingTimeout != int(s.cfg.PingTimeout.Milliseconds()) ||
		hs.MaxPayload != 2*s.cfg.MaxImageBytes+64<<10 {
		t.Fatalf("open packet %q", body)
	}
	// Bad values are answered as engine.io answers them.
	res, b := do(t, "GET", s.endpoint("transport=carrier-pigeon"), nil, 0)
	expectEngineError(t, res.StatusCode, b, 0, "unknown transport")
	res, b = do(t, "POST", s.endpoint("transport=polling"), strings.NewReader("40"), 2)
	expectEngineError(t, res.StatusCode, b, 2, "handshake by POST")
	res, b = do(t, "GET", s.endpoint("transport=websocket"), nil, 0)
	expectEngineError(t, res.StatusCode, b, 3, "websocket transport without an upgrade")
	res, b = do(t, "PUT", s.endpoint("transport=polling&sid="+sidRe.FindStringSubmatch(body)[1]), strings.NewReader("3"), 1)
	expectEngineError(t, res.StatusCode, b, 3, "PUT")
}

func TestPollingEventWithAckAndBinary(t *testing.T) {
	s := startServer(t, nil)
	p := handshake(t, s)
	p.connect()
	p.roundTrip(2)
	// A binary attachment arrives base64 in a "b" packet, answered as on a
	// websocket: the image must be a string, so a chatError.
	png := base64.StdEncoding.EncodeToString([]byte{0x89, 'P', 'N', 'G'})
	p.post(`451-["clientMessage",{"type":"image","message":{"_placeholder":true,"num":0}}]` + "\x1eb" + png)
	got := p.packets()
	if len(got) != 1 || !strings.HasPrefix(got[0], `42["chatError",{"code":"`) || !strings.Contains(got[0], `"event":"clientMessage"`) {
		t.Fatalf("got %q, want a chatError for the clientMessage", got)
	}
	// Bad base64 is a parse error: the session ends with a close packet.
	p.post("b%%%")
	if got := p.packets(); got[len(got)-1] != "1" {
		t.Fatalf("after bad base64: %q, want the close packet", got)
	}
}

func TestPollingUnknownSessionAndOverlap(t *testing.T) {
	s := startServer(t, nil)
	for _, method := range []string{"GET", "POST"} {
		res, b := do(t, method, s.endpoint("transport=polling&sid=nosuchsession"), strings.NewReader("40"), 2)
		expectEngineError(t, res.StatusCode, b, 1, method+" with an unknown sid")
		if !strings.Contains(b, `"Session ID unknown"`) {
			t.Fatalf("%s: %s", method, b)
		}
	}
	bystander := handshake(t, s)
	bystander.connect()

	p := handshake(t, s)
	p.connect()
	first := make(chan string, 1)
	go func() { _, b := p.get(); first <- b }()
	time.Sleep(100 * time.Millisecond) // the first GET is waiting
	code, b := p.get()
	expectEngineError(t, code, b, 3, "overlapping GET")
	select {
	case b := <-first:
		if b != "1" {
			t.Fatalf("the pending GET got %q, want the close packet", b)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the pending GET was not answered")
	}
	code, b = p.get()
	expectEngineError(t, code, b, 1, "GET after the close")
	bystander.roundTrip(5)
}

func TestPollingBodyOverMaxPayload(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.MaxImageBytes = 10_000 })
	max := 2*s.cfg.MaxImageBytes + 64<<10
	bystander := handshake(t, s)
	bystander.connect()
	for _, chunked := range []bool{false, true} {
		p := handshake(t, s)
		p.connect()
		body := strings.Repeat("6\x1e", max/2+1) + "6"
		length := int64(len(body))
		var r io.Reader = strings.NewReader(body)
		if chunked {
			length, r = -1, io.MultiReader(r) // hides the length: sent chunked
		}
		res, b := do(t, "POST", p.url("polling"), r, length)
		if res.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("chunked %v: %d %s, want 413", chunked, res.StatusCode, b)
		}
		if got := p.packets(); got[len(got)-1] != "1" {
			t.Fatalf("after 413: %q, want the close packet", got)
		}
	}
	bystander.roundTrip(7)
}

// A million noops in one 2 MB POST cost what the body costs (the library
// spent 370 times that): past the socket's rate, dropped packets are
// strikes, and the abuse limit of them ends the session, without reading
// the rest. A bystander notices nothing.
func TestPollingMillionNoopsCostLittle(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.MaxImageBytes = 1_000_000 })
	bystander := handshake(t, s)
	bystander.connect()
	p := handshake(t, s)
	p.connect()
	body := bytes.Repeat([]byte("6\x1e"), 1_000_000)
	body = body[:len(body)-1]
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	res, b := do(t, "POST", p.url("polling"), bytes.NewReader(body), int64(len(body)))
	runtime.ReadMemStats(&after)
	if res.StatusCode != 200 || b != "ok" {
		t.Fatalf("noops: %d %s", res.StatusCode, b)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	mallocs := after.Mallocs - before.Mallocs
	t.Logf("1,000,000 noops in %d bytes: %d bytes (%.1fx) and %d allocations", len(body), allocated, float64(allocated)/float64(len(body)), mallocs)
	if allocated > 4*uint64(len(body)) || mallocs > 20_000 {
		t.Fatalf("1,000,000 noops cost %d bytes in %d allocations", allocated, mallocs)
	}
	if got := p.packets(); got[len(got)-1] != "1" {
		t.Fatalf("after a million noops: %q, want the close packet", got)
	}
	bystander.roundTrip(3)
}

func TestPollingPingTimeout(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		c.PingInterval, c.PingTimeout = 200*time.Millisecond, 200*time.Millisecond
	})
	p := handshake(t, s)
	p.connect()
	// Take the ping, never answer it.
	start := time.Now()
	if code, b := p.get(); code != 200 || b != "2" {
		t.Fatalf("got %d %q, want a ping", code, b)
	}
	if code, b := p.get(); code != 200 || b != "1" {
		t.Fatalf("got %d %q, want the close packet", code, b)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("closed after %v, want about 400 ms", d)
	}
	// A client that stops polling but sends pongs is closed too.
	q := handshake(t, s)
	q.connect()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		res, _ := do(t, "POST", q.url("polling"), strings.NewReader("3"), 1)
		if res.StatusCode == 400 {
			return // forgotten: closed and lingered out
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, b := q.get()
	if code == 200 && strings.HasSuffix(b, "1") {
		return
	}
	t.Fatalf("a session without GETs is still open: %d %q", code, b)
}

func TestPollingUpgrade(t *testing.T) {
	s := startServer(t, nil)
	p := handshake(t, s)
	p.connect()
	wsURL := "ws" + strings.TrimPrefix(p.url("websocket"), "http")

	// A probe that closes before "5" leaves the session on polling.
	probe, _, err := gws.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	probeOK(t, probe)
	_ = probe.Close()
	time.Sleep(50 * time.Millisecond)
	p.roundTrip(4)

	// The real upgrade: the pending GET ends with a noop once the probe is
	// answered; packets queued before "5" come first on the websocket.
	pending := make(chan string, 1)
	go func() { _, b := p.get(); pending <- b }()
	time.Sleep(50 * time.Millisecond)
	c, _, err := gws.DefaultDialer.Dial(wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	probeOK(t, c)
	select {
	case b := <-pending:
		if b != "6" {
			t.Fatalf("pending GET got %q, want a noop", b)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("pending GET not ended by the probe")
	}
	for i := 10; i < 20; i++ { // answered while the client is between transports
		p.post(`42` + itoa(i) + `["clientMessage",{"type":"text","message":"m"}]`)
	}
	if err := c.WriteMessage(gws.TextMessage, []byte("5")); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(gws.TextMessage, []byte(`4220["clientMessage",{"type":"text","message":"ws"}]`)); err != nil {
		t.Fatal(err)
	}
	for want := 10; want <= 20; want++ {
		got := readWS(t, c)
		if !strings.HasPrefix(got, `43`+itoa(want)+`[{"ok":true`) {
			t.Fatalf("got %q, want ack %d (each once, in order)", got, want)
		}
	}
	code, b := p.get()
	expectEngineError(t, code, b, 1, "GET after the upgrade")
	res, b := do(t, "POST", p.url("polling"), strings.NewReader("3"), 1)
	expectEngineError(t, res.StatusCode, b, 1, "POST after the upgrade")
	_, _, err = gws.DefaultDialer.Dial(wsURL, nil)
	if err == nil {
		t.Fatal("a second upgrade of the same session was accepted")
	}
	// A websocket for an unknown session is refused.
	_, res, err = gws.DefaultDialer.Dial("ws"+strings.TrimPrefix(s.endpoint("transport=websocket&sid=nosuchsession"), "http"), nil)
	if err == nil || res == nil || res.StatusCode != 400 {
		t.Fatalf("websocket with an unknown sid: %v", err)
	}
	// The socket lives on over the websocket, heartbeat included.
	if err := c.WriteMessage(gws.TextMessage, []byte(`4221["clientMessage",{"type":"text","message":"ws"}]`)); err != nil {
		t.Fatal(err)
	}
	if got := readWS(t, c); !strings.HasPrefix(got, `4321[{"ok":true`) {
		t.Fatalf("after upgrade: %q", got)
	}
}

func probeOK(t *testing.T, c *gws.Conn) {
	t.Helper()
	if err := c.WriteMessage(gws.TextMessage, []byte("2probe")); err != nil {
		t.Fatal(err)
	}
	if got := readWS(t, c); got != "3probe" {
		t.Fatalf("probe answered %q", got)
	}
}

// readWS returns the next packet other than a ping (which it answers).
func readWS(t *testing.T, c *gws.Conn) string {
	t.Helper()
	for {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, p, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if string(p) == "2" {
			_ = c.WriteMessage(gws.TextMessage, []byte("3"))
			continue
		}
		return string(p)
	}
}
