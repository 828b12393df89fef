package actors

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard/switchboard/messages"
)

func operatorN(i int) messages.JoinPayload {
	return messages.JoinPayload{Role: messages.RoleOperator, Name: messages.S(fmt.Sprint("op", i)), OperatorID: messages.ID{Num: float64(i), Kind: messages.IDNumber}}
}

// In auto mode a player's message reaches its owner alone, however many
// operators there are; a router that panics restarts with the assignments.
func TestAutoRoutingOwnerOnlyAndSurvivesRestarts(t *testing.T) {
	boom := &struct{ messages.StatsQuery }{} // a message type only this test sends
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
	s := startSystem(t, Options{Routing: Routing{Mode: RoutingAuto}, RouterMiddleware: []actor.ReceiverMiddleware{panicky}})
	ops := make([]*fakeConn, 20)
	for i := range ops {
		ops[i], _ = participantUp(t, s, fmt.Sprint("op", i+1), operatorN(i+1))
		waitHealth(t, s, 0, i+1)
	}
	cl, clSess := participantUp(t, s, "cl", clientJoin("Bob"))
	// op1 waited longest: it gets the chat, and everyone hears so.
	if m := ops[0].expect(t, "newChat"); m["clientId"] != "cl" {
		t.Fatalf("newChat %v", m)
	}
	for _, op := range ops {
		if m := op.expect(t, "chatAssigned"); m["clientId"] != "cl" || m["operatorId"] != 1.0 || m["operatorName"] != "op1" {
			t.Fatalf("chatAssigned %v", m)
		}
	}
	if m := cl.expect(t, "operatorAssigned"); m["operatorName"] != "op1" {
		t.Fatalf("operatorAssigned %v", m)
	}

	for range 3 {
		s.Root().Send(s.Router(), boom)
	}
	waitHealth(t, s, 1, 20)
	if n := fired.Load(); n != 3 {
		t.Fatalf("%d injected panics fired, want 3: the test proved nothing", n)
	}
	clSess.Event(&messages.ClientMessage{Origin: messages.Origin{From: "cl"}, Payload: messages.ClientMessagePayload{Content: messages.Content{Type: messages.KindText, Message: messages.S("hola")}}})
	if m := ops[0].expect(t, "incomingMessage"); m["message"] != "hola" {
		t.Fatalf("incomingMessage %v", m)
	}
	for _, op := range ops[1:] {
		op.expectNothing(t)
	}
	st, err := s.Stats(context.Background())
	if err != nil || st.Clients[0].Owner.String() != "1" || *st.Operators[0].Load != 1 || *st.Operators[1].Load != 0 {
		t.Fatalf("stats after restarts: %+v %v", st, err)
	}
}

// Without an offline queue (continuity off) a waiting chat's messages are
// refused queue_full, not dropped silently; a player with an owner is
// unaffected.
func TestAutoWaitingMessageWithoutQueueIsRefused(t *testing.T) {
	s := startSystem(t, Options{Routing: Routing{Mode: RoutingAuto, MaxChatsPerOperator: 1}})
	op, _ := participantUp(t, s, "op1", operatorN(1))
	waitHealth(t, s, 0, 1)
	_, first := participantUp(t, s, "c1", clientJoin("first"))
	waitHealth(t, s, 1, 1)
	_, second := participantUp(t, s, "c2", clientJoin("second"))
	waitHealth(t, s, 2, 1)
	replies := make(chan *messages.AckReply, 2)
	ack := func(r *messages.AckReply) { replies <- r }
	text := messages.ClientMessagePayload{Content: messages.Content{Type: messages.KindText, Message: messages.S("hi")}}
	second.Event(&messages.ClientMessage{Origin: messages.Origin{From: "c2", Ack: ack}, Payload: text})
	if r := nextReply(t, replies); r.OK || r.Error.Code != messages.CodeQueueFull {
		t.Fatalf("waiting chat's message: %+v", r)
	}
	first.Event(&messages.ClientMessage{Origin: messages.Origin{From: "c1", Ack: ack}, Payload: text})
	if r := nextReply(t, replies); !r.OK || r.Queued {
		t.Fatalf("owned chat's message: %+v %+v", r, r.Error)
	}
	op.expect(t, "newChat")
	op.expect(t, "chatAssigned")
	op.expect(t, "chatQueued")
	if m := op.expect(t, "incomingMessage"); m["from"] != "c1" {
		t.Fatalf("incomingMessage %v", m)
	}
	op.expectNothing(t)
}

func nextReply(t *testing.T, replies <-chan *messages.AckReply) *messages.AckReply {
	t.Helper()
	select {
	case r := <-replies:
		return r
	case <-time.After(2 * time.Second):
		t.Fatal("no acknowledgement within 2s")
	}
	return nil
}
