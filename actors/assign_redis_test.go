package actors

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/switchboard/switchboard/messages"
)

// startRedis runs a redis-server of the test's own on a free loopback port;
// the test is skipped where redis-server is not installed.
func startRedis(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	ln.Close()
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	deadline := time.Now().Add(5 * time.Second)
	for rdb.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not answer")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr
}

// threeNodes are three connections to one Redis, as three nodes have.
func threeNodes(t *testing.T, addr string, capacity int, auto bool) []*redisAssignments {
	var nodes []*redisAssignments
	for i := range 3 {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { rdb.Close() })
		a := newRedisAssignments(rdb, "sbtest", fmt.Sprint("n", i), capacity, auto)
		a.where = fmt.Sprint("n", i, "/inc")
		nodes = append(nodes, a)
	}
	return nodes
}

func mustDo(t *testing.T, a *redisAssignments, j *routeJob) *routeDone {
	t.Helper()
	d := a.do(context.Background(), j)
	if d.err != nil {
		t.Fatal(d.err)
	}
	return d
}

// Ten operators on three nodes claim each chat at once: exactly one wins,
// and the nine others are told who did.
func TestRedisClaimRaceAcrossNodes(t *testing.T) {
	nodes := threeNodes(t, startRedis(t), 50, false)
	for op := range 10 {
		mustDo(t, nodes[op%3], &routeJob{kind: routeHere, op: fmt.Sprint("op", op), n: 1, up: 1})
	}
	if d := mustDo(t, nodes[0], &routeJob{kind: routeClaim, client: "nope", op: "op0"}); d.code != messages.CodeUnknownChat {
		t.Fatalf("claim of no chat: %q", d.code)
	}
	for chat := range 50 {
		client := fmt.Sprint("c", chat)
		mustDo(t, nodes[chat%3], &routeJob{kind: routeOpen, client: client})
		done := make([]*routeDone, 10)
		var wg sync.WaitGroup
		for op := range 10 {
			wg.Go(func() {
				done[op] = nodes[op%3].do(context.Background(), &routeJob{kind: routeClaim, client: client, op: fmt.Sprint("op", op)})
			})
		}
		wg.Wait()
		wins, winner := 0, ""
		for op, d := range done {
			switch {
			case d.err != nil:
				t.Fatal(d.err)
			case d.code == "":
				wins++
				winner = fmt.Sprint("op", op)
			case d.code != messages.CodeAlreadyClaimed:
				t.Fatalf("op%d: %q", op, d.code)
			}
		}
		if wins != 1 {
			t.Fatalf("%s: %d winners", client, wins)
		}
		for _, d := range done {
			if d.code != "" && d.owner != winner {
				t.Fatalf("%s: told the owner is %s, but %s won", client, d.owner, winner)
			}
		}
	}
	loads, err := nodes[0].rdb.HGetAll(context.Background(), "sbtest:rt:load").Result()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, v := range loads {
		var n int
		fmt.Sscan(v, &n)
		total += n
	}
	if total != 50 {
		t.Fatalf("loads add up to %d, want 50: %v", total, loads)
	}
}

// Three nodes opening 125 chats at once over 4 operators of capacity 30
// balance the first 120 within ±1, never assign one twice, and queue the
// rest; a close gives its owner's room to the first waiting chat; every
// decision is published, in order, on the events channel.
func TestRedisAutoBalanceAcrossNodes(t *testing.T) {
	addr := startRedis(t)
	nodes := threeNodes(t, addr, 30, true)
	ctx := context.Background()
	sub := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { sub.Close() })
	ps := sub.Subscribe(ctx, "sbtest:events")
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	for op := range 4 {
		mustDo(t, nodes[op%3], &routeJob{kind: routeHere, op: fmt.Sprint("op", op), n: 1, up: 1})
	}
	var wg sync.WaitGroup
	for i := range 125 {
		wg.Go(func() { mustDo(t, nodes[i%3], &routeJob{kind: routeOpen, client: fmt.Sprint("c", i)}) })
	}
	wg.Wait()
	owners, _ := nodes[0].rdb.HGetAll(ctx, "sbtest:rt:owner").Result()
	per := map[string]int{}
	for _, o := range owners {
		per[o]++
	}
	if len(owners) != 120 || len(per) != 4 {
		t.Fatalf("%d owned over %v", len(owners), per)
	}
	for op, n := range per {
		if n != 30 {
			t.Fatalf("%s has %d: %v", op, n, per)
		}
	}
	waiting, _ := nodes[0].rdb.ZRange(ctx, "sbtest:rt:queue", 0, -1).Result()
	if len(waiting) != 5 {
		t.Fatalf("waiting %v", waiting)
	}
	// Opening an open chat again changes nothing.
	if d := mustDo(t, nodes[1], &routeJob{kind: routeOpen, client: "c0"}); d.owner != owners["c0"] {
		t.Fatalf("c0 reopened: %+v", d)
	}
	mustDo(t, nodes[2], &routeJob{kind: routeClose, client: "c0"})
	if o, _ := nodes[0].rdb.HGet(ctx, "sbtest:rt:owner", waiting[0]).Result(); o != owners["c0"] {
		t.Fatalf("the first waiting chat %s went to %q, want %s", waiting[0], o, owners["c0"])
	}
	// The events: 125 opens, as many assignments as chats owned, a close.
	count := map[string]int{}
	deadline := time.After(5 * time.Second)
	for count["close"] == 0 || count["assign"] != 1 {
		select {
		case m := <-ps.Channel():
			e, err := decisionOf(m.Payload)
			if err != nil {
				t.Fatal(err)
			}
			count[e.T]++
			if e.T == "open" && e.O != "" {
				count["openOwned"]++
			}
		case <-deadline:
			t.Fatalf("events %v", count)
		}
	}
	if count["open"] != 125 || count["openOwned"] != 120 {
		t.Fatalf("events %v", count)
	}
}

// A node dies with operators on it. Marked down by the live nodes, its
// operators take no new chats and keep theirs; gone (the recovery window
// over), the chats of an operator with no socket elsewhere go back to the
// queue once, in their original order ahead of those that waited, and on
// to an operator that comes; an operator with a socket on a live node
// keeps its chats.
func TestRedisNodeGoneReleasesOnce(t *testing.T) {
	addr := startRedis(t)
	nodes := threeNodes(t, addr, 2, true)
	ctx := context.Background()
	rdb := nodes[0].rdb
	mustDo(t, nodes[0], &routeJob{kind: routeHere, op: "solo", n: 1, up: 1})
	mustDo(t, nodes[0], &routeJob{kind: routeHere, op: "both", n: 1, up: 1})
	mustDo(t, nodes[2], &routeJob{kind: routeHere, op: "both", n: 1, up: 1})
	for i := 1; i <= 6; i++ {
		mustDo(t, nodes[i%3], &routeJob{kind: routeOpen, client: fmt.Sprint("c", i)})
	}
	owners, _ := rdb.HGetAll(ctx, "sbtest:rt:owner").Result()
	var solo []string
	for i := 1; i <= 4; i++ {
		if c := fmt.Sprint("c", i); owners[c] == "solo" {
			solo = append(solo, c)
		}
	}
	if len(owners) != 4 || len(solo) != 2 {
		t.Fatalf("owners %v", owners)
	}
	sub := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { sub.Close() })
	ps := sub.Subscribe(ctx, "sbtest:events")
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}

	// Down: nothing moves, and solo is no longer available.
	for _, n := range nodes[1:] {
		mustDo(t, n, &routeJob{kind: routeNode, where: "n0/inc", arg: "down"})
	}
	if now, _ := rdb.HGetAll(ctx, "sbtest:rt:owner").Result(); fmt.Sprint(now) != fmt.Sprint(owners) {
		t.Fatalf("down moved chats: %v, was %v", now, owners)
	}
	if ok, _ := rdb.HExists(ctx, "sbtest:rt:avail", "solo").Result(); ok {
		t.Fatal("a dead node's operator is still available")
	}
	if ok, _ := rdb.HExists(ctx, "sbtest:rt:avail", "both").Result(); !ok {
		t.Fatal("an operator up on a live node is not available")
	}

	// Gone, asked by both live nodes at once: solo's chats go back once.
	var wg sync.WaitGroup
	for _, n := range nodes[1:] {
		wg.Go(func() { mustDo(t, n, &routeJob{kind: routeNode, where: "n0/inc", arg: "gone"}) })
	}
	wg.Wait()
	waiting, _ := rdb.ZRange(ctx, "sbtest:rt:queue", 0, -1).Result()
	if want := append(slices.Clone(solo), "c5", "c6"); fmt.Sprint(waiting) != fmt.Sprint(want) {
		t.Fatalf("queue %v, want %v", waiting, want)
	}
	for i := 1; i <= 4; i++ {
		if c := fmt.Sprint("c", i); !slices.Contains(solo, c) {
			if o, _ := rdb.HGet(ctx, "sbtest:rt:owner", c).Result(); o != "both" {
				t.Fatalf("%s went from both to %q", c, o)
			}
		}
	}
	// A newcomer gets them in that order.
	mustDo(t, nodes[1], &routeJob{kind: routeHere, op: "new", n: 1, up: 1, cap: 10})
	var events []string
	deadline := time.After(5 * time.Second)
	for len(events) < 6 {
		select {
		case m := <-ps.Channel():
			e, err := decisionOf(m.Payload)
			if err != nil {
				t.Fatal(err)
			}
			switch e.T {
			case "queue": // with its place in Redis's queue, which every node tells
				events = append(events, fmt.Sprint(e.T, " ", e.C, " ", e.P))
			case "assign":
				events = append(events, e.T+" "+e.C+" "+e.O)
			}
		case <-deadline:
			t.Fatalf("events %v", events)
		}
	}
	want := []string{"queue " + solo[0] + " 1", "queue " + solo[1] + " 2",
		"assign " + solo[0] + " new", "assign " + solo[1] + " new", "assign c5 new", "assign c6 new"}
	if fmt.Sprint(events) != fmt.Sprint(want) {
		t.Fatalf("events\n %q\nwant\n %q", events, want)
	}
	select {
	case m := <-ps.Channel():
		if strings.Contains(m.Payload, `"t":"queue"`) {
			t.Fatalf("a second release: %s", m.Payload)
		}
	case <-time.After(200 * time.Millisecond):
	}
}

// decisionOf reads a decision as the events channel carries it: an entry
// of the operators' feed, holding an envelope of kind R.
func decisionOf(payload string) (*routeEvent, error) {
	_, env, ok := splitFeed(payload)
	if !ok || !strings.HasPrefix(env, "R|") {
		return nil, fmt.Errorf("not a decision in the feed: %q", payload)
	}
	_, body, _ := strings.Cut(env, "\n")
	var e routeEvent
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		return nil, fmt.Errorf("decision %q: %w", payload, err)
	}
	return &e, nil
}

// An operator's sockets are counted per node: one that joins a second node
// before leaving the first keeps its chats; with none up it takes no new
// chats; with none left anywhere its chats go back to the queue.
func TestRedisOperatorSocketsPerNode(t *testing.T) {
	nodes := threeNodes(t, startRedis(t), 5, true)
	ctx := context.Background()
	rdb := nodes[0].rdb
	owner := func(c string) string { o, _ := rdb.HGet(ctx, "sbtest:rt:owner", c).Result(); return o }
	avail := func() bool { ok, _ := rdb.HExists(ctx, "sbtest:rt:avail", "x").Result(); return ok }
	mustDo(t, nodes[0], &routeJob{kind: routeHere, op: "x", n: 1, up: 1})
	mustDo(t, nodes[0], &routeJob{kind: routeOpen, client: "c1"})
	if owner("c1") != "x" || !avail() {
		t.Fatalf("c1 owned by %q", owner("c1"))
	}
	// Moves: joins n1, then leaves n0.
	mustDo(t, nodes[1], &routeJob{kind: routeHere, op: "x", n: 1, up: 1})
	mustDo(t, nodes[0], &routeJob{kind: routeHere, op: "x"})
	if owner("c1") != "x" || !avail() {
		t.Fatalf("after a move: c1 owned by %q, available %v", owner("c1"), avail())
	}
	// Its transport drops (the socket is kept for the window).
	mustDo(t, nodes[1], &routeJob{kind: routeHere, op: "x", n: 1})
	mustDo(t, nodes[2], &routeJob{kind: routeOpen, client: "c2"})
	if owner("c1") != "x" || avail() || owner("c2") != "" {
		t.Fatalf("down: c1 %q, c2 %q, available %v", owner("c1"), owner("c2"), avail())
	}
	// Back, then gone.
	mustDo(t, nodes[1], &routeJob{kind: routeHere, op: "x", n: 1, up: 1})
	if owner("c2") != "x" {
		t.Fatalf("back: c2 owned by %q", owner("c2"))
	}
	mustDo(t, nodes[1], &routeJob{kind: routeHere, op: "x"})
	waiting, _ := rdb.ZRange(ctx, "sbtest:rt:queue", 0, -1).Result()
	if fmt.Sprint(waiting) != "[c1 c2]" || avail() {
		t.Fatalf("gone: queue %v, available %v", waiting, avail())
	}
}
