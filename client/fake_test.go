package client

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fakeServer is a small Engine.IO 4 / Socket.IO 5 server with connection
// state recovery as socket.io 4.6 does it: the CONNECT answer carries a
// pid, every event an offset, and a CONNECT with a known pid and offset is
// answered with the events missed since that offset, then the same sid and
// pid. It speaks websocket and long-polling (no upgrade), never pings, and
// records what the clients send.
type fakeServer struct {
	URL string

	mu        sync.Mutex
	recover   bool // false: every CONNECT makes a fresh socket
	noPid     bool // an old server: no pid, no offsets
	seq       int
	sockets   map[string]*fakeSocket // by pid
	byID      map[string]*fakeSocket
	polls     map[string]*fakeLink             // polling sessions by Engine.IO sid
	connects  []map[string]any                 // every CONNECT's auth, in order
	received  []string                         // every EVENT's name (then first argument, if a string)
	onConnect func(auth map[string]any) string // optional: a CONNECT_ERROR message, or ""
}

// fakeSocket is one Socket.IO socket; it outlives its transports.
type fakeSocket struct {
	id, pid string
	link    *fakeLink // nil while its transport is down
	history [][]byte  // every non-volatile packet, the offset being its index+1
}

// fakeLink is one Engine.IO session's way out: a websocket, or the queue
// that the next long-poll takes.
type fakeLink struct {
	mu    sync.Mutex
	ws    *websocket.Conn
	queue [][]byte
	wake  chan struct{}
	sock  *fakeSocket
}

func (l *fakeLink) write(p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ws != nil {
		_ = l.ws.WriteMessage(websocket.TextMessage, p)
		return
	}
	l.queue = append(l.queue, p)
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func startFake(t *testing.T) *fakeServer {
	t.Helper()
	f := &fakeServer{recover: true, sockets: map[string]*fakeSocket{}, byID: map[string]*fakeSocket{}, polls: map[string]*fakeLink{}}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

const fakeOpen = `0{"sid":"%s","upgrades":[],"pingInterval":600000,"pingTimeout":600000,"maxPayload":1000000}`

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("transport") == "websocket" {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		l := &fakeLink{ws: ws}
		l.write(fmt.Appendf(nil, fakeOpen, f.nextID("e")))
		for {
			_, p, err := ws.ReadMessage()
			if err != nil {
				f.down(l)
				return
			}
			f.packet(l, p)
		}
	}
	sid := q.Get("sid")
	if sid == "" {
		sid = f.nextID("e")
		f.mu.Lock()
		f.polls[sid] = &fakeLink{wake: make(chan struct{}, 1)}
		f.mu.Unlock()
		fmt.Fprintf(w, fakeOpen, sid)
		return
	}
	f.mu.Lock()
	l := f.polls[sid]
	f.mu.Unlock()
	if l == nil {
		http.Error(w, `{"code":1,"message":"Session ID unknown"}`, http.StatusBadRequest)
		return
	}
	if r.Method == http.MethodPost {
		body := new(bytes.Buffer)
		_, _ = body.ReadFrom(r.Body)
		for _, p := range bytes.Split(body.Bytes(), []byte{0x1e}) {
			f.packet(l, p)
		}
		_, _ = w.Write([]byte("ok"))
		return
	}
	for {
		l.mu.Lock()
		if len(l.queue) > 0 {
			out := bytes.Join(l.queue, []byte{0x1e})
			l.queue = nil
			l.mu.Unlock()
			_, _ = w.Write(out)
			return
		}
		l.mu.Unlock()
		select {
		case <-l.wake:
		case <-r.Context().Done(): // the poll was cut: the transport closed, as engine.io has it
			f.down(l)
			f.mu.Lock()
			delete(f.polls, sid)
			f.mu.Unlock()
			return
		}
	}
}

func (f *fakeServer) nextID(prefix string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	return prefix + strconv.Itoa(f.seq)
}

// down is a transport that closed: its socket keeps its state, for a
// recovery.
func (f *fakeServer) down(l *fakeLink) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l.sock != nil && l.sock.link == l {
		l.sock.link = nil
	}
}

func (f *fakeServer) packet(l *fakeLink, p []byte) {
	s := string(p)
	switch {
	case strings.HasPrefix(s, "40"):
		var auth map[string]any
		_ = json.Unmarshal(p[2:], &auth)
		f.connect(l, auth)
	case strings.HasPrefix(s, "42"):
		var args []json.RawMessage
		_ = json.Unmarshal([]byte(strings.TrimLeft(s[2:], "0123456789")), &args)
		var name, first string
		if len(args) > 0 {
			_ = json.Unmarshal(args[0], &name)
		}
		if len(args) > 1 {
			_ = json.Unmarshal(args[1], &first)
		}
		f.mu.Lock()
		f.received = append(f.received, strings.TrimSuffix(name+" "+first, " "))
		f.mu.Unlock()
		if rest := strings.TrimLeft(s[2:], "0123456789"); len(rest) < len(s)-2 { // an ack was asked
			l.write([]byte("43" + s[2:len(s)-len(rest)] + `[{"ok":true}]`))
		}
	}
}

func (f *fakeServer) connect(l *fakeLink, auth map[string]any) {
	f.mu.Lock()
	f.connects = append(f.connects, auth)
	if f.onConnect != nil {
		if msg := f.onConnect(auth); msg != "" {
			f.mu.Unlock()
			l.write([]byte(`44{"message":"` + msg + `"}`))
			return
		}
	}
	pid, _ := auth["pid"].(string)
	offset, _ := auth["offset"].(string)
	if s := f.sockets[pid]; f.recover && s != nil && s.link == nil {
		from, err := strconv.Atoi(offset)
		if offset == "" {
			from, err = 0, nil
		}
		if err == nil && from <= len(s.history) {
			s.link = l
			l.sock = s
			missed := s.history[from:]
			f.mu.Unlock()
			for _, p := range missed {
				l.write(p)
			}
			l.write([]byte(`40{"sid":"` + s.id + `","pid":"` + s.pid + `"}`))
			return
		}
	}
	f.seq++
	s := &fakeSocket{id: "s" + strconv.Itoa(f.seq), pid: "p" + strconv.Itoa(f.seq), link: l}
	l.sock = s
	f.sockets[s.pid], f.byID[s.id] = s, s
	f.mu.Unlock()
	if f.noPid {
		l.write([]byte(`40{"sid":"` + s.id + `"}`))
		return
	}
	l.write([]byte(`40{"sid":"` + s.id + `","pid":"` + s.pid + `"}`))
}

// emit sends an event to socket id with its offset, or only records it
// for a replay when the socket's transport is down; volatile events carry
// no offset and are dropped while down.
func (f *fakeServer) emit(id, name string, payload any, volatile bool) {
	f.mu.Lock()
	s := f.byID[id]
	args := []any{name, payload}
	if !volatile && !f.noPid {
		args = append(args, strconv.Itoa(len(s.history)+1))
	}
	b, _ := json.Marshal(args)
	p := append([]byte("42"), b...)
	if !volatile {
		s.history = append(s.history, p)
	}
	l := s.link
	f.mu.Unlock()
	if l != nil {
		l.write(p)
	}
}

// linkOf is socket id's current transport (nil while down).
func (f *fakeServer) linkOf(id string) *fakeLink {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.byID[id]; s != nil {
		return s.link
	}
	return nil
}

func (f *fakeServer) connectsSeen() []map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]map[string]any(nil), f.connects...)
}

func (f *fakeServer) receivedSeen() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.received...)
}

// waitFor polls cond every 5 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
