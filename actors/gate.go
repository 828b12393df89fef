package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// GateLimits bound connections per client address.
type GateLimits struct {
	// MaxConnections is the most open connections per address; 0 no cap.
	MaxConnections int
	// Handshakes bounds new connections per address.
	Handshakes Rate
}

// admit asks the gate whether an address may open a connection; the gate
// responds with a *gateAnswer, and counts an admitted one open at once, so
// that handshakes arriving together cannot all pass the cap: a closed
// must follow.
type admit struct{ addr string }

type gateAnswer struct{ reason string } // empty: admitted

// opened and closed keep the gate's count of open connections.
type opened struct{ addr string }
type closed struct{ addr string }

// gate owns the per-address counts and buckets. Entries of addresses with
// no open connection and a full bucket are dropped, so a scan of many
// addresses costs no lasting memory.
type gate struct {
	limits GateLimits
	addrs  map[string]*addrState
	sweeps int
}

type addrState struct {
	open   int
	bucket bucket
}

func (g *gate) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		g.addrs = map[string]*addrState{}
	case *admit:
		ctx.Respond(&gateAnswer{reason: g.admit(m.addr, time.Now())})
	case *opened:
		g.state(m.addr, time.Now()).open++
	case *closed:
		if st := g.addrs[m.addr]; st != nil && st.open > 0 {
			st.open--
		}
	}
}

func (g *gate) state(addr string, now time.Time) *addrState {
	st := g.addrs[addr]
	if st == nil {
		st = &addrState{bucket: newBucket(g.limits.Handshakes, now)}
		g.addrs[addr] = st
	}
	return st
}

func (g *gate) admit(addr string, now time.Time) string {
	g.sweep(now)
	st := g.state(addr, now)
	if g.limits.MaxConnections > 0 && st.open >= g.limits.MaxConnections {
		return "too many connections from this address"
	}
	if !st.bucket.take(now) {
		return "too many new connections from this address; retry shortly"
	}
	st.open++
	return ""
}

// sweep drops idle entries every few thousand admissions.
func (g *gate) sweep(now time.Time) {
	if g.sweeps++; g.sweeps < 4096 {
		return
	}
	g.sweeps = 0
	for addr, st := range g.addrs {
		if st.open == 0 && now.Sub(st.bucket.last) > time.Minute {
			delete(g.addrs, addr)
		}
	}
}
