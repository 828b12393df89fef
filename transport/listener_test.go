package transport

import (
	"bufio"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// Past its cap an address's connection is answered 429 and closed at
// accept, before any byte is read; closing a counted connection (twice,
// as a hijacker and net/http might) gives back exactly one place.
func TestAddrListenerCapsAnAddress(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan string, 4)
	l := &addrListener{Listener: inner, max: 2, loopback: true, open: map[string]int{},
		onRefused: func(addr string) { refused <- addr }}
	defer l.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dial()
	dial()
	a, b := <-accepted, <-accepted
	if _, ok := a.(syscall.Conn); !ok {
		t.Fatal("a counted connection does not expose its descriptor")
	}
	third := dial()
	_ = third.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(third), nil)
	if err != nil || res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("third connection: %v %v, want 429", res, err)
	}
	if got := <-refused; got != "127.0.0.1" {
		t.Errorf("refused %q", got)
	}
	a.Close()
	a.Close()
	dial()
	<-accepted
	l.mu.Lock()
	n := l.open["127.0.0.1"]
	l.mu.Unlock()
	if n != 2 {
		t.Errorf("open count %d after one close (twice) and one more accept, want 2", n)
	}
	b.Close()
	select {
	case c := <-accepted:
		t.Errorf("unexpected accept %v", c.RemoteAddr())
	default:
	}
}

// Loopback is exempt unless the limits apply to it.
func TestAddrListenerLoopbackExempt(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &addrListener{Listener: inner, max: 1, open: map[string]int{}, onRefused: func(string) {}}
	defer l.Close()
	for range 3 {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		got, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if _, counted := got.(*countedConn); counted {
			t.Fatal("a loopback connection was counted")
		}
		got.Close()
	}
}

func TestPeekEvent(t *testing.T) {
	for in, want := range map[string]string{
		`["x-unknown",{"blob":"xxx"}]`: "x-unknown",
		` [ "join" ]`:                  "join",
		`["a" , 1]`:                    "a",
		`["jo\u0069n",{}]`:             "join",
		`["a\"b"]`:                     `a"b`,
	} {
		if got, ok := peekEvent([]byte(in)); !ok || got != want {
			t.Errorf("peekEvent(%s) = %q %v, want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{`["bad\x"]`, `[1]`, `{"a":1}`, `["unterminated`, `["a"x]`, ``, `[`} {
		if got, ok := peekEvent([]byte(in)); ok {
			t.Errorf("peekEvent(%s) = %q, want not ok (left to the full decode)", in, got)
		}
	}
}
