package test

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/switchboard/switchboard/config"
	"github.com/switchboard/switchboard/test/wsframe"
)

// liveHeap is the live heap after a collection: what the process holds.
func liveHeap() int64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}

// What a peer makes the server hold is at most four times what it sent,
// however its input is left unfinished: a websocket frame, a binary
// event's attachments, a polling body that promised more than it sent.
// The server and the attackers share this process; the attackers keep one
// buffer for all they send, so the heap's growth is the server's.
func TestAmplificationIsBounded(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.MessageTimeout = time.Minute })
	by := newBystander(t, s)
	const peers, sent = 40, 200_000
	chunk := []byte(strings.Repeat("x", sent))
	ratio := func(name string, open func() io.Closer) {
		before := liveHeap()
		var held []io.Closer
		for range peers {
			held = append(held, open())
		}
		time.Sleep(300 * time.Millisecond) // every byte sent is read
		grew := liveHeap() - before
		r := float64(grew) / float64(peers*sent)
		t.Logf("%s: %d peers sent %d bytes each; the heap grew %d bytes: %.2fx", name, peers, sent, grew, r)
		if r > 4 {
			t.Errorf("%s: the server holds %.1f times what was sent", name, r)
		}
		for _, c := range held {
			_ = c.Close()
		}
		by.check()
	}
	ratio("websocket frame announcing 1 MB", func() io.Closer {
		r := rawConnect(t, s)
		r.connect()
		r.sendRaw(wsframe.Header(gws.BinaryMessage, true, 1_000_000))
		r.sendRaw(chunk)
		return r.ws
	})
	ratio("binary event waiting for its second attachment", func() io.Closer {
		r := rawConnect(t, s)
		r.connect()
		r.send(`452-["clientMessage",{"a":{"_placeholder":true,"num":0},"b":{"_placeholder":true,"num":1}}]`)
		if err := r.ws.WriteMessage(gws.BinaryMessage, chunk); err != nil {
			t.Fatal(err)
		}
		return r.ws
	})
	ratio("polling body promising 10 MB", func() io.Closer {
		p, code := pollOpen(t, s)
		if code != 200 {
			t.Fatalf("polling handshake %d", code)
		}
		host := strings.TrimPrefix(s.URL, "http://")
		nc, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		path := strings.TrimPrefix(p.url, s.URL)
		fmt.Fprintf(nc, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\nContent-Length: 10000000\r\n\r\n", path, host)
		if _, err := nc.Write(chunk); err != nil {
			t.Fatal(err)
		}
		return nc
	})
}
