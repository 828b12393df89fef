// Package loadtest simulates thousands of players and operators against any
// server that speaks the Switchboard contract (docs/EVENTS.md), measures
// connection, join and message latencies, and accounts for every message:
// delivered, lost, duplicated or misrouted. Each participant is an actor
// with one real Socket.IO connection; cmd/loadtest is its command line.
package loadtest

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard/switchboard/client"
)

// Scenario is one load test: who connects, how they talk, what passes.
// Every field has a flag and a YAML key of the same name (see Flags).
type Scenario struct {
	URL       string `json:"url"`
	Path      string `json:"path"`
	Players   int    `json:"players"`
	Operators int    `json:"operators"`
	// Rate is chat messages per second per player; arrivals are Poisson,
	// so 2,000 players at 0.5 send 1,000 messages/s with random gaps.
	Rate     float64       `json:"rate"`
	Duration time.Duration `json:"duration"`
	// Ramp is new connections per second while the crowd arrives.
	Ramp float64 `json:"ramp"`

	TextSize   int     `json:"text_size"`
	ImageShare float64 `json:"image_share"`
	ImageSize  int     `json:"image_size"` // bytes of base64
	// TypingShare of messages (and replies) are preceded by a typing
	// indicator that lasts TypingTime.
	TypingShare float64       `json:"typing_share"`
	TypingTime  time.Duration `json:"typing_time"`
	// ReplyChance is the chance that a message gets a reply; its operator
	// thinks for ReplyThink on average (uniform, ±50 %).
	ReplyChance float64       `json:"reply_chance"`
	ReplyThink  time.Duration `json:"reply_think"`
	// Churn is the share of players that leave per minute, each replaced by
	// a new player on a new connection; ChurnEndChat of those send endChat
	// first, the others just disconnect.
	Churn        float64 `json:"churn"`
	ChurnEndChat float64 `json:"churn_end_chat"`

	// Tokens go in the handshake auth as {token}: a fixed one per role, or
	// an HS256 JWT signed with the role's secret for each connection (the
	// server's SWITCHBOARD_JWT_SECRET for operators, SWITCHBOARD_CLIENT_SECRET
	// for players). They never reach the report.
	PlayerToken    string        `json:"-"`
	OperatorToken  string        `json:"-"`
	PlayerSecret   string        `json:"-"`
	OperatorSecret string        `json:"-"`
	TokenIssuer    string        `json:"-"`
	TokenAudience  string        `json:"-"`
	TokenTTL       time.Duration `json:"-"`

	// Transport: websocket, polling, upgrade, mix (80 % websocket, 10 %
	// polling, 10 % upgrade), or weights such as "websocket:70,polling:30".
	Transport string `json:"transport"`

	// Drain is how long stragglers may take after the last send.
	Drain          time.Duration `json:"drain"`
	ConnectTimeout time.Duration `json:"connect_timeout"`
	// Settle is when an operator counts as joined if the server neither
	// acknowledges its join nor sends it anything (the Node server).
	Settle time.Duration `json:"settle"`
	// MaxRestarts within a minute before the supervisor gives up on a
	// participant.
	MaxRestarts int    `json:"max_restarts"`
	Seed        uint64 `json:"seed"`

	// Reconnect: participants reconnect by themselves after a transport
	// drop, as socket.io-client does, asking the server to recover their
	// socket; a fresh one joins again. Off, a drop is a failure and the
	// supervisor restarts the participant. BlipRate and Storm imply it.
	Reconnect bool `json:"reconnect"`
	// ReconnectDelay is the first wait before a reconnection, doubling up
	// to 5 s, ±50 %: socket.io-client's 1 s by default, which most of a
	// recovery's time is.
	ReconnectDelay time.Duration `json:"reconnect_delay"`
	// BlipRate is transport drops per second across all participants, at
	// random (Poisson) times during the load: no DISCONNECT, no goodbye.
	BlipRate float64 `json:"blip_rate"`
	// Storm drops N players at once at T after the load starts: "2000@10s",
	// or several, comma-separated.
	Storm    string `json:"storm,omitempty"`
	Insecure bool   `json:"insecure_tls,omitempty"`

	SLO string `json:"slo,omitempty"`

	// Routing is the server's SWITCHBOARD_ROUTING: broadcast (every
	// operator gets every message, and the operator of slot modulo the
	// operators replies), auto (a player talks once it is assigned, and
	// its owner alone receives and replies) or claim (the operator of slot
	// modulo the operators claims each new chat, then the same).
	Routing string `json:"routing,omitempty"`
}

// routed tells whether chats have owners (routing auto or claim).
func (s *Scenario) routed() bool { return s.Routing == "auto" || s.Routing == "claim" }

// Defaults is a small run that any laptop holds.
func Defaults() Scenario {
	return Scenario{
		URL:            "http://localhost:3001",
		Path:           "/chat",
		Players:        100,
		Operators:      5,
		Rate:           0.2,
		Duration:       30 * time.Second,
		Ramp:           500,
		TextSize:       64,
		ImageSize:      16 << 10,
		TypingTime:     500 * time.Millisecond,
		ReplyChance:    0.5,
		ReplyThink:     time.Second,
		ChurnEndChat:   0.5,
		TokenTTL:       time.Hour,
		Transport:      "websocket",
		Drain:          2 * time.Second,
		ConnectTimeout: 10 * time.Second,
		Settle:         time.Second,
		MaxRestarts:    5,
		Seed:           1,
		ReconnectDelay: time.Second,
	}
}

// Validate checks every field and normalises the URL; the error names the
// flag.
func (s *Scenario) Validate() error {
	var errs []error
	bad := func(flag, format string, a ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, a...)))
	}
	u, err := url.Parse(s.URL)
	switch {
	case err != nil:
		bad("url", "%v", err)
	case u.Host == "":
		bad("url", "%q has no host", s.URL)
	default:
		switch u.Scheme {
		case "http", "https":
		case "ws", "wss":
			u.Scheme = strings.Replace(u.Scheme, "ws", "http", 1)
		default:
			bad("url", "scheme %q: want http or https", u.Scheme)
		}
		// A path in the URL is the Socket.IO path unless --path says otherwise.
		if u.Path != "" && u.Path != "/" && s.Path == "/chat" {
			s.Path = u.Path
		}
		u.Path, u.RawQuery = "", ""
		s.URL = u.String()
	}
	if !strings.HasPrefix(s.Path, "/") {
		bad("path", "%q must start with /", s.Path)
	}
	switch s.Routing {
	case "", "broadcast", "auto", "claim":
	default:
		bad("routing", "%q must be broadcast, auto or claim", s.Routing)
	}
	if s.Players < 0 || s.Operators < 0 || s.Players+s.Operators == 0 {
		bad("players", "players (%d) and operators (%d) must be ≥ 0, and not both 0", s.Players, s.Operators)
	}
	if s.Rate < 0 {
		bad("rate", "%v must be ≥ 0", s.Rate)
	}
	if s.Duration <= 0 {
		bad("duration", "%v must be > 0", s.Duration)
	}
	if s.Ramp <= 0 {
		bad("ramp", "%v must be > 0", s.Ramp)
	}
	if s.TextSize < 0 || s.ImageSize < 4 {
		bad("text-size", "text size %d must be ≥ 0 and image size %d ≥ 4", s.TextSize, s.ImageSize)
	}
	for _, f := range []struct {
		flag string
		v    float64
	}{{"image-share", s.ImageShare}, {"typing-share", s.TypingShare}, {"reply-chance", s.ReplyChance}, {"churn-end-chat", s.ChurnEndChat}} {
		if f.v < 0 || f.v > 1 {
			bad(f.flag, "%v must be between 0 and 1", f.v)
		}
	}
	if s.Churn < 0 || s.Churn > 60 {
		bad("churn", "%v must be between 0 and 60 (share of players per minute)", s.Churn)
	}
	if s.TypingTime < 0 || s.ReplyThink < 0 || s.Drain < 0 {
		bad("typing-time", "durations must be ≥ 0")
	}
	if s.ConnectTimeout <= 0 || s.Settle <= 0 || s.TokenTTL <= 0 {
		bad("connect-timeout", "connect timeout, settle and token TTL must be > 0")
	}
	if s.MaxRestarts < 1 {
		bad("max-restarts", "%d must be ≥ 1", s.MaxRestarts)
	}
	s.Reconnect = s.reconnects() // blips and storms imply it: the report says so
	if s.BlipRate < 0 {
		bad("blip-rate", "%v must be ≥ 0", s.BlipRate)
	}
	if s.ReconnectDelay <= 0 {
		bad("reconnect-delay", "%v must be > 0", s.ReconnectDelay)
	}
	if storms, err := parseStorms(s.Storm); err != nil {
		bad("storm", "%v", err)
	} else {
		for _, st := range storms {
			if st.at >= s.Duration {
				bad("storm", "%d@%v is not within --duration %v", st.n, st.at, s.Duration)
			}
		}
	}
	if _, err := parseMix(s.Transport); err != nil {
		bad("transport", "%v", err)
	}
	if _, err := ParseSLO(s.SLO); err != nil {
		bad("slo", "%v", err)
	}
	return errors.Join(errs...)
}

// mix is a weighted choice of transports.
type mix []struct {
	t client.Transport
	w float64 // cumulative, ending at 1
}

func parseMix(spec string) (mix, error) {
	switch spec {
	case "", "websocket", "polling", "upgrade":
		if spec == "" {
			spec = "websocket"
		}
		return mix{{client.Transport(spec), 1}}, nil
	case "mix":
		spec = "websocket:80,polling:10,upgrade:10"
	}
	weights := map[client.Transport]float64{}
	var total float64
	for _, part := range strings.Split(spec, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(part), ":")
		t := client.Transport(name)
		if t != client.WebSocket && t != client.Polling && t != client.Upgrade {
			return nil, fmt.Errorf("%q: want websocket, polling, upgrade, mix or weights like websocket:70,polling:30", spec)
		}
		f := 1.0
		if ok {
			var err error
			if f, err = strconv.ParseFloat(w, 64); err != nil || f < 0 {
				return nil, fmt.Errorf("%q: weight %q is not a number ≥ 0", spec, w)
			}
		}
		weights[t] += f
		total += f
	}
	if total <= 0 {
		return nil, fmt.Errorf("%q: weights add up to 0", spec)
	}
	names := make([]string, 0, len(weights))
	for t := range weights {
		names = append(names, string(t))
	}
	sort.Strings(names) // deterministic: the same seed picks the same transports
	var m mix
	var cum float64
	for _, n := range names {
		cum += weights[client.Transport(n)] / total
		m = append(m, struct {
			t client.Transport
			w float64
		}{client.Transport(n), cum})
	}
	m[len(m)-1].w = 1
	return m, nil
}

// pick chooses the transport for a uniform u in [0,1).
func (m mix) pick(u float64) client.Transport {
	for _, e := range m {
		if u < e.w {
			return e.t
		}
	}
	return m[len(m)-1].t
}

// socketsPer is how many file descriptors a transport holds: a pending
// long-poll and a POST for polling, one websocket otherwise (upgrade
// briefly holds both, and then its idle poll connection is reused).
func (m mix) socketsPer() float64 {
	var prev, n float64
	for _, e := range m {
		per := 1.0
		if e.t == client.Polling {
			per = 2
		}
		n += (e.w - prev) * per
		prev = e.w
	}
	return n
}
