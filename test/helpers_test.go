package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/actors"
	sbclient "github.com/switchboard/switchboard/client"
	"github.com/switchboard/switchboard/config"
	sbserver "github.com/switchboard/switchboard/server"
	"github.com/switchboard/switchboard/transport"
	engine "github.com/zishang520/socket.io/clients/engine/v3"
	"github.com/zishang520/socket.io/clients/engine/v3/transports"
	sio "github.com/zishang520/socket.io/clients/socket/v3"
	"github.com/zishang520/socket.io/v3/pkg/types"
)

// server is one in-process Switchboard on a free loopback port.
type server struct {
	URL   string
	cfg   *config.Config
	node  *sbserver.Node
	srv   *transport.Server
	done  chan error
	close sync.Once
}

// startServer runs a Switchboard with default settings, changed by mutate.
func startServer(t testing.TB, mutate func(*config.Config), opts ...func(*actors.Options)) *server {
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
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	node, err := sbserver.New(cfg, log, opts...)
	if err != nil {
		t.Fatalf("server: %v", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &server{URL: "http://" + ln.Addr().String(), cfg: cfg, node: node, srv: node.HTTP, done: make(chan error, 1)}
	go func() { s.done <- node.Serve(ln) }()
	t.Cleanup(func() { s.stop(t) })
	return s
}

// stop shuts the server down gracefully and checks that it did so in time.
func (s *server) stop(t testing.TB) {
	s.close.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
			if os.Getenv("SWITCHBOARD_TEST_DUMP") != "" {
				_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
			}
		}
		if err := <-s.done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if err := s.node.Actors.Stop(2 * time.Second); err != nil {
			t.Errorf("stop actors: %v", err)
		}
	})
}

// event is one event a test client received.
type event struct {
	Name string
	Data map[string]any
	Raw  string
}

// conn is a connected Socket.IO client, whichever library it comes from.
type conn interface {
	ID() string
	Emit(event string, payload any) error
	Close()
}

// client is a test participant that records every event it receives.
type client struct {
	t      testing.TB
	label  string
	conn   conn
	events chan event
}

// transportModes are the ways a front end connects: websocket alone,
// long-polling alone, polling upgraded to websocket, websocket through
// zishang520's Go Socket.IO client rather than our own client package, and
// websocket served by the Socket.IO library instead of transport/ws
// (SWITCHBOARD_WEBSOCKET=library).
var transportModes = []struct {
	name      string
	transport sbclient.Transport
	zishang   bool
	library   bool
}{
	{"websocket", sbclient.WebSocket, false, false},
	{"polling", sbclient.Polling, false, false},
	{"upgrade", sbclient.Upgrade, false, false},
	{"zishang520-websocket", sbclient.WebSocket, true, false},
	{"websocket-library", sbclient.WebSocket, false, true},
}

// modeConfig is the server configuration a transport mode needs.
// zishang520's client closes its engine before its DISCONNECT leaves, so a
// deliberate disconnect looks like a dropped transport: its mode runs the
// guide's contract exactly, without recovery.
func modeConfig(mode int) func(*config.Config) {
	switch {
	case transportModes[mode].library:
		return func(c *config.Config) { c.WebSocketServer = "library" }
	case transportModes[mode].zishang:
		return func(c *config.Config) { c.RecoveryWindow = 0 }
	}
	return nil
}

// dial connects a new client and waits until it is connected. zishang520's
// client is used over websocket only: its polling sends a POST only after
// its pending GET long-poll returns, so an idle socket misses its pong and
// is dropped. Its connect has races of its own (see dialZishang), so the
// suites other than the contract's use our own client package.
func dial(t testing.TB, s *server, label string, mode int, auth map[string]any) *client {
	t.Helper()
	c := &client{t: t, label: label, events: make(chan event, 1024)}
	record := func(name string, raw []byte) {
		ev := event{Name: name, Raw: string(raw)}
		_ = json.Unmarshal(raw, &ev.Data)
		c.events <- ev
	}
	if transportModes[mode].zishang {
		c.conn = dialZishang(t, s, label, auth, record)
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sc, err := sbclient.Dial(ctx, s.URL, sbclient.Options{
			Path:      s.cfg.Path,
			Transport: transportModes[mode].transport,
			Auth:      auth,
			OnEvent:   func(name string, p json.RawMessage) { record(name, p) },
		})
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		c.conn = sc
	}
	t.Cleanup(c.conn.Close)
	return c
}

// gatedWebSocket is zishang520's websocket transport whose incoming packets
// wait until gate is closed.
type gatedWebSocket struct{ gate chan struct{} }

func (gatedWebSocket) Name() string { return transports.WebSocket.Name() }

func (g gatedWebSocket) New(socket engine.Socket, opts engine.SocketOptionsInterface) engine.Transport {
	return gatedTransport{transports.WebSocket.New(socket, opts), g.gate}
}

type gatedTransport struct {
	engine.Transport
	gate chan struct{}
}

func (g gatedTransport) On(ev types.EventName, listeners ...types.EventListener) error {
	if ev == "packet" {
		for i, l := range listeners {
			listeners[i] = func(args ...any) { <-g.gate; l(args...) }
		}
	}
	return g.Transport.On(ev, listeners...)
}

// zishangConn adapts zishang520's client.
type zishangConn struct{ *sio.Socket }

func (z zishangConn) ID() string                  { return z.Socket.Id() }
func (z zishangConn) Emit(ev string, p any) error { return z.Socket.Emit(ev, p) }
func (z zishangConn) Close()                      { z.Socket.Disconnect() }

func dialZishang(t testing.TB, s *server, label string, auth map[string]any, record func(string, []byte)) conn {
	t.Helper()
	gate := make(chan struct{})
	opts := sio.DefaultOptions()
	opts.SetPath(s.cfg.Path)
	opts.SetTransports(types.NewSet[transports.TransportCtor](gatedWebSocket{gate}))
	opts.SetForceNew(true)
	opts.SetMultiplex(false)
	opts.SetReconnection(false)
	opts.SetTimeout(5 * time.Second)
	if auth != nil {
		opts.SetAuth(auth)
	}
	// Two races in this client, both lost more often the sooner a server
	// answers (Node's answers as soon as ours): the manager subscribes to the
	// engine's "open" only after the engine has dialled and started reading,
	// so an open packet read at once is never seen and the connect times
	// out (the gate holds incoming packets until the manager listens); and
	// sio.Connect subscribes the socket to the manager's "open" and then
	// checks the manager's state, so an open landing in between sends
	// CONNECT twice, which the server, as Node's, answers by closing the
	// connection (the socket is made only once the manager is open).
	opts.SetAutoConnect(false)
	m := sio.NewManager(s.URL, opts)
	opened := make(chan error, 1)
	m.Open(func(err error) { opened <- err })
	close(gate)
	select {
	case err := <-opened:
		if err != nil {
			t.Fatalf("%s: zishang520 manager: %v", label, err)
		}
	case <-time.After(6 * time.Second):
		t.Fatalf("%s: zishang520 manager did not open", label)
	}
	sock := m.Socket("/", opts)
	sock.On("disconnect", func(args ...any) {
		if len(args) > 0 && args[0] != "io client disconnect" {
			t.Logf("%s: zishang520 client disconnected: %v", label, args)
		}
	})
	sock.OnAny(func(args ...any) {
		name, _ := args[0].(string)
		var raw []byte
		if len(args) > 1 {
			raw, _ = json.Marshal(args[1])
		}
		record(name, raw)
	})
	sock.Connect()
	// The id is set a moment after "connect" fires: poll for both.
	waitFor(t, 5*time.Second, func() error {
		if !sock.Connected() || sock.Id() == "" {
			return fmt.Errorf("%s: zishang520 client not connected", label)
		}
		return nil
	})
	return zishangConn{sock}
}

// id is the socket id that the server gave this client.
func (c *client) id() string { return c.conn.ID() }

func (c *client) emit(event string, payload any) {
	c.t.Helper()
	if err := c.conn.Emit(event, payload); err != nil {
		c.t.Fatalf("%s: emit %s: %v", c.label, event, err)
	}
}

// join emits join and waits until /stats lists the socket in its role.
func (c *client) join(s *server, payload map[string]any) {
	c.t.Helper()
	c.joinOn([]*server{s}, payload)
}

// expect waits for the next event, which must be name.
func (c *client) expect(name string) event {
	c.t.Helper()
	return c.expectWithin(name, 3*time.Second)
}

// expectWithin is expect with a longer wait, for large payloads under -race.
func (c *client) expectWithin(name string, d time.Duration) event {
	c.t.Helper()
	select {
	case ev := <-c.events:
		if ev.Name != name {
			c.t.Fatalf("%s: got %s %s, want %s", c.label, ev.Name, ev.Raw, name)
		}
		return ev
	case <-time.After(d):
		c.t.Fatalf("%s: no %s within %s", c.label, name, d)
	}
	return event{}
}

// expectJSON waits for the next event and compares its payload with want,
// after checking and replacing a server timestamp (field "timestamp" when
// stamp is true) with "<ts>".
func (c *client) expectJSON(name string, want string, stamp bool) event {
	c.t.Helper()
	ev := c.expect(name)
	got := ev.Data
	if stamp {
		checkTimestamp(c.t, got["timestamp"])
		got = clone(got)
		got["timestamp"] = "<ts>"
	}
	var w map[string]any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		c.t.Fatalf("bad want %s: %v", want, err)
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		c.t.Fatalf("%s: %s payload\n got  %s\n want %s", c.label, name, gb, wb)
	}
	return ev
}

// expectRefused waits for the chatError that answers a refused event.
func (c *client) expectRefused(event, code string) {
	c.t.Helper()
	ev := c.expect("chatError")
	if ev.Data["event"] != event || ev.Data["code"] != code || ev.Data["message"] == "" {
		c.t.Fatalf("%s: chatError %s, want event %s code %s", c.label, ev.Raw, event, code)
	}
}

// expectNothing fails if any event arrives within a quiet window.
func (c *client) expectNothing() {
	c.t.Helper()
	select {
	case ev := <-c.events:
		c.t.Fatalf("%s: unexpected %s %s", c.label, ev.Name, ev.Raw)
	case <-time.After(150 * time.Millisecond):
	}
}

var isoRe = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$`)

func checkTimestamp(t testing.TB, v any) {
	t.Helper()
	s, _ := v.(string)
	if !isoRe.MatchString(s) {
		t.Fatalf("timestamp %q is not toISOString()", v)
	}
	ts, _ := time.Parse("2006-01-02T15:04:05.000Z", s)
	if d := time.Since(ts); d < -time.Second || d > 10*time.Second {
		t.Fatalf("timestamp %s is %s away from now", s, d)
	}
}

func clone(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// waitFor polls cond until it returns nil or total passes.
func waitFor(t testing.TB, total time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", total, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type healthResp struct {
	Status      string `json:"status"`
	Timestamp   string `json:"timestamp"`
	Connections struct {
		Total     int `json:"total"`
		Clients   int `json:"clients"`
		Operators int `json:"operators"`
	} `json:"connections"`
}

func health(t testing.TB, s *server) healthResp {
	t.Helper()
	var h healthResp
	getJSON(t, s.URL+"/health", &h)
	return h
}

func getJSON(t testing.TB, url string, v any) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, res.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v in %s", url, err, b)
	}
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
