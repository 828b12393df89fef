package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// Exit codes of the command, as k6 has them for thresholds.
const (
	ExitOK            = 0
	ExitError         = 1  // the run could not be made or its report not written
	ExitUsage         = 2  // a bad flag or scenario file
	ExitThresholdMiss = 99 // the run completed and missed a --slo threshold
)

// Main is the load tester's command line: flags and an optional YAML
// scenario (--config), the run with a live line on stderr, the table on
// stdout, the report files, and the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	sc, out, err := parseArgs(args, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return ExitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	stopProfile, err := startCPUProfile(out.cpuprofile)
	if err != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return ExitError
	}
	live := newLiveLine(stderr, out.quiet)
	res, err := Run(ctx, *sc, RunOptions{Log: log, OnProgress: live.update})
	live.finish()
	if perr := stopProfile(); perr != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", perr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return ExitError
	}
	if err := res.WriteTable(stdout); err != nil {
		fmt.Fprintf(stderr, "loadtest: %v\n", err)
		return ExitError
	}
	code := ExitOK
	if out.report != "" {
		if err := res.WriteJSON(out.report); err != nil {
			fmt.Fprintf(stderr, "loadtest: %v\n", err)
			code = ExitError
		}
	}
	if out.html != "" {
		if err := res.WriteHTML(out.html); err != nil {
			fmt.Fprintf(stderr, "loadtest: %v\n", err)
			code = ExitError
		}
	}
	if code == ExitOK && !res.Passed {
		fmt.Fprintln(stderr, "loadtest: thresholds missed")
		code = ExitThresholdMiss
	}
	return code
}

// outputs are the flags that do not change the scenario itself.
type outputs struct {
	report, html string
	cpuprofile   string
	quiet        bool
}

// parseArgs reads the scenario: flags win over the --config YAML file,
// which wins over LOADTEST_* environment variables and the defaults.
func parseArgs(args []string, stderr io.Writer) (*Scenario, outputs, error) {
	d := Defaults()
	fs := pflag.NewFlagSet("loadtest", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: loadtest [flags]\n\nSimulates players and operators against a Switchboard (or any server of the same contract) and reports latency, delivery and errors.\n\n%s", fs.FlagUsages())
	}
	fs.String("config", "", "scenario file (YAML; keys are the flag names)")
	fs.String("url", d.URL, "server base URL, http(s)://host:port")
	fs.String("path", d.Path, "Socket.IO path")
	fs.Int("players", d.Players, "simulated players")
	fs.Int("operators", d.Operators, "simulated operators")
	fs.Float64("rate", d.Rate, "messages per second per player (Poisson arrivals)")
	fs.Duration("duration", d.Duration, "how long the load holds once every player has arrived")
	fs.Float64("ramp", d.Ramp, "new connections per second while the crowd arrives")
	fs.Int("text-size", d.TextSize, "bytes per text message")
	fs.Float64("image-share", d.ImageShare, "share of messages that are images (0..1)")
	fs.Int("image-size", d.ImageSize, "bytes of base64 per image")
	fs.Float64("typing-share", d.TypingShare, "share of messages and replies preceded by a typing indicator (0..1)")
	fs.Duration("typing-time", d.TypingTime, "how long typing lasts before the message")
	fs.Float64("reply-chance", d.ReplyChance, "chance that an operator replies to a message (0..1)")
	fs.Duration("reply-think", d.ReplyThink, "operator think time before a reply, on average (±50%)")
	fs.Float64("churn", d.Churn, "share of players that leave per minute, each replaced by a new one")
	fs.Float64("churn-end-chat", d.ChurnEndChat, "share of leaving players that send endChat before disconnecting")
	fs.String("player-token", "", "fixed handshake token for players")
	fs.String("operator-token", "", "fixed handshake token for operators")
	fs.String("operator-secret", "", "HS256 secret (the server's SWITCHBOARD_JWT_SECRET): sign an operator JWT per connection")
	fs.String("player-secret", "", "HS256 secret (the server's SWITCHBOARD_CLIENT_SECRET): sign a player JWT per connection")
	fs.String("token-issuer", "", "iss claim of signed tokens, if the server checks it")
	fs.String("token-audience", "", "aud claim of signed tokens, if the server checks it")
	fs.Duration("token-ttl", d.TokenTTL, "lifetime of signed tokens")
	fs.String("transport", d.Transport, "websocket, polling, upgrade, mix, or weights like websocket:70,polling:30")
	fs.Duration("drain", d.Drain, "how long stragglers may take after the last message")
	fs.Duration("connect-timeout", d.ConnectTimeout, "limit for one connection's handshake")
	fs.Duration("settle", d.Settle, "when an operator counts as joined if the server does not acknowledge joins")
	fs.Int("max-restarts", d.MaxRestarts, "failures within a minute before a participant is given up")
	fs.Uint64("seed", d.Seed, "random seed: the same seed makes the same arrivals")
	fs.Bool("reconnect", false, "participants reconnect by themselves after a transport drop, with session recovery (implied by --blip-rate and --storm)")
	fs.Duration("reconnect-delay", d.ReconnectDelay, "first wait before a reconnection, doubling to 5s, ±50% (socket.io-client's default)")
	fs.Float64("blip-rate", 0, "transport drops per second across all participants during the load (Poisson), no goodbye")
	fs.String("storm", "", `players dropped at once: N@T after the load starts, e.g. "2000@10s" (comma-separated for several)`)
	fs.Bool("insecure", false, "accept any TLS certificate (staging)")
	fs.String("routing", "broadcast", "the server's SWITCHBOARD_ROUTING: broadcast, auto (players talk once assigned; owners alone receive and reply) or claim (operators claim new chats first)")
	fs.String("slo", "", `thresholds, e.g. "p99<50ms,loss=0"; missing one exits 99`)
	fs.String("report", "", "write the result as JSON to this file")
	fs.String("html", "", "write a self-contained HTML report with charts to this file")
	fs.Bool("quiet", false, "no live line (CI)")
	fs.String("cpuprofile", "", "write the load tool's own CPU profile (pprof) to this file: what the generator costs on cores it shares with the server")
	if err := fs.Parse(args); err != nil {
		return nil, outputs{}, err
	}
	if fs.NArg() > 0 {
		return nil, outputs{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	v := viper.New()
	v.SetEnvPrefix("LOADTEST")
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	if err := v.BindPFlags(fs); err != nil {
		return nil, outputs{}, fmt.Errorf("flags: %w", err)
	}
	if path, _ := fs.GetString("config"); path != "" {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, outputs{}, fmt.Errorf("--config %s: %w", path, err)
		}
		known := map[string]bool{}
		fs.VisitAll(func(f *pflag.Flag) { known[f.Name] = true })
		for _, k := range v.AllKeys() {
			if !known[k] {
				return nil, outputs{}, fmt.Errorf("--config %s: unknown key %q (keys are the flag names)", path, k)
			}
		}
	}
	sc := &Scenario{
		URL:            v.GetString("url"),
		Path:           v.GetString("path"),
		Players:        v.GetInt("players"),
		Operators:      v.GetInt("operators"),
		Rate:           v.GetFloat64("rate"),
		Duration:       v.GetDuration("duration"),
		Ramp:           v.GetFloat64("ramp"),
		TextSize:       v.GetInt("text-size"),
		ImageShare:     v.GetFloat64("image-share"),
		ImageSize:      v.GetInt("image-size"),
		TypingShare:    v.GetFloat64("typing-share"),
		TypingTime:     v.GetDuration("typing-time"),
		ReplyChance:    v.GetFloat64("reply-chance"),
		ReplyThink:     v.GetDuration("reply-think"),
		Churn:          v.GetFloat64("churn"),
		ChurnEndChat:   v.GetFloat64("churn-end-chat"),
		PlayerToken:    v.GetString("player-token"),
		OperatorToken:  v.GetString("operator-token"),
		PlayerSecret:   v.GetString("player-secret"),
		OperatorSecret: v.GetString("operator-secret"),
		TokenIssuer:    v.GetString("token-issuer"),
		TokenAudience:  v.GetString("token-audience"),
		TokenTTL:       v.GetDuration("token-ttl"),
		Transport:      v.GetString("transport"),
		Drain:          v.GetDuration("drain"),
		ConnectTimeout: v.GetDuration("connect-timeout"),
		Settle:         v.GetDuration("settle"),
		MaxRestarts:    v.GetInt("max-restarts"),
		Seed:           v.GetUint64("seed"),
		Reconnect:      v.GetBool("reconnect"),
		ReconnectDelay: v.GetDuration("reconnect-delay"),
		BlipRate:       v.GetFloat64("blip-rate"),
		Storm:          v.GetString("storm"),
		Insecure:       v.GetBool("insecure"),
		SLO:            v.GetString("slo"),
		Routing:        v.GetString("routing"),
	}
	if err := sc.Validate(); err != nil {
		return nil, outputs{}, err
	}
	return sc, outputs{report: v.GetString("report"), html: v.GetString("html"), cpuprofile: v.GetString("cpuprofile"), quiet: v.GetBool("quiet")}, nil
}

// startCPUProfile profiles this process into path until the returned stop
// is called; with no path it does nothing.
func startCPUProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("--cpuprofile: %w", err)
		}
		return nil
	}, nil
}

// liveLine shows progress on stderr: rewritten in place on a terminal, a
// plain line every ten seconds otherwise (CI logs), nothing with --quiet.
type liveLine struct {
	w     io.Writer
	tty   bool
	quiet bool
	last  time.Time
	drawn bool
}

func newLiveLine(w io.Writer, quiet bool) *liveLine {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil {
			tty = st.Mode()&os.ModeCharDevice != 0
		}
	}
	return &liveLine{w: w, tty: tty, quiet: quiet}
}

func (l *liveLine) update(p Progress) {
	if l.quiet {
		return
	}
	line := fmt.Sprintf("%5.0fs %-9s players %d/%d  operators %d/%d  msg/s %.0f  deliv/s %.0f  p99 %sms  errors %d  failures %d",
		p.Elapsed.Seconds(), p.Phase, p.Players, p.TargetPlayers, p.Operators, p.TargetOps, p.SentPerS, p.DeliverPerS, ms(p.P99), p.Errors, p.Failures)
	if p.Misrouted > 0 {
		line += fmt.Sprintf("  misrouted %d", p.Misrouted)
	}
	if l.tty {
		fmt.Fprint(l.w, "\r\033[K"+line)
		l.drawn = true
		return
	}
	if time.Since(l.last) >= 10*time.Second {
		fmt.Fprintln(l.w, line)
		l.last = time.Now()
	}
}

func (l *liveLine) finish() {
	if l.drawn {
		fmt.Fprintln(l.w)
	}
}
