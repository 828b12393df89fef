package loadtest

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestBlipAndStormFlags(t *testing.T) {
	sc, _, err := parseArgs([]string{"--blip-rate", "2.5", "--storm", "200@3s, 50@4s", "--reconnect-delay", "200ms", "--duration", "10s"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if sc.BlipRate != 2.5 || sc.ReconnectDelay != 200*time.Millisecond || !sc.reconnects() {
		t.Errorf("scenario %+v", sc)
	}
	storms, err := parseStorms(sc.Storm)
	if err != nil || len(storms) != 2 || storms[0] != (storm{200, 3 * time.Second}) || storms[1] != (storm{50, 4 * time.Second}) {
		t.Errorf("storms %+v, %v", storms, err)
	}
	if d := Defaults(); d.reconnects() || d.ReconnectDelay != time.Second {
		t.Errorf("defaults reconnect %v with delay %v: want off, socket.io-client's 1s", d.reconnects(), d.ReconnectDelay)
	}
	for _, c := range []struct{ args, flag string }{
		{"--blip-rate -1", "--blip-rate"},
		{"--storm 100", "--storm"},
		{"--storm 0@1s", "--storm"},
		{"--storm x@1s", "--storm"},
		{"--storm 10@-1s", "--storm"},
		{"--storm 10@40s --duration 30s", "--storm"}, // after the load
		{"--reconnect-delay 0s", "--reconnect-delay"},
	} {
		_, _, err := parseArgs(strings.Fields(c.args), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.flag) {
			t.Errorf("%s: %v, want an error naming %s", c.args, err, c.flag)
		}
	}
}

func TestRecoverySLO(t *testing.T) {
	r := &Result{Recovery: &Recovery{Reconnects: 200, Recovered: 199, Fresh: 1, Time: Summary{P99: 1800, Max: 2500}}}
	for expr, want := range map[string]bool{
		"recovered=100%":         false,
		"recovered>=99%":         true,
		"recovered>=199":         true,
		"fresh=0":                false,
		"fresh<1%":               true,
		"recovery_p99<10s":       true,
		"recovery.p99<1s":        false,
		"recovery.max<=2500ms":   true,
		"recovery_p50<10s,p99<1": true, // message latency is 0 here
	} {
		slo, err := ParseSLO(expr)
		if err != nil {
			t.Errorf("%s: %v", expr, err)
			continue
		}
		if _, ok := slo.Evaluate(r); ok != want {
			t.Errorf("%s: passed %v, want %v", expr, ok, want)
		}
	}
	// A run without reconnections has recovered all of none.
	slo, _ := ParseSLO("recovered=100%")
	if _, ok := slo.Evaluate(&Result{}); !ok {
		t.Error("recovered=100% with no reconnection should pass")
	}
}

// Copies undelivered while a recipient's socket was down and then fresh
// are lost, and explained by the fresh session; others are lost alone.
func TestFreshSessionsExplainTheirLosses(t *testing.T) {
	all := &opSet{n: 2}
	all.members.add(0)
	all.members.add(1)
	sec := int64(time.Second)
	players := []*playerLedger{{
		expected: []*opSet{all, all, all, all},
		sentAt:   []int64{1 * sec, 10 * sec, 20 * sec, 30 * sec},
		fresh:    []gap{{from: 25 * sec, to: 26 * sec}}, // the player's socket changed at 25 s
	}}
	ops := []*operatorLedger{{seen: make([]bitset, 1), replied: make([]bitset, 1)}, {seen: make([]bitset, 1), replied: make([]bitset, 1)}}
	for seq := range 4 {
		ops[0].seen[0].add(seq)
	}
	ops[1].fresh = []gap{{from: 10*sec + sec/2, to: 12 * sec}}
	ops[1].seen[0].add(3)
	// op 1 missed seqs 0 (long before its gap: lost, unexplained), 1 (half
	// a second before the drop: in flight, explained) and 2 (after: lost).
	ops[0].replied[0].add(2) // a reply to a message of the old socket: explained
	ops[0].replied[0].add(3) // a reply to a message of the new socket: lost
	p2o, o2p := account(players, ops, newMetrics())
	if p2o.Lost != 3 || p2o.LostFresh != 1 {
		t.Errorf("player→operator lost %d (fresh %d), want 3 (1)", p2o.Lost, p2o.LostFresh)
	}
	if o2p.Lost != 2 || o2p.LostFresh != 1 {
		t.Errorf("operator→player lost %d (fresh %d), want 2 (1)", o2p.Lost, o2p.LostFresh)
	}
}

// blipScenario drops transports often against a fake that recovers
// socket.io's way: blips at random, and a storm of half the players.
func blipScenario(url string) Scenario {
	sc := quick(url)
	sc.Transport = "websocket"
	sc.Churn = 0
	sc.ImageShare = 0
	sc.BlipRate = 15
	sc.Storm = "20@1s"
	sc.ReconnectDelay = 50 * time.Millisecond
	sc.Duration = 3 * time.Second
	sc.ReplyChance = 0.5
	return sc
}

// Against a server that recovers, every drop is recovered and the ledger
// is exact: a replay is not a duplicate, a message emitted while down is
// sent after the reconnection.
func TestBlipsAndStormRecovered(t *testing.T) {
	f := startFaultyServer(t, 0, 0, 0)
	f.Recovery = true
	res := runScenario(t, blipScenario(f.URL))
	rc := res.Recovery
	if rc == nil {
		t.Fatal("no recovery section")
	}
	recovered, fresh := f.reconnections()
	t.Logf("fake: %d recovered, %d fresh; %+v", recovered, fresh, *rc)
	if rc.Blips < 10 || rc.Storms != 1 || rc.StormDrops < 15 {
		t.Errorf("blips %d, storms %d dropping %d: want about 45, 1, 20", rc.Blips, rc.Storms, rc.StormDrops)
	}
	if rc.Reconnects != rc.Blips+rc.StormDrops || rc.Recovered != rc.Reconnects || rc.Recovered != int64(recovered) || rc.Fresh != 0 || rc.Time.Count != uint64(rc.Recovered) {
		t.Errorf("reconnects %d of %d drops, %d recovered, %d fresh, %d timed", rc.Reconnects, rc.Blips+rc.StormDrops, rc.Recovered, rc.Fresh, rc.Time.Count)
	}
	if rc.Time.P50 < 20 || rc.Time.Max > 5000 {
		t.Errorf("recovery time p50 %v ms max %v ms: want about the 50 ms delay", rc.Time.P50, rc.Time.Max)
	}
	for name, a := range map[string]Accounts{"player→operator": res.Messages.PlayerToOperator, "operator→player": res.Messages.OperatorToPlayer} {
		if a.Sent == 0 || a.Delivered != a.Expected || a.Lost != 0 || a.Duplicated != 0 || a.Misrouted != 0 || a.LostFresh != 0 {
			t.Errorf("%s: %+v, want all delivered once", name, a)
		}
	}
	if res.Connections.Failures != 0 {
		t.Errorf("failures %d: %v", res.Connections.Failures, res.Errors)
	}
	var b bytes.Buffer
	_ = res.WriteTable(&b)
	if !strings.Contains(b.String(), "drop→recovered") || !strings.Contains(b.String(), "storm drops") {
		t.Errorf("table lacks the recovery sections:\n%s", b.String())
	}
}

// Against a server that gives pids but never recovers, every reconnection
// is fresh and rejoins; what the old sockets could not get is lost, and
// the fresh sessions explain it.
func TestBlipsWithFreshSessions(t *testing.T) {
	f := startFaultyServer(t, 0, 0, 0)
	f.NoRecover = true
	sc := blipScenario(f.URL)
	res := runScenario(t, sc)
	rc := res.Recovery
	recovered, fresh := f.reconnections()
	t.Logf("fake: %d recovered, %d fresh; %+v", recovered, fresh, *rc)
	if rc.Reconnects == 0 || rc.Recovered != 0 || rc.Fresh != rc.Reconnects || rc.Fresh != int64(fresh) || rc.Time.Count != 0 {
		t.Errorf("%+v: want every reconnection fresh", *rc)
	}
	p2o, o2p := res.Messages.PlayerToOperator, res.Messages.OperatorToPlayer
	if p2o.Duplicated != 0 || o2p.Duplicated != 0 || p2o.Misrouted != 0 || o2p.Misrouted != 0 {
		t.Errorf("fresh sessions made copies: %+v %+v", p2o, o2p)
	}
	if p2o.Lost != p2o.LostFresh || o2p.Lost != o2p.LostFresh {
		t.Errorf("lost %d/%d, explained by fresh sessions %d/%d: want all of it", p2o.Lost, o2p.Lost, p2o.LostFresh, o2p.LostFresh)
	}
	// Rejoined players still talk: most messages still arrive.
	if p2o.Delivered < p2o.Expected*8/10 {
		t.Errorf("only %d of %d delivered after rejoins", p2o.Delivered, p2o.Expected)
	}
	slo, _ := ParseSLO("recovered=100%")
	if _, ok := slo.Evaluate(res); ok {
		t.Error("recovered=100% passed with every session fresh")
	}
}

// Against a real Switchboard with connection-state recovery (on by
// default): 200 players and 5 operators, a few blips a second and a storm
// of 100 players at once; every drop is recovered and every message is
// delivered exactly once.
func TestSwitchboardRecoversBlipsAndStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("a 6 s run")
	}
	sc := Defaults()
	sc.URL = startSwitchboard(t)
	sc.Players, sc.Operators = 200, 5
	sc.Rate = 0.5 // 100 messages/s, 500 deliveries/s
	sc.Duration = 6 * time.Second
	sc.Ramp = 1000
	sc.ReplyChance, sc.ReplyThink = 0.2, 300*time.Millisecond // 4 replies/s per operator
	sc.TypingShare, sc.TypingTime = 0.2, 100*time.Millisecond
	sc.Settle = 300 * time.Millisecond
	sc.Drain = 5 * time.Second
	sc.BlipRate = 4
	sc.Storm = "100@2s"
	sc.ReconnectDelay = 200 * time.Millisecond
	sc.SLO = "loss=0,duplicated=0,misrouted=0,recovered=100%,fresh=0,recovery_p99<5s"
	res := runScenario(t, sc)
	rc := res.Recovery
	t.Logf("recovery %+v", *rc)
	if !res.Passed {
		var b bytes.Buffer
		_ = res.WriteTable(&b)
		t.Errorf("thresholds missed:\n%s", b.String())
	}
	if rc.Blips < 10 || rc.StormDrops < 90 || rc.Reconnects != rc.Blips+rc.StormDrops {
		t.Errorf("%d blips and %d storm drops, %d reconnections: want about 24 and 100, each reconnected", rc.Blips, rc.StormDrops, rc.Reconnects)
	}
	if res.Messages.PlayerToOperator.Sent < 400 || res.Messages.OperatorToPlayer.Sent < 50 {
		t.Errorf("too little traffic to judge: %+v", res.Messages)
	}
	if res.Connections.Failures != 0 {
		t.Errorf("failures %d: %v", res.Connections.Failures, res.Errors)
	}
}
