package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is everything a run measured; --report writes it as JSON.
type Result struct {
	Scenario  *Scenario `json:"scenario"`
	Auth      string    `json:"auth"`
	StartedAt time.Time `json:"started_at"`
	ElapsedS  float64   `json:"elapsed_s"`
	// LoadS is the steady load, from the last player's arrival to the end:
	// the window that the throughput averages cover.
	LoadS       float64     `json:"load_s"`
	Players     Population  `json:"players"`
	Operators   Population  `json:"operators"`
	Connections Connections `json:"connections"`
	Messages    Messages    `json:"messages"`
	Latency     Latency     `json:"latency"`
	Throughput  Throughput  `json:"throughput"`
	// Recovery is there when participants reconnect by themselves.
	Recovery    *Recovery        `json:"recovery,omitempty"`
	Errors      map[string]int64 `json:"errors"`
	ErrorsTotal int64            `json:"errors_total"`
	Thresholds  []Threshold      `json:"thresholds"`
	Passed      bool             `json:"passed"`
	Timeline    []Sample         `json:"timeline"`
}

// Population is how many of one kind of participant the set-up held.
type Population struct {
	Target int `json:"target"`
	// Connected is how many were connected when the load ended.
	Connected int64 `json:"connected"`
	Peak      int64 `json:"peak"`
}

// Connections counts connection attempts and their fate.
type Connections struct {
	Attempts   int64 `json:"attempts"`
	Succeeded  int64 `json:"succeeded"`
	Failures   int64 `json:"failures"` // participant failures, each followed by a restart
	GaveUp     int64 `json:"gave_up"`  // participants that failed MaxRestarts times in a minute
	Departures int64 `json:"departures"`
	// RatePerS is successful connections per second, first dial to last
	// connection.
	RatePerS      float64 `json:"rate_per_s"`
	PlayersJoined int64   `json:"players_joined"`
}

// Messages is the accounting in both directions and in total.
type Messages struct {
	Accounts
	PlayerToOperator Accounts `json:"player_to_operator"`
	OperatorToPlayer Accounts `json:"operator_to_player"`
	// Events is every event received, typing and presence included.
	Events int64 `json:"events_received"`
	// DeliveriesPerMessage is incomingMessage events read by operators per
	// player message sent (and not refused): the operators in broadcast
	// mode, ~1 (the owner) under routing.
	DeliveriesPerMessage float64 `json:"deliveries_per_message"`
	// Unassigned: sends skipped while a chat had no owner (routing).
	Unassigned int64 `json:"unassigned,omitempty"`
}

// Latency are the distributions, in milliseconds.
type Latency struct {
	Connect          Summary `json:"connect"`
	Join             Summary `json:"join"`
	PlayerToOperator Summary `json:"player_to_operator"`
	OperatorToPlayer Summary `json:"operator_to_player"`
}

// Throughput is per second over the steady load (the ramp excluded), and
// the best second of the whole run.
type Throughput struct {
	SentPerS       float64 `json:"sent_per_s"`
	RepliesPerS    float64 `json:"replies_per_s"`
	DeliveriesPerS float64 `json:"deliveries_per_s"`
	PeakSentPerS   float64 `json:"peak_sent_per_s"`
	PeakDeliveries float64 `json:"peak_deliveries_per_s"`
}

func buildResult(sc *Scenario, e *env, players, operators int64, p2o, o2p Accounts, steady window, samples []Sample) *Result {
	m := e.m
	errs, total := m.Errors()
	r := &Result{
		Scenario:  sc,
		Auth:      e.tokens.mode(),
		StartedAt: m.start,
		ElapsedS:  time.Since(m.start).Seconds(),
		LoadS:     steady.to.Sub(steady.from).Seconds(),
		Players:   Population{Target: sc.Players, Connected: players, Peak: m.PeakPlayers.Load()},
		Operators: Population{Target: sc.Operators, Connected: operators, Peak: m.PeakOperators.Load()},
		Connections: Connections{
			Attempts: m.ConnectAttempts.Load(), Succeeded: m.Connects.Load(),
			Failures: m.Failures.Load(), GaveUp: m.GaveUp.Load(), Departures: m.Departures.Load(),
			RatePerS: m.ConnectRate(), PlayersJoined: m.PlayersJoined.Load(),
		},
		Messages: Messages{PlayerToOperator: p2o, OperatorToPlayer: o2p, Events: m.Events.Load()},
		Latency: Latency{
			Connect:          m.Connect.Snapshot().Summary(),
			Join:             m.Join.Snapshot().Summary(),
			PlayerToOperator: m.P2O.Snapshot().Summary(),
			OperatorToPlayer: m.O2P.Snapshot().Summary(),
		},
		Errors:      errs,
		ErrorsTotal: total,
		Timeline:    samples,
	}
	r.Messages.add(p2o)
	r.Messages.add(o2p)
	if n := p2o.Sent - p2o.Refused; n > 0 {
		r.Messages.DeliveriesPerMessage = float64(m.IncomingP2O.Load()) / float64(n)
	}
	r.Messages.Unassigned = m.Unassigned.Load()
	if s := r.LoadS; s > 0 {
		r.Throughput.SentPerS = float64(steady.sent) / s
		r.Throughput.RepliesPerS = float64(steady.replies) / s
		r.Throughput.DeliveriesPerS = float64(steady.delivered) / s
	}
	for _, x := range samples {
		r.Throughput.PeakSentPerS = max(r.Throughput.PeakSentPerS, x.SentPerS)
		r.Throughput.PeakDeliveries = max(r.Throughput.PeakDeliveries, x.DeliverPerS)
	}
	if sc.reconnects() {
		r.Recovery = buildRecovery(m, p2o.LostFresh+o2p.LostFresh)
	}
	slo, _ := ParseSLO(sc.SLO) // validated before the run
	r.Thresholds, r.Passed = slo.Evaluate(r)
	return r
}

// WriteJSON writes the result to a file.
func (r *Result) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// WriteTable prints the summary that a person reads at the end of a run.
func (r *Result) WriteTable(w io.Writer) error {
	sc := r.Scenario
	fmt.Fprintf(w, "\nload test  %s%s  %s, %.0fs of load, transport %s, auth %s\n\n",
		sc.URL, sc.Path, plural(sc.Players, "player")+" + "+plural(sc.Operators, "operator"), r.LoadS, sc.Transport, r.Auth)
	// One table per section, so that each aligns its own columns; labels
	// are padded to one width so they read left-aligned.
	section := func(rows ...[]any) error {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		for _, cells := range rows {
			fmt.Fprintf(tw, "  %-16s", cells[0])
			for _, c := range cells[1:] {
				fmt.Fprintf(tw, "\t%v", c)
			}
			fmt.Fprint(tw, "\t\n")
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		_, err := fmt.Fprintln(w)
		return err
	}
	c := r.Connections
	lat := func(name string, s Summary) []any {
		return []any{name, s.Count, ms(s.P50), ms(s.P90), ms(s.P99), ms(s.P999), ms(s.Max)}
	}
	acc := func(name string, a Accounts) []any {
		return []any{name, a.Sent, a.Refused, a.Expected, a.Delivered, a.Lost, pct(a.LossRatio), a.Duplicated, a.Misrouted}
	}
	t := r.Throughput
	for _, rows := range [][][]any{
		{
			{"participants", "target", "connected", "peak"},
			{"players", r.Players.Target, r.Players.Connected, r.Players.Peak},
			{"operators", r.Operators.Target, r.Operators.Connected, r.Operators.Peak},
		},
		{
			{"connections", "attempts", "ok", "rate/s", "failures", "gave up", "left (churn)"},
			{"", c.Attempts, c.Succeeded, f1(c.RatePerS), c.Failures, c.GaveUp, c.Departures},
		},
		{
			{"latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max"},
			lat("connect", r.Latency.Connect),
			lat("join", r.Latency.Join),
			lat("player→operator", r.Latency.PlayerToOperator),
			lat("operator→player", r.Latency.OperatorToPlayer),
		},
		{
			{"messages", "sent", "refused", "expected", "delivered", "lost", "loss", "duplicated", "misrouted"},
			acc("player→operator", r.Messages.PlayerToOperator),
			acc("operator→player", r.Messages.OperatorToPlayer),
			acc("total", r.Messages.Accounts),
		},
		{
			{"throughput (/s)", "messages", "replies", "deliveries", "peak msgs", "peak deliv", "deliv/msg"},
			{"", f1(t.SentPerS), f1(t.RepliesPerS), f1(t.DeliveriesPerS), f1(t.PeakSentPerS), f1(t.PeakDeliveries), f2(r.Messages.DeliveriesPerMessage)},
		},
	} {
		if err := section(rows...); err != nil {
			return err
		}
	}
	if rc := r.Recovery; rc != nil {
		if err := section(
			[]any{"recovery", "blips", "storms", "storm drops", "reconnects", "recovered", "fresh", "lost (fresh)"},
			[]any{"", rc.Blips, rc.Storms, rc.StormDrops, rc.Reconnects, rc.Recovered, rc.Fresh, rc.LostFresh},
		); err != nil {
			return err
		}
		if err := section(
			[]any{"recovery (ms)", "count", "p50", "p90", "p99", "p99.9", "max"},
			lat("drop→recovered", rc.Time),
		); err != nil {
			return err
		}
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "  errors (%d)\n", r.ErrorsTotal)
		for _, k := range sortedKeys(r.Errors) {
			fmt.Fprintf(w, "  %8d  %s\n", r.Errors[k], k)
		}
		fmt.Fprintln(w)
	}
	if len(r.Thresholds) > 0 {
		fmt.Fprintln(w, "  thresholds")
		for _, th := range r.Thresholds {
			mark := "ok  "
			if !th.OK {
				mark = "FAIL"
			}
			fmt.Fprintf(w, "  %s  %-24s actual %s\n", mark, th.Expr, th.Actual)
		}
		fmt.Fprintln(w)
	}
	return nil
}

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func pct(share float64) string {
	if share == 0 {
		return "0%"
	}
	return fmt.Sprintf("%.3g%%", 100*share)
}

func f1(v float64) string { return fmt.Sprintf("%.1f", v) }

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, strings.TrimSuffix(word, "s"))
}
func f2(v float64) string { return fmt.Sprintf("%.2f", v) }
