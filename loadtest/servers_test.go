package loadtest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/switchboard/switchboard/config"
	sbserver "github.com/switchboard/switchboard/server"
)

// startSwitchboard runs a Switchboard in this process on a free loopback
// port, as test/helpers_test.go does, and returns its base URL.
func startSwitchboard(t testing.TB, set ...func(*config.Config)) string {
	t.Helper()
	cfg, err := config.Load(nil, func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	for _, f := range set {
		f(cfg)
	}
	cfg.Host, cfg.Port = "127.0.0.1", 0
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	node, err := sbserver.New(cfg, log)
	if err != nil {
		t.Fatalf("server: %v", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- node.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := node.HTTP.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if err := node.Actors.Stop(2 * time.Second); err != nil {
			t.Errorf("stop actors: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// startSwitchboardProcess builds cmd/switchboard and runs it in its own
// process: the large test needs more sockets than the race detector's
// goroutine limit allows a server and its clients in one process.
func startSwitchboardProcess(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("SWITCHBOARD_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "switchboard")
		out, err := exec.Command("go", "build", "-o", bin, "github.com/switchboard/switchboard/cmd/switchboard").CombinedOutput()
		if err != nil {
			t.Fatalf("build switchboard: %v\n%s", err, out)
		}
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT=0", "SWITCHBOARD_HOST=127.0.0.1", "SWITCHBOARD_LOG_LEVEL=error")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start switchboard: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	addr := make(chan string, 1)
	go func() {
		re := regexp.MustCompile(`listening\s+(\S+)`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		return "http://" + a
	case <-time.After(30 * time.Second):
		t.Fatal("switchboard did not print where it listens")
		return ""
	}
}

// faultyServer is a minimal server of the contract (Engine.IO 4 over
// websocket only) that forwards like Switchboard but spoils a known share
// of the traffic: every DropEvery-th player message reaches no operator,
// every DupEvery-th reaches each operator twice, every MisrouteEvery-th
// reply goes to another player. Like the Node server, it acknowledges
// nothing. It counts exactly what it spoiled. With Recovery it does
// socket.io 4.6's connection-state recovery (pids, offsets, the replay of
// what a socket missed while its transport was down); with NoRecover it
// gives pids but answers every reconnection with a fresh socket.
type faultyServer struct {
	URL                                  string
	DropEvery, DupEvery, MisrouteEvery   int
	Recovery, NoRecover                  bool
	byPid                                map[string]*fakeSocket
	Recovered, Fresh                     int
	mu                                   sync.Mutex
	clients                              []*fakeSocket // joined players, in join order
	operators                            []*fakeSocket
	messages, replies                    int
	Dropped, Duplicated, Misrouted, Seen int
	nextID                               int
}

type fakeSocket struct {
	id, pid string
	mu      sync.Mutex
	ws      *websocket.Conn // nil while its transport is down (recovery)
	offsets bool            // events carry offsets
	history [][]byte        // with offsets: every event, offset = index+1
}

func (s *fakeSocket) send(event string, payload any) {
	args := []any{event, payload}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.offsets {
		args = append(args, strconv.Itoa(len(s.history)+1))
	}
	b, _ := json.Marshal(args)
	p := append([]byte("42"), b...)
	if s.offsets {
		s.history = append(s.history, p)
	}
	if s.ws != nil {
		_ = s.ws.WriteMessage(websocket.TextMessage, p)
	}
}

func startFaultyServer(t testing.TB, drop, dup, misroute int) *faultyServer {
	t.Helper()
	f := &faultyServer{DropEvery: drop, DupEvery: dup, MisrouteEvery: misroute, byPid: map[string]*fakeSocket{}}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

func every(n, k int) bool { return k > 0 && n%k == 0 }

func (f *faultyServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("transport") != "websocket" {
		http.Error(w, "websocket only", http.StatusBadRequest)
		return
	}
	ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer ws.Close()
	_ = ws.WriteMessage(websocket.TextMessage, []byte(`0{"sid":"e`+strconv.Itoa(int(time.Now().UnixNano()))+`","upgrades":[],"pingInterval":25000,"pingTimeout":60000,"maxPayload":100000000}`))
	var sock *fakeSocket
	defer func() {
		if sock != nil {
			f.down(sock, ws)
		}
	}()
	for {
		_, p, err := ws.ReadMessage()
		if err != nil {
			return
		}
		switch {
		case strings.HasPrefix(string(p), "40"):
			sock = f.connect(ws, p[2:])
		case sock == nil:
			return // an event before CONNECT
		case strings.HasPrefix(string(p), "42"):
			body := strings.TrimLeft(string(p[2:]), "0123456789") // an ack id: never answered
			var args []json.RawMessage
			if json.Unmarshal([]byte(body), &args) != nil || len(args) < 2 {
				continue
			}
			var name string
			_ = json.Unmarshal(args[0], &name)
			var payload map[string]any
			_ = json.Unmarshal(args[1], &payload)
			f.event(sock, name, payload)
		}
	}
}

// connect answers a CONNECT: with recovery, a known pid whose socket is
// down gets what it missed since its offset, then its own sid and pid.
func (f *faultyServer) connect(ws *websocket.Conn, body []byte) *fakeSocket {
	var auth struct {
		Pid    string `json:"pid"`
		Offset string `json:"offset"`
	}
	_ = json.Unmarshal(body, &auth)
	f.mu.Lock()
	defer f.mu.Unlock()
	if old := f.byPid[auth.Pid]; old != nil && f.Recovery {
		old.mu.Lock()
		from, err := strconv.Atoi(auth.Offset)
		if auth.Offset == "" {
			from, err = 0, nil
		}
		if old.ws == nil && err == nil && from <= len(old.history) {
			old.ws = ws
			for _, p := range old.history[from:] {
				_ = ws.WriteMessage(websocket.TextMessage, p)
			}
			_ = ws.WriteMessage(websocket.TextMessage, []byte(`40{"sid":"`+old.id+`","pid":"`+old.pid+`"}`))
			old.mu.Unlock()
			f.Recovered++
			return old
		}
		old.mu.Unlock()
	}
	if auth.Pid != "" {
		f.Fresh++
	}
	f.nextID++
	s := &fakeSocket{id: "fake" + strconv.Itoa(f.nextID), pid: "pid" + strconv.Itoa(f.nextID), ws: ws, offsets: f.Recovery || f.NoRecover}
	answer := `40{"sid":"` + s.id + `"}`
	if s.offsets {
		f.byPid[s.pid] = s
		answer = `40{"sid":"` + s.id + `","pid":"` + s.pid + `"}`
	}
	_ = ws.WriteMessage(websocket.TextMessage, []byte(answer))
	return s
}

// down is a transport that closed under socket s: with recovery the
// socket stays, joined, for its reconnection; otherwise it leaves.
func (f *faultyServer) down(s *fakeSocket, ws *websocket.Conn) {
	s.mu.Lock()
	if s.ws == ws {
		s.ws = nil
	}
	s.mu.Unlock()
	if !f.Recovery {
		f.leave(s)
	}
}

func (f *faultyServer) event(from *fakeSocket, name string, p map[string]any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch name {
	case "join":
		if p["role"] == "operator" {
			f.operators = append(f.operators, from)
			for _, c := range f.clients {
				from.send("newChat", map[string]any{"clientId": c.id, "username": c.id})
			}
			return
		}
		f.clients = append(f.clients, from)
		for _, o := range f.operators {
			o.send("newChat", map[string]any{"clientId": from.id, "username": from.id})
		}
	case "clientMessage":
		f.messages++
		f.Seen++
		copies := 1
		switch {
		case every(f.messages, f.DropEvery):
			f.Dropped++
			copies = 0
		case every(f.messages, f.DupEvery):
			f.Duplicated++
			copies = 2
		}
		p["from"] = from.id
		for _, o := range f.operators {
			for range copies {
				o.send("incomingMessage", p)
			}
		}
	case "operatorMessage":
		to, _ := p["to"].(string)
		target := f.client(to)
		if target == nil {
			return
		}
		f.replies++
		if every(f.replies, f.MisrouteEvery) && len(f.clients) > 1 {
			for _, c := range f.clients {
				if c != target {
					target = c
					break
				}
			}
			f.Misrouted++
		}
		target.send("operatorMessage", map[string]any{"type": p["type"], "message": p["message"], "operatorName": p["operatorName"], "timestamp": time.Now().UTC().Format(time.RFC3339Nano)})
	}
}

func (f *faultyServer) client(id string) *fakeSocket {
	for _, c := range f.clients {
		if c.id == id {
			return c
		}
	}
	return nil
}

func (f *faultyServer) leave(s *fakeSocket) {
	f.mu.Lock()
	defer f.mu.Unlock()
	remove := func(list []*fakeSocket) []*fakeSocket {
		for i, x := range list {
			if x == s {
				return append(list[:i:i], list[i+1:]...)
			}
		}
		return list
	}
	f.clients = remove(f.clients)
	f.operators = remove(f.operators)
}

func (f *faultyServer) counts() (seen, dropped, duplicated, misrouted int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Seen, f.Dropped, f.Duplicated, f.Misrouted
}

// reconnections counts the CONNECTs with a pid: recovered, or fresh.
func (f *faultyServer) reconnections() (recovered, fresh int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Recovered, f.Fresh
}

func (f *faultyServer) String() string {
	s, d, u, m := f.counts()
	return fmt.Sprintf("fake: %d messages, %d dropped, %d duplicated, %d replies misrouted", s, d, u, m)
}
