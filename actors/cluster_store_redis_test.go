package actors

import (
	"context"
	"strconv"
	"strings"
	"testing"
)

// The stored conversation keeps to both bounds, frames and bytes
// (SWITCHBOARD_RECOVERY_MAX_BYTES applies in Redis too): past either the
// oldest frames go, and a recovery from before them starts afresh (never
// a gap), while one from within what is kept gets exactly the rest.
func TestStoredConversationBounds(t *testing.T) {
	addr := startRedis(t)
	cs, err := newClusterStore(ClusterOptions{RedisURL: "redis://" + addr, NodeID: "n1", Prefix: "sbbound", Heartbeat: 1e9, DeadAfter: 2e9}, 60e9, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.close()
	ctx := context.Background()
	sid, pid := "sock1", "sock1.secret"
	if err := cs.register(sid, pid, nil); err != nil {
		t.Fatal(err)
	}
	if err := memberScript.Run(ctx, cs.rdb, []string{cs.keys.record(sid)}, `{"id":"sock1","role":"client","connectedAt":1,"seq":1}`).Err(); err != nil {
		t.Fatal(err)
	}
	const maxFrames, maxBytes = 100, 250
	text := strings.Repeat("x", 60)
	for i := range 6 {
		head := `42["operatorMessage",{"message":"` + text + strconv.Itoa(i) + `"}`
		args := []any{head, "r" + strconv.Itoa(i), "n1", "inc", 0, "operatorMessage", sid, maxFrames, 60000, cs.keys.nodeChannel(), "n1", maxBytes}
		if err := appendScript.Run(ctx, cs.rdb, []string{cs.keys.record(sid), cs.keys.stream(sid)}, args...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	n, _ := cs.rdb.XLen(ctx, cs.keys.stream(sid)).Result()
	kept, _ := cs.rdb.HGet(ctx, cs.keys.record(sid), "b").Int()
	if n < 1 || n >= 6 || kept > maxBytes {
		t.Fatalf("kept %d frames, %d bytes; want fewer than 6 within %d bytes", n, kept, maxBytes)
	}
	epoch, _ := cs.rdb.HGet(ctx, cs.keys.record(sid), "epoch").Result()
	// From before what is kept: fresh, never a gap.
	if a, why := cs.adopt(ResumeRequest{PrivateID: pid, HasOffset: true, Offset: epoch + ".1"}); a != nil || why != "frames after the offset are gone" {
		t.Fatalf("recovery past the bound: %v %q", a, why)
	}
	// From within: exactly the rest, in order (this adopt makes n2 the owner).
	cs.node = "n2"
	from := 6 - int(n)
	a, why := cs.adopt(ResumeRequest{PrivateID: pid, HasOffset: true, Offset: epoch + "." + strconv.Itoa(from)})
	if a == nil {
		t.Fatalf("recovery within the bound: %s", why)
	}
	if len(a.frames) != int(n) || !strings.Contains(string(a.frames[len(a.frames)-1].Packet), text+"5") {
		t.Fatalf("got %d frames, want %d ending with the last", len(a.frames), n)
	}
}
