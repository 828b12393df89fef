// Package config reads Switchboard's settings: environment first (the
// guide's PORT, CORS_ORIGIN and NODE_ENV, then SWITCHBOARD_* for the rest),
// an optional YAML/JSON/TOML file, and command-line flags, with viper.
package config

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Config is every setting. Each field says its default and what it costs.
type Config struct {
	// Port to listen on (PORT, default 3001, as the guide's server; 0 picks
	// a free port and the start-up banner names it).
	Port int
	// Host to bind (SWITCHBOARD_HOST, default all interfaces). Set
	// 127.0.0.1 to keep a development server off the network.
	Host string
	// CORSOrigins allowed for browsers (CORS_ORIGIN, default "*"): "*" or
	// a comma-separated list of origins such as https://crm.example.com.
	CORSOrigins []string
	// Env is "development" or "production" (NODE_ENV, default development).
	// Production logs JSON; development logs text.
	Env string
	// Path of the Socket.IO endpoint (SWITCHBOARD_PATH, default /chat).
	Path string
	// LogLevel is debug, info, warn or error (SWITCHBOARD_LOG_LEVEL, default
	// info). Debug logs every event: costly past a few hundred messages/s.
	LogLevel slog.Level
	// LogFormat is text or json (SWITCHBOARD_LOG_FORMAT, default text in
	// development, json in production).
	LogFormat string
	// MaxImageBytes is the largest image accepted, in bytes of base64
	// (SWITCHBOARD_MAX_IMAGE_BYTES, default 10,000,000 as the guide's
	// validation). The Socket.IO buffer is sized from it, so a large image is
	// never a silent disconnect; each socket may hold one such buffer.
	MaxImageBytes int
	// MaxTextChars is the longest text message (SWITCHBOARD_MAX_TEXT_CHARS,
	// default 5,000 as the guide's validation).
	MaxTextChars int
	// MaxFieldChars is the longest name, username, phone or id
	// (SWITCHBOARD_MAX_FIELD_CHARS, default 255).
	MaxFieldChars int
	// PingInterval between Engine.IO heartbeats (SWITCHBOARD_PING_INTERVAL,
	// default 25s as Socket.IO). Shorter finds dead peers sooner, at one
	// small packet per socket per interval.
	PingInterval time.Duration
	// PingTimeout before a silent peer is dropped (SWITCHBOARD_PING_TIMEOUT,
	// default 20s as Socket.IO).
	PingTimeout time.Duration
	// HTTPIdleTimeout closes a keep-alive connection with no request in
	// flight after this long (SWITCHBOARD_HTTP_IDLE_TIMEOUT, default 5s,
	// as Node's keepAliveTimeout). Websockets and pending long-polls are
	// not idle; after an upgrade a client's polling connections stay idle
	// for good. Longer spares a browser a reconnect; each idle connection
	// holds a descriptor, a goroutine and about 10 KB until then.
	HTTPIdleTimeout time.Duration
	// ShutdownTimeout bounds a graceful stop (SWITCHBOARD_SHUTDOWN_TIMEOUT,
	// default 10s).
	ShutdownTimeout time.Duration
	// AllowEIO3 accepts socket.io-client 2.x (Engine.IO 3)
	// (SWITCHBOARD_ALLOW_EIO3, default true).
	AllowEIO3 bool

	// JWTSecret enables HS256 operator tokens (SWITCHBOARD_JWT_SECRET).
	JWTSecret string
	// JWTPublicKeyFile (PEM) enables RS256/ES256 operator tokens
	// (SWITCHBOARD_JWT_PUBLIC_KEY_FILE); JWTJWKSFile likewise from a JWKS
	// document (SWITCHBOARD_JWT_JWKS_FILE).
	JWTPublicKeyFile string
	JWTJWKSFile      string
	// JWTIssuer and JWTAudience, when set, must match iss and aud
	// (SWITCHBOARD_JWT_ISSUER, SWITCHBOARD_JWT_AUDIENCE).
	JWTIssuer   string
	JWTAudience string
	// JWTAllowNoExp accepts operator and player tokens without an exp claim
	// (SWITCHBOARD_JWT_ALLOW_NO_EXP, default false). Such a token is valid
	// forever: one that leaks (a log line, a browser's storage) opens every
	// conversation until the key itself is rotated.
	JWTAllowNoExp bool
	// InsecureOperators lets production start without operator
	// authentication (SWITCHBOARD_INSECURE_OPERATORS, default false): then
	// anyone who joins as operator reads every conversation.
	InsecureOperators bool
	// ClientSecret verifies players' HS256 identity tokens, which supply
	// username and phone (SWITCHBOARD_CLIENT_SECRET).
	ClientSecret string
	// ClientTokenRequired refuses players without a verified token
	// (SWITCHBOARD_CLIENT_TOKEN_REQUIRED, default false).
	ClientTokenRequired bool

	// MaxPendingBytes is how much a socket may have queued and unsent
	// before it counts as a slow consumer and is disconnected
	// (SWITCHBOARD_MAX_PENDING_BYTES, default 32 MiB: three maximum-size
	// images). Each stalled socket can hold up to this much memory.
	MaxPendingBytes int

	// MaxBufferedBytes bounds what every connection together may hold of
	// messages not yet whole: websocket frames and fragmented messages
	// still arriving, and binary events waiting for their attachments
	// (SWITCHBOARD_MAX_BUFFERED_BYTES, default "auto": 256 MiB, a dozen
	// largest images arriving at once, or half the memory budget if that
	// is less, so that input alone never fills the budget; at least one
	// largest message). A peer holds
	// at most twice what it sent; the connection whose bytes would pass the
	// bound is closed with 1013 (try again later).
	MaxBufferedBytes int
	// MessageTimeout is how long a message may take to arrive whole, from
	// its first byte to its last, a binary event with all its attachments
	// included (SWITCHBOARD_MESSAGE_TIMEOUT, default 30s: a 20 MB image at
	// 700 KB/s). A connection that takes longer is closed with 1008.
	MessageTimeout time.Duration
	// ConnectTimeout is how long a new Engine.IO connection may go without
	// a Socket.IO CONNECT before it is closed (SWITCHBOARD_CONNECT_TIMEOUT,
	// default 45s, as Socket.IO's connectTimeout). Until then it counts
	// against its address's connections like any other.
	ConnectTimeout time.Duration
	// MemoryLimit is the memory budget of the whole process, in bytes
	// (SWITCHBOARD_MEMORY_LIMIT, default "auto": three quarters of the
	// cgroup's memory limit, or of the machine's RAM without one; 0 turns
	// it off). GOMEMLIMIT is set from it unless the environment sets
	// GOMEMLIMIT (nine tenths of it). Past 80% of it, in live heap or in what connections hold
	// of unfinished input, new connections are answered 503 and the
	// sockets holding the most are cut (1013), before the kernel's OOM
	// killer would take the whole process. The quarter left is for what
	// Go does not count: kernel socket buffers, which a cgroup charges.
	MemoryLimit int64

	// WriteCoalesce is how long a websocket's outgoing frames may wait to
	// leave together in one system call (SWITCHBOARD_WRITE_COALESCE,
	// default 500µs; 0 writes each at once). Longer saves CPU under load and
	// adds at most this much latency.
	WriteCoalesce time.Duration

	// RecoveryWindow is how long a participant whose transport dropped
	// without a goodbye stays joined ("away") and may recover its socket,
	// with the same id and every event it missed (SWITCHBOARD_RECOVERY_WINDOW,
	// default 2m; 0 turns connection-state recovery off and keeps the
	// guide's behaviour exactly). Operators see chatEnded only when it
	// ends. Each away session holds its log (below) until then.
	RecoveryWindow time.Duration
	// RecoveryMaxFrames and RecoveryMaxBytes bound each socket's log of
	// events its client may not have read yet (SWITCHBOARD_RECOVERY_MAX_FRAMES,
	// default 10,000; SWITCHBOARD_RECOVERY_MAX_BYTES, default 8 MiB). A
	// heartbeat answered confirms what came before it, so an idle socket's
	// log is empty; past a bound a client that missed more starts afresh.
	// The frames are shared with every other recipient: the cost is what
	// the busiest operator received in a ping interval, at most this much.
	RecoveryMaxFrames int
	RecoveryMaxBytes  int

	// QueueMaxPerChat and QueueMaxChatBytes bound one player's messages
	// waiting while no operator is online (SWITCHBOARD_QUEUE_MAX_PER_CHAT,
	// default 100; SWITCHBOARD_QUEUE_MAX_CHAT_BYTES, default 12 MiB: one
	// largest image and the text around it). Past them the player is
	// answered queue_full.
	QueueMaxPerChat   int
	QueueMaxChatBytes int
	// QueueMaxTotal and QueueMaxBytes bound every player's waiting messages
	// together (SWITCHBOARD_QUEUE_MAX_TOTAL, default 10,000, 0 turns the
	// queue off and such messages are dropped as on the guide's server;
	// SWITCHBOARD_QUEUE_MAX_BYTES, default 64 MiB, all held in memory).
	QueueMaxTotal int
	QueueMaxBytes int
	// QueueMaxAge drops waiting messages older than this, with a log line
	// and a counter (SWITCHBOARD_QUEUE_MAX_AGE, default 1h).
	QueueMaxAge time.Duration

	// WebSocketServer is who serves fresh websocket connections
	// (SWITCHBOARD_WEBSOCKET, default "native"): "native" is Switchboard's
	// own epoll server (transport/ws), without a goroutine or a buffer per
	// idle connection; "library" leaves them to the Socket.IO library, as
	// long-polling, upgrades and Engine.IO 3 clients always are.
	WebSocketServer string

	// Pprof serves Go's profiler at /debug/pprof/ (SWITCHBOARD_PPROF,
	// default false): for finding where time goes under load, never on a
	// public port.
	Pprof bool

	// ImageTypes are the MIME types an image may have
	// (SWITCHBOARD_IMAGE_TYPES, default png,jpeg,gif,webp).
	ImageTypes []string

	// MessageRate and MessageBurst bound each socket's joins, messages and
	// endChats (SWITCHBOARD_MESSAGE_RATE, default 10/s;
	// SWITCHBOARD_MESSAGE_BURST, default 20): no person types faster.
	MessageRate  float64
	MessageBurst int
	// TypingRate and TypingBurst bound typing indicators
	// (SWITCHBOARD_TYPING_RATE, default 5/s; SWITCHBOARD_TYPING_BURST, 10).
	TypingRate  float64
	TypingBurst int
	// AbuseLimit refused events within 10 s disconnect a socket
	// (SWITCHBOARD_ABUSE_LIMIT, default 100; 0 never).
	AbuseLimit int

	// IPMaxConnections caps concurrent connections per address
	// (SWITCHBOARD_IP_MAX_CONNECTIONS, default 200; 0 no cap).
	IPMaxConnections int
	// IPHandshakeRate and IPHandshakeBurst bound new connections per
	// address (SWITCHBOARD_IP_HANDSHAKE_RATE, default 20/s;
	// SWITCHBOARD_IP_HANDSHAKE_BURST, default 50).
	IPHandshakeRate  float64
	IPHandshakeBurst int
	// IPLimitLoopback applies the address limits to loopback too
	// (SWITCHBOARD_IP_LIMIT_LOOPBACK, default false, so a local load test
	// is not throttled).
	IPLimitLoopback bool
	// TrustProxy takes the client's address from X-Forwarded-For
	// (SWITCHBOARD_TRUST_PROXY, default false: only behind a proxy you run).
	TrustProxy bool

	// RedisURL switches the node into cluster mode (REDIS_URL, default none:
	// one node, in process): redis://[:password@]host:port[/db], or
	// rediss:// for TLS. Nodes sharing a Redis act as one. Costs one Redis
	// publish per event that crosses nodes, and a pipelined round trip per
	// node every 2 s for the heartbeat; see docs/SCALING.md.
	RedisURL string
	// Pages serves the index page at / and the demo widget and console
	// (/demo/widget, /demo/console) for browsers (SWITCHBOARD_PAGES,
	// default true in development, false in production). They cost nothing
	// until requested: a few embedded files. The console still needs an
	// operator token to join wherever operators are authenticated.
	Pages bool
	// Dashboard serves the live dashboard at /dashboard and its figures at
	// /dashboard/data (SWITCHBOARD_DASHBOARD, default true in development,
	// false in production). It shows names, so in production it needs
	// operator authentication and each request an operator's token. Each
	// open dashboard reads the figures once a second: about one /stats.
	Dashboard bool
	pagesSet  bool
	dashSet   bool

	// Routing says how chats reach operators (SWITCHBOARD_ROUTING, default
	// "broadcast": every operator gets every player's every message, as on
	// the guide's server). "claim": every operator sees new chats and the
	// first to claim one owns it; "auto": each chat goes to the least busy
	// available operator with room, and waits in a queue while none has.
	// Under claim and auto a message reaches its chat's owner and watchers
	// only: the work per message no longer grows with the operators.
	Routing string
	// MaxChatsPerOperator is how many chats one operator owns at once under
	// claim and auto (SWITCHBOARD_MAX_CHATS_PER_OPERATOR, default 5); an
	// operator token's maxChats claim overrides it for that operator.
	MaxChatsPerOperator int

	// NodeID names this node in logs, /health, /stats, /metrics and Redis
	// keys (SWITCHBOARD_NODE_ID, default the host name and a random
	// suffix, new at each start). Letters, digits, '.', '_' and '-'.
	NodeID string
	// ClusterHeartbeat is how often a node refreshes its liveness in Redis
	// and reads the others' (SWITCHBOARD_CLUSTER_HEARTBEAT, default 2s).
	// ClusterDeadAfter is how long another node's heartbeat may stay
	// unchanged before it is taken for dead (SWITCHBOARD_CLUSTER_DEAD_AFTER,
	// default 8s; at least two heartbeats). A killed node is noticed within
	// dead-after plus two heartbeats; shorter values cost one Redis round
	// trip per node per heartbeat and risk calling a paused node dead.
	ClusterHeartbeat time.Duration
	ClusterDeadAfter time.Duration
}

// Production reports whether NODE_ENV is production.
func (c *Config) Production() bool { return c.Env == "production" }

// OperatorAuth reports whether operator tokens are configured.
func (c *Config) OperatorAuth() bool {
	return c.JWTSecret != "" || c.JWTPublicKeyFile != "" || c.JWTJWKSFile != ""
}

// MaxPayload is the largest message a socket may send, in bytes: twice the
// largest image and room for the rest of the message. On the Node server
// an image over the buffer silently disconnects the player; here one up to
// twice the limit is read and refused with an answer, and only a larger
// one (which no widget sends) closes the connection.
func (c *Config) MaxPayload() int { return 2*c.MaxImageBytes + envelopeBytes }

// envelopeBytes is room beyond the largest image for the rest of a
// message (its JSON, the other fields, the packet header).
const envelopeBytes = 64 << 10

// Addr is the listen address.
func (c *Config) Addr() string { return fmt.Sprintf("%s:%d", c.Host, c.Port) }

// setting is one key: its environment variable, flag and default.
type setting struct {
	key, env, flag, def, usage string
}

var settings = []setting{
	{"port", "PORT", "port", "3001", "port to listen on"},
	{"host", "SWITCHBOARD_HOST", "host", "", "address to bind (empty: all interfaces)"},
	{"cors_origin", "CORS_ORIGIN", "cors-origin", "*", `allowed browser origins: "*" or a comma-separated list`},
	{"node_env", "NODE_ENV", "env", "development", "development or production"},
	{"path", "SWITCHBOARD_PATH", "path", "/chat", "Socket.IO path"},
	{"log_level", "SWITCHBOARD_LOG_LEVEL", "log-level", "info", "debug, info, warn or error"},
	{"log_format", "SWITCHBOARD_LOG_FORMAT", "log-format", "", "text or json (default: text in development, json in production)"},
	{"max_image_bytes", "SWITCHBOARD_MAX_IMAGE_BYTES", "max-image-bytes", "10000000", "largest image, in bytes of base64"},
	{"max_text_chars", "SWITCHBOARD_MAX_TEXT_CHARS", "max-text-chars", "5000", "longest text message, in characters"},
	{"max_field_chars", "SWITCHBOARD_MAX_FIELD_CHARS", "max-field-chars", "255", "longest name, username, phone or id"},
	{"ping_interval", "SWITCHBOARD_PING_INTERVAL", "ping-interval", "25s", "heartbeat interval"},
	{"ping_timeout", "SWITCHBOARD_PING_TIMEOUT", "ping-timeout", "20s", "heartbeat timeout"},
	{"http_idle_timeout", "SWITCHBOARD_HTTP_IDLE_TIMEOUT", "http-idle-timeout", "5s", "close keep-alive connections idle this long"},
	{"shutdown_timeout", "SWITCHBOARD_SHUTDOWN_TIMEOUT", "shutdown-timeout", "10s", "graceful shutdown deadline"},
	{"allow_eio3", "SWITCHBOARD_ALLOW_EIO3", "allow-eio3", "true", "accept socket.io-client 2.x (Engine.IO 3)"},
	{"jwt_secret", "SWITCHBOARD_JWT_SECRET", "jwt-secret", "", "HS256 secret for operator tokens"},
	{"jwt_public_key_file", "SWITCHBOARD_JWT_PUBLIC_KEY_FILE", "jwt-public-key-file", "", "PEM public key for RS256/ES256 operator tokens"},
	{"jwt_jwks_file", "SWITCHBOARD_JWT_JWKS_FILE", "jwt-jwks-file", "", "JWKS file for RS256/ES256 operator tokens"},
	{"jwt_issuer", "SWITCHBOARD_JWT_ISSUER", "jwt-issuer", "", "required iss of operator tokens"},
	{"jwt_audience", "SWITCHBOARD_JWT_AUDIENCE", "jwt-audience", "", "required aud of operator tokens"},
	{"jwt_allow_no_exp", "SWITCHBOARD_JWT_ALLOW_NO_EXP", "jwt-allow-no-exp", "false", "accept tokens without exp (they never expire)"},
	{"insecure_operators", "SWITCHBOARD_INSECURE_OPERATORS", "insecure-operators", "false", "allow production without operator authentication"},
	{"client_secret", "SWITCHBOARD_CLIENT_SECRET", "client-secret", "", "HS256 secret for player identity tokens"},
	{"client_token_required", "SWITCHBOARD_CLIENT_TOKEN_REQUIRED", "client-token-required", "false", "refuse players without a verified token"},
	{"max_pending_bytes", "SWITCHBOARD_MAX_PENDING_BYTES", "max-pending-bytes", "33554432", "unsent bytes that make a socket a slow consumer"},
	{"max_buffered_bytes", "SWITCHBOARD_MAX_BUFFERED_BYTES", "max-buffered-bytes", "auto", "bytes of unfinished messages all connections may hold (auto: 256 MiB, or half the memory budget if less)"},
	{"message_timeout", "SWITCHBOARD_MESSAGE_TIMEOUT", "message-timeout", "30s", "how long a message (a binary event with its attachments) may take to arrive whole"},
	{"connect_timeout", "SWITCHBOARD_CONNECT_TIMEOUT", "connect-timeout", "45s", "how long a connection may go without a Socket.IO CONNECT"},
	{"memory_limit", "SWITCHBOARD_MEMORY_LIMIT", "memory-limit", "auto", "memory budget in bytes (auto: 3/4 of the cgroup limit or RAM; 0: none); sets GOMEMLIMIT"},
	{"write_coalesce", "SWITCHBOARD_WRITE_COALESCE", "write-coalesce", "500us", "how long websocket frames may wait to be written together (0: never)"},
	{"websocket", "SWITCHBOARD_WEBSOCKET", "websocket", "native", "who serves new websockets: native (epoll, no goroutine per connection) or library"},
	{"recovery_window", "SWITCHBOARD_RECOVERY_WINDOW", "recovery-window", "2m", "how long a dropped participant stays joined and may recover (0: off)"},
	{"recovery_max_frames", "SWITCHBOARD_RECOVERY_MAX_FRAMES", "recovery-max-frames", "10000", "events kept per socket for recovery"},
	{"recovery_max_bytes", "SWITCHBOARD_RECOVERY_MAX_BYTES", "recovery-max-bytes", "8388608", "bytes of events kept per socket for recovery"},
	{"queue_max_per_chat", "SWITCHBOARD_QUEUE_MAX_PER_CHAT", "queue-max-per-chat", "100", "messages one player may have waiting for an operator"},
	{"queue_max_chat_bytes", "SWITCHBOARD_QUEUE_MAX_CHAT_BYTES", "queue-max-chat-bytes", "12582912", "bytes one player may have waiting for an operator"},
	{"queue_max_total", "SWITCHBOARD_QUEUE_MAX_TOTAL", "queue-max-total", "10000", "messages waiting for an operator, all players (0: no queue)"},
	{"queue_max_bytes", "SWITCHBOARD_QUEUE_MAX_BYTES", "queue-max-bytes", "67108864", "bytes waiting for an operator, all players"},
	{"queue_max_age", "SWITCHBOARD_QUEUE_MAX_AGE", "queue-max-age", "1h", "how long a message may wait for an operator"},
	{"pprof", "SWITCHBOARD_PPROF", "pprof", "false", "serve /debug/pprof/ (profiling)"},
	{"image_types", "SWITCHBOARD_IMAGE_TYPES", "image-types", "png,jpeg,gif,webp", "allowed image types"},
	{"message_rate", "SWITCHBOARD_MESSAGE_RATE", "message-rate", "10", "messages per second per socket"},
	{"message_burst", "SWITCHBOARD_MESSAGE_BURST", "message-burst", "20", "message burst per socket"},
	{"typing_rate", "SWITCHBOARD_TYPING_RATE", "typing-rate", "5", "typing events per second per socket"},
	{"typing_burst", "SWITCHBOARD_TYPING_BURST", "typing-burst", "10", "typing burst per socket"},
	{"abuse_limit", "SWITCHBOARD_ABUSE_LIMIT", "abuse-limit", "100", "refused events in 10s that disconnect a socket (0: never)"},
	{"ip_max_connections", "SWITCHBOARD_IP_MAX_CONNECTIONS", "ip-max-connections", "200", "concurrent connections per address (0: no cap)"},
	{"ip_handshake_rate", "SWITCHBOARD_IP_HANDSHAKE_RATE", "ip-handshake-rate", "20", "new connections per second per address"},
	{"ip_handshake_burst", "SWITCHBOARD_IP_HANDSHAKE_BURST", "ip-handshake-burst", "50", "new connection burst per address"},
	{"ip_limit_loopback", "SWITCHBOARD_IP_LIMIT_LOOPBACK", "ip-limit-loopback", "false", "apply address limits to loopback too"},
	{"trust_proxy", "SWITCHBOARD_TRUST_PROXY", "trust-proxy", "false", "take the client address from X-Forwarded-For"},
	{"redis_url", "REDIS_URL", "redis-url", "", "Redis for cluster mode: redis:// or rediss:// (empty: one node)"},
	{"node_id", "SWITCHBOARD_NODE_ID", "node-id", "", "this node's id (empty: host name and a random suffix)"},
	{"cluster_heartbeat", "SWITCHBOARD_CLUSTER_HEARTBEAT", "cluster-heartbeat", "2s", "how often a cluster node refreshes and reads the nodes' liveness"},
	{"cluster_dead_after", "SWITCHBOARD_CLUSTER_DEAD_AFTER", "cluster-dead-after", "8s", "how long a node's heartbeat may stay unchanged before it is dead"},
	{"routing", "SWITCHBOARD_ROUTING", "routing", "broadcast", "how chats reach operators: broadcast, claim or auto"},
	{"max_chats_per_operator", "SWITCHBOARD_MAX_CHATS_PER_OPERATOR", "max-chats-per-operator", "5", "chats one operator owns at once under claim and auto"},
	{"pages", "SWITCHBOARD_PAGES", "pages", "", "serve the index page, demo widget and console (default: true in development, false in production)"},
	{"dashboard", "SWITCHBOARD_DASHBOARD", "dashboard", "", "serve the live dashboard (default: true in development, false in production, where it needs operator tokens)"},
}

// ErrHelp is returned when --help was asked for; usage has been printed.
var ErrHelp = pflag.ErrHelp

// Load reads the settings from args (without the program name) and the
// environment. Precedence, highest first: flags given on the command line,
// environment variables, the config file, defaults. The error names the
// setting at fault in one line.
func Load(args []string, environ func(string) (string, bool)) (*Config, error) {
	if environ == nil {
		environ = os.LookupEnv
	}
	fs := pflag.NewFlagSet("switchboard", pflag.ContinueOnError)
	file := fs.String("config", "", "config file (yaml, json or toml)")
	for _, s := range settings {
		fs.String(s.flag, s.def, s.usage+" ["+s.env+"]")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, ErrHelp
		}
		return nil, fmt.Errorf("flags: %w", err)
	}

	v := viper.New()
	for _, s := range settings {
		v.SetDefault(s.key, s.def)
	}
	if *file != "" {
		v.SetConfigFile(*file)
		if err := v.ReadInConfig(); err != nil {
			return nil, fmt.Errorf("config file %s: %w", *file, err)
		}
		known := map[string]bool{}
		for _, s := range settings {
			known[s.key] = true
		}
		for _, k := range v.AllKeys() {
			if !known[k] {
				return nil, fmt.Errorf("config file %s: unknown setting %q", *file, k)
			}
		}
	}
	get := func(s setting) (string, string) {
		if f := fs.Lookup(s.flag); f.Changed {
			return f.Value.String(), "--" + s.flag
		}
		if val, ok := environ(s.env); ok && val != "" {
			return val, s.env
		}
		if v.InConfig(s.key) {
			return v.GetString(s.key), *file + ": " + s.key
		}
		return v.GetString(s.key), s.key
	}
	return build(get)
}

func build(get func(setting) (value, source string)) (*Config, error) {
	c := &Config{}
	for _, s := range settings {
		val, src := get(s)
		if err := apply(c, s.key, strings.TrimSpace(val)); err != nil {
			if s.key == "redis_url" {
				val = redactPassword(val) // the error line goes to logs
			}
			return nil, fmt.Errorf("%s=%q: %w", src, val, err)
		}
	}
	if c.LogFormat == "" {
		c.LogFormat = "text"
		if c.Production() {
			c.LogFormat = "json"
		}
	}
	if c.Production() && len(c.CORSOrigins) == 1 && c.CORSOrigins[0] == "*" {
		return nil, errors.New(`CORS_ORIGIN="*": production needs an explicit list of origins, such as https://crm.example.com,https://www.example.com`)
	}
	if c.Production() && !c.OperatorAuth() && !c.InsecureOperators {
		return nil, errors.New("NODE_ENV=production without operator authentication: set SWITCHBOARD_JWT_SECRET (or SWITCHBOARD_JWT_PUBLIC_KEY_FILE or SWITCHBOARD_JWT_JWKS_FILE), or SWITCHBOARD_INSECURE_OPERATORS=true to accept anyone as an operator")
	}
	if !c.pagesSet {
		c.Pages = !c.Production()
	}
	if !c.dashSet {
		c.Dashboard = !c.Production()
	}
	if c.Production() && c.Dashboard && !c.OperatorAuth() {
		return nil, errors.New("SWITCHBOARD_DASHBOARD=true: in production the dashboard needs operator authentication (it shows names): set SWITCHBOARD_JWT_SECRET (or SWITCHBOARD_JWT_PUBLIC_KEY_FILE or SWITCHBOARD_JWT_JWKS_FILE)")
	}
	if c.NodeID == "" {
		c.NodeID = generatedNodeID()
	}
	if c.MaxBufferedBytes == 0 { // auto
		c.MaxBufferedBytes = defaultMaxBuffered
		if c.MemoryLimit > 0 {
			c.MaxBufferedBytes = int(min(int64(c.MaxBufferedBytes), c.MemoryLimit/2))
		}
		c.MaxBufferedBytes = max(c.MaxBufferedBytes, c.MaxPayload())
	}
	if largest := c.MaxPayload(); c.MaxBufferedBytes < largest {
		return nil, fmt.Errorf("SWITCHBOARD_MAX_BUFFERED_BYTES=%d: must hold at least one largest message, %d bytes (from SWITCHBOARD_MAX_IMAGE_BYTES)", c.MaxBufferedBytes, largest)
	}
	if c.ClusterDeadAfter < 2*c.ClusterHeartbeat {
		return nil, fmt.Errorf("SWITCHBOARD_CLUSTER_DEAD_AFTER=%s: must be at least two heartbeats (%s), or a live node is taken for dead", c.ClusterDeadAfter, 2*c.ClusterHeartbeat)
	}
	if c.PingTimeout >= c.PingInterval*4 {
		return nil, fmt.Errorf("SWITCHBOARD_PING_TIMEOUT=%s: must be under four ping intervals (%s)", c.PingTimeout, c.PingInterval*4)
	}
	return c, nil
}

// defaultMaxBuffered is SWITCHBOARD_MAX_BUFFERED_BYTES's "auto" without a
// memory budget, or with one over twice as large.
const defaultMaxBuffered = 256 << 20

func apply(c *Config, key, val string) error {
	var err error
	switch key {
	case "port":
		c.Port, err = intIn(val, 0, 65535) // 0: any free port (tests)
	case "host":
		c.Host = val
	case "cors_origin":
		c.CORSOrigins, err = origins(val)
	case "node_env":
		if val != "development" && val != "production" && val != "test" {
			return errors.New("must be development, production or test")
		}
		c.Env = val
	case "path":
		if !strings.HasPrefix(val, "/") || strings.ContainsAny(val, " ?#") {
			return errors.New("must be a URL path starting with /")
		}
		c.Path = strings.TrimRight(val, "/")
		if c.Path == "" {
			return errors.New("must not be the root path")
		}
	case "log_level":
		err = c.LogLevel.UnmarshalText([]byte(val))
		if err != nil {
			err = errors.New("must be debug, info, warn or error")
		}
	case "log_format":
		if val != "" && val != "text" && val != "json" {
			return errors.New("must be text or json")
		}
		c.LogFormat = val
	case "max_image_bytes":
		c.MaxImageBytes, err = intIn(val, 1024, 100_000_000)
	case "max_text_chars":
		c.MaxTextChars, err = intIn(val, 1, 1_000_000)
	case "max_field_chars":
		c.MaxFieldChars, err = intIn(val, 1, 65_536)
	case "ping_interval":
		c.PingInterval, err = durationIn(val, 100*time.Millisecond, 10*time.Minute)
	case "ping_timeout":
		c.PingTimeout, err = durationIn(val, 100*time.Millisecond, 10*time.Minute)
	case "http_idle_timeout":
		c.HTTPIdleTimeout, err = durationIn(val, 100*time.Millisecond, time.Hour)
	case "shutdown_timeout":
		c.ShutdownTimeout, err = durationIn(val, 0, 10*time.Minute)
	case "allow_eio3":
		c.AllowEIO3, err = boolean(val)
	case "jwt_secret":
		c.JWTSecret, err = secret(val)
	case "jwt_public_key_file":
		c.JWTPublicKeyFile, err = readable(val)
	case "jwt_jwks_file":
		c.JWTJWKSFile, err = readable(val)
	case "jwt_issuer":
		c.JWTIssuer = val
	case "jwt_audience":
		c.JWTAudience = val
	case "jwt_allow_no_exp":
		c.JWTAllowNoExp, err = boolean(val)
	case "insecure_operators":
		c.InsecureOperators, err = boolean(val)
	case "client_secret":
		c.ClientSecret, err = secret(val)
	case "client_token_required":
		c.ClientTokenRequired, err = boolean(val)
	case "max_pending_bytes":
		c.MaxPendingBytes, err = intIn(val, 65_536, 1<<31-1)
	case "max_buffered_bytes":
		if strings.EqualFold(strings.TrimSpace(val), "auto") {
			c.MaxBufferedBytes = 0 // resolved once the memory budget is known
			break
		}
		c.MaxBufferedBytes, err = intIn(val, 1<<20, 1<<40)
	case "message_timeout":
		c.MessageTimeout, err = durationIn(val, 100*time.Millisecond, time.Hour)
	case "connect_timeout":
		c.ConnectTimeout, err = durationIn(val, 100*time.Millisecond, 10*time.Minute)
	case "memory_limit":
		c.MemoryLimit, err = memoryLimit(val)
	case "write_coalesce":
		c.WriteCoalesce, err = durationIn(val, 0, 50*time.Millisecond)
	case "websocket":
		if val != "native" && val != "library" {
			return errors.New("must be native or library")
		}
		c.WebSocketServer = val
	case "recovery_window":
		c.RecoveryWindow, err = durationIn(val, 0, 24*time.Hour)
	case "recovery_max_frames":
		c.RecoveryMaxFrames, err = intIn(val, 1, 10_000_000)
	case "recovery_max_bytes":
		c.RecoveryMaxBytes, err = intIn(val, 1024, 1<<31-1)
	case "queue_max_per_chat":
		c.QueueMaxPerChat, err = intIn(val, 1, 1_000_000)
	case "queue_max_chat_bytes":
		c.QueueMaxChatBytes, err = intIn(val, 1024, 1<<31-1)
	case "queue_max_total":
		c.QueueMaxTotal, err = intIn(val, 0, 10_000_000)
	case "queue_max_bytes":
		c.QueueMaxBytes, err = intIn(val, 1024, 1<<31-1)
	case "queue_max_age":
		c.QueueMaxAge, err = durationIn(val, time.Second, 7*24*time.Hour)
	case "pprof":
		c.Pprof, err = boolean(val)
	case "image_types":
		c.ImageTypes, err = imageTypes(val)
	case "message_rate":
		c.MessageRate, err = floatIn(val, 0.1, 10_000)
	case "message_burst":
		c.MessageBurst, err = intIn(val, 1, 100_000)
	case "typing_rate":
		c.TypingRate, err = floatIn(val, 0.1, 10_000)
	case "typing_burst":
		c.TypingBurst, err = intIn(val, 1, 100_000)
	case "abuse_limit":
		c.AbuseLimit, err = intIn(val, 0, 1_000_000)
	case "ip_max_connections":
		c.IPMaxConnections, err = intIn(val, 0, 1_000_000)
	case "ip_handshake_rate":
		c.IPHandshakeRate, err = floatIn(val, 0.1, 1_000_000)
	case "ip_handshake_burst":
		c.IPHandshakeBurst, err = intIn(val, 1, 1_000_000)
	case "ip_limit_loopback":
		c.IPLimitLoopback, err = boolean(val)
	case "trust_proxy":
		c.TrustProxy, err = boolean(val)
	case "redis_url":
		c.RedisURL, err = redisURL(val)
	case "pages":
		c.Pages, c.pagesSet, err = optionalBool(val)
	case "dashboard":
		c.Dashboard, c.dashSet, err = optionalBool(val)
	case "routing":
		if val != "broadcast" && val != "claim" && val != "auto" {
			return errors.New("must be broadcast, claim or auto")
		}
		c.Routing = val
	case "max_chats_per_operator":
		c.MaxChatsPerOperator, err = intIn(val, 1, 100_000)
	case "cluster_heartbeat":
		c.ClusterHeartbeat, err = durationIn(val, 50*time.Millisecond, time.Minute)
	case "cluster_dead_after":
		c.ClusterDeadAfter, err = durationIn(val, 100*time.Millisecond, 10*time.Minute)
	case "node_id":
		if val != "" && !nodeIDRe.MatchString(val) {
			return errors.New("must be 1 to 64 letters, digits, '.', '_' or '-'")
		}
		c.NodeID = val
	}
	return err
}

// secret checks an HS256 secret: a short one can be guessed offline from
// any token it signed.
func secret(s string) (string, error) {
	if s != "" && len(s) < 32 {
		return "", errors.New("must be at least 32 characters: a short HS256 secret can be guessed")
	}
	return s, nil
}

var nodeIDRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// generatedNodeID is the host name (as a node id may spell it) and a
// random suffix, so that two processes on one host differ.
func generatedNodeID() string {
	host, _ := os.Hostname()
	host = strings.Trim(regexp.MustCompile(`[^A-Za-z0-9._-]+`).ReplaceAllString(host, "-"), "-")
	if len(host) > 40 {
		host = host[:40]
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return cmp.Or(host, "node") + "-" + hex.EncodeToString(b[:])
}

func redactPassword(s string) string {
	if i := strings.LastIndex(s, "@"); i >= 0 {
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			return s[:j+3] + "***" + s[i:]
		}
	}
	return s
}

func redisURL(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		return "", errors.New("must be redis://[:password@]host:port[/db] or rediss://…")
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		if _, err := strconv.Atoi(db); err != nil {
			return "", errors.New("the path must be a database number, such as /0")
		}
	}
	return s, nil
}

// memoryLimit reads the memory budget: "auto", 0 (none), or bytes, which
// may end in KiB, MiB or GiB.
func memoryLimit(s string) (int64, error) {
	if strings.EqualFold(s, "auto") {
		return autoMemoryLimit(), nil
	}
	unit := int64(1)
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, unit = strings.TrimSpace(rest), u.n
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<50)/unit || (n > 0 && n*unit < 64<<20) {
		return 0, errors.New("must be auto, 0 (no budget), or bytes from 64 MiB up, such as 2147483648 or 2GiB")
	}
	return n * unit, nil
}

// autoMemoryLimit is three quarters of the memory this process may use:
// its cgroup's limit when it has one under the machine's RAM, else the
// RAM; 0 when neither can be read (no budget).
func autoMemoryLimit() int64 {
	avail := memTotal()
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && (avail == 0 || n < avail) {
			avail = n // "max", or v1's huge number for none, leave the RAM
		}
		break
	}
	return avail / 4 * 3
}

// memTotal is the machine's RAM from /proc/meminfo, 0 if unknown.
func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return n << 10
				}
			}
		}
	}
	return 0
}

func intIn(s string, lo, hi int) (int, error) {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil || fmt.Sprint(n) != s {
		return 0, fmt.Errorf("must be a whole number from %d to %d", lo, hi)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("must be from %d to %d", lo, hi)
	}
	return n, nil
}

func floatIn(s string, lo, hi float64) (float64, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < lo || f > hi {
		return 0, fmt.Errorf("must be a number from %g to %g", lo, hi)
	}
	return f, nil
}

func readable(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("cannot read the file: %w", errors.Unwrap(err))
	}
	f.Close()
	return path, nil
}

// imageTypes reads "png,jpeg" or "image/png,image/jpeg".
func imageTypes(s string) ([]string, error) {
	known := map[string]bool{"png": true, "jpeg": true, "gif": true, "webp": true}
	var out []string
	for _, t := range strings.Split(s, ",") {
		t = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(t)), "image/")
		if t == "jpg" {
			t = "jpeg"
		}
		if t == "" {
			continue
		}
		if !known[t] {
			return nil, fmt.Errorf("%q is not one of png, jpeg, gif, webp", t)
		}
		out = append(out, "image/"+t)
	}
	return out, nil
}

func durationIn(s string, lo, hi time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("must be a duration such as 500ms or 10s")
	}
	if d < lo || d > hi {
		return 0, fmt.Errorf("must be from %s to %s", lo, hi)
	}
	return d, nil
}

func boolean(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true", "1", "yes":
		return true, nil
	case "false", "0", "no":
		return false, nil
	}
	return false, errors.New("must be true or false")
}

// optionalBool is a boolean whose default depends on other settings: set
// reports whether it was given at all.
func optionalBool(s string) (v, set bool, err error) {
	if s == "" {
		return false, false, nil
	}
	v, err = boolean(s)
	return v, err == nil, err
}

func origins(s string) ([]string, error) {
	if s == "*" {
		return []string{"*"}, nil
	}
	var out []string
	for _, o := range strings.Split(s, ",") {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "" {
			continue
		}
		if o == "*" || !(strings.HasPrefix(o, "http://") || strings.HasPrefix(o, "https://")) || strings.Count(o, "/") != 2 {
			return nil, fmt.Errorf("%q is not an origin such as https://crm.example.com (or use * alone)", o)
		}
		out = append(out, o)
	}
	if len(out) == 0 {
		return nil, errors.New(`must be "*" or a comma-separated list of origins`)
	}
	return out, nil
}
