package test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	sbclient "github.com/switchboard/switchboard/client"
	"github.com/switchboard/switchboard/config"
)

const testSecret = "0123456789abcdef0123456789abcdef-operators"

// ws dials our own client over websocket with optional auth and headers.
func ws(t *testing.T, s *server, label string, auth map[string]any, header http.Header) *client {
	t.Helper()
	c := &client{t: t, label: label, events: make(chan event, 1024)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sc, err := sbclient.Dial(ctx, s.URL, sbclient.Options{Path: s.cfg.Path, Auth: auth, Header: header,
		OnEvent: func(name string, p json.RawMessage) {
			ev := event{Name: name, Raw: string(p)}
			_ = json.Unmarshal(p, &ev.Data)
			c.events <- ev
		}})
	if err != nil {
		t.Fatalf("%s: %v", label, err)
	}
	c.conn = sc
	t.Cleanup(sc.Close)
	return c
}

// emitAck emits with an acknowledgement and returns the reply.
func (c *client) emitAck(event string, payload any) map[string]any {
	c.t.Helper()
	got := make(chan json.RawMessage, 1)
	if err := c.conn.(*sbclient.Client).EmitAck(event, payload, func(r json.RawMessage) { got <- r }); err != nil {
		c.t.Fatal(err)
	}
	select {
	case r := <-got:
		var m map[string]any
		if err := json.Unmarshal(r, &m); err != nil {
			c.t.Fatalf("ack %s: %v", r, err)
		}
		return m
	case <-time.After(3 * time.Second):
		c.t.Fatalf("%s: no ack for %s", c.label, event)
	}
	return nil
}

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAcknowledgements(t *testing.T) {
	s := startServer(t, nil)
	op := ws(t, s, "op", nil, nil)
	if r := op.emitAck("join", map[string]any{"role": "operator", "name": "Ana", "operatorId": 1}); r["ok"] != true || r["id"] == "" {
		t.Fatalf("join ack %v", r)
	}
	cl := ws(t, s, "cl", nil, nil)
	if r := cl.emitAck("join", map[string]any{"role": "client", "name": "Bob"}); r["ok"] != true {
		t.Fatalf("join ack %v", r)
	}
	op.expect("newChat")
	r := cl.emitAck("clientMessage", map[string]any{"type": "text", "message": "hola"})
	in := op.expect("incomingMessage")
	if r["ok"] != true || r["id"] == "" || r["timestamp"] != in.Data["timestamp"] {
		t.Fatalf("ack %v for %v", r, in.Data)
	}
	r2 := cl.emitAck("clientMessage", map[string]any{"type": "text", "message": "again"})
	if r2["id"] == r["id"] {
		t.Fatalf("two messages share id %v", r["id"])
	}
	op.expect("incomingMessage")
	// Refused with an ack: the answer is the ack, not a chatError event.
	r = cl.emitAck("operatorMessage", map[string]any{"to": cl.id(), "type": "text", "message": "x"})
	if e, _ := r["error"].(map[string]any); r["ok"] != false || e["code"] != "wrong_role" || e["message"] == "" {
		t.Fatalf("refusal ack %v", r)
	}
	r = cl.emitAck("clientMessage", map[string]any{"type": "video"})
	if e, _ := r["error"].(map[string]any); r["ok"] != false || e["code"] != "invalid_type" {
		t.Fatalf("refusal ack %v", r)
	}
	cl.expectNothing()
	op.expectNothing()
}

func TestOperatorAuthentication(t *testing.T) {
	dir := t.TempDir()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	pemFile := filepath.Join(dir, "op.pem")
	_ = os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwksFile := filepath.Join(dir, "jwks.json")
	b64 := func(i *big.Int) string { return base64.RawURLEncoding.EncodeToString(i.FillBytes(make([]byte, 32))) }
	_ = os.WriteFile(jwksFile, []byte(fmt.Sprintf(`{"keys":[{"kty":"EC","crv":"P-256","x":%q,"y":%q}]}`, b64(ecKey.X), b64(ecKey.Y))), 0o600)

	s := startServer(t, func(c *config.Config) {
		c.JWTSecret, c.JWTPublicKeyFile, c.JWTJWKSFile, c.JWTAudience = testSecret, pemFile, jwksFile, "switchboard"
	})
	now := time.Now()
	good := jwt.MapClaims{"sub": "op-42", "name": "Ana Token", "aud": "switchboard", "exp": now.Add(time.Hour).Unix()}
	cl := ws(t, s, "cl", nil, nil)
	cl.join(s, map[string]any{"role": "client", "name": "Bob"})

	refused := []struct {
		name  string
		token string
	}{
		{"no token", ""},
		{"expired", sign(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.MapClaims{"sub": "x", "aud": "switchboard", "exp": now.Add(-time.Hour).Unix()})},
		{"not yet valid", sign(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.MapClaims{"sub": "x", "aud": "switchboard", "exp": now.Add(time.Hour).Unix(), "nbf": now.Add(time.Hour).Unix()})},
		{"forged", sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-123"), good)},
		{"wrong audience", sign(t, jwt.SigningMethodHS256, []byte(testSecret), jwt.MapClaims{"sub": "x", "aud": "other", "exp": now.Add(time.Hour).Unix()})},
		{"alg none", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ4In0."},
		{"garbage", "not-a-jwt"},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			var auth map[string]any
			if c.token != "" {
				auth = map[string]any{"token": c.token}
			}
			op := ws(t, s, "op", auth, nil)
			op.emit("join", map[string]any{"role": "operator", "name": "Mallory", "operatorId": 1})
			op.expectRefused("join", "unauthorized")
			// It receives nothing of any conversation, before or after.
			cl.emit("clientMessage", map[string]any{"type": "text", "message": "secret"})
			op.expectNothing()
			if h := health(t, s); h.Connections.Operators != 0 {
				t.Fatalf("an unauthenticated operator joined: %+v", h.Connections)
			}
		})
	}

	accepted := []struct {
		name   string
		auth   map[string]any
		header http.Header
	}{
		{"HS256 in auth", map[string]any{"token": sign(t, jwt.SigningMethodHS256, []byte(testSecret), good)}, nil},
		{"RS256 as a bearer header", nil, http.Header{"Authorization": {"Bearer " + sign(t, jwt.SigningMethodRS256, rsaKey, good)}}},
		{"ES256 from JWKS", map[string]any{"token": sign(t, jwt.SigningMethodES256, ecKey, good)}, nil},
	}
	for _, c := range accepted {
		t.Run(c.name, func(t *testing.T) {
			op := ws(t, s, "op", c.auth, c.header)
			op.emit("join", map[string]any{"role": "operator", "name": "Claimed", "operatorId": 999})
			if m := op.expect("newChat"); m.Data["clientId"] != cl.id() {
				t.Fatalf("newChat %v", m.Data)
			}
			var st struct{ Operators []map[string]any }
			getJSON(t, s.URL+"/stats", &st)
			if len(st.Operators) != 1 || st.Operators[0]["operatorId"] != "op-42" || st.Operators[0]["name"] != "Ana Token" {
				t.Fatalf("the token's identity did not win: %v", st.Operators)
			}
			op.emit("operatorMessage", map[string]any{"to": cl.id(), "type": "text", "message": "hi", "operatorId": 999, "operatorName": "Claimed"})
			if m := cl.expect("operatorMessage"); m.Data["operatorName"] != "Ana Token" {
				t.Fatalf("operatorMessage %v: the token's name did not win", m.Data)
			}
			op.conn.Close()
			waitFor(t, 3*time.Second, func() error {
				if h := health(t, s); h.Connections.Operators != 0 {
					return fmt.Errorf("operator still joined")
				}
				return nil
			})
		})
	}
}

func TestPlayerIdentityTokens(t *testing.T) {
	clientSecret := "player-secret-player-secret-0123456789"
	s := startServer(t, func(c *config.Config) { c.ClientSecret = clientSecret })
	op := ws(t, s, "op", nil, nil)
	op.join(s, map[string]any{"role": "operator", "name": "Ana", "operatorId": 1})
	tok := sign(t, jwt.SigningMethodHS256, []byte(clientSecret), jwt.MapClaims{"username": "verified-bob", "phone": "+34 600", "exp": time.Now().Add(time.Hour).Unix()})
	cl := ws(t, s, "cl", map[string]any{"token": tok}, nil)
	cl.emit("join", map[string]any{"role": "client", "name": "Bob", "username": "claimed", "phone": "0"})
	op.expectJSON("newChat", fmt.Sprintf(`{"clientId":%q,"username":"verified-bob","phone":"+34 600"}`, cl.id()), false)
	// A forged player token is refused; an anonymous player is still welcome.
	forged := ws(t, s, "forged", map[string]any{"token": sign(t, jwt.SigningMethodHS256, []byte("wrong-secret-wrong-secret-0123456789"), jwt.MapClaims{"username": "x"})}, nil)
	forged.emit("join", map[string]any{"role": "client", "name": "F"})
	forged.expectRefused("join", "unauthorized")
	anon := ws(t, s, "anon", nil, nil)
	anon.emit("join", map[string]any{"role": "client", "name": "Anon"})
	op.expectJSON("newChat", fmt.Sprintf(`{"clientId":%q,"username":"Anon"}`, anon.id()), false)
	op.expectNothing()
}

// A 9 MB image reaches every operator byte for byte; an 11 MB one is
// refused with an answer, and its sender stays connected and can go on.
func TestLargeImages(t *testing.T) {
	s := startServer(t, nil)
	op1, op2 := ws(t, s, "op1", nil, nil), ws(t, s, "op2", nil, nil)
	op1.join(s, map[string]any{"role": "operator", "name": "A", "operatorId": 1})
	op2.join(s, map[string]any{"role": "operator", "name": "B", "operatorId": 2})
	cl := ws(t, s, "cl", nil, nil)
	cl.join(s, map[string]any{"role": "client", "name": "Bob"})
	drain(op1, op2)

	raw := make([]byte, 9_000_000*3/4)
	copy(raw, "\x89PNG\r\n\x1a\n")
	_, _ = rand.Read(raw[8:])
	img := "data:image/png;base64," + base64.StdEncoding.EncodeToString(raw)
	if len(img) < 9_000_000 || len(img) > 9_100_000 {
		t.Fatalf("test image is %d bytes", len(img))
	}
	cl.emit("clientMessage", map[string]any{"type": "image", "image": img, "mimeType": "image/png", "name": "big.png"})
	for _, op := range []*client{op1, op2} {
		ev := op.expectWithin("incomingMessage", 20*time.Second)
		if got, _ := ev.Data["image"].(string); got != img {
			t.Fatalf("%s: image of %d bytes arrived as %d bytes", op.label, len(img), len(got))
		}
	}

	huge := "data:image/png;base64," + base64.StdEncoding.EncodeToString(make([]byte, 11_000_000*3/4))
	cl.emit("clientMessage", map[string]any{"type": "image", "image": huge, "mimeType": "image/png"})
	if ev := cl.expectWithin("chatError", 20*time.Second); ev.Data["code"] != "too_large" {
		t.Fatalf("11 MB image: %s", ev.Raw)
	}
	op1.expectNothing()
	op2.expectNothing()
	cl.emit("clientMessage", map[string]any{"type": "text", "message": "still here"})
	op1.expect("incomingMessage")
	op2.expect("incomingMessage")
}

func TestImageValidation(t *testing.T) {
	s := startServer(t, nil)
	op := ws(t, s, "op", nil, nil)
	op.join(s, map[string]any{"role": "operator", "name": "A", "operatorId": 1})
	cl := ws(t, s, "cl", nil, nil)
	cl.join(s, map[string]any{"role": "client", "name": "Bob"})
	drain(op)
	png := base64.StdEncoding.EncodeToString([]byte("\x89PNG\r\n\x1a\n0000"))
	for _, c := range []struct {
		payload map[string]any
		code    string
	}{
		{map[string]any{"type": "image", "image": "data:image/svg+xml;base64," + png}, "invalid_type"},
		{map[string]any{"type": "image", "image": "data:image/jpeg;base64," + png}, "invalid_type"},
		{map[string]any{"type": "image", "image": "data:image/png;base64,@@@@"}, "invalid_payload"},
		{map[string]any{"type": "image", "image": png}, "invalid_type"},
		{map[string]any{"type": "image"}, "invalid_payload"},
		{map[string]any{"type": "text"}, "invalid_payload"},
		{map[string]any{"type": "text", "message": strings.Repeat("x", 5001)}, "too_large"},
		{map[string]any{"type": "text", "message": "x", "name": strings.Repeat("n", 256)}, "too_large"},
	} {
		cl.emit("clientMessage", c.payload)
		cl.expectRefused("clientMessage", c.code)
	}
	op.expectNothing()
	cl.emit("clientMessage", map[string]any{"type": "image", "image": png, "mimeType": "image/png"})
	op.expect("incomingMessage")
}

func TestRateLimits(t *testing.T) {
	// A refill of 0.01 token a second cannot add a token while the test
	// runs, so the burst alone decides: exactly 19 delivered and 6 refused.
	s := startServer(t, func(c *config.Config) { c.AbuseLimit = 40; c.MessageRate = 0.01 })
	op := ws(t, s, "op", nil, nil)
	op.join(s, map[string]any{"role": "operator", "name": "A", "operatorId": 1})
	cl := ws(t, s, "cl", nil, nil)
	cl.join(s, map[string]any{"role": "client", "name": "Bob"})
	drain(op)
	// The join spent one token of the burst of 20.
	for i := range 25 {
		cl.emit("clientMessage", map[string]any{"type": "text", "message": fmt.Sprint(i)})
	}
	delivered, refused := 0, 0
	for delivered+refused < 25+19 {
		select {
		case ev := <-op.events:
			if ev.Name == "incomingMessage" {
				delivered++
			}
		case ev := <-cl.events:
			if ev.Name == "chatError" && ev.Data["code"] == "rate_limited" {
				refused++
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("delivered %d, refused %d", delivered, refused)
		}
		if delivered == 19 && refused == 6 {
			break
		}
	}
	if delivered != 19 || refused != 6 {
		t.Fatalf("delivered %d, refused %d; want 19 and 6", delivered, refused)
	}
	// A socket that keeps going past the limit is cut off; others are not.
	other := ws(t, s, "other", nil, nil)
	other.join(s, map[string]any{"role": "client", "name": "Eve"})
	for i := range 60 {
		if err := cl.conn.Emit("clientTyping", map[string]any{"isTyping": i%2 == 0}); err != nil {
			break
		}
	}
	select {
	case <-cl.conn.(*sbclient.Client).Done():
	case <-time.After(3 * time.Second):
		t.Fatal("abusive socket still connected")
	}
	other.emit("clientMessage", map[string]any{"type": "text", "message": "fine"})
	for deadline := time.After(3 * time.Second); ; {
		select {
		case ev := <-op.events: // typing and chatEnded of the cut-off socket come first
			if ev.Name == "incomingMessage" && ev.Data["message"] == "fine" {
				return
			}
		case <-deadline:
			t.Fatal("the other socket's message never arrived")
		}
	}
}

func TestPerAddressLimits(t *testing.T) {
	s := startServer(t, func(c *config.Config) {
		c.IPLimitLoopback, c.IPMaxConnections, c.IPHandshakeRate, c.IPHandshakeBurst = true, 3, 1000, 1000
	})
	for i := range 3 {
		ws(t, s, fmt.Sprint("c", i), nil, nil)
	}
	waitFor(t, 2*time.Second, func() error {
		_, err := sbclient.Dial(context.Background(), s.URL, sbclient.Options{})
		if err == nil || !strings.Contains(err.Error(), "429") {
			return fmt.Errorf("fourth connection: %v", err)
		}
		return nil
	})
	if h := health(t, s); h.Status != "ok" {
		t.Fatal("server unhealthy")
	}

	s2 := startServer(t, func(c *config.Config) {
		c.IPLimitLoopback, c.IPHandshakeRate, c.IPHandshakeBurst = true, 0.1, 2
	})
	ws(t, s2, "a", nil, nil)
	ws(t, s2, "b", nil, nil)
	if _, err := sbclient.Dial(context.Background(), s2.URL, sbclient.Options{Transport: sbclient.Polling}); err == nil || !strings.Contains(err.Error(), "429") {
		t.Fatalf("third handshake in a burst of 2: %v", err)
	}
	// Loopback is exempt by default: a local load test is not throttled.
	s3 := startServer(t, func(c *config.Config) { c.IPHandshakeRate, c.IPHandshakeBurst = 0.1, 1 })
	for i := range 5 {
		ws(t, s3, fmt.Sprint("l", i), nil, nil)
	}
}

func TestForeignOriginsAreRefused(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.CORSOrigins = []string{"https://crm.example.com"} })
	for _, tr := range []sbclient.Transport{sbclient.WebSocket, sbclient.Polling} {
		_, err := sbclient.Dial(context.Background(), s.URL, sbclient.Options{Transport: tr, Header: http.Header{"Origin": {"https://evil.example.com"}}})
		if err == nil || !strings.Contains(err.Error(), "403") {
			t.Fatalf("%s from a foreign origin: %v", tr, err)
		}
		ok := ws(t, s, "crm", nil, http.Header{"Origin": {"https://crm.example.com"}})
		ok.join(s, map[string]any{"role": "client", "name": "x"})
	}
	ws(t, s, "no origin", nil, nil) // servers and load tools send none
	req, _ := http.NewRequest("GET", s.URL+"/health", nil)
	req.Header.Set("Origin", "https://evil.example.com")
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("/health from a foreign origin: %v %v", res.StatusCode, err)
	}
	res.Body.Close()
}

func TestMetricsCountWhatHappened(t *testing.T) {
	s := startServer(t, nil)
	op := ws(t, s, "op", nil, nil)
	op.join(s, map[string]any{"role": "operator", "name": "A", "operatorId": 1})
	cl := ws(t, s, "cl", nil, nil)
	cl.join(s, map[string]any{"role": "client", "name": "Bob"})
	op.expect("newChat")
	for range 3 {
		cl.emit("clientMessage", map[string]any{"type": "text", "message": "x"})
		op.expect("incomingMessage")
	}
	cl.emit("clientMessage", map[string]any{"type": "video"})
	cl.expectRefused("clientMessage", "invalid_type")
	var once sync.Once
	waitFor(t, 2*time.Second, func() error {
		res, err := http.Get(s.URL + "/metrics")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		body := string(b)
		for _, want := range []string{
			`switchboard_connections{role="client"} 1`,
			`switchboard_connections{role="operator"} 1`,
			`switchboard_joins_total{role="client"} 1`,
			`switchboard_events_received_total{event="clientMessage"} 4`,
			`switchboard_deliveries_total{event="incomingMessage"} 3`,
			`switchboard_refusals_total{code="invalid_type"} 1`,
			`switchboard_router_mailbox_depth`,
			`switchboard_delivery_seconds_count`,
		} {
			if !strings.Contains(body, want) {
				once.Do(func() { t.Logf("metrics:\n%s", grepLines(body, "switchboard_")) })
				return fmt.Errorf("/metrics lacks %q", want)
			}
		}
		return nil
	})
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
