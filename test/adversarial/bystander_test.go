package adversarial

import (
	"context"
	"encoding/json"
	"fmt"
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
type bystander struct {
	t        *testing.T
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

// startBystander joins the two and starts their conversation.
func startBystander(t *testing.T, s *server) *bystander {
	t.Helper()
	b := &bystander{t: t, sentAt: map[string]time.Time{}, got: map[byte][]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	chats := make(chan string, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	b.op, err = client.Dial(ctx, s.URL, client.Options{Transport: client.WebSocket,
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
		t.Fatalf("bystander operator: %v", err)
	}
	b.pl, err = client.Dial(ctx, s.URL, client.Options{Transport: client.Upgrade,
		OnEvent: func(name string, p json.RawMessage) {
			if name == "operatorMessage" {
				b.arrived('o', p)
			}
		},
		OnClose: func(reason string) { b.lost("player", reason) }})
	if err != nil {
		t.Fatalf("bystander player: %v", err)
	}
	t.Cleanup(func() { b.halt(); b.op.Close(); b.pl.Close() })
	joined := func(c *client.Client, who string, payload map[string]any) {
		ack := make(chan json.RawMessage, 1)
		if err := c.EmitAck("join", payload, func(r json.RawMessage) { ack <- r }); err != nil {
			t.Fatalf("bystander %s join: %v", who, err)
		}
		select {
		case r := <-ack:
			if !strings.Contains(string(r), `"ok":true`) {
				t.Fatalf("bystander %s join answered %s", who, r)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("bystander %s join: no answer", who)
		}
	}
	joined(b.op, "operator", map[string]any{"role": "operator", "name": "Ana", "operatorId": 1})
	joined(b.pl, "player", map[string]any{"role": "client", "name": "Bob"})
	deadline := time.After(5 * time.Second)
	for b.clientID != b.pl.ID() {
		select {
		case b.clientID = <-chats:
		case <-deadline:
			t.Fatalf("bystander operator never saw the player's newChat (%q)", b.pl.ID())
		}
	}
	go b.chat()
	return b
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

// finish stops the conversation, waits for what is under way, and asserts
// that every message arrived exactly once, in order, with p99 ≤ 100 ms.
// It returns the number of messages and the p99.
func (b *bystander) finish() (int, time.Duration) {
	t := b.t
	t.Helper()
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
	want := make([]int, sent)
	for i := range want {
		want[i] = i + 1
	}
	for _, dir := range []byte{'p', 'o'} {
		if !slices.Equal(b.got[dir], want) {
			t.Errorf("bystander %s messages: got %v, want 1..%d exactly once, in order", map[byte]string{'p': "player→operator", 'o': "operator→player"}[dir], b.got[dir], sent)
		}
	}
	if len(b.closed) > 0 || len(b.emitErrs) > 0 {
		t.Errorf("bystander disturbed: closed %v, emits failed %v", b.closed, b.emitErrs)
	}
	lat := slices.Clone(b.lat)
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
