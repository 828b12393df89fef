package actors

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/switchboard/switchboard/messages"
)

func TestAnchoredOffsetsRoundTrip(t *testing.T) {
	src := &idSource{prefix: "lq3xk9A_b-Z-"}
	off := src.nextAnchored("1700000000000-3")
	a, ok := parseAnchor(off)
	if !ok || a.prefix != "lq3xk9A_b-Z-" || a.seq != 1 || a.feed != "1700000000000-3" || a.String() != off {
		t.Fatalf("%q parsed as %+v %v", off, a, ok)
	}
	for _, bad := range []string{"", "lq3xk9Ab-9", "ep.4", "~1-0", "nodash~1-0", "x-!~1-0"} {
		if _, ok := parseAnchor(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
	if _, _, ok := redisOffset(off); ok {
		t.Errorf("%q taken for a stored player's offset", off)
	}
}

// A recovering operator starts after its offset, or after its join when
// it saw nothing; never inside its newChat list, which the feed lacks.
func TestJoinAnchorReplayFrom(t *testing.T) {
	join := joinAnchor{before: opAnchor{prefix: "p-", seq: 10, feed: "5-0"}, listEnd: 12}
	ja, ok := parseJoinAnchor(join.encode())
	if !ok || ja != join {
		t.Fatalf("round trip %+v %v", ja, ok)
	}
	cases := []struct {
		offset    string
		hasOffset bool
		want      string // the anchor's feed, or "!" for a refusal
	}{
		{"", false, "!"},         // the list is not in the feed
		{"p-a~5-0", true, "!"},   // inside the list (10 < 11 < 12)
		{"p-c~6-0", true, "6-0"}, // its last frame
		{"p-d~7-0", true, "7-0"},
		{"q-z~9-0", true, "!"}, // another process: before this join
		{"p-d~", true, "!"},    // unanchored (the router had not read the feed)
		{"ep.4", true, "!"},
	}
	for _, c := range cases {
		a, why := ja.replayFrom(c.offset, c.hasOffset)
		if got := cmpOr(a.feed, "!"); (why != "") != (c.want == "!") || (why == "" && got != c.want) {
			t.Errorf("%q: %+v %q, want %s", c.offset, a, why, c.want)
		}
	}
	empty := joinAnchor{before: opAnchor{prefix: "p-", seq: 10, feed: "5-0"}, listEnd: 10}
	if a, why := empty.replayFrom("", false); why != "" || a != empty.before {
		t.Errorf("no list, nothing seen: %+v %q", a, why)
	}
}

func TestRestamp(t *testing.T) {
	f, _ := messages.EncodeFrameOffset("newChat", &messages.NewChat{ClientID: "c"}, "x-1~1-0")
	g := restamp(f, "y-2~3-0")
	if string(g.Packet) != `2["newChat",{"clientId":"c"},"y-2~3-0"]` || g.Offset != "y-2~3-0" || string(f.Packet) != `2["newChat",{"clientId":"c"},"x-1~1-0"]` {
		t.Fatalf("restamped %s (%s), original %s", g.Packet, g.Offset, f.Packet)
	}
	v := messages.MustFrame("clientTyping", map[string]any{"from": "c", "isTyping": true})
	if restamp(v, "y-3~3-0") != v {
		t.Fatal("a volatile frame got an offset")
	}
}

// What a recovering operator missed: the feed after its anchor, but what
// its old process made up to its number, its own broadcasts, volatile
// frames, and what reaches it live on the node taking it over.
func TestOpReplayPicksExactlyWhatWasMissed(t *testing.T) {
	entry := func(id string, kind byte, arg, event, off string) feedEntry {
		f, _ := messages.EncodeFrameOffset(event, map[string]string{"n": id}, off)
		e := &envelope{kind: kind, node: "n", inc: "i", event: event, arg: arg, body: f.Packet}
		return feedEntry{id: id, env: string(e.encode())}
	}
	o := &opReplay{sid: "op", from: opAnchor{prefix: "A-", seq: 5, feed: "10-0"}, upto: "20-0", own: opAnchor{prefix: "B-", seq: 7}}
	entries := []feedEntry{
		entry("11-0", kindOperator, "", "incomingMessage", "A-4~9-0"),  // seen before its offset
		entry("12-0", kindOperator, "", "incomingMessage", "C-3~11-0"), // missed
		entry("13-0", kindOperator, "op", "operatorBroadcast", "C-4~11-0"),
		entry("14-0", kindOperator, "", "clientTyping", ""),            // volatile
		entry("15-0", kindAnnounce, "c9", "newChat", "A-6~12-0"),       // made after its offset
		entry("16-0", kindGone, "", "chatAway", "A-3~9-0"),             // made before, but delivered from the feed alone
		entry("24-0", kindGone, "", "chatEnded", "B-2~9-0"),            // comes live
		entry("21-0", kindOperator, "", "incomingMessage", "C-9~20-0"), // comes live
		entry("22-0", kindAnnounce, "c8", "chatEnded", "B-6~18-0"),     // made here before it was listed
		entry("23-0", kindOperator, "", "incomingMessage", "B-8~20-0"), // made here after: live
	}
	frames, why := o.pick(entries)
	if why != "" {
		t.Fatal(why)
	}
	var got []string
	for _, f := range frames {
		got = append(got, f.Offset)
		if !strings.HasSuffix(string(f.Packet), `,"`+f.Offset+`"]`) {
			t.Errorf("packet %s does not carry %s", f.Packet, f.Offset)
		}
	}
	if want := "A-5~12-0,A-5~15-0,A-5~16-0,A-5~22-0"; strings.Join(got, ",") != want {
		t.Fatalf("replayed %v, want %s", got, want)
	}
	if _, why := o.pick([]feedEntry{entry("12-0", kindAgents, "", "incomingMessage", "C-3~11-0")}); why == "" {
		t.Fatal("a routed delivery was taken for everyone's")
	}
}

// Under routing a takeover also replays the deliveries addressed to its
// operator and tells the decisions as every node does; an offset between
// two frames of one decision resumes after the first.
func TestOpReplayUnderRouting(t *testing.T) {
	agents := func(id string, keys []string, event, off string) feedEntry {
		f, _ := messages.EncodeFrameOffset(event, map[string]string{"n": id}, off)
		body := append([]byte(`["`+strings.Join(keys, `","`)+`"]`+"\n"), f.Packet...)
		e := &envelope{kind: kindAgents, node: "n", inc: "i", event: event, body: body}
		return feedEntry{id: id, env: string(e.encode())}
	}
	decision := func(id, body string) feedEntry {
		e := &envelope{kind: kindRouting, node: "n", body: []byte(body)}
		return feedEntry{id: id, env: string(e.encode())}
	}
	routing := &opRouting{key: "1", auto: true,
		agents: map[string]agentName{"1": {id: messages.ID{Num: 1, Kind: messages.IDNumber}, name: messages.Str{V: "Uno", Set: true}}, "2": {id: messages.ID{Num: 2, Kind: messages.IDNumber}}},
		chats:  map[string]*messages.NewChat{"c2": {ClientID: "c2"}}}
	o := &opReplay{sid: "op", from: opAnchor{prefix: "A-", seq: 5, feed: "10-0"}, upto: "20-0", own: opAnchor{prefix: "B-", seq: 7}, routing: routing}
	entries := []feedEntry{
		agents("11-0", []string{"1"}, "incomingMessage", "C-3~10-0"),      // to it
		agents("12-0", []string{"2"}, "incomingMessage", "C-4~10-0"),      // to another
		decision("13-0", `{"t":"open","c":"c2","s":2,"o":"1"}`),           // given to it: newChat, chatAssigned
		decision("14-0", `{"t":"open","c":"c3","s":3,"p":1}`),             // queued
		decision("15-0", `{"t":"status","o":"2"}`),                        // nothing to tell
		decision("21-0", `{"t":"assign","c":"c3","s":3,"o":"2"}`),         // told live
		agents("22-0", []string{"1", "2"}, "incomingMessage", "B-6~18-0"), // made here before it was listed
	}
	frames, why := o.pick(entries)
	if why != "" {
		t.Fatal(why)
	}
	var got []string
	for _, f := range frames {
		got = append(got, f.Event+" "+f.Offset)
	}
	want := "incomingMessage A-5~11-0,newChat A-5~13-0.1,chatAssigned A-5~13-0,chatQueued A-5~14-0,incomingMessage A-5~22-0"
	if strings.Join(got, ",") != want {
		t.Fatalf("replayed %v, want %s", got, want)
	}
	if !strings.Contains(string(frames[2].Packet), `"operatorId":1,"operatorName":"Uno"`) || !strings.Contains(string(frames[3].Packet), `"position":1`) {
		t.Fatalf("told %s and %s", frames[2].Packet, frames[3].Packet)
	}

	// Seen the newChat of entry 13 only: the chatAssigned, and on.
	a, ok := parseAnchor("A-5~13-0.1")
	if !ok || a.feed != "13-0" || a.sub != 1 {
		t.Fatalf("parsed %+v %v", a, ok)
	}
	o.from = a
	frames, why = o.pick(entries[2:])
	if why != "" || len(frames) != 3 || frames[0].Event != "chatAssigned" || frames[0].Offset != "A-5~13-0" {
		t.Fatalf("after a sub offset: %v %q", frames, why)
	}

	// A decision about a chat that ended meanwhile: its own node may have
	// told nothing of it; so a fresh session.
	o.from = opAnchor{prefix: "A-", seq: 5, feed: "10-0"}
	if _, why := o.pick([]feedEntry{entries[3], decision("16-0", `{"t":"close","c":"c3","s":3}`)}); why == "" {
		t.Fatal("a decision about an ended chat replayed")
	}
	// A chat given to it that is not open here any more: refused.
	delete(routing.chats, "c2")
	if _, why := o.pick(entries[2:3]); why == "" {
		t.Fatal("a newChat made up")
	}
}

// A live decision that gives an operator a chat makes two frames, newChat
// then chatAssigned, from one feed entry: an operator that read only the
// newChat before its node died is replayed the chatAssigned by a takeover
// (its newChat's offset says the entry was seen in part).
func TestLiveAssignedPairSeenInPart(t *testing.T) {
	pr := newPresence()
	pr.clients["c2"] = &participant{id: "c2", role: messages.RoleClient}
	r := &router{pr: pr, offsets: &idSource{prefix: "A-", seq: 5}, cl: &clusterView{opAdopt: true, feedAt: "13-0"}}
	owner := &agent{key: "1", id: messages.ID{Num: 1, Kind: messages.IDNumber}}
	intro, assigned := r.assignedFrames(&chat{client: "c2", seq: 2, owner: owner}, true)
	if intro == nil || intro.Event != messages.EventNewChat || assigned.Event != messages.EventChatAssigned {
		t.Fatalf("made %v and %v", intro, assigned)
	}

	decision := &envelope{kind: kindRouting, node: "n", body: []byte(`{"t":"open","c":"c2","s":2,"o":"1"}`)}
	later := &envelope{kind: kindRouting, node: "n", body: []byte(`{"t":"status","o":"1"}`)}
	entries := []feedEntry{{id: "13-0", env: string(decision.encode())}, {id: "14-0", env: string(later.encode())}}
	routing := &opRouting{key: "1", auto: true,
		agents: map[string]agentName{"1": {id: owner.id}},
		chats:  map[string]*messages.NewChat{"c2": {ClientID: "c2"}}}
	replayed := func(off string) []string {
		t.Helper()
		from, ok := parseAnchor(off)
		if !ok {
			t.Fatalf("offset %q is no anchor", off)
		}
		o := &opReplay{sid: "op", from: from, upto: "20-0", own: opAnchor{prefix: "B-", seq: 1}, routing: routing}
		frames, why := o.pick(unseen(entries, from))
		if why != "" {
			t.Fatalf("after %s: %s", off, why)
		}
		var got []string
		for _, f := range frames {
			got = append(got, f.Event)
		}
		return got
	}
	if got := replayed(intro.Offset); strings.Join(got, ",") != "chatAssigned" {
		t.Fatalf("after the newChat %s: replayed %v, want the chatAssigned", intro.Offset, got)
	}
	if got := replayed(assigned.Offset); len(got) != 0 {
		t.Fatalf("after the chatAssigned %s: replayed %v, want nothing", assigned.Offset, got)
	}
}

// An operator taken over here that leaves before the feed reached what its
// old node had applied takes its skip with it: else the entry stayed for
// good and every feed delivery went on the slower path.
func TestOpSkipEndsWithTheOperator(t *testing.T) {
	pr := newPresence()
	op := &participant{id: "op", role: messages.RoleOperator, session: actor.NewPID("local", "op")}
	pr.upsert(op)
	r := &router{pr: pr, log: slog.New(slog.DiscardHandler), cl: &clusterView{opAdopt: true, feedAt: "10-0", opSkip: map[string]string{"op": "12-0"}}}
	r.leave(nil, op.session) // nothing here sends: no bridge, no routing
	if len(r.cl.opSkip) != 0 {
		t.Fatalf("skips left after the operator: %v", r.cl.opSkip)
	}
}
