package actors

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
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
		nodes = append(nodes, newRedisAssignments(rdb, "sbtest", fmt.Sprint("n", i), capacity, auto))
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
		mustDo(t, nodes[op%3], &routeJob{kind: routeStatus, op: fmt.Sprint("op", op), arg: "online"})
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
		mustDo(t, nodes[op%3], &routeJob{kind: routeStatus, op: fmt.Sprint("op", op), arg: "online"})
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
			_, body, _ := strings.Cut(m.Payload, "\n")
			var e routeEvent
			if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.HasPrefix(m.Payload, "R|") {
				t.Fatalf("event %q: %v", m.Payload, err)
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
