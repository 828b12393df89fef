package test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/config"
)

// transportsShown is the dashboard's count of sockets by transport.
func transportsShown(t testing.TB, s *server) (map[string]int, float64) {
	t.Helper()
	var d struct {
		Metrics    map[string]map[string]float64 `json:"metrics"`
		Transports map[string]int                `json:"transports"`
	}
	getJSON(t, s.URL+"/dashboard/data", &d)
	sockets := 0.0
	for _, v := range d.Metrics["switchboard_connections"] {
		sockets += v
	}
	return d.Transports, sockets
}

// eio3Handshake opens an Engine.IO 3 (socket.io-client 2.x) long-polling
// session, which the Socket.IO library serves.
func eio3Handshake(t *testing.T, s *server) {
	t.Helper()
	res, err := http.Get(s.URL + "/socket.io/?EIO=3&transport=polling")
	if err != nil {
		t.Fatalf("EIO3 handshake: %v", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || !strings.Contains(string(b), `"sid"`) {
		t.Fatalf("EIO3 handshake: %d %q", res.StatusCode, b)
	}
}

// TestDashboardCountsLibrarySessionsByTransport: a socket of the Socket.IO
// library (Engine.IO 3 beside the native server, or every socket with
// SWITCHBOARD_WEBSOCKET=library) that is long-polling counts as polling on
// the dashboard, not as a websocket.
func TestDashboardCountsLibrarySessionsByTransport(t *testing.T) {
	for _, library := range []bool{false, true} {
		t.Run(fmt.Sprintf("library-websockets=%v", library), func(t *testing.T) {
			s := startServer(t, func(c *config.Config) {
				c.AllowEIO3, c.Path = true, "/socket.io"
				if library {
					c.WebSocketServer = "library"
				}
			})
			native := dial(t, s, "native", 0, nil) // a websocket from its start
			native.join(s, map[string]any{"role": "operator", "name": "Op"})
			eio3Handshake(t, s)
			waitFor(t, 5*time.Second, func() error {
				tr, sockets := transportsShown(t, s)
				if sockets != 2 || tr["polling"] != 1 || tr["websocket"] != 1 || tr["upgraded"] != 0 {
					return fmt.Errorf("%v sockets, transports %v; want 2: 1 polling, 1 websocket", sockets, tr)
				}
				return nil
			})
		})
	}
}
