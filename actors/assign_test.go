package actors

import (
	"fmt"
	"testing"

	"github.com/switchboard/switchboard/messages"
)

// Unit tests of the assignment table alone: no actors, no sockets.

func opSocket(id string, operatorID float64) *participant {
	return &participant{id: id, role: messages.RoleOperator, name: messages.S("op " + id), operatorID: messages.ID{Num: operatorID, Kind: messages.IDNumber}}
}

func owners(a *assignments) map[string]int {
	out := map[string]int{}
	for _, g := range a.agents {
		out[g.key] = len(g.chats)
	}
	return out
}

func waitingIDs(a *assignments) []string {
	var ids []string
	for _, c := range a.waiting {
		ids = append(ids, c.client)
	}
	return ids
}

func TestAutoBalancesLeastBusyThenLongestWaiting(t *testing.T) {
	a := newAssignments(Routing{Mode: RoutingAuto, MaxChatsPerOperator: 30})
	for i := 1; i <= 4; i++ {
		a.operatorJoined(opSocket(fmt.Sprint("s", i), float64(i)), 0)
	}
	var order []string
	for i := range 100 {
		a.chatOpened(fmt.Sprint("c", i))
		for _, c := range a.autoAssign() {
			order = append(order, c.owner.key)
		}
	}
	for k, n := range owners(a) {
		if n != 25 {
			t.Fatalf("operator %s owns %d, want 25: %v", k, n, owners(a))
		}
	}
	// Equal loads: the one that waited longest goes first, a rotation.
	for i := 4; i < len(order); i++ {
		if order[i] != order[i-4] {
			t.Fatalf("not a rotation at %d: %v", i, order[:12])
		}
	}
	// 25 more: 20 fill every operator to 30, 5 wait in arrival order.
	for i := 100; i < 125; i++ {
		a.chatOpened(fmt.Sprint("c", i))
		a.autoAssign()
	}
	for k, n := range owners(a) {
		if n != 30 {
			t.Fatalf("operator %s owns %d, want 30", k, n)
		}
	}
	if got := fmt.Sprint(waitingIDs(a)); got != "[c120 c121 c122 c123 c124]" {
		t.Fatalf("queue %s", got)
	}
	var told []string
	a.moved(func(c *chat, pos int) { told = append(told, fmt.Sprint(c.client, "@", pos)) })
	if fmt.Sprint(told) != "[c120@1 c121@2 c122@3 c123@4 c124@5]" {
		t.Fatalf("positions told %v", told)
	}
	// The first waiting chat leaves: only those behind it move.
	a.chatClosed("c120")
	told = nil
	a.moved(func(c *chat, pos int) { told = append(told, fmt.Sprint(c.client, "@", pos)) })
	if fmt.Sprint(told) != "[c121@1 c122@2 c123@3 c124@4]" {
		t.Fatalf("positions after a leave %v", told)
	}
	// A chat that ends frees room: the head of the queue takes it.
	a.chatClosed("c0")
	got := a.autoAssign()
	if len(got) != 1 || got[0].client != "c121" || a.position(a.chats["c122"]) != 1 {
		t.Fatalf("after an end: assigned %v, queue %v", got, waitingIDs(a))
	}
}

func TestAwayAndOfflineOperatorsGetNoChats(t *testing.T) {
	a := newAssignments(Routing{Mode: RoutingAuto})
	s1, s2 := opSocket("s1", 1), opSocket("s2", 2)
	g1 := a.operatorJoined(s1, 0)
	a.operatorJoined(s2, 0)
	g1.away = true
	s2.away = true // its transport dropped: within the recovery window
	a.chatOpened("c1")
	if got := a.autoAssign(); len(got) != 0 {
		t.Fatalf("assigned to %s while everyone is away", got[0].owner.key)
	}
	s2.away = false
	if got := a.autoAssign(); len(got) != 1 || got[0].owner.key != "2" {
		t.Fatalf("back: %v", owners(a))
	}
}

func TestCapacityFromTokenAndDefault(t *testing.T) {
	a := newAssignments(Routing{Mode: RoutingClaim})
	g := a.operatorJoined(opSocket("s1", 1), 0)
	if g.capacity != DefaultMaxChatsPerOperator {
		t.Fatalf("default capacity %d", g.capacity)
	}
	h := a.operatorJoined(opSocket("s2", 2), 1)
	a.chatOpened("c1")
	a.chatOpened("c2")
	if _, code := a.claim(h, "c1"); code != "" {
		t.Fatal(code)
	}
	if _, code := a.claim(h, "c2"); code != messages.CodeOverCapacity {
		t.Fatalf("second claim with capacity 1: %q", code)
	}
	if _, code := a.claim(g, "c1"); code != messages.CodeAlreadyClaimed {
		t.Fatalf("claim of an owned chat: %q", code)
	}
	if _, code := a.claim(h, "c1"); code != "" {
		t.Fatalf("claiming one's own chat again: %q", code)
	}
	if _, code := a.claim(g, "nope"); code != messages.CodeUnknownChat {
		t.Fatalf("unknown chat: %q", code)
	}
}

func TestOperatorLeavingReleasesInOriginalOrder(t *testing.T) {
	a := newAssignments(Routing{Mode: RoutingClaim, MaxChatsPerOperator: 10})
	g := a.operatorJoined(opSocket("s1", 1), 0)
	h := a.operatorJoined(opSocket("s2", 2), 0)
	for i := range 6 {
		a.chatOpened(fmt.Sprint("c", i))
	}
	// Claimed out of order; c1 and c4 stay waiting.
	for _, c := range []string{"c5", "c0", "c3"} {
		if _, code := a.claim(g, c); code != "" {
			t.Fatal(code)
		}
	}
	if _, code := a.claim(h, "c2"); code != "" {
		t.Fatal(code)
	}
	gone, released := a.operatorLeft("s1")
	if gone != g || len(released) != 3 {
		t.Fatalf("left: %v %d", gone, len(released))
	}
	if got := fmt.Sprint(waitingIDs(a)); got != "[c0 c1 c3 c4 c5]" {
		t.Fatalf("queue after release %s", got)
	}
	if a.agents["1"] != nil || a.bySocket["s1"] != nil {
		t.Fatal("the operator is still known")
	}
}

func TestTwoSocketsOfOneOperatorShareItsChats(t *testing.T) {
	a := newAssignments(Routing{Mode: RoutingAuto})
	g := a.operatorJoined(opSocket("tab1", 7), 0)
	if a.operatorJoined(opSocket("tab2", 7), 0) != g {
		t.Fatal("a second tab is another operator")
	}
	a.chatOpened("c1")
	a.autoAssign()
	if gone, released := a.operatorLeft("tab1"); gone != nil || released != nil {
		t.Fatal("closing one tab released the chats")
	}
	if a.chats["c1"].owner != g {
		t.Fatal("the chat lost its owner")
	}
	if gone, released := a.operatorLeft("tab2"); gone != g || len(released) != 1 {
		t.Fatal("closing the last tab kept the chats")
	}
}

func TestTransferWatchAndRelease(t *testing.T) {
	a := newAssignments(Routing{Mode: RoutingClaim, MaxChatsPerOperator: 1})
	g := a.operatorJoined(opSocket("s1", 1), 0)
	h := a.operatorJoined(opSocket("s2", 2), 0)
	sup := a.operatorJoined(opSocket("s3", 3), 0)
	a.chatOpened("c1")
	a.chatOpened("c2")
	a.claim(g, "c1")
	a.claim(h, "c2")
	if _, _, code := a.transfer(h, "c1", messages.ID{Num: 2, Kind: messages.IDNumber}); code != messages.CodeNotYours {
		t.Fatalf("transfer of another's chat: %q", code)
	}
	if _, _, code := a.transfer(g, "c1", messages.ID{Num: 9, Kind: messages.IDNumber}); code != messages.CodeUnknownOperator {
		t.Fatalf("transfer to nobody: %q", code)
	}
	if _, _, code := a.transfer(g, "c1", messages.ID{Str: "2", Kind: messages.IDString}); code != messages.CodeOverCapacity {
		t.Fatalf("transfer to a full operator: %q", code)
	}
	sup.away = true
	if _, _, code := a.transfer(g, "c1", messages.ID{Num: 3, Kind: messages.IDNumber}); code != messages.CodeOperatorAway {
		t.Fatalf("transfer to an away operator: %q", code)
	}
	sup.away = false
	if _, to, code := a.transfer(g, "c1", messages.ID{Num: 3, Kind: messages.IDNumber}); code != "" || to != sup || a.chats["c1"].owner != sup || len(g.chats) != 0 {
		t.Fatalf("transfer: %q", code)
	}
	if _, started, code := a.watch(g, "c1"); code != "" || !started {
		t.Fatalf("watch: %q %v", code, started)
	}
	if _, started, _ := a.watch(g, "c1"); started {
		t.Fatal("watching twice")
	}
	if _, watched, code := a.release(g, "c1"); code != "" || !watched || len(a.chats["c1"].watchers) != 0 {
		t.Fatalf("a watcher's release: %q %v", code, watched)
	}
	if _, _, code := a.release(g, "c1"); code != messages.CodeNotYours {
		t.Fatalf("release of another's chat: %q", code)
	}
	if _, _, code := a.release(sup, "c1"); code != "" || !a.chats["c1"].waiting {
		t.Fatalf("owner's release: %q", code)
	}
}

func TestReleasedChatGoesToAnotherOperator(t *testing.T) {
	a := newAssignments(Routing{Mode: RoutingAuto, MaxChatsPerOperator: 2})
	g := a.operatorJoined(opSocket("s1", 1), 0)
	a.chatOpened("c1")
	a.autoAssign()
	c, _, _ := a.release(g, "c1")
	c.releasedBy = g
	if got := a.autoAssign(); len(got) != 0 {
		t.Fatal("a released chat went straight back to who released it")
	}
	a.chatOpened("c2") // behind it, and nobody released this one
	if got := a.autoAssign(); len(got) != 1 || got[0].client != "c2" {
		t.Fatalf("the chat behind: %v", waitingIDs(a))
	}
	h := a.operatorJoined(opSocket("s2", 2), 0)
	if got := a.autoAssign(); len(got) != 1 || got[0].owner != h {
		t.Fatal("the released chat did not go to the other operator")
	}
}

func BenchmarkAutoAssign(b *testing.B) {
	a := newAssignments(Routing{Mode: RoutingAuto, MaxChatsPerOperator: 1 << 30})
	for i := range 50 {
		a.operatorJoined(opSocket(fmt.Sprint("s", i), float64(i)), 0)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprint("c", i)
		a.chatOpened(id)
		a.autoAssign()
		a.chatClosed(id)
	}
}
