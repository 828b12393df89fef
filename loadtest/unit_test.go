package loadtest

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/client"
)

func TestHistogramQuantilesWithinBucketWidth(t *testing.T) {
	var h Histogram
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]int64, 100000)
	for i := range vals {
		v := int64(math.Exp(rng.Float64()*14)) + rng.Int64N(50) // 0 µs .. 1.2 s, log-spread
		vals[i] = v
		h.Record(time.Duration(v) * time.Microsecond)
	}
	slices.Sort(vals)
	s := h.Snapshot()
	if s.Total != uint64(len(vals)) || s.Max != vals[len(vals)-1] {
		t.Fatalf("total %d max %d, want %d and %d", s.Total, s.Max, len(vals), vals[len(vals)-1])
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		exact := vals[int(math.Ceil(q*float64(len(vals))))-1]
		got := s.Quantile(q)
		if got < exact || float64(got-exact) > float64(exact)/64+1 {
			t.Errorf("q%.3f = %d µs, exact %d: want at most one bucket (1/64) above", q, got, exact)
		}
	}
	for v := int64(0); v < 1<<20; v = v*5/4 + 1 {
		if i := bucketOf(v); bucketHigh(i) < v || (i > 0 && bucketHigh(i-1) >= v) {
			t.Fatalf("value %d in bucket %d whose top is %d", v, i, bucketHigh(i))
		}
	}
}

func TestHistogramDifferenceIsTheInterval(t *testing.T) {
	var h Histogram
	for range 1000 {
		h.Record(time.Millisecond)
	}
	before := h.Snapshot()
	for range 10 {
		h.Record(40 * time.Millisecond)
	}
	d := h.Snapshot().Sub(before)
	if d.Total != 10 || d.Quantile(0.5) < 40000 || d.Quantile(0.5) > 40700 {
		t.Errorf("difference: total %d p50 %d µs, want 10 values of 40 ms", d.Total, d.Quantile(0.5))
	}
}

func TestMarkerRoundTrip(t *testing.T) {
	p := newPayloads(100, 64)
	text := p.text(formatMarker(markPlayer, 12, 345, 1700000000123456789), 100)
	if len(text) != 100 {
		t.Errorf("padded text is %d bytes, want 100", len(text))
	}
	m, ok := parseMarker(text)
	if !ok || m.reply || m.slot != 12 || m.seq != 345 || m.sent != 1700000000123456789 {
		t.Errorf("parse %q = %+v, %v", text, m, ok)
	}
	if m, ok := parseMarker(formatMarker(markReply, 1, 2, 3)); !ok || !m.reply {
		t.Errorf("reply marker: %+v %v", m, ok)
	}
	for _, bad := range []string{"", "hello", "lt:1:2", "lt:a:2:3", "lt:-1:2:3", "xx:1:2:3"} {
		if _, ok := parseMarker(bad); ok {
			t.Errorf("parseMarker(%q) accepted", bad)
		}
	}
	for _, size := range []int{64, 4096, 60000} {
		img := newPayloads(0, size).image
		raw, err := base64.StdEncoding.DecodeString(img)
		if err != nil {
			t.Fatalf("image is not base64: %v", err)
		}
		if _, err := png.Decode(bytes.NewReader(raw)); err != nil {
			t.Errorf("%d: not a valid PNG: %v", size, err)
		}
		if size >= 4096 && len(img) != size {
			t.Errorf("image is %d bytes of base64, want %d", len(img), size)
		}
	}
}

func TestTransportMix(t *testing.T) {
	m, err := parseMix("mix")
	if err != nil {
		t.Fatal(err)
	}
	counts := map[client.Transport]int{}
	for i := range 10000 {
		counts[m.pick(unit(7, uint64(i), 0))]++
	}
	if counts[client.WebSocket] < 7700 || counts[client.Polling] < 850 || counts[client.Upgrade] < 850 {
		t.Errorf("mix picked %v, want about 80/10/10 %%", counts)
	}
	if m, _ := parseMix("polling"); m.socketsPer() != 2 {
		t.Errorf("polling holds %v sockets each, want 2", m.socketsPer())
	}
	for _, bad := range []string{"carrier-pigeon", "websocket:x", "websocket:0"} {
		if _, err := parseMix(bad); err == nil {
			t.Errorf("parseMix(%q) accepted", bad)
		}
	}
}

func TestSLO(t *testing.T) {
	r := &Result{}
	r.Latency.PlayerToOperator.P99 = 12
	r.Latency.OperatorToPlayer.P99 = 30
	r.Latency.Connect.P99 = 700
	r.Messages.Accounts = Accounts{Expected: 1000, Delivered: 999, Lost: 1}
	r.Throughput.SentPerS = 950
	r.Players, r.Operators = Population{Target: 100, Connected: 100}, Population{Target: 2, Connected: 1}
	for expr, want := range map[string]bool{
		"p99<50ms":            true,
		"p99<20ms":            false, // the worse direction counts
		"p2o.p99<20":          true,
		"connect.p99<=0.7s":   true,
		"loss=0":              false,
		"loss<0.2%":           true,
		"lost<=1":             true,
		"throughput>=900":     true,
		"connected>=99%":      true,
		"connected==100%":     false,
		"p99<50ms,loss<0.05%": false,
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
	for _, bad := range []string{"p99", "p98<5ms", "loss<x", "p99<<5"} {
		if _, err := ParseSLO(bad); err == nil {
			t.Errorf("ParseSLO(%q) accepted", bad)
		}
	}
}

func TestScenarioFromYAMLAndFlags(t *testing.T) {
	path := filepath.Join("testdata", "staging.yaml")
	sc, out, err := parseArgs([]string{"--config", path, "--players", "7", "--quiet"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Players != 7 || sc.Operators != 50 || sc.Rate != 0.05 || sc.Duration != 10*time.Minute || sc.Transport != "mix" || sc.OperatorSecret == "" || !out.quiet {
		t.Errorf("flags should win over the file, the file over defaults: %+v %+v", sc, out)
	}
	if sc.URL != "https://staging.example.com" || sc.Path != "/chat" {
		t.Errorf("url %q path %q", sc.URL, sc.Path)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	_ = os.WriteFile(bad, []byte("playerz: 5\n"), 0o644)
	if _, _, err := parseArgs([]string{"--config", bad}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "playerz") {
		t.Errorf("unknown key: %v", err)
	}
	if _, _, err := parseArgs([]string{"--rate", "-1"}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--rate") {
		t.Errorf("negative rate: %v", err)
	}
}

func TestSignedTokens(t *testing.T) {
	tk := &tokens{secret: [2][]byte{nil, []byte("s3cret")}, issuer: "crm", ttl: time.Hour}
	auth, err := tk.auth(map[string]any{"sub": "lt-operator-1", "role": "operator"}, true)
	if err != nil {
		t.Fatal(err)
	}
	tok := auth["token"].(string)
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token %q", tok)
	}
	mac := hmac.New(sha256.New, []byte("s3cret"))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if base64.RawURLEncoding.EncodeToString(mac.Sum(nil)) != parts[2] {
		t.Error("signature does not verify")
	}
	body, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	_ = json.Unmarshal(body, &claims)
	if claims["role"] != "operator" || claims["iss"] != "crm" || claims["exp"].(float64)-claims["iat"].(float64) != 3600 {
		t.Errorf("claims %v", claims)
	}
	if a, _ := tk.auth(map[string]any{}, false); a != nil {
		t.Errorf("players have no secret, yet auth %v", a)
	}
	fixed := &tokens{fixed: [2]string{"p", "o"}}
	if a, _ := fixed.auth(map[string]any{}, false); a["token"] != "p" {
		t.Errorf("fixed player token: %v", a)
	}
	if got := tk.mode(); got != "players none, operators HS256 JWT" {
		t.Errorf("mode %q", got)
	}
}

// The JSON report has the keys that dashboards read, and the HTML report
// is one file with inline SVG charts and nothing fetched or run.
func TestReportFiles(t *testing.T) {
	sc := Defaults()
	e := &env{m: newMetrics(), tokens: &tokens{}}
	e.m.P2O.Record(3 * time.Millisecond)
	samples := []Sample{{T: 1, SentPerS: 10, P2OP99: 3}, {T: 2, SentPerS: 12, P2OP99: 4}}
	now := time.Now()
	r := buildResult(&sc, e, 5, 1, Accounts{Sent: 1, Expected: 1, Delivered: 1}, Accounts{}, window{from: now.Add(-time.Second), to: now, sent: 1, delivered: 1}, samples)
	dir := t.TempDir()
	if err := r.WriteJSON(filepath.Join(dir, "r.json")); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "r.json"))
	var rep map[string]any
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{
		"players.connected", "operators.connected", "messages.sent", "messages.delivered", "messages.lost",
		"messages.duplicated", "messages.misrouted",
		"latency.player_to_operator.p50_ms", "latency.player_to_operator.p90_ms", "latency.player_to_operator.p99_ms",
		"latency.player_to_operator.p999_ms", "latency.player_to_operator.max_ms",
		"latency.operator_to_player.p50_ms", "latency.operator_to_player.p999_ms", "latency.operator_to_player.max_ms",
	} {
		var v any = rep
		for _, k := range strings.Split(key, ".") {
			m, _ := v.(map[string]any)
			v = m[k]
		}
		if _, ok := v.(float64); !ok {
			t.Errorf("report lacks %s (got %v)", key, v)
		}
	}
	if strings.Contains(string(b), "token") && strings.Contains(string(b), "secret") {
		t.Error("the report must not carry tokens")
	}
	if err := r.WriteHTML(filepath.Join(dir, "r.html")); err != nil {
		t.Fatal(err)
	}
	h, _ := os.ReadFile(filepath.Join(dir, "r.html"))
	page := string(h)
	if strings.Count(page, "<svg") != 4 || !strings.Contains(page, "<polyline") {
		t.Error("HTML report lacks its charts")
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "src=") || strings.Contains(page, "href=") {
		t.Error("HTML report must be self-contained")
	}
}

func TestTooManyParticipantsForTheFileLimit(t *testing.T) {
	limit, err := raiseFileLimit()
	if err != nil || limit == 0 {
		t.Skip("no file limit here")
	}
	sc := Defaults()
	sc.URL = "http://127.0.0.1:1"
	sc.Players = limit
	_, err = Run(context.Background(), sc, RunOptions{})
	if err == nil || !strings.Contains(err.Error(), "file descriptors") {
		t.Errorf("want a clear refusal, got %v", err)
	}
}

func TestAccountingJoinsTheLedgers(t *testing.T) {
	all := &opSet{n: 2}
	all.members.add(0)
	all.members.add(1)
	one := &opSet{n: 1}
	one.members.add(0)
	players := []*playerLedger{
		{expected: []*opSet{all, all, nil, one}},
		{expected: []*opSet{all}},
	}
	ops := []*operatorLedger{{seen: make([]bitset, 2), replied: make([]bitset, 2)}, {seen: make([]bitset, 2), replied: make([]bitset, 2)}}
	ops[0].seen[0].add(0)
	ops[0].seen[0].add(1)
	ops[0].seen[0].add(3)
	ops[1].seen[0].add(0)
	ops[1].seen[0].add(3) // op 1 was not joined when seq 3 was sent
	ops[1].seen[1].add(0)
	ops[0].copies = 2
	ops[0].replied[1].add(0)
	players[1].replies.add(0)
	ops[1].replied[0].add(1) // never arrived
	p2o, o2p := account(players, ops, newMetrics())
	want := Accounts{Sent: 4, Expected: 7, Delivered: 5, Lost: 2, Duplicated: 2, Unexpected: 1, LossRatio: 2.0 / 7}
	if p2o != want {
		t.Errorf("player→operator %+v, want %+v", p2o, want)
	}
	if o2p.Sent != 2 || o2p.Delivered != 1 || o2p.Lost != 1 {
		t.Errorf("operator→player %+v", o2p)
	}
}

func TestTimerQueueOrder(t *testing.T) {
	base := time.Now()
	rng := rand.New(rand.NewPCG(1, 2))
	var q timerQueue
	for i := range 1000 {
		q.push(timed{at: base.Add(time.Duration(rng.IntN(50)) * time.Millisecond), seq: uint64(i)})
	}
	prev := q.pop()
	for len(q) > 0 {
		cur := q.pop()
		if cur.at.Before(prev.at) || (cur.at.Equal(prev.at) && cur.seq < prev.seq) {
			t.Fatalf("popped %v (seq %d) after %v (seq %d)", cur.at.Sub(base), cur.seq, prev.at.Sub(base), prev.seq)
		}
		prev = cur
	}
}
