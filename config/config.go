// Package config reads Switchboard's settings: environment first (the
// guide's PORT, CORS_ORIGIN and NODE_ENV, then SWITCHBOARD_* for the rest),
// an optional YAML/JSON/TOML file, and command-line flags, with viper.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
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
	// ShutdownTimeout bounds a graceful stop (SWITCHBOARD_SHUTDOWN_TIMEOUT,
	// default 10s).
	ShutdownTimeout time.Duration
	// AllowEIO3 accepts socket.io-client 2.x (Engine.IO 3)
	// (SWITCHBOARD_ALLOW_EIO3, default true).
	AllowEIO3 bool
}

// Production reports whether NODE_ENV is production.
func (c *Config) Production() bool { return c.Env == "production" }

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
	{"shutdown_timeout", "SWITCHBOARD_SHUTDOWN_TIMEOUT", "shutdown-timeout", "10s", "graceful shutdown deadline"},
	{"allow_eio3", "SWITCHBOARD_ALLOW_EIO3", "allow-eio3", "true", "accept socket.io-client 2.x (Engine.IO 3)"},
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
			return nil, fmt.Errorf("%s=%q: %w", src, val, err)
		}
	}
	if c.LogFormat == "" {
		c.LogFormat = "text"
		if c.Production() {
			c.LogFormat = "json"
		}
	}
	if c.PingTimeout >= c.PingInterval*4 {
		return nil, fmt.Errorf("SWITCHBOARD_PING_TIMEOUT=%s: must be under four ping intervals (%s)", c.PingTimeout, c.PingInterval*4)
	}
	return c, nil
}

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
	case "shutdown_timeout":
		c.ShutdownTimeout, err = durationIn(val, 0, 10*time.Minute)
	case "allow_eio3":
		c.AllowEIO3, err = boolean(val)
	}
	return err
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
