package actors

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard/switchboard/messages"
	"github.com/switchboard/switchboard/metrics"
)

func remote(node, id string, role messages.Role, at int64) *participant {
	return &participant{id: id, node: node, role: role, connectedAt: time.UnixMilli(at), seq: uint64(at)}
}

func TestRemotePresenceIndexes(t *testing.T) {
	rp := newRemotePresence()
	rp.upsert(remote("n2", "a", messages.RoleClient, 1))
	rp.upsert(remote("n2", "b", messages.RoleOperator, 2))
	rp.upsert(remote("n3", "c", messages.RoleClient, 3))
	if len(rp.clients) != 2 || len(rp.operators) != 1 || len(rp.byNode["n2"]) != 2 {
		t.Fatalf("indexes: %d clients, %d operators, n2 %d", len(rp.clients), len(rp.operators), len(rp.byNode["n2"]))
	}
	// A socket that joins again with another role moves between indexes.
	if old := rp.upsert(remote("n2", "a", messages.RoleOperator, 1)); old == nil || old.role != messages.RoleClient {
		t.Fatalf("upsert returned %v", old)
	}
	if rp.clients["a"] != nil || rp.operators["a"] == nil {
		t.Fatal("role change not indexed")
	}
	if p := rp.remove("c"); p == nil || rp.byNode["n3"] != nil || rp.byID["c"] != nil {
		t.Fatal("remove left traces")
	}
	if rp.remove("c") != nil {
		t.Fatal("second remove found something")
	}
	gone := rp.dropNode("n2")
	if len(gone) != 2 || gone[0].id != "a" || len(rp.byID) != 0 || len(rp.operators) != 0 || len(rp.byNode) != 0 {
		t.Fatalf("dropNode: %d gone, %d left", len(gone), len(rp.byID))
	}
}

func TestMergedOrderAcrossNodes(t *testing.T) {
	local := map[string]*participant{"l1": {id: "l1", connectedAt: time.UnixMilli(20), seq: 1}, "l2": {id: "l2", connectedAt: time.UnixMilli(40), seq: 2}}
	rem := map[string]*participant{"r1": remote("n2", "r1", messages.RoleClient, 10), "r2": remote("n2", "r2", messages.RoleClient, 30)}
	var ids []string
	for _, p := range merged(local, rem) {
		ids = append(ids, p.id)
	}
	if got := strings.Join(ids, ","); got != "r1,l1,r2,l2" {
		t.Fatalf("order %s", got)
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	in := &envelope{kind: kindOperator, node: "n1", inc: "abc", seq: 7, at: 1700000000123, event: "incomingMessage", arg: "sock-1", body: []byte("2[\"incomingMessage\",{\"message\":\"a|b\\nc\"}]")}
	out, err := decodeEnvelope(string(in.encode()))
	if err != nil {
		t.Fatal(err)
	}
	if out.kind != in.kind || out.node != in.node || out.inc != in.inc || out.seq != in.seq || out.at != in.at || out.event != in.event || out.arg != in.arg || string(out.body) != string(in.body) {
		t.Fatalf("round trip: %+v", out)
	}
	for _, bad := range []string{"", "O|n1", "O|n1|i|x|0|e|a\n", "OO|n1|i|1|0|e|a\n"} {
		if _, err := decodeEnvelope(bad); err == nil {
			t.Fatalf("%q decoded", bad)
		}
	}
}

// probe is an actor that copies every user message it gets to a channel.
func probe(t *testing.T, sys *actor.ActorSystem) (*actor.PID, chan any) {
	ch := make(chan any, 64)
	pid := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *actor.Started, *actor.Stopping, *actor.Stopped:
		default:
			ch <- ctx.Message()
		}
	}))
	return pid, ch
}

func next[T any](t *testing.T, ch chan any) T {
	t.Helper()
	select {
	case m := <-ch:
		v, ok := m.(T)
		if !ok {
			t.Fatalf("got %T %+v", m, m)
		}
		return v
	case <-time.After(2 * time.Second):
		var zero T
		t.Fatalf("no %T", zero)
		return zero
	}
}

func nothing(t *testing.T, ch chan any) {
	t.Helper()
	select {
	case m := <-ch:
		t.Fatalf("unexpected %T %+v", m, m)
	case <-time.After(100 * time.Millisecond):
	}
}

// The router in a cluster: it feeds the read model from the bridge's
// messages, delivers what other nodes send only to local sockets, and
// hands the bridge what local sockets do.
func TestRouterWithClusterReadModel(t *testing.T) {
	sys := actor.NewActorSystem()
	t.Cleanup(sys.Shutdown)
	bridge, toBridge := probe(t, sys)
	opPID, opFrames := probe(t, sys)
	cv := &clusterView{node: "n1", remote: newRemotePresence(), state: ClusterState{Node: "n1", Up: true, Nodes: 2}}
	r := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &router{pr: newPresence(), cl: cv, log: quietLogger(), now: time.Now, ids: newIDSource(time.Now())}
	}))
	sys.Root.Send(r, &clusterAttached{pid: bridge})

	// A remote client is listed before the local operator joins: the
	// operator's list includes it, and the bridge hears of the operator.
	sys.Root.Send(r, &RemoteJoined{Member: &Member{Node: "n2", ID: "rc", Role: "client", Name: messages.S("Remote"), ConnectedAt: 1}})
	sys.Root.Send(r, &messages.Join{Origin: messages.Origin{From: "op", Session: opPID, At: time.Now()}, Payload: operator("Ana")})
	if j := next[*clusterJoined](t, toBridge); j.m.ID != "op" || j.m.Role != "operator" {
		t.Fatalf("clusterJoined %+v", j.m)
	}
	if d := next[*messages.Deliver](t, opFrames); d.Frame.Event != "newChat" || !strings.Contains(string(d.Frame.Packet), `"rc"`) {
		t.Fatalf("newChat %s", d.Frame.Packet)
	}

	// An operator's message to the remote client goes through the bridge,
	// addressed to its node; nothing is delivered locally but the broadcast.
	sys.Root.Send(r, &messages.OperatorMessage{Origin: messages.Origin{From: "op", Session: opPID}, Payload: messages.OperatorMessagePayload{To: "rc", Content: messages.Content{Type: messages.KindText, Message: messages.S("hi")}}})
	if d := next[*clusterDeliver](t, toBridge); d.toClient != "rc" || d.toNode != "n2" || d.frame.Event != "operatorMessage" {
		t.Fatalf("to the remote client: %+v", d)
	}
	if d := next[*clusterDeliver](t, toBridge); d.except != "op" || d.frame.Event != "operatorBroadcast" {
		t.Fatalf("broadcast: %+v", d)
	}
	nothing(t, opFrames)

	// A frame from another node reaches local operators but the excepted one.
	f := messages.MustFrame("incomingMessage", map[string]string{"from": "rc"})
	sys.Root.Send(r, &RemoteDeliver{Frame: f})
	if d := next[*messages.Deliver](t, opFrames); d.Frame != f {
		t.Fatal("remote frame not delivered as it came")
	}
	sys.Root.Send(r, &RemoteDeliver{Frame: f, Except: "op"})
	nothing(t, opFrames)
	nothing(t, toBridge) // never published back

	// Health counts the cluster; /stats lists per node.
	res, err := sys.Root.RequestFuture(r, &messages.HealthQuery{}, time.Second).Result()
	if h := res.(*messages.Health); err != nil || h.Operators != 1 || h.Clients != 0 || h.Cluster.Clients != 1 || h.Cluster.Operators != 1 || h.Cluster.Redis != "ok" {
		t.Fatalf("health %+v %v", res, err)
	}

	// The remote node dies: its client's chat ends for the local operator.
	sys.Root.Send(r, &RemoteJoined{Member: &Member{Node: "n2", ID: "ro", Role: "operator", ConnectedAt: 2}})
	sys.Root.Send(r, &NodeGone{Node: "n2", Reason: "test"})
	if d := next[*messages.Deliver](t, opFrames); d.Frame.Event != "chatEnded" || !strings.Contains(string(d.Frame.Packet), `{"clientId":"rc","reason":"disconnect"}`) {
		t.Fatalf("chatEnded %s", d.Frame.Packet)
	}
	nothing(t, opFrames)
	if len(cv.remote.byID) != 0 {
		t.Fatalf("read model keeps %d", len(cv.remote.byID))
	}
}

// A node's presence hash read whole lists every member, whatever its
// socket id begins with ("_" is in the ids' alphabet, as in the hash's own
// _inc and _seq fields).
func TestSnapshotKeepsMembersWhoseIDBeginsWithUnderscore(t *testing.T) {
	sys := actor.NewActorSystem()
	router, ch := probe(t, sys)
	b := &redisBridge{st: newBridgeState(), router: router, log: slog.New(slog.DiscardHandler)}
	b.st.nodes["n1"] = &remoteNode{inc: "i1", members: map[string]*member{}, syncing: true}
	fields := map[string]string{"_inc": "i1", "_seq": "2",
		"_dEkq3Hn0aE1b2c3d4e5": `{"id":"_dEkq3Hn0aE1b2c3d4e5","role":"client","connectedAt":1,"seq":1}`,
		"Ab-cd3Hn0aE1b2c3d4e5": `{"id":"Ab-cd3Hn0aE1b2c3d4e5","role":"client","connectedAt":2,"seq":2}`,
	}
	pid := sys.Root.Spawn(actor.PropsFromFunc(func(ctx actor.Context) {
		if res, ok := ctx.Message().(*snapshotResult); ok {
			b.snapshot(ctx, res)
		}
	}))
	sys.Root.Send(pid, &snapshotResult{node: "n1", fields: fields})
	got := map[string]bool{}
	for range 2 {
		got[next[*RemoteJoined](t, ch).Member.ID] = true
	}
	nothing(t, ch)
	if !got["_dEkq3Hn0aE1b2c3d4e5"] || !got["Ab-cd3Hn0aE1b2c3d4e5"] {
		t.Fatalf("joined %v", got)
	}
}

// With stored sessions a player's message reaches local operators at once,
// and its acknowledgement waits for the feed write: the router hands it to
// the bridge right after the write, never to the player directly. Without
// them (continuity off) the acknowledgement is immediate, as on one node.
func TestPlayerAckFollowsTheFeedWrite(t *testing.T) {
	for _, stored := range []bool{true, false} {
		sys := actor.NewActorSystem()
		t.Cleanup(sys.Shutdown)
		bridge, toBridge := probe(t, sys)
		opPID, opFrames := probe(t, sys)
		cPID, cGot := probe(t, sys)
		cv := &clusterView{node: "n1", remote: newRemotePresence(), state: ClusterState{Node: "n1", Up: true, Nodes: 2}, seq: stored, window: time.Minute}
		r := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor {
			return &router{pr: newPresence(), cl: cv, log: quietLogger(), now: time.Now, ids: newIDSource(time.Now())}
		}))
		sys.Root.Send(r, &clusterAttached{pid: bridge})
		sys.Root.Send(r, &messages.Join{Origin: messages.Origin{From: "op", Session: opPID, At: time.Now()}, Payload: operator("Ana")})
		sys.Root.Send(r, &messages.Join{Origin: messages.Origin{From: "c", Session: cPID, At: time.Now()}, Payload: clientJoin("Bob")})
		next[*clusterJoined](t, toBridge)
		next[*clusterJoined](t, toBridge)
		if d := next[*messages.Deliver](t, opFrames); d.Frame.Event != "newChat" {
			t.Fatalf("newChat: %s", d.Frame.Packet)
		}
		ack := func(*messages.AckReply) {}
		sys.Root.Send(r, &messages.ClientMessage{Origin: messages.Origin{From: "c", Session: cPID, Ack: ack}, Payload: messages.ClientMessagePayload{Content: messages.Content{Type: messages.KindText, Message: messages.S("hi")}}})
		if d := next[*messages.Deliver](t, opFrames); d.Frame.Event != "incomingMessage" {
			t.Fatalf("local operator: %s", d.Frame.Packet)
		}
		if d := next[*clusterDeliver](t, toBridge); d.acked != stored || d.frame.Event != "incomingMessage" || d.toClient != "" {
			t.Fatalf("stored %v: feed write %+v", stored, d)
		}
		if stored {
			if a := next[*ackAfterStore](t, toBridge); a.session != cPID || a.event != "clientMessage" || a.acc == nil {
				t.Fatalf("ack after the write: %+v", a)
			}
			nothing(t, cGot)
		} else {
			next[*messages.Accepted](t, cGot)
			nothing(t, toBridge)
		}
	}
}

// After Redis lost its data a node's heartbeat recreates its presence hash
// with its incarnation alone (HSETNX) and rewrites it whole a moment later.
// A snapshot read in between must not take the missing members for gone
// (a false chatEnded, then a second newChat): it waits for the rewrite.
func TestSnapshotOfAPresenceNotRewrittenYet(t *testing.T) {
	sys := actor.NewActorSystem()
	t.Cleanup(sys.Shutdown)
	router, got := probe(t, sys)
	st := newBridgeState()
	st.up = true
	rn := &remoteNode{inc: "i2", applied: 3, members: map[string]*member{}, syncing: true, reading: true}
	st.nodes["n2"] = rn
	b := &redisBridge{o: ClusterOptions{RedisURL: "redis://127.0.0.1:1", NodeID: "n1"}, st: st, router: router, log: quietLogger(), met: metrics.New()}
	b.o.defaults()
	bridge := sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return b }))
	raw := `{"id":"c1","role":"client","name":"Bob","connectedAt":1,"seq":1}`
	sys.Root.Send(bridge, &snapshotResult{node: "n2", fields: map[string]string{"_inc": "i2", "_seq": "3", "c1": raw}})
	if j := next[*RemoteJoined](t, got); j.Member.ID != "c1" {
		t.Fatalf("joined %+v", j.Member)
	}
	// Redis restarted: n2's hash holds only its incarnation for a moment,
	// then its rewrite: the member is still there, nothing changed.
	sys.Root.Send(bridge, &snapshotResult{node: "n2", fields: map[string]string{"_inc": "i2"}})
	sys.Root.Send(bridge, &snapshotResult{node: "n2", fields: map[string]string{"_inc": "i2", "_seq": "3", "c1": raw}})
	for {
		select {
		case m := <-got:
			switch m.(type) {
			case *RemoteLeft, *RemoteJoined:
				t.Fatalf("the member seemed to leave and come back: %T %+v", m, m)
			}
			continue
		case <-time.After(300 * time.Millisecond):
		}
		break
	}
}
