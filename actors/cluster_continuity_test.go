package actors

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/messages"
)

func TestRedisOffset(t *testing.T) {
	for _, c := range []struct {
		in    string
		epoch string
		n     uint64
		ok    bool
	}{
		{"a1b2.7", "a1b2", 7, true},
		{"a1b2.0", "a1b2", 0, true},
		{"lq3xk9Ab-5", "", 0, false}, // the router's offsets
		{".5", "", 0, false},
		{"a1b2.", "", 0, false},
		{"a1b2.x", "", 0, false},
		{"", "", 0, false},
	} {
		epoch, n, ok := redisOffset(c.in)
		if epoch != c.epoch || n != c.n || ok != c.ok {
			t.Errorf("redisOffset(%q) = %q %d %v, want %q %d %v", c.in, epoch, n, ok, c.epoch, c.n, c.ok)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _, _ = redisOffset("a1b2c3d4e5f6.123456") }); allocs != 0 {
		t.Fatalf("redisOffset allocates %v times", allocs)
	}
}

func TestParseAdoption(t *testing.T) {
	member := `{"id":"s1","role":"client","name":"Bob","connectedAt":1,"seq":1}`
	a, why := parseAdoption([]any{"", "ep", int64(5), member, "n1", `2["operatorMessage",{"message":"d"},"ep.4"]`, "operatorMessage", `2["chatEnded",{},"ep.5"]`, "chatEnded"})
	if a == nil {
		t.Fatal(why)
	}
	if a.n != 5 || a.epoch != "ep" || a.oldNode != "n1" || a.member.ID != "s1" || len(a.frames) != 2 {
		t.Fatalf("%+v", a)
	}
	// The frames are the last ones: numbered up to n.
	if a.frames[0].Offset != "ep.4" || a.frames[1].Offset != "ep.5" || a.frames[1].Event != "chatEnded" {
		t.Fatalf("offsets %s %s", a.frames[0].Offset, a.frames[1].Offset)
	}
	for _, bad := range [][]any{
		{"frames after the offset are gone"},
		{},
		{"", "ep", int64(1), "not json", "n1"},
		{"", "ep", int64(1), member, "n1", "packet without event"},
	} {
		if a, why := parseAdoption(bad); a != nil || why == "" {
			t.Errorf("%v: adopted (%q)", bad, why)
		}
	}
}

// clusterSystem is one node in cluster mode whose Redis is unreachable:
// the router's and the sessions' cluster logic runs, fed by hand.
func clusterSystem(t *testing.T, window time.Duration) *System {
	t.Helper()
	return startSystem(t, Options{
		Cluster: ClusterOptions{RedisURL: "redis://127.0.0.1:1", NodeID: "n1"},
		Policy:  Policy{Messages: Rate{PerSecond: 1000, Burst: 1000}, Typing: Rate{PerSecond: 1000, Burst: 1000}, Recovery: Recovery{Window: window, MaxFrames: 100, MaxBytes: 1 << 20}},
	})
}

// expectOffset is fakeConn.expect for a frame with an offset.
func expectOffset(t *testing.T, c *fakeConn, event string) map[string]any {
	t.Helper()
	select {
	case f := <-c.frames:
		var pkt []json.RawMessage
		if f.Event != event || json.Unmarshal(f.Packet[1:], &pkt) != nil || len(pkt) != 3 {
			t.Fatalf("%s: got %s, want %s with an offset", c.id, f.Packet, event)
		}
		var m map[string]any
		if err := json.Unmarshal(pkt[1], &m); err != nil {
			t.Fatal(err)
		}
		return m
	case <-time.After(2 * time.Second):
		t.Fatalf("%s: no %s within 2s", c.id, event)
	}
	return nil
}

func seqFrame(t *testing.T, off, text string) *messages.Frame {
	t.Helper()
	f, err := messages.EncodeFrameOffset(messages.EventOperatorMessage, &messages.OperatorMessageOut{Content: messages.Content{Type: messages.KindText, Message: messages.S(text)}}, off)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// A player's stored frames reach its session once each and in order: a
// duplicate is dropped, a gap waits for the frames the store fills in.
func TestSessionKeepsItsStoredSequence(t *testing.T) {
	s := clusterSystem(t, time.Minute)
	c, sess := participantUp(t, s, "p1", clientJoin("Bob"))
	if !strings.HasPrefix(sess.PrivateID(), "p1.") {
		t.Fatalf("private id %q does not name its socket", sess.PrivateID())
	}
	deliver := func(off string) { s.sys.Root.Send(sess.pid, &messages.Deliver{Frame: seqFrame(t, off, off)}) }
	next := func(want string) {
		t.Helper()
		select {
		case f := <-c.frames:
			if f.Offset != want {
				t.Fatalf("got %s, want offset %s", f.Packet, want)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("no frame %s", want)
		}
	}
	deliver("ep.1")
	deliver("ep.2")
	deliver("ep.2") // twice on the way (a catch-up overlapping the live feed)
	deliver("ep.4") // ep.3 lost on the way
	next("ep.1")
	next("ep.2")
	c.expectNothing(t)
	// The store's answer fills the gap; what was had already is not repeated.
	s.sys.Root.Send(sess.pid, &caughtUp{id: "p1", frames: []*messages.Frame{seqFrame(t, "ep.2", ""), seqFrame(t, "ep.3", ""), seqFrame(t, "ep.4", "")}})
	next("ep.3")
	next("ep.4")
	deliver("ep.5")
	next("ep.5")
	// A frame the router made (Redis was away) passes as it is.
	deliver("lq3xk9Ab-9")
	next("lq3xk9Ab-9")
	c.expectNothing(t)
}

// A gone node's players are away on the other nodes until the window
// ends, then end once; one that another node takes over comes back
// without a second newChat and never ends.
func TestGoneNodesPlayersAreAwayUntilTheWindowEnds(t *testing.T) {
	const window = 400 * time.Millisecond
	s := clusterSystem(t, window)
	op, _ := participantUp(t, s, "op", operator("Ana"))
	waitHealth(t, s, 0, 1)
	root := s.sys.Root
	for i, id := range []string{"stays", "moves"} {
		root.Send(s.router, &RemoteJoined{Member: &Member{Node: "n2", ID: id, Role: "client", Username: messages.S(id), ConnectedAt: 1, Seq: uint64(i + 1)}})
		// Its newChat comes through the feed, from its node alone.
		nc, _ := messages.EncodeFrameOffset(messages.EventNewChat, &messages.NewChat{ClientID: id}, "x-"+strconv.Itoa(i+1)+"~1-0")
		root.Send(s.router, &RemoteDeliver{Frame: nc, Announce: id, FeedID: "1-" + strconv.Itoa(i)})
		if got := expectOffset(t, op, messages.EventNewChat)["clientId"]; got != id {
			t.Fatalf("newChat for %v", got)
		}
	}
	root.Send(s.router, &NodeGone{Node: "n2", Reason: "heartbeat missing", Since: time.Now()})
	for _, id := range []string{"stays", "moves"} { // join order
		if got := expectOffset(t, op, messages.EventChatAway)["clientId"]; got != id {
			t.Fatalf("chatAway for %v, want %s", got, id)
		}
	}
	// n3 took "moves" over: quiet, no newChat.
	root.Send(s.router, &RemoteJoined{Member: &Member{Node: "n3", ID: "moves", Role: "client", Username: messages.S("moves"), ConnectedAt: 1, Quiet: true}})
	if got := expectOffset(t, op, messages.EventChatEnded); got["clientId"] != "stays" || got["reason"] != "disconnect" {
		t.Fatalf("chatEnded %v", got)
	}
	time.Sleep(window)
	op.expectNothing(t)
	// A late leave from the dead node changes nothing for the moved one.
	root.Send(s.router, &RemoteLeft{Node: "n2", ID: "moves"})
	op.expectNothing(t)
	h, err := s.Health(t.Context())
	if err != nil || h.Cluster == nil || h.Cluster.Clients != 1 {
		t.Fatalf("health %+v %v", h, err)
	}
}

// A local player taken over by another node (a reload or a reconnect
// there while this node lives) is listed on that node at once, and that
// node's quiet join is no new chat for this node's operators.
func TestMovedOutPlayerIsNoNewChat(t *testing.T) {
	s := clusterSystem(t, time.Minute)
	op, _ := participantUp(t, s, "op", operator("Ana"))
	waitHealth(t, s, 0, 1)
	participantUp(t, s, "moves", clientJoin("Bob"))
	if got := expectOffset(t, op, messages.EventNewChat)["clientId"]; got != "moves" {
		t.Fatalf("newChat for %v", got)
	}
	root := s.sys.Root
	root.Send(s.router, &movedOut{id: "moves", node: "n2"})
	root.Send(s.router, &RemoteJoined{Member: &Member{Node: "n2", ID: "moves", Role: "client", Name: messages.S("Bob"), ConnectedAt: 1, Quiet: true}})
	op.expectNothing(t)
	st, err := s.Stats(t.Context())
	if err != nil || len(st.Clients) != 1 || st.Clients[0].SocketID != "moves" || st.Clients[0].Node != "n2" {
		t.Fatalf("stats %+v %v", st, err)
	}
}
