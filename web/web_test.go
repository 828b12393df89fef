package web

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchboard/switchboard/messages"
	"github.com/switchboard/switchboard/metrics"
)

// jsonIndex stands for the transport's JSON answer to / and unknown paths.
var jsonIndex = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not found"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"service": "switchboard"})
})

func serve(t *testing.T, o Options) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	if o.SocketPath == "" {
		o.SocketPath = "/chat"
	}
	if err := Register(mux, func(h http.Handler) http.Handler { return h }, o, jsonIndex); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

type answer struct {
	status int
	header http.Header
	body   string
}

func get(t *testing.T, url string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return answer{res.StatusCode, res.Header, string(b)}
}

const browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

// A browser gets the index page; fetch, curl and the npm suite (Accept */*)
// keep getting the JSON index, and unknown paths its 404.
func TestIndexIsHTMLForBrowsersAndJSONForOthers(t *testing.T) {
	srv := serve(t, Options{Pages: true, Dashboard: true, Version: "v9", Env: "development", ImageTypes: []string{"image/png"}})
	page := get(t, srv.URL+"/", "Accept", browser)
	if page.status != 200 || !strings.HasPrefix(page.header.Get("Content-Type"), "text/html") ||
		!strings.Contains(page.body, `href="/demo/widget"`) || !strings.Contains(page.body, `href="/dashboard"`) || !strings.Contains(page.body, "v9") {
		t.Fatalf("index page: %d %v\n%s", page.status, page.header, page.body)
	}
	csp := page.header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("CSP %q", csp)
	}
	for _, accept := range []string{"", "*/*", "application/json"} {
		a := get(t, srv.URL+"/", "Accept", accept)
		if a.status != 200 || !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") || !strings.Contains(a.body, `"service"`) {
			t.Fatalf("Accept %q: %d %s", accept, a.status, a.body)
		}
	}
	if a := get(t, srv.URL+"/nope", "Accept", browser); a.status != 404 || !strings.Contains(a.body, "not found") {
		t.Fatalf("unknown path: %d %s", a.status, a.body)
	}
}

// The pages carry the server's settings for their scripts; the assets
// are served, the templates only rendered.
func TestPagesAndAssets(t *testing.T) {
	srv := serve(t, Options{Pages: true, Dashboard: true, SocketPath: "/support", MaxImageBytes: 4096, MaxTextChars: 99,
		ImageTypes: []string{"image/png", "image/webp"}, OperatorAuth: true})
	w := get(t, srv.URL+"/demo/widget")
	for _, want := range []string{`data-path="/support"`, `data-max-image="4096"`, `data-max-text="99"`, `data-image-types="image/png,image/webp"`, `accept="image/png,image/webp"`, `src="/assets/sio.js"`} {
		if !strings.Contains(w.body, want) {
			t.Fatalf("widget lacks %s:\n%s", want, w.body)
		}
	}
	if c := get(t, srv.URL+"/demo/console"); c.status != 200 || !strings.Contains(c.body, `data-operator-auth="true"`) || !strings.Contains(c.body, `id="op-token"`) {
		t.Fatalf("console: %d %s", c.status, c.body)
	}
	if d := get(t, srv.URL+"/dashboard"); d.status != 200 || !strings.Contains(d.body, `src="/assets/dashboard.js"`) {
		t.Fatalf("dashboard: %d", d.status)
	}
	for file, ctype := range map[string]string{"sio.js": "javascript", "app.css": "text/css", "console.js": "javascript"} {
		a := get(t, srv.URL+"/assets/"+file)
		if a.status != 200 || !strings.Contains(a.header.Get("Content-Type"), ctype) || a.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Fatalf("%s: %d %v", file, a.status, a.header)
		}
	}
	for _, p := range []string{"/assets/widget.html", "/assets/", "/assets/../web.go", "/assets/x/y.js"} {
		if a := get(t, srv.URL+p); a.status != 404 {
			t.Fatalf("%s: %d, want 404", p, a.status)
		}
	}
}

// With the settings off (production's default) nothing of the pages is
// served: every path answers as before.
func TestPagesOff(t *testing.T) {
	srv := serve(t, Options{})
	for _, p := range []string{"/demo/widget", "/demo/console", "/dashboard", "/dashboard/data", "/assets/sio.js"} {
		if a := get(t, srv.URL+p, "Accept", browser); a.status != 404 || !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") {
			t.Fatalf("%s: %d %s", p, a.status, a.body)
		}
	}
	if a := get(t, srv.URL+"/", "Accept", browser); a.status != 200 || !strings.Contains(a.body, `"service"`) {
		t.Fatalf("/ with pages off: %s", a.body)
	}
	// The dashboard alone: no index page, no demo pages.
	srv = serve(t, Options{Dashboard: true})
	if a := get(t, srv.URL+"/demo/console"); a.status != 404 {
		t.Fatalf("console with pages off: %d", a.status)
	}
	if a := get(t, srv.URL+"/dashboard"); a.status != 200 || strings.Contains(a.body, `href="/">Switchboard`) {
		t.Fatalf("dashboard alone: %d", a.status)
	}
}

func verifier(token string) (*messages.Identity, error) {
	switch token {
	case "operator":
		return &messages.Identity{Role: messages.RoleOperator}, nil
	case "player":
		return &messages.Identity{Role: messages.RoleClient}, nil
	}
	return nil, errors.New("bad token")
}

// The dashboard's figures are the server's own metrics and presence; with
// operator authentication they need an operator's token, and a player's
// token or a bad one is refused like none.
func TestFigures(t *testing.T) {
	met := metrics.New()
	met.Connected()
	met.Joined("none", "client")
	met.Received("clientMessage")
	met.Received("clientMessage")
	met.Delivered("incomingMessage", time.Now())
	met.Refused("clientMessage", "rate_limited")
	met.Queue("queued", 3, 3)
	o := Options{
		Dashboard: true, OperatorAuth: true, Verify: verifier, Metrics: met, Version: "v1", Env: "production",
		Health: func(context.Context) (*messages.Health, error) {
			return &messages.Health{Clients: 1, Operators: 0, Away: 0}, nil
		},
		Stats: func(context.Context) (*messages.Stats, error) {
			st := &messages.Stats{}
			for i := range 30 {
				st.Clients = append(st.Clients, messages.ClientInfo{SocketID: string(rune('a' + i)), Name: messages.S("p")})
			}
			return st, nil
		},
		Transports: func() (int, int, bool) { return 0, 0, true },
	}
	srv := serve(t, o)
	for _, h := range [][]string{nil, {"Authorization", "Bearer player"}, {"Authorization", "Bearer nonsense"}, {"Authorization", "Basic b3A6"}} {
		a := get(t, srv.URL+"/dashboard/data", h...)
		if a.status != 401 || !strings.Contains(a.body, `"unauthorized"`) || a.header.Get("WWW-Authenticate") == "" || strings.Contains(a.body, "switchboard_") {
			t.Fatalf("%v: %d %s", h, a.status, a.body)
		}
	}
	a := get(t, srv.URL+"/dashboard/data", "Authorization", "Bearer operator")
	if a.status != 200 {
		t.Fatalf("operator: %d %s", a.status, a.body)
	}
	var f figures
	if err := json.Unmarshal([]byte(a.body), &f); err != nil {
		t.Fatal(err)
	}
	m := f.Metrics
	if m["switchboard_connections"]["client"] != 1 || m["switchboard_events_received_total"]["clientMessage"] != 2 ||
		m["switchboard_refusals_total"]["rate_limited"] != 1 || m["switchboard_rate_limited_total"]["clientMessage"] != 1 ||
		m["switchboard_offline_queue_messages"][""] != 3 || m["switchboard_delivery_seconds_bucket"]["+Inf"] != 1 ||
		m["switchboard_delivery_seconds_count"][""] != 1 || m["go_goroutines"][""] == 0 {
		t.Fatalf("metrics: %v", m)
	}
	if _, ok := m["go_gc_duration_seconds"]; ok {
		t.Fatal("runtime metrics the dashboard does not show are kept")
	}
	if f.Presence.Clients != 1 || len(f.Clients) != listed || f.Clients[0].SocketID != string(rune('a'+29)) || f.Cluster != nil {
		t.Fatalf("presence %+v, %d listed, first %+v", f.Presence, len(f.Clients), f.Clients[0])
	}
	if f.Transports["websocket"] != 1 || f.Transports["polling"] != 0 {
		t.Fatalf("transports %v", f.Transports)
	}

	// Without operator authentication (development) no token is needed.
	o.OperatorAuth = false
	srv = serve(t, o)
	if a := get(t, srv.URL+"/dashboard/data"); a.status != 200 || !strings.Contains(a.body, `"switchboard_connections"`) {
		t.Fatalf("open dashboard: %d %s", a.status, a.body)
	}
}

// A failing figure source is an error answer, not a half-filled one.
func TestFiguresUnavailable(t *testing.T) {
	srv := serve(t, Options{Dashboard: true, Health: func(context.Context) (*messages.Health, error) {
		return nil, errors.New("router stopped")
	}})
	if a := get(t, srv.URL+"/dashboard/data"); a.status != 503 || !strings.Contains(a.body, "router stopped") {
		t.Fatalf("%d %s", a.status, a.body)
	}
}

func TestParseMetrics(t *testing.T) {
	text := `# HELP switchboard_x x
# TYPE switchboard_x counter
switchboard_x{code="a\"b"} 2
switchboard_y 3.5
switchboard_h_bucket{le="0.001"} 1
switchboard_h_bucket{le="+Inf"} 4
switchboard_z{a="1",b="2"} 1e3
other_metric 9
switchboard_bad{code="x"} NaNa
`
	m := parseMetrics([]byte(text))
	if m["switchboard_x"][`a"b`] != 2 || m["switchboard_y"][""] != 3.5 || m["switchboard_h_bucket"]["+Inf"] != 4 ||
		m["switchboard_h_bucket"]["0.001"] != 1 || m["switchboard_z"]["1"] != 1000 || m["other_metric"] != nil || m["switchboard_bad"] != nil {
		t.Fatalf("%v", m)
	}
}

// The pages load nothing from elsewhere: no CDN, no external fonts, no
// inline script or style (the CSP forbids them).
func TestPagesAreSelfContained(t *testing.T) {
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//|@import|url\(\s*["']?https?:|fonts\.googleapis`)
	inline := regexp.MustCompile(`(?i)<script>|<script\s+(type="[^"]*"\s*)?>|\sstyle\s*=|\son[a-z]+\s*=`)
	err := fs.WalkDir(staticFS, "static", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(path)
		if err != nil {
			return err
		}
		if external.Match(b) {
			t.Errorf("%s loads something from elsewhere: %s", path, external.Find(b))
		}
		if strings.HasSuffix(path, ".html") && inline.Match(b) {
			t.Errorf("%s has inline script or style: %s", path, inline.Find(b))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// In a cluster the figures list every node's snapshot: this node's own as
// of now, the others' as the cluster has them. A malformed snapshot is left
// out, the others shown; a failing read of the cluster leaves this node's.
func TestClusterNodeFigures(t *testing.T) {
	met := metrics.New()
	met.Connected()
	other := []byte(`{"timestamp":"2026-01-02T03:04:05.000Z","metrics":{"switchboard_deliveries_total":{"incomingMessage":42}},"transports":{"websocket":3,"polling":1,"upgraded":0}}`)
	read := func(context.Context) (map[string][]byte, error) {
		return map[string][]byte{"n1": []byte(`{"metrics":`), "n2": []byte(`{"stale":"own, replaced"}`), "n3": other}, nil
	}
	var published func() []byte
	o := Options{
		Dashboard: true, Metrics: met,
		Health: func(context.Context) (*messages.Health, error) {
			return &messages.Health{Cluster: &messages.ClusterHealth{Node: "n2", Redis: "ok", Nodes: 3}}, nil
		},
		Transports:     func() (int, int, bool) { return 1, 0, true },
		Publish:        func(f func() []byte) { published = f },
		ClusterFigures: func(ctx context.Context) (map[string][]byte, error) { return read(ctx) },
	}
	srv := serve(t, o)
	var f figures
	if err := json.Unmarshal([]byte(get(t, srv.URL+"/dashboard/data").body), &f); err != nil {
		t.Fatal(err)
	}
	if f.Cluster == nil || len(f.Cluster.Figures) != 2 {
		t.Fatalf("cluster figures: %+v", f.Cluster)
	}
	own, n3 := f.Cluster.Figures[0], f.Cluster.Figures[1]
	if own.Node != "n2" || own.Metrics["switchboard_connections"]["none"] != 1 || own.Transports["polling"] != 1 {
		t.Fatalf("own figures: %+v", own)
	}
	if n3.Node != "n3" || n3.Metrics["switchboard_deliveries_total"]["incomingMessage"] != 42 || n3.Transports["websocket"] != 3 {
		t.Fatalf("n3's figures: %+v", n3)
	}

	// What this node publishes is what the others read.
	if published == nil {
		t.Fatal("no snapshot maker published")
	}
	var snap nodeFigures
	if err := json.Unmarshal(published(), &snap); err != nil || snap.Metrics["switchboard_connections"]["none"] != 1 || snap.Transports["polling"] != 1 || snap.Timestamp == "" {
		t.Fatalf("snapshot %+v %v", snap, err)
	}

	read = func(context.Context) (map[string][]byte, error) { return nil, errors.New("bridge stopped") }
	if err := json.Unmarshal([]byte(get(t, srv.URL+"/dashboard/data").body), &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Cluster.Figures) != 1 || f.Cluster.Figures[0].Node != "n2" {
		t.Fatalf("figures without the cluster's: %+v", f.Cluster.Figures)
	}
}
