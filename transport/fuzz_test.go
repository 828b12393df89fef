package transport

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/actors"
	"github.com/switchboard/switchboard/config"
	"github.com/switchboard/switchboard/transport/ws"
)

// FuzzEnginePacket feeds the Engine.IO and Socket.IO decoder what a peer
// may send: a polling body ("\x1e"-separated packets, binary attachments
// as "b" and base64) or a websocket's frames, text or binary, in any
// order, against a real actor system. Whatever comes, nothing panics, and
// once the socket ends it holds nothing of the server's buffer budget.
//
// The first byte chooses the transport: even for a polling body (the
// rest), odd for websocket frames (the rest split at "\x1e"; a frame
// starting with 0x00 is binary, without it).
func FuzzEnginePacket(f *testing.F) {
	for _, seed := range []string{
		"\x0040",
		"\x0040\x1e42[\"join\",{\"role\":\"client\",\"name\":\"fuzz\"}]\x1e421[\"clientMessage\",{\"type\":\"text\",\"message\":\"hi\"}]",
		"\x0040{\"token\":\"x\",\"pid\":\"p\",\"offset\":\"1\"}\x1e3\x1e6\x1e41",
		"\x0040\x1e451-[\"clientMessage\",{\"type\":\"image\",\"image\":{\"_placeholder\":true,\"num\":0}}]\x1ebiVBORw0KGgo=",
		"\x0040\x1e452-[\"clientMessage\",{\"a\":{\"_placeholder\":true,\"num\":1}}]\x1ebAAEC",
		"\x0040/admin,\x1e42/admin,[\"x\"]\x1e43[\"ack\"]\x1e2probe\x1e5",
		"\x01" + "40\x1e42[\"join\",{\"role\":\"operator\",\"name\":\"o\",\"operatorId\":1}]",
		"\x01" + "40\x1e451-[\"clientMessage\",{\"image\":{\"_placeholder\":true,\"num\":0}}]\x1e\x00\x89PNG",
		"\x01" + "40\x1e4510-[\"x\",{}]\x1e\x00a\x1e\x00b",
		"\x01" + "\x00stray attachment",
		"\x01" + "4",
		"\x01" + "49",
		"\x0140\x1e45x-[]",
	} {
		f.Add([]byte(seed))
	}
	s := fuzzServer(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		mode, data := data[0], data[1:]
		p := &pollConn{srv: s, sid: newID(), wake: make(chan struct{}, 1), lastGet: time.Now()}
		r := httptest.NewRequest(http.MethodGet, "/chat/?EIO=4", nil)
		if mode%2 == 0 {
			p.e = s.newSocket(p, r, "192.0.2.1", "").start()
			p.rmu.Lock()
			p.packets(data)
			p.rmu.Unlock()
			p.Close(ws.CloseNormal, reasonTransport) // Closed follows, once
			p.forget()
		} else {
			c := &fakeConn{}
			p.e = s.newSocket(c, r, "192.0.2.1", "").start()
			for _, frame := range bytes.Split(data, []byte{recordSep}) {
				if p.e.closed.Load() {
					break
				}
				if len(frame) > 0 && frame[0] == 0 {
					p.e.Message(nil, false, frame[1:])
				} else {
					p.e.Message(nil, true, frame)
				}
			}
			p.e.Closed(nil, reasonTransport) // as the websocket would, once
		}
		if n := s.wss.Buffered(); n != 0 {
			t.Fatalf("%d bytes of the buffer budget still held after the socket ended", n)
		}
	})
}

var (
	fuzzOnce sync.Once
	fuzzSrv  *Server
)

// fuzzServer is one transport server with its actor system, for the whole
// fuzzing process.
func fuzzServer(f *testing.F) *Server {
	fuzzOnce.Do(func() {
		cfg, err := config.Load(nil, func(string) (string, bool) { return "", false })
		if err != nil {
			f.Fatal(err)
		}
		cfg.MaxImageBytes = 4096 // small bounds, so that the fuzzer reaches them
		cfg.MemoryLimit = 0
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		sys, err := actors.Start(actors.Options{Logger: log})
		if err != nil {
			f.Fatal(err)
		}
		wss, err := ws.NewServer(ws.Options{MaxMessage: cfg.MaxPayload()})
		if err != nil {
			f.Skip("no native websocket server here:", err)
		}
		fuzzSrv = &Server{cfg: cfg, sys: sys, log: log, wss: wss, wssMaxPayload: cfg.MaxPayload()}
	})
	if fuzzSrv == nil {
		f.Skip("no server")
	}
	return fuzzSrv
}

// fakeConn is a transport that keeps nothing: writes are counted against
// the pending-bytes bound as a real one's would be, and dropped.
type fakeConn struct {
	mu     sync.Mutex
	closed bool
}

func (c *fakeConn) WriteText(string, []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ws.ErrClosed
	}
	return nil
}

func (c *fakeConn) Close(int, error) {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}

func (c *fakeConn) Pending() int { return 0 }
