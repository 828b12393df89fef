package actors

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard/switchboard/messages"
)

// fakeConn records what a session writes, in a channel, as a socket would
// carry it.
type fakeConn struct {
	id     string
	frames chan *messages.Frame
	mu     sync.Mutex
	closed string
}

func newFakeConn(id string) *fakeConn {
	return &fakeConn{id: id, frames: make(chan *messages.Frame, 256)}
}

func (c *fakeConn) ID() string              { return c.id }
func (c *fakeConn) Write(f *messages.Frame) { c.frames <- f }
func (c *fakeConn) Close(reason string)     { c.mu.Lock(); c.closed = reason; c.mu.Unlock() }
func (c *fakeConn) closedWith() string      { c.mu.Lock(); defer c.mu.Unlock(); return c.closed }
func (c *fakeConn) Confirmed() uint64       { return 0 }
func (c *fakeConn) Abandon()                { c.Close("abandoned") }

// expect returns the next frame, which must be event.
func (c *fakeConn) expect(t *testing.T, event string) map[string]any {
	t.Helper()
	select {
	case f := <-c.frames:
		if f.Event != event {
			t.Fatalf("%s: got %s %s, want %s", c.id, f.Event, f.Packet, event)
		}
		var pkt []json.RawMessage
		if err := json.Unmarshal(f.Packet[1:], &pkt); err != nil || len(pkt) != 2 || f.Packet[0] != '2' {
			t.Fatalf("%s: bad packet %s: %v", c.id, f.Packet, err)
		}
		var m map[string]any
		if err := json.Unmarshal(pkt[1], &m); err != nil {
			t.Fatalf("%s: bad payload %s", c.id, pkt[1])
		}
		return m
	case <-time.After(2 * time.Second):
		t.Fatalf("%s: no %s within 2s", c.id, event)
	}
	return nil
}

func (c *fakeConn) expectNothing(t *testing.T) {
	t.Helper()
	select {
	case f := <-c.frames:
		t.Fatalf("%s: unexpected %s", c.id, f.Packet)
	case <-time.After(100 * time.Millisecond):
	}
}

func quietLogger() *slog.Logger {
	if os.Getenv("SWITCHBOARD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError + 1}))
}

func startSystem(t *testing.T, o Options) *System {
	t.Helper()
	o.Logger = quietLogger()
	s, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(2 * time.Second) })
	return s
}

// participantUp connects a fake socket and joins it.
func participantUp(t *testing.T, s *System, id string, p messages.JoinPayload) (*fakeConn, *Session) {
	t.Helper()
	c := newFakeConn(id)
	sess, err := s.Connect(c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sess.Event(&messages.Join{Origin: messages.Origin{From: id, At: time.Now()}, Payload: p})
	return c, sess
}

func operator(name string) messages.JoinPayload {
	return messages.JoinPayload{Role: messages.RoleOperator, Name: messages.S(name), OperatorID: messages.ID{Num: 1, Kind: messages.IDNumber}}
}

func clientJoin(name string) messages.JoinPayload {
	return messages.JoinPayload{Role: messages.RoleClient, Name: messages.S(name)}
}

func waitHealth(t *testing.T, s *System, clients, operators int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		h, err := s.Health(context.Background())
		if err == nil && h.Clients == clients && h.Operators == operators {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("health %+v (err %v), want %d clients, %d operators", h, err, clients, operators)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRouterPresenceAndFanOut(t *testing.T) {
	s := startSystem(t, Options{})
	op1, _ := participantUp(t, s, "op1", operator("Ana"))
	op2, _ := participantUp(t, s, "op2", operator("Luis"))
	waitHealth(t, s, 0, 2)
	cl, clPID := participantUp(t, s, "cl", clientJoin("Bob"))
	for _, op := range []*fakeConn{op1, op2} {
		if m := op.expect(t, "newChat"); m["clientId"] != "cl" || m["username"] != "Bob" {
			t.Fatalf("newChat %v", m)
		}
	}
	clPID.Event(&messages.ClientMessage{Origin: messages.Origin{From: "cl"}, Payload: messages.ClientMessagePayload{Content: messages.Content{Type: messages.KindText, Message: messages.S("hi")}}})
	for _, op := range []*fakeConn{op1, op2} {
		if m := op.expect(t, "incomingMessage"); m["from"] != "cl" || m["message"] != "hi" {
			t.Fatalf("incomingMessage %v", m)
		}
	}
	cl.expectNothing(t)

	// A client leaving is a disconnect for every operator, and presence forgets it.
	clPID.Disconnected(cl, "transport close", false)
	for _, op := range []*fakeConn{op1, op2} {
		if m := op.expect(t, "chatEnded"); m["clientId"] != "cl" || m["reason"] != "disconnect" {
			t.Fatalf("chatEnded %v", m)
		}
	}
	waitHealth(t, s, 0, 2)
	if cl.closedWith() != "" {
		t.Fatalf("a socket that closed itself was closed again: %q", cl.closedWith())
	}
}

func TestRouterOrdersTheOperatorsListByJoin(t *testing.T) {
	s := startSystem(t, Options{})
	for i := range 20 {
		// Joins from different sessions race to the router: wait for each.
		participantUp(t, s, fmt.Sprintf("c%02d", i), clientJoin("x"))
		waitHealth(t, s, i+1, 0)
	}
	op, _ := participantUp(t, s, "op", operator("Ana"))
	for i := range 20 {
		if m := op.expect(t, "newChat"); m["clientId"] != fmt.Sprintf("c%02d", i) {
			t.Fatalf("newChat %d: %v", i, m)
		}
	}
	op.expectNothing(t)
}

// A panic inside the router restarts it with every participant still known.
func TestRouterPanicKeepsPresence(t *testing.T) {
	boom := &struct{ messages.HealthQuery }{} // a message type only this test sends
	var fired atomic.Int32
	panicky := func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
			if env.Message == any(boom) {
				fired.Add(1)
				panic("injected router failure")
			}
			next(c, env)
		}
	}
	s := startSystem(t, Options{RouterMiddleware: []actor.ReceiverMiddleware{panicky}})
	op, _ := participantUp(t, s, "op", operator("Ana"))
	cl, clPID := participantUp(t, s, "cl", clientJoin("Bob"))
	op.expect(t, "newChat")
	waitHealth(t, s, 1, 1)

	for range 3 {
		s.Root().Send(s.Router(), boom)
	}
	waitHealth(t, s, 1, 1)
	if n := fired.Load(); n != 3 {
		t.Fatalf("%d injected panics fired, want 3: the test proved nothing", n)
	}
	st, err := s.Stats(context.Background())
	if err != nil || len(st.Clients) != 1 || st.Clients[0].SocketID != "cl" || st.Operators[0].SocketID != "op" {
		t.Fatalf("stats after restarts: %+v %v", st, err)
	}
	// Routing still works, and the watch on sessions survived the restart.
	clPID.Event(&messages.ClientMessage{Origin: messages.Origin{From: "cl"}, Payload: messages.ClientMessagePayload{Content: messages.Content{Type: messages.KindText, Message: messages.S("after")}}})
	if m := op.expect(t, "incomingMessage"); m["message"] != "after" {
		t.Fatalf("incomingMessage %v", m)
	}
	clPID.Disconnected(cl, "gone", false)
	op.expect(t, "chatEnded")
	waitHealth(t, s, 0, 1)
	_ = cl
}

// A panic in one session closes that socket, ends its chat as a disconnect
// would, and leaves every other session running.
func TestSessionPanicClosesOnlyItsSocket(t *testing.T) {
	panicky := func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
			if m, ok := env.Message.(*messages.ClientTyping); ok && m.From == "victim" {
				panic("injected session failure")
			}
			next(c, env)
		}
	}
	s := startSystem(t, Options{SessionMiddleware: []actor.ReceiverMiddleware{panicky}})
	op, _ := participantUp(t, s, "op", operator("Ana"))
	victim, victimPID := participantUp(t, s, "victim", clientJoin("V"))
	other, otherPID := participantUp(t, s, "other", clientJoin("O"))
	op.expect(t, "newChat")
	op.expect(t, "newChat")

	victimPID.Event(&messages.ClientTyping{Origin: messages.Origin{From: "victim"}, IsTyping: true})
	if m := op.expect(t, "chatEnded"); m["clientId"] != "victim" || m["reason"] != "disconnect" {
		t.Fatalf("chatEnded %v", m)
	}
	waitHealth(t, s, 1, 1)
	if !strings.Contains(victim.closedWith(), "stopped") {
		t.Fatalf("victim socket not closed: %q", victim.closedWith())
	}
	if other.closedWith() != "" {
		t.Fatalf("other socket closed: %q", other.closedWith())
	}
	otherPID.Event(&messages.ClientTyping{Origin: messages.Origin{From: "other"}, IsTyping: true})
	if m := op.expect(t, "clientTyping"); m["from"] != "other" {
		t.Fatalf("clientTyping %v", m)
	}
}

// A stopped system leaves no goroutine behind: test processes and the
// server's restarts start many.
func TestStopEndsTheSystemsGoroutines(t *testing.T) {
	cycle := func() {
		s, err := Start(Options{Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		participantUp(t, s, "op", operator("Ana"))
		waitHealth(t, s, 0, 1)
		if err := s.Stop(2 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	cycle() // the first start also starts protoactor's process-wide goroutines
	before := runtime.NumGoroutine()
	for range 20 {
		cycle()
	}
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("%d goroutines after 20 starts and stops, %d before", n, before)
	}
}

// A router that keeps failing is stopped, and the system says so, so the
// node exits instead of dead-lettering every event silently.
func TestRouterThatKeepsFailingFailsTheSystem(t *testing.T) {
	boom := &struct{ messages.StatsQuery }{}
	var fired atomic.Int32
	panicky := func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
			if env.Message == any(boom) {
				fired.Add(1)
				panic("injected router failure")
			}
			next(c, env)
		}
	}
	s := startSystem(t, Options{RouterMiddleware: []actor.ReceiverMiddleware{panicky}})
	select {
	case <-s.Failed():
		t.Fatal("failed before any failure")
	default:
	}
	for range 15 {
		s.Root().Send(s.Router(), boom)
	}
	select {
	case <-s.Failed():
	case <-time.After(3 * time.Second):
		t.Fatalf("system not failed after %d router panics", fired.Load())
	}
	if fired.Load() < 10 {
		t.Fatalf("only %d panics fired", fired.Load())
	}
	if err := s.Failure(); err == nil || !strings.Contains(err.Error(), "router") {
		t.Fatalf("failure %v", err)
	}
}
