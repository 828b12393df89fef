package transport

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// Writes within the window leave together; Close sends what is pending.
func TestCoalescingConn(t *testing.T) {
	server, client := net.Pipe()
	c := &coalescingConn{Conn: server, window: 20 * time.Millisecond}
	got := make(chan []byte, 8)
	go func() {
		for {
			b := make([]byte, 1024)
			n, err := client.Read(b)
			if err != nil {
				close(got)
				return
			}
			got <- b[:n]
		}
	}()
	for _, p := range []string{"a", "bb", "ccc"} {
		if _, err := c.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case b := <-got:
		if string(b) != "abbccc" {
			t.Fatalf("first write carried %q, want all three frames", b)
		}
	case <-time.After(time.Second):
		t.Fatal("nothing flushed after the window")
	}
	_, _ = c.Write([]byte("last"))
	done := make(chan struct{})
	go func() { _ = c.Close(); close(done) }()
	var rest bytes.Buffer
	for b := range got {
		rest.Write(b)
	}
	<-done
	if rest.String() != "last" {
		t.Fatalf("Close sent %q, want the pending frame", rest.String())
	}
	if _, err := c.Write([]byte("x")); err == nil {
		t.Fatal("write after close succeeded")
	}
}
