package test

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
	"github.com/switchboard/switchboard/config"
	"github.com/switchboard/switchboard/test/wsframe"
)

// Past 80% of the memory budget new connections are answered 503, and the
// sockets holding the most are cut with 1013, before the process would
// run out; the bystander, which holds nothing, is neither cut nor slowed.
// The budget is set a little above what this process holds already, and
// the server shares the process with the test.
func TestMemoryBudgetRefusesAndCuts(t *testing.T) {
	budget := liveHeap() + 96<<20
	s := startServer(t, func(c *config.Config) { c.MemoryLimit, c.MessageTimeout = budget, time.Minute })
	by := newBystander(t, s)
	handshake := func() int {
		res, err := http.Get(s.URL + s.cfg.Path + "/?EIO=4&transport=polling")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}

	// Memory nobody can be cut for: refused, then admitted once it is gone.
	// As large as the budget: over it even if what earlier tests left in
	// this process, counted in the budget, has died since.
	t.Logf("budget %d MB", budget>>20)
	ballast := make([]byte, budget)
	for i := range ballast {
		ballast[i] = 1
	}
	// The guard counts again within staleGC (2 s) of the heap growing
	// without a collection; the margin is for -race on a busy machine.
	waitFor(t, 10*time.Second, func() error {
		if code := handshake(); code != http.StatusServiceUnavailable {
			return errorf("over the budget: handshake %d, want 503", code)
		}
		return nil
	})
	by.check()
	ballast = nil
	waitFor(t, 10*time.Second, func() error {
		if code := handshake(); code != 200 {
			return errorf("back under the budget: handshake %d, want 200", code)
		}
		return nil
	})

	// Sockets that hold 8 MB each of unfinished frames: the largest are cut.
	chunk := []byte(strings.Repeat("x", 8<<20))
	var attackers []*rawSocket
	url := "ws" + strings.TrimPrefix(s.URL, "http") + s.cfg.Path + "/?EIO=4&transport=websocket"
	refused := 0
	for range 16 {
		c, res, err := gws.DefaultDialer.Dial(url, nil)
		if err != nil {
			if res == nil || res.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("attacker's handshake: %v", err)
			}
			refused++ // past the budget already
			continue
		}
		t.Cleanup(func() { _ = c.Close() })
		r := &rawSocket{t: t, ws: c}
		r.read() // the open packet
		r.connect()
		r.sendRaw(wsframe.Header(gws.BinaryMessage, true, 10<<20))
		if _, err := r.ws.UnderlyingConn().Write(chunk); err != nil {
			break // cut while sending
		}
		attackers = append(attackers, r)
	}
	codes := make(chan int, len(attackers))
	for _, r := range attackers {
		go func() {
			_ = r.ws.SetReadDeadline(time.Now().Add(5 * time.Second))
			for {
				if _, _, err := r.ws.ReadMessage(); err != nil {
					ce, _ := err.(*gws.CloseError)
					if ce == nil {
						codes <- 0
					} else {
						codes <- ce.Code
					}
					return
				}
			}
		}()
	}
	cut := 0
	for range attackers {
		if <-codes == gws.CloseTryAgainLater {
			cut++
		}
	}
	t.Logf("budget %d MB: %d of %d attackers holding 8 MB each were cut with 1013; %d more were refused with 503", budget>>20, cut, len(attackers), refused)
	if cut == 0 {
		t.Fatal("no socket was cut past the memory budget")
	}
	by.check()
	waitFor(t, 3*time.Second, func() error {
		if metricLine(t, s, `switchboard_refusals_total{code="memory_budget"}`) == "" || metricLine(t, s, `switchboard_refusals_total{code="server_busy"}`) == "" {
			return errorf("/metrics counts no cuts or no 503s")
		}
		return nil
	})
}

// A socket of the Socket.IO library (Engine.IO 3, socket.io-client 2.x)
// that stops polling holds its unsent output; past the memory budget the
// guard cuts it like any other socket that holds the most (disconnected:
// the library has no close code to give), and the bystander is not cut.
func TestMemoryBudgetCutsLibrarySockets(t *testing.T) {
	budget := liveHeap() + 96<<20
	s := startServer(t, func(c *config.Config) { c.MemoryLimit = budget })
	by := newBystander(t, s)

	// An Engine.IO 3 operator that joins and never polls again.
	base := s.URL + s.cfg.Path + "/?EIO=3&transport=polling"
	res, err := http.Get(base)
	if err != nil {
		t.Fatal(err)
	}
	open, _ := io.ReadAll(res.Body)
	res.Body.Close()
	i := strings.Index(string(open), `"sid":"`)
	if res.StatusCode != 200 || i < 0 {
		t.Fatalf("EIO3 handshake: %d %q", res.StatusCode, open)
	}
	sid := string(open[i+7:])
	sid = sid[:strings.IndexByte(sid, '"')]
	poll := base + "&sid=" + sid
	join := `42["join",{"role":"operator","name":"Eve","operatorId":9}]`
	res, err = http.Post(poll, "text/plain;charset=UTF-8", strings.NewReader(fmt.Sprintf("%d:%s", len(join), join)))
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()

	// A player's 1 MB image reaches both operators: the bystander reads
	// it, the library's operator holds it unsent.
	raw := make([]byte, 768_000)
	copy(raw, "\x89PNG\r\n\x1a\n")
	img := "data:image/png;base64," + base64.StdEncoding.EncodeToString(raw)
	pl := ws(t, s, "player", nil, nil)
	pl.join(s, map[string]any{"role": "client", "name": "Mallory"})
	by.op.expect("newChat")
	pl.emit("clientMessage", map[string]any{"type": "image", "image": img, "mimeType": "image/png"})
	by.op.expectWithin("incomingMessage", 5*time.Second)

	// Past the budget: the guard cuts what can be cut.
	ballast := make([]byte, budget)
	for i := range ballast {
		ballast[i] = 1
	}
	// A poll would take the queue: the cut is read from /metrics first.
	waitFor(t, 10*time.Second, func() error {
		if metricLine(t, s, `switchboard_refusals_total{code="memory_budget"}`) == "" {
			return errorf("past the budget nothing was cut (the library's operator holds a 1 MB image unsent)")
		}
		return nil
	})
	c := &http.Client{Timeout: 5 * time.Second}
	res, err = c.Get(poll)
	if err != nil {
		t.Fatalf("the cut operator's poll: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	status, body := res.StatusCode, string(b)
	if status == 200 && strings.Contains(body, "incomingMessage") {
		t.Fatalf("the library's operator was not cut: its poll got its queue (%d bytes)", len(body))
	}
	runtime.KeepAlive(ballast)
	ballast = nil
	t.Logf("past the budget the library's operator, holding a 1 MB image unsent, was cut: its next poll got %d %.80q", status, body)
	by.check()
}
