package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaults(t *testing.T) {
	c, err := Load(nil, env())
	if err != nil {
		t.Fatal(err)
	}
	if c.Port != 3001 || c.Path != "/chat" || c.Env != "development" || c.CORSOrigins[0] != "*" ||
		c.MaxImageBytes != 10_000_000 || c.MaxTextChars != 5000 || c.ShutdownTimeout != 10*time.Second ||
		c.LogFormat != "text" || !c.AllowEIO3 {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestGuideVariablesAndPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "switchboard.yaml")
	if err := os.WriteFile(file, []byte("port: 4000\npath: /support\nmax_text_chars: 100\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load([]string{"--config", file, "--max-text-chars", "200"}, env(
		"PORT", "5000", "CORS_ORIGIN", "https://crm.example.com, https://www.example.com/", "NODE_ENV", "production",
		"SWITCHBOARD_JWT_SECRET", strings.Repeat("s", 32)))
	if err != nil {
		t.Fatal(err)
	}
	// Environment beats the file; a flag beats both; the file beats defaults.
	if c.Port != 5000 || c.Path != "/support" || c.MaxTextChars != 200 {
		t.Fatalf("precedence: port %d path %s text %d", c.Port, c.Path, c.MaxTextChars)
	}
	if strings.Join(c.CORSOrigins, " ") != "https://crm.example.com https://www.example.com" {
		t.Fatalf("origins %v", c.CORSOrigins)
	}
	if !c.Production() || c.LogFormat != "json" {
		t.Fatalf("production: %+v", c)
	}
}

// Every bad value stops start-up with one line that names the setting.
func TestBadValuesNameTheSetting(t *testing.T) {
	cases := []struct {
		args []string
		env  []string
		want string
	}{
		{nil, []string{"PORT", "abc"}, "PORT"},
		{nil, []string{"PORT", "70000"}, "PORT"},
		{nil, []string{"NODE_ENV", "staging"}, "NODE_ENV"},
		{nil, []string{"CORS_ORIGIN", "crm.example.com"}, "CORS_ORIGIN"},
		{nil, []string{"CORS_ORIGIN", "https://a.com,*"}, "CORS_ORIGIN"},
		{nil, []string{"SWITCHBOARD_PATH", "chat"}, "SWITCHBOARD_PATH"},
		{nil, []string{"SWITCHBOARD_LOG_LEVEL", "loud"}, "SWITCHBOARD_LOG_LEVEL"},
		{nil, []string{"SWITCHBOARD_MAX_IMAGE_BYTES", "-1"}, "SWITCHBOARD_MAX_IMAGE_BYTES"},
		{nil, []string{"SWITCHBOARD_PING_INTERVAL", "soon"}, "SWITCHBOARD_PING_INTERVAL"},
		{nil, []string{"SWITCHBOARD_ALLOW_EIO3", "maybe"}, "SWITCHBOARD_ALLOW_EIO3"},
		{nil, []string{"SWITCHBOARD_JWT_ALLOW_NO_EXP", "sometimes"}, "SWITCHBOARD_JWT_ALLOW_NO_EXP"},
		{nil, []string{"SWITCHBOARD_HTTP_IDLE_TIMEOUT", "0"}, "SWITCHBOARD_HTTP_IDLE_TIMEOUT"},
		{nil, []string{"SWITCHBOARD_HTTP_IDLE_TIMEOUT", "forever"}, "SWITCHBOARD_HTTP_IDLE_TIMEOUT"},
		{nil, []string{"SWITCHBOARD_HTTP_IDLE_TIMEOUT", "2h"}, "SWITCHBOARD_HTTP_IDLE_TIMEOUT"},
		{[]string{"--http-idle-timeout", "-1s"}, nil, "--http-idle-timeout"},
		{[]string{"--port", "x"}, nil, "--port"},
		{nil, []string{"SWITCHBOARD_MAX_BUFFERED_BYTES", "lots"}, "SWITCHBOARD_MAX_BUFFERED_BYTES"},
		{nil, []string{"SWITCHBOARD_MAX_BUFFERED_BYTES", "1048576"}, "SWITCHBOARD_MAX_BUFFERED_BYTES"}, // under one largest message
		{nil, []string{"SWITCHBOARD_MESSAGE_TIMEOUT", "0"}, "SWITCHBOARD_MESSAGE_TIMEOUT"},
		{nil, []string{"SWITCHBOARD_MESSAGE_TIMEOUT", "soon"}, "SWITCHBOARD_MESSAGE_TIMEOUT"},
		{nil, []string{"SWITCHBOARD_CONNECT_TIMEOUT", "-1s"}, "SWITCHBOARD_CONNECT_TIMEOUT"},
		{nil, []string{"SWITCHBOARD_MEMORY_LIMIT", "plenty"}, "SWITCHBOARD_MEMORY_LIMIT"},
		{nil, []string{"SWITCHBOARD_MEMORY_LIMIT", "1000000"}, "SWITCHBOARD_MEMORY_LIMIT"}, // under 64 MiB
		{nil, []string{"SWITCHBOARD_MEMORY_LIMIT", "-1GiB"}, "SWITCHBOARD_MEMORY_LIMIT"},
		{nil, []string{"SWITCHBOARD_JWT_SECRET", "short"}, "SWITCHBOARD_JWT_SECRET"},
		{nil, []string{"SWITCHBOARD_JWT_PUBLIC_KEY_FILE", "/nonexistent.pem"}, "SWITCHBOARD_JWT_PUBLIC_KEY_FILE"},
		{nil, []string{"SWITCHBOARD_IMAGE_TYPES", "png,bmp"}, "SWITCHBOARD_IMAGE_TYPES"},
		{nil, []string{"SWITCHBOARD_MESSAGE_RATE", "fast"}, "SWITCHBOARD_MESSAGE_RATE"},
		{nil, []string{"NODE_ENV", "production", "CORS_ORIGIN", "https://crm.example.com"}, "SWITCHBOARD_INSECURE_OPERATORS"},
		{nil, []string{"NODE_ENV", "production", "SWITCHBOARD_INSECURE_OPERATORS", "true"}, "CORS_ORIGIN"},
		{[]string{"--no-such-flag"}, nil, "no-such-flag"},
		{[]string{"--config", "/nonexistent/switchboard.yaml"}, nil, "/nonexistent/switchboard.yaml"},
	}
	for _, c := range cases {
		_, err := Load(c.args, env(c.env...))
		if err == nil {
			t.Errorf("%v %v: accepted", c.args, c.env)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
			t.Errorf("%v %v: error %q does not name %s on one line", c.args, c.env, msg, c.want)
		}
	}
}

func TestUnknownFileSettingIsRefused(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("prot: 4000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load([]string{"--config", file}, env())
	if err == nil || !strings.Contains(err.Error(), `"prot"`) {
		t.Fatalf("err = %v", err)
	}
}

// Production without operator authentication starts only when told, loudly,
// that anyone may be an operator.
func TestProductionNeedsOperatorAuthOrAnExplicitOptOut(t *testing.T) {
	base := []string{"NODE_ENV", "production", "CORS_ORIGIN", "https://crm.example.com"}
	if _, err := Load(nil, env(base...)); err == nil {
		t.Fatal("production without authentication started")
	}
	c, err := Load(nil, env(append(base, "SWITCHBOARD_INSECURE_OPERATORS", "true")...))
	if err != nil || !c.InsecureOperators || c.OperatorAuth() {
		t.Fatalf("opt-out: %+v %v", c, err)
	}
	c, err = Load(nil, env(append(base, "SWITCHBOARD_JWT_SECRET", strings.Repeat("k", 40))...))
	if err != nil || !c.OperatorAuth() {
		t.Fatalf("with a secret: %v", err)
	}
}

func TestClusterSettings(t *testing.T) {
	c, err := Load(nil, env())
	if err != nil || c.RedisURL != "" || c.NodeID == "" {
		t.Fatalf("without REDIS_URL: %+v %v", c, err)
	}
	c, err = Load(nil, env("REDIS_URL", "rediss://:pw@redis.internal:6380/2", "SWITCHBOARD_NODE_ID", "chat-a.1"))
	if err != nil || c.RedisURL != "rediss://:pw@redis.internal:6380/2" || c.NodeID != "chat-a.1" {
		t.Fatalf("cluster: %+v %v", c, err)
	}
	if c.ClusterHeartbeat != 2*time.Second || c.ClusterDeadAfter != 8*time.Second {
		t.Fatalf("heartbeat defaults: %s %s", c.ClusterHeartbeat, c.ClusterDeadAfter)
	}
	c, err = Load([]string{"--cluster-dead-after", "1s"}, env("SWITCHBOARD_CLUSTER_HEARTBEAT", "250ms"))
	if err != nil || c.ClusterHeartbeat != 250*time.Millisecond || c.ClusterDeadAfter != time.Second {
		t.Fatalf("heartbeat set: %+v %v", c, err)
	}
	for _, bad := range [][]string{
		{"REDIS_URL", "http://redis:6379"},
		{"REDIS_URL", "redis://:secret@host:6379/x"},
		{"SWITCHBOARD_NODE_ID", "has space"},
		{"SWITCHBOARD_CLUSTER_HEARTBEAT", "0"},
		{"SWITCHBOARD_CLUSTER_HEARTBEAT", "fast"},
		{"SWITCHBOARD_CLUSTER_DEAD_AFTER", "10ms"},
		{"SWITCHBOARD_CLUSTER_DEAD_AFTER", "3s", "SWITCHBOARD_CLUSTER_HEARTBEAT", "2s"},
	} {
		_, err := Load(nil, env(bad...))
		if err == nil || !strings.HasPrefix(err.Error(), bad[0]+"=") || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%v: %v", bad, err)
		}
	}
}

// Tokens must expire and idle connections must close unless told
// otherwise; both can be set.
func TestTokenExpiryAndIdleTimeout(t *testing.T) {
	c, err := Load(nil, env())
	if err != nil || c.JWTAllowNoExp || c.HTTPIdleTimeout != 5*time.Second {
		t.Fatalf("defaults: allow no exp %v, idle %s, %v", c.JWTAllowNoExp, c.HTTPIdleTimeout, err)
	}
	c, err = Load([]string{"--http-idle-timeout", "300ms"}, env("SWITCHBOARD_JWT_ALLOW_NO_EXP", "true"))
	if err != nil || !c.JWTAllowNoExp || c.HTTPIdleTimeout != 300*time.Millisecond {
		t.Fatalf("set: allow no exp %v, idle %s, %v", c.JWTAllowNoExp, c.HTTPIdleTimeout, err)
	}
}

// The pages and the dashboard are on in development and off in production
// unless asked for; a production dashboard needs operator tokens, since it
// shows names, and a bad value names its setting.
func TestPagesAndDashboard(t *testing.T) {
	c, err := Load(nil, env())
	if err != nil || !c.Pages || !c.Dashboard {
		t.Fatalf("development: pages %v dashboard %v %v", c.Pages, c.Dashboard, err)
	}
	c, err = Load(nil, env("SWITCHBOARD_PAGES", "false", "SWITCHBOARD_DASHBOARD", "no"))
	if err != nil || c.Pages || c.Dashboard {
		t.Fatalf("development, off: pages %v dashboard %v %v", c.Pages, c.Dashboard, err)
	}
	prod := []string{"NODE_ENV", "production", "CORS_ORIGIN", "https://crm.example.com", "SWITCHBOARD_JWT_SECRET", strings.Repeat("k", 40)}
	c, err = Load(nil, env(prod...))
	if err != nil || c.Pages || c.Dashboard {
		t.Fatalf("production: pages %v dashboard %v %v", c.Pages, c.Dashboard, err)
	}
	c, err = Load([]string{"--pages", "true"}, env(append(prod, "SWITCHBOARD_DASHBOARD", "true")...))
	if err != nil || !c.Pages || !c.Dashboard {
		t.Fatalf("production, on: pages %v dashboard %v %v", c.Pages, c.Dashboard, err)
	}
	insecure := []string{"NODE_ENV", "production", "CORS_ORIGIN", "https://crm.example.com", "SWITCHBOARD_INSECURE_OPERATORS", "true"}
	if _, err := Load(nil, env(append(insecure, "SWITCHBOARD_DASHBOARD", "true")...)); err == nil ||
		!strings.HasPrefix(err.Error(), "SWITCHBOARD_DASHBOARD=true") || !strings.Contains(err.Error(), "SWITCHBOARD_JWT_SECRET") {
		t.Fatalf("production dashboard without operator auth: %v", err)
	}
	if c, err := Load(nil, env(insecure...)); err != nil || c.Dashboard {
		t.Fatalf("production without operator auth, dashboard off: %v", err)
	}
	for _, bad := range [][]string{{"SWITCHBOARD_PAGES", "maybe"}, {"SWITCHBOARD_DASHBOARD", "on"}} {
		if _, err := Load(nil, env(bad...)); err == nil || !strings.HasPrefix(err.Error(), bad[0]+`="`+bad[1]+`": must be true or false`) {
			t.Fatalf("%v: %v", bad, err)
		}
	}
}

// Routing is broadcast unless asked for; a bad mode or capacity stops
// start-up with one line naming the setting.
func TestRoutingSettings(t *testing.T) {
	c, err := Load(nil, env())
	if err != nil || c.Routing != "broadcast" || c.MaxChatsPerOperator != 5 {
		t.Fatalf("defaults: routing %q capacity %d %v", c.Routing, c.MaxChatsPerOperator, err)
	}
	c, err = Load([]string{"--max-chats-per-operator", "30"}, env("SWITCHBOARD_ROUTING", "auto"))
	if err != nil || c.Routing != "auto" || c.MaxChatsPerOperator != 30 {
		t.Fatalf("set: routing %q capacity %d %v", c.Routing, c.MaxChatsPerOperator, err)
	}
	for _, bad := range [][]string{
		{"SWITCHBOARD_ROUTING", "roundrobin"},
		{"SWITCHBOARD_ROUTING", "Auto"},
		{"SWITCHBOARD_MAX_CHATS_PER_OPERATOR", "0"},
		{"SWITCHBOARD_MAX_CHATS_PER_OPERATOR", "five"},
	} {
		_, err := Load(nil, env(bad...))
		if err == nil || !strings.HasPrefix(err.Error(), bad[0]+"=") || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%v: %v", bad, err)
		}
	}
	// Across nodes each assignment is decided once, in Redis.
	if c, err := Load(nil, env("SWITCHBOARD_ROUTING", "claim", "REDIS_URL", "redis://127.0.0.1:6379")); err != nil || c.Routing != "claim" {
		t.Fatalf("claim with REDIS_URL: %v", err)
	}
}
