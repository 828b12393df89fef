package test

import (
	"fmt"
	"testing"
	"time"
)

// dashboardData is what a test reads of /dashboard/data in a cluster.
type dashboardData struct {
	Node    string `json:"node"`
	Cluster struct {
		Node    string `json:"node"`
		Alive   int    `json:"alive"`
		Figures []struct {
			Node       string                        `json:"node"`
			Timestamp  string                        `json:"timestamp"`
			Metrics    map[string]map[string]float64 `json:"metrics"`
			Transports map[string]int                `json:"transports"`
		} `json:"figures"`
	} `json:"cluster"`
}

// nodeFigures is one node's figures as s's dashboard shows them (ok false
// when it shows none for that node).
func nodeFigures(t testing.TB, s *server, node string) (ts string, m map[string]map[string]float64, tr map[string]int, ok bool) {
	t.Helper()
	var d dashboardData
	getJSON(t, s.URL+"/dashboard/data", &d)
	for _, f := range d.Cluster.Figures {
		if f.Node == node {
			return f.Timestamp, f.Metrics, f.Transports, true
		}
	}
	return "", nil, nil, false
}

func total(m map[string]map[string]float64, name string) float64 {
	sum := 0.0
	for _, v := range m[name] {
		sum += v
	}
	return sum
}

// TestClusterDashboardShowsEveryNode: node B's dashboard shows node A's own
// figures (connections by role and transport, events in, deliveries out)
// and follows them while traffic runs on A alone; a node that leaves
// drops off.
func TestClusterDashboardShowsEveryNode(t *testing.T) {
	r := startRedis(t)
	nodes := startCluster(t, r, 2)
	a, b := nodes[0], nodes[1]

	op := opOn(t, nodes, a, 0, "op", 1)
	cl := clientOn(t, nodes, a, 1, "player", nil) // long-polling
	op.expect("newChat")

	var base map[string]map[string]float64
	var firstTS string
	waitFor(t, 10*time.Second, func() error {
		ts, m, tr, ok := nodeFigures(t, b, "n1")
		if !ok {
			return fmt.Errorf("n2's dashboard shows no figures of n1")
		}
		if m["switchboard_connections"]["client"] != 1 || m["switchboard_connections"]["operator"] != 1 {
			return fmt.Errorf("n1's connections as n2 shows them: %v", m["switchboard_connections"])
		}
		if tr["polling"] != 1 || tr["websocket"] != 1 {
			return fmt.Errorf("n1's transports as n2 shows them: %v", tr)
		}
		base, firstTS = m, ts
		return nil
	})
	// B's own figures are its own: nobody is connected there.
	_, own, _, ok := nodeFigures(t, b, "n2")
	if !ok || total(own, "switchboard_connections") != 0 {
		t.Fatalf("n2's own figures: %v (shown: %v)", own["switchboard_connections"], ok)
	}

	// Within the default message burst.
	const n = 10
	for i := range n {
		cl.emit("clientMessage", map[string]any{"type": "text", "message": fmt.Sprint("m", i)})
		op.expect("incomingMessage")
	}
	waitFor(t, 10*time.Second, func() error {
		ts, m, _, _ := nodeFigures(t, b, "n1")
		in := m["switchboard_events_received_total"]["clientMessage"] - base["switchboard_events_received_total"]["clientMessage"]
		out := m["switchboard_deliveries_total"]["incomingMessage"] - base["switchboard_deliveries_total"]["incomingMessage"]
		if in < n || out < n || ts == firstTS {
			return fmt.Errorf("n1 as n2 shows it: %v clientMessages in, %v delivered since the start, snapshot %s (first %s)", in, out, ts, firstTS)
		}
		return nil
	})
	// Nothing of that traffic is counted on B.
	_, own, _, _ = nodeFigures(t, b, "n2")
	if got := total(own, "switchboard_events_received_total"); got != 0 {
		t.Fatalf("n2 counts %v events of its own", got)
	}
	// And A's dashboard shows B.
	if _, _, _, ok := nodeFigures(t, a, "n2"); !ok {
		waitFor(t, 5*time.Second, func() error {
			if _, _, _, ok := nodeFigures(t, a, "n2"); !ok {
				return fmt.Errorf("n1's dashboard shows no figures of n2")
			}
			return nil
		})
	}

	a.stop(t)
	waitFor(t, 10*time.Second, func() error {
		if _, _, _, ok := nodeFigures(t, b, "n1"); ok {
			return fmt.Errorf("n2 still shows n1's figures after n1 stopped")
		}
		return nil
	})
}
