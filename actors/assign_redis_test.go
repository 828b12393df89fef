package actors

import (
	"context"
	"fmt"
	"net"
	"os/exec"
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
func threeNodes(t *testing.T, addr string, capacity int) []*redisAssignments {
	var nodes []*redisAssignments
	for range 3 {
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		t.Cleanup(func() { rdb.Close() })
		nodes = append(nodes, newRedisAssignments(rdb, "sbtest:", capacity))
	}
	return nodes
}

// Ten operators on three nodes claim each chat at once: exactly one wins,
// and the nine others are told who did.
func TestRedisClaimRaceAcrossNodes(t *testing.T) {
	nodes := threeNodes(t, startRedis(t), 50)
	ctx := context.Background()
	for op := range 10 {
		if err := nodes[op%3].available(ctx, fmt.Sprint("op", op), 0, true); err != nil {
			t.Fatal(err)
		}
	}
	for chat := range 50 {
		client := fmt.Sprint("c", chat)
		owners := make([]string, 10)
		codes := make([]string, 10)
		var wg sync.WaitGroup
		for op := range 10 {
			wg.Go(func() {
				var err error
				owners[op], codes[op], err = nodes[op%3].claim(ctx, client, fmt.Sprint("op", op))
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		wins := 0
		for op := range 10 {
			switch codes[op] {
			case "":
				wins++
				if owners[op] != fmt.Sprint("op", op) {
					t.Fatalf("op%d won but the owner is %s", op, owners[op])
				}
			case messages.CodeAlreadyClaimed:
			default:
				t.Fatalf("op%d: %q", op, codes[op])
			}
		}
		if wins != 1 {
			t.Fatalf("%s: %d winners (%v)", client, wins, codes)
		}
		for op := range 10 {
			if owners[op] != owners[0] {
				t.Fatalf("%s: owners disagree: %v", client, owners)
			}
		}
	}
	loads, err := nodes[0].rdb.HGetAll(ctx, "sbtest:rt:load").Result()
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

// Three nodes assigning 100 chats at once over 4 operators of capacity 30
// balance them within ±1, never assign one twice, and past capacity find
// nobody; a release frees its owner's room, and only its owner's.
func TestRedisAutoBalanceAcrossNodes(t *testing.T) {
	nodes := threeNodes(t, startRedis(t), 30)
	ctx := context.Background()
	for op := range 4 {
		if err := nodes[op%3].available(ctx, fmt.Sprint("op", op), 0, true); err != nil {
			t.Fatal(err)
		}
	}
	assignAll := func(from, to int) map[string]string {
		got := make([]string, to-from)
		var wg sync.WaitGroup
		for i := from; i < to; i++ {
			wg.Go(func() {
				owner, err := nodes[i%3].assign(ctx, fmt.Sprint("c", i))
				if err != nil {
					t.Error(err)
				}
				got[i-from] = owner
			})
		}
		wg.Wait()
		out := map[string]string{}
		for i, o := range got {
			out[fmt.Sprint("c", from+i)] = o
		}
		return out
	}
	first := assignAll(0, 100)
	per := map[string]int{}
	for _, o := range first {
		per[o]++
	}
	for op, n := range per {
		if n < 24 || n > 26 || op == "" {
			t.Fatalf("loads %v", per)
		}
	}
	// Asking again for an assigned chat answers its owner: never twice.
	for c, o := range first {
		if again, _ := nodes[1].assign(ctx, c); again != o {
			t.Fatalf("%s assigned again: %s then %s", c, o, again)
		}
	}
	more := assignAll(100, 125)
	nobody := 0
	for _, o := range more {
		if o == "" {
			nobody++
		}
	}
	if nobody != 5 {
		t.Fatalf("%d chats found nobody, want 5: %v", nobody, more)
	}
	c0 := first["c0"]
	other := "op0"
	if c0 == "op0" {
		other = "op1"
	}
	if ok, _ := nodes[2].release(ctx, "c0", other); ok {
		t.Fatal("another operator released c0")
	}
	if ok, err := nodes[2].release(ctx, "c0", c0); !ok || err != nil {
		t.Fatalf("the owner's release: %v %v", ok, err)
	}
	if o, _ := nodes[0].assign(ctx, "c999"); o != c0 {
		t.Fatalf("the freed room went to %q, want %s", o, c0)
	}
	// An away operator gets nothing.
	if err := nodes[0].available(ctx, c0, 0, false); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[0].release(ctx, "c999", c0); err != nil {
		t.Fatal(err)
	}
	if o, _ := nodes[0].assign(ctx, "c1000"); o != "" {
		t.Fatalf("assigned to %s while the only one with room is away", o)
	}
}
