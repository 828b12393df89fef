package client

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// journal records, in order, what a client saw: events and reconnections.
type journal struct {
	mu      sync.Mutex
	entries []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	j.entries = append(j.entries, s)
	j.mu.Unlock()
}

func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.entries...)
}

func dialRecovering(t *testing.T, f *fakeServer, tr Transport, j *journal, extra func(*Options)) *Client {
	t.Helper()
	o := Options{
		Transport:      tr,
		Auth:           map[string]any{"token": "t0k"},
		Reconnect:      true,
		ReconnectDelay: 50 * time.Millisecond,
		OnEvent: func(name string, p json.RawMessage) {
			var n int
			_ = json.Unmarshal(p, &n)
			j.add(fmt.Sprintf("%s %d", name, n))
		},
		OnReconnect: func(recovered bool, took time.Duration) { j.add(fmt.Sprintf("reconnect recovered=%v", recovered)) },
	}
	if extra != nil {
		extra(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, f.URL, o)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// After a drop the client reconnects with its auth, pid and last offset;
// the events missed meanwhile arrive before the reconnection completes;
// the socket keeps its id; what it emitted while down is sent after.
func TestRecoveryAfterDrop(t *testing.T) {
	for _, tr := range []Transport{WebSocket, Polling} {
		t.Run(string(tr), func(t *testing.T) {
			f := startFake(t)
			var j journal
			c := dialRecovering(t, f, tr, &j, nil)
			id := c.ID()
			f.emit(id, "msg", 1, false)
			f.emit(id, "typing", 0, true) // volatile: no offset
			f.emit(id, "msg", 2, false)
			waitFor(t, 2*time.Second, "two events", func() bool { return len(j.list()) == 3 })
			if got := c.Offset(); got != "2" {
				t.Fatalf("offset %q, want the last event's, 2", got)
			}

			c.Drop()
			if c.Connected() {
				t.Error("connected right after a drop")
			}
			if err := c.Emit("hello", "while-down"); err != nil {
				t.Errorf("emit while down: %v, want it buffered", err)
			}
			waitFor(t, 2*time.Second, "the server to see the drop", func() bool { return f.linkOf(id) == nil })
			f.emit(id, "msg", 3, false)
			f.emit(id, "typing", 0, true) // volatile and down: lost, as it should be
			f.emit(id, "msg", 4, false)
			// OnReconnect runs before the buffer goes out; connected after.
			waitFor(t, 3*time.Second, "the reconnection", func() bool { return len(j.list()) == 6 && c.Connected() })

			want := []string{"msg 1", "typing 0", "msg 2", "msg 3", "msg 4", "reconnect recovered=true"}
			if got := j.list(); !slices.Equal(got, want) {
				t.Errorf("journal %q, want %q", got, want)
			}
			cs := f.connectsSeen()
			if len(cs) != 2 {
				t.Fatalf("%d CONNECTs, want 2", len(cs))
			}
			if _, has := cs[0]["pid"]; has || cs[0]["token"] != "t0k" {
				t.Errorf("first CONNECT %v: want the auth only", cs[0])
			}
			if cs[1]["token"] != "t0k" || cs[1]["pid"] != "p"+strings.TrimPrefix(id, "s") || cs[1]["offset"] != "2" {
				t.Errorf("reconnect CONNECT %v: want the auth, pid p%s and offset 2", cs[1], strings.TrimPrefix(id, "s"))
			}
			if !c.Recovered() || c.ID() != id || !c.Connected() || c.Offset() != "4" {
				t.Errorf("recovered %v, id %s (was %s), connected %v, offset %q", c.Recovered(), c.ID(), id, c.Connected(), c.Offset())
			}
			waitFor(t, 2*time.Second, "the buffered emit", func() bool { return slices.Contains(f.receivedSeen(), "hello while-down") })
			// And the recovered socket still talks both ways.
			if err := c.Emit("hello", "after"); err != nil {
				t.Fatal(err)
			}
			f.emit(id, "msg", 5, false)
			waitFor(t, 2*time.Second, "traffic after recovery", func() bool {
				return slices.Contains(f.receivedSeen(), "hello after") && slices.Contains(j.list(), "msg 5")
			})
		})
	}
}

// A server that cannot recover answers with a new socket: the client
// reports it, rejoins first, then sends what it buffered, and forgets the
// old offset.
func TestFreshSessionFallback(t *testing.T) {
	f := startFake(t)
	f.recover = false
	var j journal
	c := dialRecovering(t, f, WebSocket, &j, func(o *Options) {
		o.Rejoin = &Emission{Event: "join", Payload: "again", Ack: func(json.RawMessage) { j.add("join acked 0") }}
	})
	id := c.ID()
	f.emit(id, "msg", 1, false)
	waitFor(t, 2*time.Second, "an event", func() bool { return len(j.list()) == 1 })
	c.Drop()
	_ = c.Emit("hello", "buffered")
	waitFor(t, 3*time.Second, "the reconnection", func() bool { return len(j.list()) >= 3 })
	if got := j.list()[1:3]; !slices.Equal(got, []string{"reconnect recovered=false", "join acked 0"}) {
		t.Errorf("journal %q", j.list())
	}
	if c.Recovered() || c.ID() == id || c.Offset() != "" {
		t.Errorf("recovered %v, id %s (old %s), offset %q: want a fresh socket without the old offset", c.Recovered(), c.ID(), id, c.Offset())
	}
	if got := f.receivedSeen(); !slices.Equal(got, []string{"join again", "hello buffered"}) {
		t.Errorf("server received %q: want the rejoin before the buffer", got)
	}
}

// A DISCONNECT from the server is final: no reconnection.
func TestServerDisconnectDoesNotReconnect(t *testing.T) {
	f := startFake(t)
	var j journal
	closed := make(chan string, 1)
	c := dialRecovering(t, f, WebSocket, &j, func(o *Options) {
		o.ReconnectDelay = 5 * time.Millisecond
		o.OnClose = func(r string) { closed <- r }
	})
	f.linkOf(c.ID()).write([]byte("41"))
	select {
	case r := <-closed:
		if r != "io server disconnect" {
			t.Errorf("closed: %q", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("client did not end on DISCONNECT")
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(f.connectsSeen()); n != 1 {
		t.Errorf("%d CONNECTs after a server DISCONNECT, want 1", n)
	}
	if err := c.Emit("x", 1); err == nil {
		t.Error("emit after the end: want an error")
	}
}

// A server that closes the transport without a DISCONNECT (a deploy) is
// reconnected to; one that closes it with an Engine.IO close packet too.
func TestTransportCloseByServerReconnects(t *testing.T) {
	f := startFake(t)
	var j journal
	c := dialRecovering(t, f, WebSocket, &j, nil)
	id := c.ID()
	f.emit(id, "msg", 1, false)
	waitFor(t, 2*time.Second, "an event", func() bool { return len(j.list()) == 1 })
	l := f.linkOf(id)
	l.mu.Lock()
	_ = l.ws.NetConn().Close()
	l.mu.Unlock()
	waitFor(t, 3*time.Second, "the reconnection", func() bool { return len(j.list()) == 2 })
	f.linkOf(id).write([]byte("1"))
	waitFor(t, 3*time.Second, "the second reconnection", func() bool { return len(j.list()) == 3 })
	if got := j.list(); !slices.Equal(got, []string{"msg 1", "reconnect recovered=true", "reconnect recovered=true"}) {
		t.Errorf("journal %q", got)
	}
}

// A refused reconnection ends the client with the server's reason; a
// client without Reconnect ends at a drop, as before.
func TestReconnectRefusedAndNoReconnect(t *testing.T) {
	f := startFake(t)
	var j journal
	closed := make(chan string, 1)
	c := dialRecovering(t, f, WebSocket, &j, func(o *Options) { o.OnClose = func(r string) { closed <- r } })
	f.mu.Lock()
	f.onConnect = func(auth map[string]any) string {
		if auth["pid"] != nil {
			return "token expired"
		}
		return ""
	}
	f.mu.Unlock()
	c.Drop()
	select {
	case r := <-closed:
		if !strings.Contains(r, "reconnect refused") || !strings.Contains(r, "token expired") {
			t.Errorf("closed: %q", r)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("a refused reconnection did not end the client")
	}

	ended := make(chan string, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	plain, err := Dial(ctx, f.URL, Options{OnClose: func(r string) { ended <- r }})
	if err != nil {
		t.Fatal(err)
	}
	plain.Drop()
	select {
	case r := <-ended:
		if r != "transport close" {
			t.Errorf("closed: %q", r)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a drop without Reconnect did not end the client")
	}
}

// An old server gives no pid: events are not read for offsets, and a
// reconnection is a fresh socket.
func TestNoPidNoOffsets(t *testing.T) {
	f := startFake(t)
	f.noPid = true
	ch := make(chan Event, 4)
	c := dialRecovering(t, f, WebSocket, &journal{}, func(o *Options) { o.OnEvent = nil })
	go func() {
		for ev := range c.Events() {
			ch <- ev
		}
	}()
	b, _ := json.Marshal([]any{"note", "a string payload"})
	f.linkOf(c.ID()).write(append([]byte("42"), b...))
	select {
	case ev := <-ch:
		if ev.Offset != "" || string(ev.Payload) != `"a string payload"` {
			t.Errorf("event %+v: without a pid the last string is the payload", ev)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no event")
	}
	c.Drop()
	waitFor(t, 3*time.Second, "the reconnection", func() bool { return len(f.connectsSeen()) == 2 && c.Connected() })
	if cs := f.connectsSeen(); cs[1]["pid"] != nil || c.Recovered() {
		t.Errorf("CONNECT %v, recovered %v", cs[1], c.Recovered())
	}
}
