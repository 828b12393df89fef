package adversarial

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/client"
)

// bystander is an honest operator (websocket) and player (polling upgraded
// to websocket, socket.io-client's default) chatting beside an attack: a
// message each way every 500 ms, each numbered, timed from its emit to
// its arrival.
//
// It runs in a child process (this test binary, re-run with
// bystanderEnv set), so that its latencies measure the server and not
// the test process, whose attackers, under the race detector, may keep
// both cores busy writing gigabytes: a late timer or a starved reader in
// the attackers' process would otherwise be charged to the server.
type bystander struct {
	op, pl   *client.Client
	clientID string

	mu       sync.Mutex
	sentAt   map[string]time.Time // "p3": the player's third message
	got      map[byte][]int       // 'p': the player's numbers as the operator got them; 'o' the operator's
	lat      []time.Duration
	closed   []string
	emitErrs []string
	sent     int

	stop chan struct{}
	done chan struct{}
}

// join dials and joins the two and starts their conversation.
func (b *bystander) join(url string) error {
	b.sentAt, b.got, b.stop, b.done = map[string]time.Time{}, map[byte][]int{}, make(chan struct{}), make(chan struct{})
	chats := make(chan string, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	b.op, err = client.Dial(ctx, url, client.Options{Transport: client.WebSocket,
		OnEvent: func(name string, p json.RawMessage) {
			switch name {
			case "newChat":
				var m struct {
					ClientID string `json:"clientId"`
				}
				_ = json.Unmarshal(p, &m)
				chats <- m.ClientID
			case "incomingMessage":
				b.arrived('p', p)
			}
		},
		OnClose: func(reason string) { b.lost("operator", reason) }})
	if err != nil {
		return fmt.Errorf("bystander operator: %w", err)
	}
	b.pl, err = client.Dial(ctx, url, client.Options{Transport: client.Upgrade,
		OnEvent: func(name string, p json.RawMessage) {
			if name == "operatorMessage" {
				b.arrived('o', p)
			}
		},
		OnClose: func(reason string) { b.lost("player", reason) }})
	if err != nil {
		return fmt.Errorf("bystander player: %w", err)
	}
	joined := func(c *client.Client, who string, payload map[string]any) error {
		ack := make(chan json.RawMessage, 1)
		if err := c.EmitAck("join", payload, func(r json.RawMessage) { ack <- r }); err != nil {
			return fmt.Errorf("bystander %s join: %w", who, err)
		}
		select {
		case r := <-ack:
			if !strings.Contains(string(r), `"ok":true`) {
				return fmt.Errorf("bystander %s join answered %s", who, r)
			}
		case <-time.After(5 * time.Second):
			return fmt.Errorf("bystander %s join: no answer", who)
		}
		return nil
	}
	if err := joined(b.op, "operator", map[string]any{"role": "operator", "name": "Ana", "operatorId": 1}); err != nil {
		return err
	}
	if err := joined(b.pl, "player", map[string]any{"role": "client", "name": "Bob"}); err != nil {
		return err
	}
	deadline := time.After(5 * time.Second)
	for b.clientID != b.pl.ID() {
		select {
		case b.clientID = <-chats:
		case <-deadline:
			return fmt.Errorf("bystander operator never saw the player's newChat (%q)", b.pl.ID())
		}
	}
	go b.chat()
	return nil
}

// chat sends a message each way every 500 ms until stopped.
func (b *bystander) chat() {
	defer close(b.done)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-b.stop:
			return
		case <-tick.C:
		}
		b.mu.Lock()
		b.sent = n
		now := time.Now()
		b.sentAt["p"+strconv.Itoa(n)], b.sentAt["o"+strconv.Itoa(n)] = now, now
		b.mu.Unlock()
		if err := b.pl.Emit("clientMessage", map[string]any{"type": "text", "message": fmt.Sprintf("p%d", n)}); err != nil {
			b.failed("player", n, err)
		}
		if err := b.op.Emit("operatorMessage", map[string]any{"to": b.clientID, "type": "text", "message": fmt.Sprintf("o%d", n),
			"operatorId": 1, "operatorName": "Ana"}); err != nil {
			b.failed("operator", n, err)
		}
	}
}

func (b *bystander) arrived(dir byte, p json.RawMessage) {
	at := time.Now()
	var m struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(p, &m)
	n, err := strconv.Atoi(strings.TrimPrefix(m.Message, string(dir)))
	if err != nil || !strings.HasPrefix(m.Message, string(dir)) {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got[dir] = append(b.got[dir], n)
	if sent, ok := b.sentAt[m.Message]; ok {
		b.lat = append(b.lat, at.Sub(sent))
	}
}

func (b *bystander) lost(who, reason string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = append(b.closed, who+": "+reason)
}

func (b *bystander) failed(who string, n int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.emitErrs = append(b.emitErrs, fmt.Sprintf("%s #%d: %v", who, n, err))
}

func (b *bystander) halt() {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
}

// bystanderReport is what the child tells the test when it stops.
type bystanderReport struct {
	Sent     int              `json:"sent"`
	Got      map[string][]int `json:"got"`
	Lat      []time.Duration  `json:"lat"`
	Closed   []string         `json:"closed"`
	EmitErrs []string         `json:"emitErrs"`
}

// report stops the conversation and waits (up to 5 s) for what is under
// way.
func (b *bystander) report() bystanderReport {
	b.halt()
	b.mu.Lock()
	sent := b.sent
	b.mu.Unlock()
	waitUntil(5*time.Second, func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		return len(b.got['p']) >= sent && len(b.got['o']) >= sent
	})
	b.mu.Lock()
	defer b.mu.Unlock()
	return bystanderReport{Sent: sent, Got: map[string][]int{"p": b.got['p'], "o": b.got['o']},
		Lat: slices.Clone(b.lat), Closed: b.closed, EmitErrs: b.emitErrs}
}

// bystanderEnv names the server's URL in the child that runs the bystander.
const bystanderEnv = "ADVERSARIAL_BYSTANDER_URL"

// runBystander is the child: it joins, prints "ready", chats until its
// stdin closes, then prints its report as one JSON line.
func runBystander(url string) int {
	b := &bystander{}
	if err := b.join(url); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	rep := b.report()
	b.op.Close()
	b.pl.Close()
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		return 1
	}
	return 0
}

// remoteBystander is the test's handle on the child.
type remoteBystander struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	stderr bytes.Buffer
	once   sync.Once
	rep    bystanderReport
	err    error
}

// startBystander starts the child against s and waits until it chats.
func startBystander(t *testing.T, s *server) *remoteBystander {
	t.Helper()
	b := &remoteBystander{t: t, cmd: exec.Command(os.Args[0], "-test.run=^$")}
	b.cmd.Env = append(os.Environ(), bystanderEnv+"="+s.URL)
	b.cmd.Stderr = &b.stderr
	var err error
	if b.stdin, err = b.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := b.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("start the bystander: %v", err)
	}
	t.Cleanup(func() { b.stopped(); _ = b.cmd.Wait() })
	b.out = bufio.NewReader(stdout)
	line, err := b.out.ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("bystander: %q %v %s", line, err, b.stderr.String())
	}
	return b
}

// stopped ends the conversation and reads the child's report, once.
func (b *remoteBystander) stopped() {
	b.once.Do(func() {
		_ = b.stdin.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			line, err := b.out.ReadBytes('\n')
			if err == nil {
				err = json.Unmarshal(line, &b.rep)
			}
			b.err = err
		}()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = b.cmd.Process.Kill()
			<-done
		}
	})
}

// finish stops the conversation, waits for what is under way, and asserts
// that every message arrived exactly once, in order, with p99 ≤ 100 ms.
// It returns the number of messages and the p99.
func (b *remoteBystander) finish() (int, time.Duration) {
	t := b.t
	t.Helper()
	b.stopped()
	if b.err != nil {
		t.Errorf("bystander report: %v %s", b.err, b.stderr.String())
		return 0, 0
	}
	r := b.rep
	sent := r.Sent
	want := make([]int, sent)
	for i := range want {
		want[i] = i + 1
	}
	for _, dir := range []string{"p", "o"} {
		if !slices.Equal(r.Got[dir], want) {
			t.Errorf("bystander %s messages: got %v, want 1..%d exactly once, in order", map[string]string{"p": "player→operator", "o": "operator→player"}[dir], r.Got[dir], sent)
		}
	}
	if len(r.Closed) > 0 || len(r.EmitErrs) > 0 {
		t.Errorf("bystander disturbed: closed %v, emits failed %v", r.Closed, r.EmitErrs)
	}
	lat := r.Lat
	slices.Sort(lat)
	if len(lat) == 0 {
		t.Errorf("bystander: no message arrived (%d sent each way)", sent)
		return sent, 0
	}
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))+0.999999)-1)] }
	p99 := q(0.99)
	t.Logf("bystander: %d messages each way, latency p50 %s, p99 %s, max %s", sent,
		q(0.5).Round(100*time.Microsecond), p99.Round(100*time.Microsecond), lat[len(lat)-1].Round(100*time.Microsecond))
	if sent < 4 {
		t.Errorf("bystander sent only %d messages each way: too short an attack to judge", sent)
	}
	if p99 > bystanderP99 {
		t.Errorf("bystander p99 %s, over %s", p99, bystanderP99)
	}
	return sent, p99
}
