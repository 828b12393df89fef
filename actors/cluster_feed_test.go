package actors

import (
	"slices"
	"testing"
)

func ids(es []feedEntry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.id
	}
	return out
}

func fe(id string) feedEntry { return feedEntry{id: id, env: "env " + id} }

// A node's first read only learns where the feed ends; what arrives live
// meanwhile is applied after it, once.
func TestFeedCursorFirstRead(t *testing.T) {
	var c feedCursor
	if after := c.resync(); after != "" {
		t.Fatalf("first read after %q", after)
	}
	if got := c.live(fe("5-0")); got != nil {
		t.Fatalf("applied while reading: %v", ids(got))
	}
	got := c.caught(nil, "4-0", true)
	if !slices.Equal(ids(got), []string{"5-0"}) || c.last != "5-0" {
		t.Fatalf("after the first read: %v, last %s", ids(got), c.last)
	}
	if got := ids(c.live(fe("6-0"))); !slices.Equal(got, []string{"6-0"}) {
		t.Fatalf("live: %v", got)
	}
}

// A blip: entries published while the subscription was down are read
// from the stream; those that also arrive live (or arrived before the
// read's answer) come once, in the stream's order.
func TestFeedCursorBlip(t *testing.T) {
	c := feedCursor{last: "10-0"}
	if after := c.resync(); after != "10-0" {
		t.Fatalf("read after %q", after)
	}
	c.live(fe("12-0")) // live again before the read's answer
	c.live(fe("13-0"))
	got := c.caught([]feedEntry{fe("11-0"), fe("12-0")}, "", true)
	if want := []string{"11-0", "12-0", "13-0"}; !slices.Equal(ids(got), want) {
		t.Fatalf("got %v, want %v", ids(got), want)
	}
	if got := c.live(fe("13-0")); got != nil {
		t.Fatalf("13-0 twice: %v", ids(got))
	}
	if got := c.live(fe("9-5")); got != nil {
		t.Fatalf("an old entry applied: %v", ids(got))
	}
}

// A failed read applies nothing and keeps holding; the next read answers.
func TestFeedCursorFailedRead(t *testing.T) {
	c := feedCursor{last: "1-0"}
	c.resync()
	c.live(fe("3-0"))
	if got := c.caught(nil, "", false); got != nil || !c.catching {
		t.Fatalf("failed read applied %v (catching %v)", ids(got), c.catching)
	}
	got := c.caught([]feedEntry{fe("2-0"), fe("3-0")}, "", true)
	if want := []string{"2-0", "3-0"}; !slices.Equal(ids(got), want) {
		t.Fatalf("got %v, want %v", ids(got), want)
	}
	// An answer nobody asked for is ignored.
	if got := c.caught([]feedEntry{fe("4-0")}, "", true); got != nil {
		t.Fatalf("unasked answer applied: %v", ids(got))
	}
}

func TestCompareStreamID(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{{"1-0", "1-0", 0}, {"1-1", "1-0", 1}, {"9-0", "10-0", -1}, {"1700000000000-2", "1700000000000-10", -1}} {
		if got := compareStreamID(tc.a, tc.b); got != tc.want {
			t.Fatalf("compare(%s, %s) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
	if id, env, ok := splitFeed("F|5-1\nO|n1|x|0|0|e|\nbody"); !ok || id != "5-1" || env != "O|n1|x|0|0|e|\nbody" {
		t.Fatalf("splitFeed: %q %q %v", id, env, ok)
	}
	if _, _, ok := splitFeed("O|n1|x|0|0|e|\nbody"); ok {
		t.Fatal("an envelope taken for a feed message")
	}
}

// An acknowledgement is answered from what became of the write it follows:
// a failed batch fails every write in it, an unheard write only itself,
// and what came before or after is unaffected.
func TestAckLedger(t *testing.T) {
	var l ackLedger
	l.failed(3, 5) // a batch of writes 3..5 failed
	l.failed(8, 8) // write 8 reached nobody
	want := map[uint64]bool{1: true, 2: true, 3: false, 4: false, 5: false, 6: true, 7: true, 8: false, 9: true}
	for wid := uint64(1); wid <= 9; wid++ {
		if got := l.stored(wid); got != want[wid] {
			t.Fatalf("write %d stored %v, want %v", wid, got, want[wid])
		}
	}
	if len(l.ranges) != 0 {
		t.Fatalf("ledger keeps %v after every write was answered", l.ranges)
	}
}
