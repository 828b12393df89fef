package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/switchboard/switchboard/config"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// quick is a small scenario that exercises every behaviour: both
// directions, typing, images, churn with and without endChat, and all
// three transports. Each operator replies about 6 times a second, under
// Switchboard's default limit of 10 per socket.
func quick(url string) Scenario {
	sc := Defaults()
	sc.URL = url
	sc.Players, sc.Operators = 40, 4
	sc.Rate = 3
	sc.Duration = 3 * time.Second
	sc.Ramp = 400
	sc.TextSize = 200
	sc.ImageShare, sc.ImageSize = 0.1, 4096
	sc.TypingShare, sc.TypingTime = 0.3, 100*time.Millisecond
	sc.ReplyChance, sc.ReplyThink = 0.2, 200*time.Millisecond
	sc.Churn, sc.ChurnEndChat = 10, 0.5
	sc.Transport = "mix"
	sc.Settle = 200 * time.Millisecond
	sc.Drain = 2 * time.Second
	return sc
}

func runScenario(t *testing.T, sc Scenario) *Result {
	t.Helper()
	res, err := Run(context.Background(), sc, RunOptions{})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if testing.Verbose() {
		var b bytes.Buffer
		_ = res.WriteTable(&b)
		t.Log(b.String())
	}
	return res
}

// Against a real Switchboard every message is accounted for exactly:
// each reaches every operator joined when it was sent, each reply its
// player, once, and nothing else arrives.
func TestSwitchboardAccountsForEveryMessage(t *testing.T) {
	res := runScenario(t, quick(startSwitchboard(t)))
	p2o, o2p := res.Messages.PlayerToOperator, res.Messages.OperatorToPlayer
	if p2o.Sent < 200 || o2p.Sent < 30 {
		t.Fatalf("too little traffic to judge: %d messages, %d replies", p2o.Sent, o2p.Sent)
	}
	if p2o.Expected != p2o.Sent*4 {
		t.Errorf("expected deliveries = %d, want every message × 4 operators = %d", p2o.Expected, p2o.Sent*4)
	}
	for name, a := range map[string]Accounts{"player→operator": p2o, "operator→player": o2p} {
		if a.Delivered != a.Expected || a.Lost != 0 || a.Duplicated != 0 || a.Misrouted != 0 || a.Unexpected != 0 || a.Refused != 0 {
			t.Errorf("%s: %+v, want all delivered once and nothing else", name, a)
		}
	}
	if res.Latency.PlayerToOperator.Count != uint64(p2o.Delivered) || res.Latency.OperatorToPlayer.Count != uint64(o2p.Delivered) {
		t.Errorf("latency counts %d/%d, want one per delivery %d/%d", res.Latency.PlayerToOperator.Count, res.Latency.OperatorToPlayer.Count, p2o.Delivered, o2p.Delivered)
	}
	if res.Connections.Departures == 0 {
		t.Error("no player churned: the scenario does not test churn")
	}
	// Under the race detector the server occasionally drops a connection
	// whose first event arrives before it has registered the namespace
	// (zishang520 writes CONNECT first). The player reconnects and, since
	// it had sent nothing yet, the accounting above stays exact.
	for kind, n := range res.Errors {
		if !strings.HasPrefix(kind, "disconnected (") || n > 2 {
			t.Errorf("errors: %v", res.Errors)
			break
		}
	}
	if res.Connections.Failures > 0 {
		t.Logf("%d connections dropped by the server: %v", res.Connections.Failures, res.Errors)
	}
	// A churning player may be between its connections when the load ends.
	if res.Players.Peak != 40 || res.Players.Connected < 35 || res.Operators.Connected != 4 {
		t.Errorf("connected: peak %d, at the end %d players and %d operators", res.Players.Peak, res.Players.Connected, res.Operators.Connected)
	}
	if res.Latency.Join.Count < 40 || res.Latency.Connect.Count < 44 {
		t.Errorf("join %d, connect %d timed: want every one", res.Latency.Join.Count, res.Latency.Connect.Count)
	}
}

// Against a server that spoils a known share, the tool reports exactly
// that share: what it dropped as lost, what it doubled as duplicated, what
// it sent to the wrong player as misrouted (and lost).
func TestFaultyServerSharesAreReported(t *testing.T) {
	f := startFaultyServer(t, 10, 25, 8) // 10 % dropped, 4 % doubled, 12.5 % of replies misrouted
	sc := quick(f.URL)
	sc.Transport = "websocket"
	sc.Churn = 0 // the fake forgets a player that leaves; keep the shares exact
	sc.ReplyChance = 1
	res := runScenario(t, sc)
	t.Log(f)
	seen, dropped, duplicated, misrouted := f.counts()
	p2o, o2p := res.Messages.PlayerToOperator, res.Messages.OperatorToPlayer
	const ops = 4
	if p2o.Sent != int64(seen) {
		t.Fatalf("sent %d, the server saw %d", p2o.Sent, seen)
	}
	if p2o.Lost != int64(dropped*ops) || p2o.Duplicated != int64(duplicated*ops) || p2o.Misrouted != 0 {
		t.Errorf("player→operator %+v; the server dropped %d and doubled %d messages for %d operators", p2o, dropped, duplicated, ops)
	}
	if got, want := p2o.LossRatio, float64(dropped)/float64(seen); got != want || want < 0.09 {
		t.Errorf("loss ratio %.4f, want %.4f (about 10 %%)", got, want)
	}
	if o2p.Misrouted != int64(misrouted) || o2p.Lost != int64(misrouted) || o2p.Duplicated != 0 || misrouted == 0 {
		t.Errorf("operator→player %+v; the server misrouted %d replies", o2p, misrouted)
	}
	if res.Passed != true {
		t.Error("no thresholds were set, yet the run did not pass")
	}
}

// A missed threshold makes the command exit non-zero (99, as k6 does), a
// met one zero; the report files are written either way.
func TestThresholdsSetTheExitCode(t *testing.T) {
	f := startFaultyServer(t, 5, 0, 0)
	dir := t.TempDir()
	args := []string{"--url", f.URL, "--players", "10", "--operators", "2", "--rate", "5", "--duration", "1s",
		"--settle", "200ms", "--drain", "1s", "--quiet", "--report", filepath.Join(dir, "r.json"), "--html", filepath.Join(dir, "r.html")}
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), append(args, "--slo", "p99<10s,loss=0"), &out, &errOut); code != ExitThresholdMiss {
		t.Fatalf("exit %d, want %d with loss=0 missed\nstdout:\n%s\nstderr:\n%s", code, ExitThresholdMiss, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "FAIL  loss=0") {
		t.Errorf("table does not show the missed threshold:\n%s", out.String())
	}
	var rep map[string]any
	b, err := os.ReadFile(filepath.Join(dir, "r.json"))
	if err != nil || json.Unmarshal(b, &rep) != nil {
		t.Fatalf("report: %v", err)
	}
	if rep["passed"] != false {
		t.Errorf("report passed = %v", rep["passed"])
	}
	out.Reset()
	if code := Main(context.Background(), append(args, "--slo", "p99<10s,loss<50%"), &out, &errOut); code != ExitOK {
		t.Fatalf("exit %d, want 0 with thresholds met\n%s\n%s", code, out.String(), errOut.String())
	}
	if code := Main(context.Background(), []string{"--slo", "p99<<5"}, &out, &errOut); code != ExitUsage {
		t.Errorf("bad --slo: exit %d, want %d", code, ExitUsage)
	}
}

// A few thousand participants against a Switchboard process, within the
// CI budget (2,400 sockets; about 30 s with the race detector).
func TestThousandsOfParticipants(t *testing.T) {
	if testing.Short() {
		t.Skip("large run")
	}
	sc := Defaults()
	sc.URL = startSwitchboardProcess(t)
	sc.Players, sc.Operators = 2390, 10
	sc.Rate = 0.2 // 478 messages/s, 4,780 deliveries/s
	sc.Ramp = 1000
	sc.Duration = 8 * time.Second
	sc.ReplyChance, sc.ReplyThink = 0.1, 500*time.Millisecond // about 5 replies/s per operator, under the 10/s limit
	sc.Settle = 500 * time.Millisecond
	sc.Drain = 3 * time.Second
	sc.SLO = "loss=0,duplicated=0,misrouted=0,connected>=100%"
	res := runScenario(t, sc)
	if !res.Passed {
		var b bytes.Buffer
		_ = res.WriteTable(&b)
		t.Errorf("thresholds missed:\n%s", b.String())
	}
	if res.Messages.PlayerToOperator.Sent < 2000 {
		t.Errorf("only %d messages sent", res.Messages.PlayerToOperator.Sent)
	}
}

// Under routing (auto, and claim with the operators claiming) each player
// message is expected at its chat's owner alone, and arrives there once:
// one delivery per message, every reply at its player, nothing misrouted.
func TestSwitchboardRoutingOwnerAlone(t *testing.T) {
	for _, mode := range []string{"auto", "claim"} {
		t.Run(mode, func(t *testing.T) {
			url := startSwitchboard(t, func(c *config.Config) { c.Routing, c.MaxChatsPerOperator = mode, 100 })
			sc := quick(url)
			sc.Routing = mode
			res := runScenario(t, sc)
			p2o, o2p := res.Messages.PlayerToOperator, res.Messages.OperatorToPlayer
			if p2o.Sent < 100 || o2p.Sent < 10 {
				t.Fatalf("too little traffic to judge: %d messages, %d replies", p2o.Sent, o2p.Sent)
			}
			if p2o.Expected != p2o.Sent-p2o.Refused {
				t.Errorf("expected deliveries = %d, want one per message (%d)", p2o.Expected, p2o.Sent-p2o.Refused)
			}
			for name, a := range map[string]Accounts{"player→operator": p2o, "operator→player": o2p} {
				if a.Delivered != a.Expected || a.Lost != 0 || a.Duplicated != 0 || a.Misrouted != 0 || a.Unexpected != 0 {
					t.Errorf("%s: %+v, want all delivered once and nothing else", name, a)
				}
			}
			if d := res.Messages.DeliveriesPerMessage; d < 0.99 || d > 1.01 {
				t.Errorf("deliveries per message %.3f, want 1", d)
			}
		})
	}
}
