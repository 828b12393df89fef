package loadtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard/switchboard/client"
)

// Network blips and storms, and the reconnections that follow. With
// Scenario.reconnects(), participants reconnect by themselves after a
// transport drop, as socket.io-client does, and ask the server to recover
// their socket (pid and last offset); a socket that the server could not
// recover is fresh and joins again. The ledger keeps counting every
// message by its marker: a recovered socket must get exactly what it
// missed, once; what a fresh one could not get is still lost, and the
// share of Lost that fresh sessions explain is reported beside it.

// Messages about drops.
type (
	// drop asks the crowd to drop n participants' transports: one at
	// random among all for a blip, n distinct players for a storm.
	drop struct {
		n     int
		storm bool
	}
	// blip tells a participant to drop its transport now.
	blip struct{ storm bool }
	// reconnected is a reconnection's outcome, from the client's reader.
	reconnected struct {
		attempt   int
		recovered bool
		from, at  int64     // the drop and the CONNECT, unix ns
		who       *identity // a fresh player's new identity
	}
)

// gap is a fresh reconnection: from the drop to the moment the
// participant was joined again (unix ns). What its socket should have got
// then, the server could not give.
type gap struct{ from, to int64 }

// freshSlack is how long before a drop a message may have been in flight
// to the socket that dropped: undelivered copies sent that late are put
// down to the fresh session too.
const freshSlack = int64(time.Second)

// storm is one --storm term: n players dropped at once, at after from the
// start of the load.
type storm struct {
	n  int
	at time.Duration
}

// parseStorms reads "2000@10s" or several, comma-separated.
func parseStorms(spec string) ([]storm, error) {
	var out []storm
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		n, at, ok := strings.Cut(part, "@")
		cnt, err1 := strconv.Atoi(strings.TrimSpace(n))
		d, err2 := time.ParseDuration(strings.TrimSpace(at))
		if !ok || err1 != nil || err2 != nil || cnt <= 0 || d < 0 {
			return nil, fmt.Errorf("%q: want N@T, e.g. 2000@10s (N players > 0, T from the start of the load)", part)
		}
		out = append(out, storm{n: cnt, at: d})
	}
	return out, nil
}

// reconnects says whether participants reconnect by themselves.
func (s *Scenario) reconnects() bool { return s.Reconnect || s.BlipRate > 0 || s.Storm != "" }

// disrupt runs during the load: blips at Poisson times, BlipRate a second
// across all participants, and the storms at their times; all end with
// the load.
func (r *run) disrupt(ctx context.Context, until time.Time) {
	sc := r.e.sc
	storms, _ := parseStorms(sc.Storm) // validated before the run
	start := time.Now()
	rng := rand.New(rand.NewPCG(sc.Seed^0xb11b, 7))
	nextBlip := time.Time{}
	if sc.BlipRate > 0 {
		nextBlip = start.Add(time.Duration(rng.ExpFloat64() / sc.BlipRate * float64(time.Second)))
	}
	for {
		next := until
		if !nextBlip.IsZero() && nextBlip.Before(next) {
			next = nextBlip
		}
		for _, s := range storms {
			if at := start.Add(s.at); at.Before(next) {
				next = at
			}
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		now := time.Now()
		if !now.Before(until) {
			return
		}
		if !nextBlip.IsZero() && !now.Before(nextBlip) {
			r.e.root.Send(r.crowd, &drop{n: 1})
			nextBlip = nextBlip.Add(time.Duration(rng.ExpFloat64() / sc.BlipRate * float64(time.Second)))
		}
		kept := storms[:0]
		for _, s := range storms {
			if !now.Before(start.Add(s.at)) {
				r.e.m.Storms.Add(1)
				r.e.root.Send(r.crowd, &drop{n: s.n, storm: true})
				continue
			}
			kept = append(kept, s)
		}
		storms = kept
	}
}

// dropSome picks the participants of a drop.
func (c *crowd) dropSome(ctx actor.Context, m *drop) {
	if m.storm {
		n := min(m.n, len(c.players))
		for _, i := range c.rng.Perm(len(c.players))[:n] {
			ctx.Send(c.players[i], &blip{storm: true})
		}
		return
	}
	all := len(c.players) + len(c.ops)
	if all == 0 {
		return
	}
	if i := c.rng.IntN(all); i < len(c.players) {
		ctx.Send(c.players[i], &blip{})
	} else {
		ctx.Send(c.ops[i-len(c.players)], &blip{})
	}
}

// blip drops the participant's transport, if it is connected: the client
// then reconnects by itself.
func (k *link) blip(m *blip) {
	if k.c == nil || k.stopped || !k.c.Connected() {
		return // between connections, or already reconnecting
	}
	if m.storm {
		k.e.m.StormDrops.Add(1)
	} else {
		k.e.m.Blips.Add(1)
	}
	k.c.Drop()
}

// rejoin is how a connection reconnects: the join to send again on a
// fresh socket, its ack, and what to do with each outcome.
type rejoin struct {
	join        join
	ack         func(json.RawMessage)
	onReconnect func(c *client.Client, recovered bool, took time.Duration)
}

// reconnectOptions set the client's reconnection for one connection; cl
// is filled in once the dial returns (no reconnection can report before).
func (e *env) reconnectOptions(o *client.Options, r *rejoin, cl *atomic.Pointer[client.Client]) {
	if !e.sc.reconnects() || r == nil {
		return
	}
	o.Reconnect = true
	o.ReconnectDelay = e.sc.ReconnectDelay
	o.ReconnectAttempts = 10 // then the supervisor's restart takes over, and counts the failure
	o.ConnectTimeout = e.sc.ConnectTimeout
	o.Rejoin = &client.Emission{Event: "join", Payload: r.join, Ack: r.ack}
	o.OnReconnect = func(recovered bool, took time.Duration) {
		e.m.Reconnects.Add(1)
		if recovered {
			e.m.Recovered.Add(1)
			e.m.Recovery.Record(took)
		} else {
			e.m.Fresh.Add(1)
		}
		r.onReconnect(cl.Load(), recovered, took)
	}
}

// playerReconnect is a player's OnReconnect. A fresh socket has a new id:
// it is registered before the rejoin and the buffered messages go out (so
// operators recognise their `from`), and the old id is marked gone, so no
// operator replies to a socket that no longer exists.
func (e *env) playerReconnect(self *actor.PID, attempt int, first *identity) func(*client.Client, bool, time.Duration) {
	var cur atomic.Pointer[identity]
	cur.Store(first)
	return func(c *client.Client, recovered bool, took time.Duration) {
		at := e.clk.now()
		m := &reconnected{attempt: attempt, recovered: recovered, from: at - int64(took), at: at}
		if !recovered {
			cur.Load().left.Store(true)
			m.who = &identity{slot: first.slot}
			m.who.joined.Store(true) // a rejoin is not a join to time
			if c != nil {
				e.reg.add(c.ID(), m.who)
			}
			cur.Store(m.who)
		}
		e.root.Send(self, m)
	}
}

// operatorReconnect is an operator's OnReconnect.
func (e *env) operatorReconnect(self *actor.PID, attempt int) func(*client.Client, bool, time.Duration) {
	return func(_ *client.Client, recovered bool, took time.Duration) {
		at := e.clk.now()
		e.root.Send(self, &reconnected{attempt: attempt, recovered: recovered, from: at - int64(took), at: at})
	}
}

// inGap says whether a copy sent at t to a participant with these fresh
// gaps is one that a fresh session explains.
func inGap(gaps []gap, t int64) bool {
	for _, g := range gaps {
		if t >= g.from-freshSlack && t <= g.to {
			return true
		}
	}
	return false
}

// sentBefore says whether a message sent at t left from a socket that a
// later fresh reconnection replaced: its reply went to a socket id that
// no longer exists.
func sentBefore(gaps []gap, t int64) bool {
	for _, g := range gaps {
		if t < g.from {
			return true
		}
	}
	return false
}

// Recovery is what the drops did, when participants reconnect.
type Recovery struct {
	Blips      int64 `json:"blips"`
	Storms     int64 `json:"storms"`
	StormDrops int64 `json:"storm_drops"`
	// Reconnects counts every reconnection, planned drops or not (a server
	// restarting closes transports too).
	Reconnects     int64   `json:"reconnects"`
	Recovered      int64   `json:"recovered"`
	Fresh          int64   `json:"fresh"`
	RecoveredRatio float64 `json:"recovered_ratio"`
	// LostFresh is the part of the messages' Lost (both directions) that
	// fresh sessions explain: copies due to a socket while it was down
	// and that the server then could not recover.
	LostFresh int64 `json:"lost_fresh"`
	// Time runs from the drop to the recovered CONNECT (recovered only).
	Time Summary `json:"time"`
}

func buildRecovery(m *Metrics, lostFresh int64) *Recovery {
	r := &Recovery{
		Blips: m.Blips.Load(), Storms: m.Storms.Load(), StormDrops: m.StormDrops.Load(),
		Reconnects: m.Reconnects.Load(), Recovered: m.Recovered.Load(), Fresh: m.Fresh.Load(),
		LostFresh: lostFresh, Time: m.Recovery.Snapshot().Summary(),
	}
	if r.Reconnects > 0 {
		r.RecoveredRatio = float64(r.Recovered) / float64(r.Reconnects)
	}
	return r
}
