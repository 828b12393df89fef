package test

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/switchboard/switchboard/config"
)

// An operator whose socket stops reading is disconnected once its unsent
// bytes pass the limit; the other operator gets every message, in time.
// Over the native websocket server and over the library's.
func TestSlowConsumerIsDisconnected(t *testing.T) {
	for _, server := range []string{"native", "library"} {
		t.Run(server, func(t *testing.T) { slowConsumer(t, server) })
	}
}

func slowConsumer(t *testing.T, server string) {
	s := startServer(t, func(c *config.Config) {
		c.MaxPendingBytes = 1 << 20
		c.MessageRate, c.MessageBurst = 1000, 1000
		c.WebSocketServer = server
	})
	// The stalled operator: a raw websocket that joins, then never reads.
	u := strings.Replace(s.URL, "http", "ws", 1) + "/chat/?EIO=4&transport=websocket"
	stalled, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	if _, _, err := stalled.ReadMessage(); err != nil { // open
		t.Fatal(err)
	}
	_ = stalled.WriteMessage(websocket.TextMessage, []byte("40"))
	if _, _, err := stalled.ReadMessage(); err != nil { // CONNECT
		t.Fatal(err)
	}
	_ = stalled.WriteMessage(websocket.TextMessage, []byte(`42["join",{"role":"operator","name":"stalled","operatorId":1}]`))

	good := ws(t, s, "good", nil, nil)
	good.join(s, map[string]any{"role": "operator", "name": "good", "operatorId": 2})
	cl := ws(t, s, "cl", nil, nil)
	cl.join(s, map[string]any{"role": "client", "name": "Bob"})
	good.expect("newChat")

	raw := make([]byte, 150_000)
	copy(raw, "\xff\xd8\xff\xe0")
	_, _ = rand.Read(raw[4:])
	img := "data:image/jpeg;base64," + base64.StdEncoding.EncodeToString(raw)
	// 20 MB in all: far past the socket buffers and the limit. Each message
	// waits for the reading operator to have the one before, so it never
	// has more than one image unread and stays under the limit however slow
	// the machine, while the stalled one falls further behind each time.
	const n = 100
	start := time.Now()
	for i := range n {
		cl.emit("clientMessage", map[string]any{"type": "image", "image": img, "name": fmt.Sprint(i), "mimeType": "image/jpeg"})
		ev := good.expectWithin("incomingMessage", 20*time.Second)
		if ev.Data["name"] != fmt.Sprint(i) {
			t.Fatalf("message %d arrived as %v", i, ev.Data["name"])
		}
	}
	t.Logf("the reading operator got %d messages of %d KB in %s", n, len(img)/1000, time.Since(start).Round(time.Millisecond))
	waitFor(t, 10*time.Second, func() error {
		if h := health(t, s); h.Connections.Operators != 1 {
			return fmt.Errorf("stalled operator still joined: %+v", h.Connections)
		}
		return nil
	})
	// The cut-off is counted once, where the dashboard reads it.
	if got := metricLine(t, s, `switchboard_refusals_total{code="slow_consumer"}`); got != "1" {
		t.Fatalf("slow-consumer cut-offs counted %q, want 1", got)
	}
}

// metricLine is the value of one series in s's /metrics ("" if absent).
func metricLine(t *testing.T, s *server, series string) string {
	t.Helper()
	res, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}
