package test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/actors"
	"github.com/switchboard/switchboard/config"
)

// The cluster suite: several Switchboard nodes sharing one Redis, each test
// with a redis-server of its own on a free loopback port. .ci/run installs
// redis-server; on a machine without it these tests are skipped.

// redisProc is a redis-server that the test started.
type redisProc struct {
	t    *testing.T
	port int
	cmd  *exec.Cmd
}

func (r *redisProc) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d", r.port) }

func startRedis(t *testing.T) *redisProc {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not installed (apt-get install redis-server; .ci/run installs it)")
	}
	r := &redisProc{t: t, port: freePort(t)}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *redisProc) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--port", fmt.Sprint(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("redis-server: %v", err)
	}
	waitFor(r.t, 5*time.Second, func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", r.port), time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_, _ = c.Write([]byte("PING\r\n"))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "+PONG") {
			return fmt.Errorf("redis not ready: %q %v", line, err)
		}
		return nil
	})
}

// stop kills redis-server at once, as a crash or a lost network would.
func (r *redisProc) stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Short heartbeats make a killed node known dead within about 3 s rather
// than 12 s; dead-after keeps a generous margin over a loaded machine's
// scheduling pauses.
const (
	testHeartbeat = 300 * time.Millisecond
	testDeadAfter = 2 * time.Second
)

// startCluster starts n in-process nodes on one Redis, named n1…, and waits
// until each sees all of them.
func startCluster(t *testing.T, r *redisProc, n int, opts ...func(*actors.Options)) []*server {
	t.Helper()
	nodes := make([]*server, n)
	for i := range nodes {
		nodes[i] = startServer(t, func(c *config.Config) {
			c.RedisURL, c.NodeID = r.URL(), fmt.Sprintf("n%d", i+1)
			c.ClusterHeartbeat, c.ClusterDeadAfter = testHeartbeat, testDeadAfter
		}, opts...)
	}
	waitNodes(t, nodes, n)
	return nodes
}

// waitNodes waits until every node's /health is ok and counts want nodes.
func waitNodes(t *testing.T, nodes []*server, want int) {
	t.Helper()
	waitFor(t, 10*time.Second, func() error {
		for _, s := range nodes {
			h := clusterHealth(t, s)
			if h.Status != "ok" || h.Cluster.Nodes != want {
				return fmt.Errorf("%s: status %s, %d nodes, want ok and %d", s.URL, h.Status, h.Cluster.Nodes, want)
			}
		}
		return nil
	})
}

type clusterHealthResp struct {
	healthResp
	Node    string `json:"node"`
	Cluster struct {
		Node  string `json:"node"`
		Redis string `json:"redis"`
		Nodes int    `json:"nodes"`
	} `json:"cluster"`
	Local struct{ Total, Clients, Operators int } `json:"local"`
}

func clusterHealth(t testing.TB, s *server) clusterHealthResp {
	t.Helper()
	var h clusterHealthResp
	getJSON(t, s.URL+"/health", &h)
	return h
}

// joinOn joins c, connected to node `on`, and waits until every node lists it.
func (c *client) joinOn(nodes []*server, payload map[string]any) {
	c.t.Helper()
	c.emit("join", payload)
	list := "clients"
	if payload["role"] == "operator" {
		list = "operators"
	}
	waitListed(c.t, nodes, list, c.id(), true)
}

func waitListed(t testing.TB, nodes []*server, list, id string, want bool) {
	t.Helper()
	waitFor(t, 5*time.Second, func() error {
		for _, s := range nodes {
			var st map[string]any
			getJSON(t, s.URL+"/stats", &st)
			found := false
			for _, e := range st[list].([]any) {
				if e.(map[string]any)["socketId"] == id {
					found = true
				}
			}
			if found != want {
				return fmt.Errorf("%s: %s listed in %s: %v, want %v", s.URL, id, list, found, want)
			}
		}
		return nil
	})
}

func opOn(t *testing.T, nodes []*server, on *server, mode int, label string, id int) *client {
	t.Helper()
	c := dial(t, on, label, mode, nil)
	c.joinOn(nodes, map[string]any{"role": "operator", "name": label, "operatorId": id})
	return c
}

func clientOn(t *testing.T, nodes []*server, on *server, mode int, label string, payload map[string]any) *client {
	t.Helper()
	c := dial(t, on, label, mode, nil)
	if payload == nil {
		payload = map[string]any{"role": "client", "name": label}
	}
	c.joinOn(nodes, payload)
	return c
}

// expectAll waits for these events in any order, each exactly once, and
// returns them by "name payload".
func (c *client) expectAll(want ...string) {
	c.t.Helper()
	left := map[string]int{}
	for _, w := range want {
		left[w]++
	}
	deadline := time.After(5 * time.Second)
	for n := 0; n < len(want); n++ {
		select {
		case ev := <-c.events:
			key := ev.Name + " " + ev.Raw
			if left[key] == 0 {
				c.t.Fatalf("%s: unexpected %s; still waiting for %v", c.label, key, left)
			}
			left[key]--
		case <-deadline:
			c.t.Fatalf("%s: still waiting for %v", c.label, left)
		}
	}
}

// TestClusterContract drives the contract across three nodes, with
// operators and clients spread over them and over the transports: every
// event reaches each socket that should have it once, and no other.
func TestClusterContract(t *testing.T) {
	r := startRedis(t)
	nodes := startCluster(t, r, 3)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]

	early := clientOn(t, nodes, n1, 1, "early", map[string]any{"role": "client", "name": "Early", "phone": "1"})
	op1 := opOn(t, nodes, n1, 0, "op1", 1)
	op2 := opOn(t, nodes, n2, 2, "op2", 2)
	op1.expectJSON("newChat", fmt.Sprintf(`{"clientId":%q,"username":"Early","phone":"1"}`, early.id()), false)
	op2.expectJSON("newChat", fmt.Sprintf(`{"clientId":%q,"username":"Early","phone":"1"}`, early.id()), false)

	// newChat to operators on every node when a player joins anywhere.
	cl := dial(t, n3, "cl", 0, nil)
	cl.joinOn(nodes, map[string]any{"role": "client", "name": "Bob", "username": "bob77", "phone": "+34 600"})
	newChat := fmt.Sprintf(`{"clientId":%q,"username":"bob77","phone":"+34 600"}`, cl.id())
	op1.expectJSON("newChat", newChat, false)
	op2.expectJSON("newChat", newChat, false)

	// The list of all players, in join order, when an operator joins.
	op3 := dial(t, n3, "op3", 1, nil)
	op3.joinOn(nodes, map[string]any{"role": "operator", "name": "op3", "operatorId": 3})
	op3.expectJSON("newChat", fmt.Sprintf(`{"clientId":%q,"username":"Early","phone":"1"}`, early.id()), false)
	op3.expectJSON("newChat", newChat, false)

	// incomingMessage and clientTyping to operators on every node.
	cl.emit("clientMessage", map[string]any{"type": "text", "message": "hola ñ"})
	msg := fmt.Sprintf(`{"from":%q,"type":"text","message":"hola ñ","timestamp":"<ts>"}`, cl.id())
	for _, op := range []*client{op1, op2, op3} {
		op.expectJSON("incomingMessage", msg, true)
	}
	cl.emit("clientTyping", map[string]any{"isTyping": true})
	for _, op := range []*client{op1, op2, op3} {
		op.expectJSON("clientTyping", fmt.Sprintf(`{"from":%q,"isTyping":true}`, cl.id()), false)
	}

	// operatorMessage to a player on another node; operatorBroadcast to
	// every other operator, the sender's socket excepted; one timestamp.
	op1.emit("operatorMessage", map[string]any{"to": cl.id(), "type": "text", "message": "hi", "operatorId": 1, "operatorName": "Ana"})
	got := cl.expectJSON("operatorMessage", `{"type":"text","message":"hi","operatorName":"Ana","timestamp":"<ts>"}`, true)
	bc := fmt.Sprintf(`{"clientId":%q,"operatorId":1,"operatorName":"Ana","type":"text","message":"hi","timestamp":"<ts>"}`, cl.id())
	for _, op := range []*client{op2, op3} {
		if b := op.expectJSON("operatorBroadcast", bc, true); b.Data["timestamp"] != got.Data["timestamp"] {
			t.Fatalf("%s: timestamp %v, client's %v", op.label, b.Data["timestamp"], got.Data["timestamp"])
		}
	}
	op2.emit("operatorTyping", map[string]any{"to": cl.id(), "isTyping": true})
	cl.expectJSON("operatorTyping", `{"isTyping":true}`, false)

	// chatEnded to operators on every node: by the client, by an operator
	// of another node (the client hears it too), and on disconnect.
	cl.emit("endChat", map[string]any{})
	for _, op := range []*client{op1, op2, op3} {
		op.expectJSON("chatEnded", fmt.Sprintf(`{"clientId":%q}`, cl.id()), false)
	}
	op3.emit("endChat", map[string]any{"clientId": early.id()})
	for _, op := range []*client{op1, op2, op3} {
		op.expectJSON("chatEnded", fmt.Sprintf(`{"clientId":%q}`, early.id()), false)
	}
	early.expectJSON("chatEnded", `{"message":"El operador ha finalizado la conversación"}`, false)

	// An unknown target is still refused, cluster-wide.
	op2.emit("operatorMessage", map[string]any{"to": "no-such-socket", "type": "text", "message": "x", "operatorId": 2, "operatorName": "B"})
	op2.expectRefused("operatorMessage", "unknown_target")

	// /health and /stats on any node report the cluster's totals.
	for _, s := range nodes {
		h := clusterHealth(t, s)
		if h.Status != "ok" || h.Connections.Clients != 2 || h.Connections.Operators != 3 || h.Cluster.Nodes != 3 || h.Cluster.Redis != "ok" || h.Node == "" {
			t.Fatalf("%s /health: %+v", s.URL, h)
		}
		var st struct {
			Summary struct{ TotalConnections, TotalClients, TotalOperators int }
			Node    string
			Nodes   []struct {
				Node               string
				Clients, Operators int
			}
		}
		getJSON(t, s.URL+"/stats", &st)
		if st.Summary.TotalClients != 2 || st.Summary.TotalOperators != 3 || len(st.Nodes) != 3 || st.Nodes[0].Node != st.Node {
			t.Fatalf("%s /stats: %+v", s.URL, st)
		}
	}

	id := cl.id()
	cl.conn.Close()
	for _, op := range []*client{op1, op2, op3} {
		op.expectJSON("chatEnded", fmt.Sprintf(`{"clientId":%q,"reason":"disconnect"}`, id), false)
	}
	// Nothing twice, nothing else.
	for _, c := range []*client{op1, op2, op3, early} {
		c.expectNothing()
	}
}

// TestClusterNotStickyPolling: a long-poll for a session of another node
// is refused at once with Engine.IO's "Session ID unknown", not held.
func TestClusterNotStickyPolling(t *testing.T) {
	r := startRedis(t)
	nodes := startCluster(t, r, 2)
	res, err := http.Get(nodes[0].URL + "/chat/?EIO=4&transport=polling")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	m := regexp.MustCompile(`"sid":"([^"]+)"`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("handshake: %s", body)
	}
	for _, method := range []string{"GET", "POST"} {
		start := time.Now()
		req, _ := http.NewRequest(method, nodes[1].URL+"/chat/?EIO=4&transport=polling&sid="+string(m[1]), strings.NewReader("40"))
		res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("%s on the other node: %v", method, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 400 || !strings.Contains(string(b), `"Session ID unknown"`) || time.Since(start) > time.Second {
			t.Fatalf("%s on the other node: %d %s after %s; want 400 Session ID unknown at once", method, res.StatusCode, b, time.Since(start))
		}
	}
}

// TestClusterNodeKilled: kill -9 of a node (a separate process); the
// operators of the other nodes get chatEnded for each of its players within
// the bound, once; then the node restarts with the same id and rejoins.
func TestClusterNodeKilled(t *testing.T) {
	r := startRedis(t)
	bin := buildBinary(t)
	nodes := startCluster(t, r, 2)
	victim := startNodeProcess(t, bin, r, "n3")
	all := append(nodes, victim.srv)
	waitNodes(t, nodes, 3)

	op1 := opOn(t, all, nodes[0], 0, "op1", 1)
	op2 := opOn(t, all, nodes[1], 1, "op2", 2)
	a := clientOn(t, all, victim.srv, 0, "a", nil)
	b := clientOn(t, all, victim.srv, 1, "b", nil)
	stay := clientOn(t, all, nodes[1], 0, "stay", nil)
	for _, op := range []*client{op1, op2} {
		op.expectAll(
			"newChat "+fmt.Sprintf(`{"clientId":%q,"username":"a"}`, a.id()),
			"newChat "+fmt.Sprintf(`{"clientId":%q,"username":"b"}`, b.id()),
			"newChat "+fmt.Sprintf(`{"clientId":%q,"username":"stay"}`, stay.id()),
		)
	}

	aID, bID := a.id(), b.id() // a client forgets its id once disconnected
	killed := time.Now()
	victim.kill()
	bound := testDeadAfter + 2*testHeartbeat + 2*time.Second
	for _, op := range []*client{op1, op2} {
		deadline := time.After(bound - time.Since(killed))
		// With recovery on (the default) its players are away, not gone:
		// they may recover on another node within the window.
		left := map[string]bool{
			fmt.Sprintf(`{"clientId":%q}`, aID): true,
			fmt.Sprintf(`{"clientId":%q}`, bID): true,
		}
		for len(left) > 0 {
			select {
			case ev := <-op.events:
				if ev.Name != "chatAway" || !left[ev.Raw] {
					t.Fatalf("%s: unexpected %s %s", op.label, ev.Name, ev.Raw)
				}
				delete(left, ev.Raw)
			case <-deadline:
				t.Fatalf("%s: no chatAway within %s of kill -9 for %v", op.label, bound, left)
			}
		}
	}
	t.Logf("players of the killed node away %s after kill -9", time.Since(killed).Round(100*time.Millisecond))
	waitNodes(t, nodes, 2)

	// The node comes back under the same id: it rejoins cleanly.
	again := startNodeProcess(t, bin, r, "n3")
	all = append(nodes, again.srv)
	waitNodes(t, all, 3)
	c := clientOn(t, all, again.srv, 0, "c", nil)
	for _, op := range []*client{op1, op2} {
		op.expectJSON("newChat", fmt.Sprintf(`{"clientId":%q,"username":"c"}`, c.id()), false)
		op.expectNothing()
	}
	// A node that just started reads the others' presence within a
	// heartbeat or two of seeing them: wait for it, do not sample (with a
	// margin for -race on a busy machine).
	waitFor(t, 10*time.Second, func() error {
		for i, s := range all {
			// a and b stay listed (away) until the window ends on the nodes
			// that saw them; a node started since does not know them (their
			// stored sessions are not read into presence: docs/CONTINUITY.md).
			want := 4
			if i == 2 {
				want = 2
			}
			if h := clusterHealth(t, s); h.Connections.Clients != want || h.Connections.Operators != 2 {
				return fmt.Errorf("%s: %+v", s.URL, h.Connections)
			}
		}
		return nil
	})
	op1.emit("operatorMessage", map[string]any{"to": c.id(), "type": "text", "message": "back", "operatorId": 1, "operatorName": "Ana"})
	c.expect("operatorMessage")
	op2.expect("operatorBroadcast")
}

// TestClusterRedisOutage: Redis is killed and restarted mid-run. Nodes keep
// serving their own sockets, report degraded, and when Redis is back
// resynchronise: operators learn what they missed, once.
func TestClusterRedisOutage(t *testing.T) {
	r := startRedis(t)
	nodes := startCluster(t, r, 2)
	n1, n2 := nodes[0], nodes[1]
	op1 := opOn(t, nodes, n1, 0, "op1", 1)
	op2 := opOn(t, nodes, n2, 0, "op2", 2)
	c1 := clientOn(t, nodes, n1, 0, "c1", nil)
	c2 := clientOn(t, nodes, n2, 1, "c2", nil)
	drain(op1, op2)

	r.stop()
	waitFor(t, 10*time.Second, func() error {
		for _, s := range nodes {
			if h := clusterHealth(t, s); h.Status != "degraded" || h.Cluster.Redis != "unreachable" {
				return fmt.Errorf("%s: %s %s", s.URL, h.Status, h.Cluster.Redis)
			}
		}
		return nil
	})

	// Local traffic is unaffected.
	c1.emit("clientMessage", map[string]any{"type": "text", "message": "local"})
	op1.expect("incomingMessage")
	op1.emit("operatorMessage", map[string]any{"to": c1.id(), "type": "text", "message": "ok", "operatorId": 1, "operatorName": "Ana"})
	c1.expect("operatorMessage")
	c3 := dial(t, n2, "c3", 0, nil)
	c3.emit("join", map[string]any{"role": "client", "name": "c3"})
	op2.expectJSON("newChat", fmt.Sprintf(`{"clientId":%q,"username":"c3"}`, c3.id()), false)
	id2 := c2.id()
	c2.conn.Close()
	op2.expectJSON("chatEnded", fmt.Sprintf(`{"clientId":%q,"reason":"disconnect"}`, id2), false)
	op2.expectNothing() // nothing of n1's traffic crossed
	op1.expectNothing()

	r.start()
	waitNodes(t, nodes, 2)
	// op1 missed c3's join and c2's departure: it hears of both, once.
	op1.expectAll(
		"newChat "+fmt.Sprintf(`{"clientId":%q,"username":"c3"}`, c3.id()),
		"chatEnded "+fmt.Sprintf(`{"clientId":%q,"reason":"disconnect"}`, id2),
	)
	waitListed(t, nodes, "clients", c3.id(), true)
	waitListed(t, nodes, "clients", id2, false)
	for _, s := range nodes {
		if h := clusterHealth(t, s); h.Connections.Clients != 2 || h.Connections.Operators != 2 {
			t.Fatalf("%s after the outage: %+v", s.URL, h.Connections)
		}
	}
	// Cross-node traffic flows again, once.
	c3.emit("clientMessage", map[string]any{"type": "text", "message": "after"})
	op1.expect("incomingMessage")
	op2.expect("incomingMessage")
	// A player's frames are stored: one sent before c3's node has
	// subscribed again reaches c3 by its catch-up, once. Typing is volatile
	// (published, not stored), as on Socket.IO: sent before that, it would
	// be dropped, so it goes once the message has shown c3's node listening
	// (sent first, it was lost now and then: once in three full runs today).
	op1.emit("operatorMessage", map[string]any{"to": c3.id(), "type": "text", "message": "back", "operatorId": 1, "operatorName": "Ana"})
	c3.expect("operatorMessage")
	op2.expect("operatorBroadcast")
	op1.emit("operatorTyping", map[string]any{"to": c3.id(), "isTyping": true})
	c3.expect("operatorTyping")
	for _, c := range []*client{op1, op2, c1, c3} {
		c.expectNothing()
	}
}

// nodeProcess is a Switchboard binary run by the test, to be killed.
type nodeProcess struct {
	srv *server
	cmd *exec.Cmd
	mu  sync.Mutex
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

func buildBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "switchboard-bin")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "switchboard")
		out, err := exec.Command("go", "build", "-o", builtBin, "../cmd/switchboard").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func startNodeProcess(t *testing.T, bin string, r *redisProc, id string) *nodeProcess {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "PORT=0", "SWITCHBOARD_HOST=127.0.0.1", "REDIS_URL="+r.URL(), "SWITCHBOARD_NODE_ID="+id, "SWITCHBOARD_LOG_LEVEL=error",
		"SWITCHBOARD_CLUSTER_HEARTBEAT="+testHeartbeat.String(), "SWITCHBOARD_CLUSTER_DEAD_AFTER="+testDeadAfter.String())
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &nodeProcess{cmd: cmd}
	t.Cleanup(p.kill)
	lines := bufio.NewScanner(stdout)
	re := regexp.MustCompile(`^\s+listening\s+(\S+:\d+)\s*$`)
	for lines.Scan() {
		if m := re.FindStringSubmatch(lines.Text()); m != nil {
			p.srv = &server{URL: "http://" + m[1], cfg: &config.Config{Path: "/chat"}}
			break
		}
	}
	if p.srv == nil {
		t.Fatalf("node %s printed no listening line", id)
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	return p
}

// kill is kill -9: no graceful shutdown, no goodbye to the cluster.
func (p *nodeProcess) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		p.cmd = nil
	}
}
