package actors

import (
	"strings"
	"testing"

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
