package loadtest

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Messages to an operator.
type (
	// heard says the connection received an event: the operator must be
	// joined, since nothing reaches a socket before its join.
	heard struct{ attempt int }
	// settled is the fallback for servers that neither ack a join nor
	// send anything: the operator counts as joined after Scenario.Settle.
	settled struct{ attempt int }
	// incoming is a player's message that this operator is to answer,
	// checked, timed and counted on the reader.
	incoming struct {
		slot, seq int
		from      string
	}
	// replyRefused is the server's refusal of a reply, through its ack.
	replyRefused struct {
		slot, seq int
		code      string
	}
	// claimDue: a new chat (claim mode) that falls to this operator.
	claimDue struct {
		attempt int
		client  string
	}
	// replyDue is the end of the operator's think time.
	replyDue struct {
		attempt   int
		slot, seq int
		to        string
		typed     bool
	}
)

// operator is one simulated operator. It receives every player's messages
// and replies to the players whose slot falls to it (slot modulo the
// number of operators), so each message gets at most one reply.
type operator struct {
	link
	idx      int
	l        *operatorLedger
	rng      *rand.Rand
	joinSent int64
	// rejoining is the fresh gap that the rejoin's ack will end; -1 if none.
	rejoining int
}

func newOperator(e *env, idx int) actor.Actor {
	l := e.ops[idx]
	o := &operator{
		link: link{
			e: e, operator: true, label: "operator " + strconv.Itoa(idx), conn: &l.conn, failures: &l.failures,
			t: e.mix.pick(unit(e.sc.Seed^0x0f0f, uint64(idx), 0)),
		},
		idx: idx, l: l, rejoining: -1,
		rng: rand.New(rand.NewPCG(e.sc.Seed^0xa5a5, uint64(idx)<<24|uint64(l.failures))),
	}
	o.link.forget = o.drop
	return o
}

func (o *operator) Receive(ctx actor.Context) {
	if o.link.receive(ctx) {
		return
	}
	switch m := ctx.Message().(type) {
	case *dialNow:
		o.dial(ctx)
	case *dialed:
		o.connected(ctx, m)
	case *joinAcked:
		if !o.joinAcked(m) {
			return
		}
		if o.rejoining >= 0 { // a fresh socket's rejoin: its gap ends now
			o.l.fresh[o.rejoining].to = o.e.clk.now()
			o.rejoining = -1
		}
		if o.markReady() {
			o.e.m.Join.Record(o.e.clk.since(o.joinSent))
		}
	case *reconnected:
		// A fresh socket misses what is sent to it until it has joined
		// again: the rejoin's ack ends the gap, or for servers without
		// acks the settle time, as for a first join.
		if m.attempt == o.attempt && !m.recovered {
			o.l.fresh = append(o.l.fresh, gap{from: m.from, to: m.at + int64(o.e.sc.Settle)})
			if o.acked {
				o.rejoining = len(o.l.fresh) - 1
			}
		}
	case *heard:
		if m.attempt == o.attempt {
			o.markReady()
		}
	case *settled:
		if m.attempt == o.attempt && o.c != nil {
			o.markReady()
		}
	case *incoming:
		o.incoming(ctx, m)
	case *replyDue:
		o.reply(ctx, m)
	case *claimDue:
		if m.attempt == o.attempt {
			o.e.emit(o.c, "claimChat", claim{ClientID: m.client})
		}
	case *replyRefused:
		if o.l.replied[m.slot].remove(m.seq) {
			o.l.refused++
			o.e.m.Replies.Add(-1)
		}
		o.e.m.Error("refused operatorMessage: " + m.code)
	}
}

// operatorNamePrefix starts every load-test operator's name; its index
// follows, which tells a player whom operatorAssigned names.
const operatorNamePrefix = "lt-operator-"

func (o *operator) name() string { return operatorNamePrefix + strconv.Itoa(o.idx) }

// operatorID keeps load-test operators apart from real ones in a CRM.
func (o *operator) operatorID() int { return 900000 + o.idx }

func (o *operator) dial(ctx actor.Context) {
	if !o.next() {
		return
	}
	auth, err := o.e.tokens.auth(map[string]any{"sub": o.name(), "role": "operator", "name": o.name(), "operatorId": o.operatorID()}, true)
	if err != nil {
		panic(&failure{kind: "token", err: err})
	}
	o.rejoining = -1
	o.e.dial(ctx.Self(), true, &o.l.conn, o.attempt, o.t, auth, o.onEvent(ctx.Self(), o.attempt), &rejoin{
		join:        join{Role: "operator", Name: o.name(), OperatorID: o.operatorID()},
		ack:         o.e.ackHandler(ctx.Self(), o.attempt),
		onReconnect: o.e.operatorReconnect(ctx.Self(), o.attempt),
	})
}

func (o *operator) connected(ctx actor.Context, m *dialed) {
	if !o.accept(m) {
		return
	}
	o.joinSent = o.e.clk.now()
	o.join(ctx, join{Role: "operator", Name: o.name(), OperatorID: o.operatorID()})
	o.e.sched.after(o.e.sc.Settle, ctx.Self(), &settled{attempt: o.attempt})
}

// markReady adds the operator to those that every message must reach; it
// reports whether it was not ready before.
func (o *operator) markReady() bool {
	if o.l.ready.Swap(true) {
		return false
	}
	o.e.ready.set(o.idx, true)
	o.e.m.OperatorsReady.Add(1)
	return true
}

// answers says whether operator op replies to player message (slot, seq)
// when it may: the player's slot falls to it (under routing it receives
// its own chats only), with the chance asked.
func (e *env) answers(op, slot, seq int) bool {
	mine := slot%len(e.ops) == op || e.owners != nil
	return mine && unit(e.sc.Seed, uint64(slot), uint64(seq)) < e.sc.ReplyChance
}

func (o *operator) incoming(ctx actor.Context, m *incoming) {
	if !o.sending {
		return
	}
	// Think for ReplyThink ±50 %: bounded, so that a leaving player knows
	// how long to wait for the replies it is owed.
	think := time.Duration((0.5 + o.rng.Float64()) * float64(o.e.sc.ReplyThink))
	typed := o.e.sc.TypingShare > 0 && o.rng.Float64() < o.e.sc.TypingShare
	if typed {
		o.e.emit(o.c, "operatorTyping", typing{To: m.from, IsTyping: true})
	}
	o.e.sched.after(think, ctx.Self(), &replyDue{attempt: o.attempt, slot: m.slot, seq: m.seq, to: m.from, typed: typed})
}

func (o *operator) reply(ctx actor.Context, m *replyDue) {
	if m.attempt != o.attempt || !o.sending {
		return
	}
	if who := o.e.reg.get(m.to); who == nil || who.left.Load() {
		return // the player has gone: a reply could not reach it
	}
	mark := formatMarker(markReply, m.slot, m.seq, o.e.clk.now())
	var ack func(json.RawMessage)
	if o.acked {
		e, self, slot, seq := o.e, ctx.Self(), m.slot, m.seq
		ack = func(raw json.RawMessage) {
			if code := refusal(raw); code != "" {
				e.root.Send(self, &replyRefused{slot: slot, seq: seq, code: code})
			}
		}
	}
	o.e.m.Replies.Add(1) // before the write, as for messages: the drain must never see a reply before it counts
	if o.e.emit(o.c, "operatorMessage", operatorMessage{To: m.to, Type: "text", Message: o.e.pay.text(mark, o.e.sc.TextSize), OperatorID: o.operatorID(), OperatorName: o.name()}, ack) {
		o.l.replied[m.slot].add(m.seq)
	} else {
		o.e.m.Replies.Add(-1)
	}
	if m.typed {
		o.e.emit(o.c, "operatorTyping", typing{To: m.to, IsTyping: false})
	}
}

func (o *operator) drop() {
	if o.l.ready.Swap(false) {
		o.e.ready.set(o.idx, false)
		o.e.m.OperatorsReady.Add(-1)
	}
	o.release()
}

// onEvent runs on the connection's reader goroutine.
func (o *operator) onEvent(self *actor.PID, attempt int) func(string, json.RawMessage) {
	e, l, idx := o.e, o.l, o.idx
	return func(name string, raw json.RawMessage) {
		e.m.Events.Add(1)
		if !l.ready.Load() {
			e.root.Send(self, &heard{attempt: attempt})
		}
		switch name {
		case "incomingMessage":
			e.m.IncomingP2O.Add(1)
			in := readChat(raw)
			mk, ok := in.marker()
			if !ok || mk.reply {
				e.m.Error("incomingMessage without a load-test marker")
				return
			}
			e.m.P2O.Record(e.clk.since(mk.sent))
			from, who := e.reg.lookup(in.from)
			if who == nil || who.slot != mk.slot || mk.slot >= len(e.players) {
				// `from` names another socket than the one that sent it.
				e.m.MisroutedP2O.Add(1)
				return
			}
			// Counted here, where it is read: the actor hears only of the
			// messages it answers (one in ten with ten operators).
			if !l.received(mk.slot, mk.seq) {
				return
			}
			e.m.UniqueP2O.Add(1)
			if e.answers(idx, mk.slot, mk.seq) {
				e.root.Send(self, &incoming{slot: mk.slot, seq: mk.seq, from: from})
			}
		case "newChat":
			clientID := stringField(raw, "clientId")
			if who := e.reg.get(clientID); who != nil {
				e.confirmJoin(who)
				// Claim mode: every operator hears of a new chat; the one
				// its slot falls to claims it, so claims do not collide.
				if e.sc.Routing == "claim" && who.slot%len(e.ops) == idx {
					e.root.Send(self, &claimDue{attempt: attempt, client: clientID})
				}
			}
		case "chatError":
			e.chatError(raw)
		}
	}
}
