package loadtest

import (
	"encoding/json"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Messages to a player.
type (
	// tick is a Poisson arrival: time to write a message.
	tick struct{ attempt int }
	// sendNow ends a typing pause with the message.
	sendNow struct {
		attempt int
		typed   bool
	}
	// replyIn is a reply to this slot, read from a connection whose
	// messages start at genStart.
	replyIn struct{ seq, genStart int }
	// leave ends the player's chat (churn); leaveCheck waits for its
	// replies; leaveNow disconnects, and a new player takes the slot.
	leave      struct{ attempt int }
	leaveCheck struct{ attempt int }
	leaveNow   struct{ attempt int }
	// refused is the server's refusal of message seq, through its ack.
	refused struct {
		seq  int
		code string
	}
	// assignedTo names the operator that owns the chat now (routing).
	assignedTo struct {
		attempt, op int
	}
)

// player is one simulated player: a slot that one connection at a time
// fills. A failed connection panics to the supervisor, which restarts the
// actor; the slot's ledger and connection holder outlive the restart.
type player struct {
	link
	slot     int
	l        *playerLedger
	rng      *rand.Rand
	who      *identity
	genStart int // the first seq of this connection
	leaveBy  time.Time
	// owner is the operator that owns this connection's chat under
	// routing; -1 until one is assigned (the player waits to talk).
	owner int
}

func newPlayer(e *env, slot int) actor.Actor {
	l := e.players[slot]
	p := &player{
		link: link{
			e: e, label: "player " + strconv.Itoa(slot), conn: &l.conn, failures: &l.failures,
			t: e.mix.pick(unit(e.sc.Seed^0x5bd1e995, uint64(slot), 0)),
		},
		slot: slot, l: l, owner: -1,
		rng: rand.New(rand.NewPCG(e.sc.Seed, uint64(slot)<<24|uint64(l.failures))),
	}
	p.link.forget = p.release
	return p
}

func (p *player) Receive(ctx actor.Context) {
	if p.link.receive(ctx) {
		return
	}
	switch m := ctx.Message().(type) {
	case *dialNow:
		p.dial(ctx)
	case *dialed:
		p.connected(ctx, m)
	case *joinAcked:
		if p.joinAcked(m) {
			p.e.confirmJoin(p.who)
		}
	case *tick:
		if m.attempt != p.attempt || !p.sending {
			return
		}
		p.e.sched.after(p.gap(), ctx.Self(), &tick{attempt: p.attempt})
		if p.e.sc.TypingShare > 0 && p.rng.Float64() < p.e.sc.TypingShare {
			if p.e.emit(p.c, "clientTyping", typing{IsTyping: true}) {
				p.e.sched.after(p.e.sc.TypingTime, ctx.Self(), &sendNow{attempt: p.attempt, typed: true})
			}
			return
		}
		p.send(ctx)
	case *sendNow:
		if m.attempt != p.attempt || !p.sending {
			return
		}
		p.send(ctx)
		if m.typed {
			p.e.emit(p.c, "clientTyping", typing{IsTyping: false})
		}
	case *replyIn:
		p.reply(m)
	case *assignedTo:
		if m.attempt == p.attempt {
			p.owner = m.op
		}
	case *reconnected:
		// A fresh socket: replies to what the old one sent cannot come.
		if m.attempt == p.attempt && !m.recovered {
			p.l.fresh = append(p.l.fresh, gap{from: m.from, to: m.at})
			p.who = m.who
		}
	case *refused:
		// Refused (a rate limit, a validation): nobody is to receive it.
		if set := p.l.expected[m.seq]; set != nil {
			p.e.m.ExpectedP2O.Add(-int64(set.n))
			p.l.expected[m.seq] = nil
			p.l.refused++
		}
		p.e.m.Error("refused clientMessage: " + m.code)
	case *leave:
		if m.attempt != p.attempt || p.stopped {
			return
		}
		// A leaving player first waits for the replies it is owed, as a
		// person reads the answer before closing the tab.
		p.sending = false
		p.leaveBy = time.Now().Add(p.e.sc.ReplyThink*3/2 + p.e.sc.Drain)
		ctx.Send(ctx.Self(), &leaveCheck{attempt: p.attempt})
	case *leaveCheck:
		if m.attempt != p.attempt || p.stopped {
			return
		}
		if p.owed() > 0 && time.Now().Before(p.leaveBy) {
			p.e.sched.after(100*time.Millisecond, ctx.Self(), m)
			return
		}
		p.who.left.Store(true) // operators stop replying to this player
		if p.rng.Float64() < p.e.sc.ChurnEndChat {
			p.e.emit(p.c, "endChat", struct{}{})
		}
		// A short quiet time lets replies already on their way arrive.
		p.e.sched.after(200*time.Millisecond, ctx.Self(), &leaveNow{attempt: p.attempt})
	case *leaveNow:
		if m.attempt != p.attempt || p.stopped {
			return
		}
		p.release()
		p.attempt = p.l.conn.next()
		p.e.m.Departures.Add(1)
		ctx.Send(ctx.Self(), &dialNow{}) // a new player arrives in the slot
	}
}

// name is this connection's player: each arrival in the slot is a new one.
func (p *player) name() string {
	return "lt-player-" + strconv.Itoa(p.slot) + "-" + strconv.Itoa(p.genStart)
}

func (p *player) dial(ctx actor.Context) {
	if !p.next() {
		return
	}
	p.genStart = len(p.l.expected)
	p.who = &identity{slot: p.slot}
	p.owner = -1
	name := p.name()
	auth, err := p.e.tokens.auth(map[string]any{"sub": name, "role": "client", "name": name, "username": name}, false)
	if err != nil {
		panic(&failure{kind: "token", err: err})
	}
	p.e.dial(ctx.Self(), false, &p.l.conn, p.attempt, p.t, auth, p.onEvent(ctx.Self(), p.genStart, p.attempt), &rejoin{
		join:        join{Role: "client", Name: name, Username: name},
		ack:         p.e.ackHandler(ctx.Self(), p.attempt),
		onReconnect: p.e.playerReconnect(ctx.Self(), p.attempt, p.who),
	})
}

func (p *player) connected(ctx actor.Context, m *dialed) {
	if !p.accept(m) {
		return
	}
	p.e.reg.add(m.c.ID(), p.who)
	p.who.joinSent.Store(p.e.clk.now())
	p.join(ctx, join{Role: "client", Name: p.name(), Username: p.name()})
	if p.e.sc.Rate > 0 {
		p.e.sched.after(p.gap(), ctx.Self(), &tick{attempt: p.attempt})
	}
	if p.e.sc.Churn > 0 {
		stay := time.Duration(p.rng.ExpFloat64() * float64(time.Minute) / p.e.sc.Churn)
		p.e.sched.after(stay, ctx.Self(), &leave{attempt: p.attempt})
	}
}

// gap is the wait until the next Poisson arrival.
func (p *player) gap() time.Duration {
	return time.Duration(p.rng.ExpFloat64() / p.e.sc.Rate * float64(time.Second))
}

// send writes the next message, marked with its identity, and records who
// must receive it: every operator joined now, or under routing its chat's
// owner (a player without one yet waits: its message is not written).
func (p *player) send(ctx actor.Context) {
	seq := len(p.l.expected)
	set := p.e.ready.load()
	if p.e.owners != nil {
		if p.owner < 0 || p.owner >= len(p.e.owners) {
			p.e.m.Unassigned.Add(1)
			return
		}
		set = p.e.owners[p.owner]
	}
	now := p.e.clk.now()
	mark := formatMarker(markPlayer, p.slot, seq, now)
	p.l.sentAt = append(p.l.sentAt, now)
	var payload any
	if p.e.sc.ImageShare > 0 && p.rng.Float64() < p.e.sc.ImageShare {
		img := p.e.pay.image
		payload = imageMessage{Type: "image", Image: img, Name: mark, MimeType: "image/png", Size: len(img) * 3 / 4}
	} else {
		payload = textMessage{Type: "text", Message: p.e.pay.text(mark, p.e.sc.TextSize)}
	}
	// Counted as expected before the write, so that the drain never sees a
	// delivery before its expectation.
	p.e.m.ExpectedP2O.Add(int64(set.n))
	var ack func(json.RawMessage)
	if p.acked {
		e, self := p.e, ctx.Self()
		ack = func(raw json.RawMessage) {
			if code := refusal(raw); code != "" {
				e.root.Send(self, &refused{seq: seq, code: code})
			}
		}
	}
	if !p.e.emit(p.c, "clientMessage", payload, ack) {
		p.e.m.ExpectedP2O.Add(-int64(set.n))
		p.l.expected = append(p.l.expected, nil)
		return
	}
	p.l.expected = append(p.l.expected, set)
	p.l.failures = 0
	p.e.m.Sent.Add(1)
}

func (p *player) reply(m *replyIn) {
	if m.seq < m.genStart || m.seq >= len(p.l.expected) || p.l.expected[m.seq] == nil {
		// A reply to a message that this connection never sent: it was
		// meant for another participant.
		p.e.m.MisroutedO2P.Add(1)
		return
	}
	if p.l.replies.add(m.seq) {
		p.l.copies++
		return
	}
	p.e.m.UniqueO2P.Add(1)
}

// owed counts this connection's messages whose reply has not arrived yet
// among those that will get one.
func (p *player) owed() int {
	n := 0
	for seq := p.genStart; seq < len(p.l.expected); seq++ {
		set := p.l.expected[seq]
		if set != nil && p.e.repliesTo(p.slot, seq, set) && !p.l.replies.has(seq) {
			n++
		}
	}
	return n
}

// confirmJoin times a player's join at the first evidence of it: the
// server's ack, or (servers without acks) an operator's newChat.
func (e *env) confirmJoin(who *identity) {
	if who.joined.CompareAndSwap(false, true) {
		e.m.Join.Record(e.clk.since(who.joinSent.Load()))
		e.m.PlayersJoined.Add(1)
	}
}

// onEvent runs on the connection's reader goroutine: it times and checks
// what arrives there and hands the actor only what changes its state.
func (p *player) onEvent(self *actor.PID, genStart, attempt int) func(string, json.RawMessage) {
	e, slot := p.e, p.slot
	return func(name string, raw json.RawMessage) {
		e.m.Events.Add(1)
		switch name {
		case "operatorMessage":
			om := readChat(raw)
			mk, ok := om.marker()
			if !ok || !mk.reply {
				e.m.Error("operatorMessage without a load-test marker")
				return
			}
			e.m.O2P.Record(e.clk.since(mk.sent))
			if mk.slot != slot {
				e.m.MisroutedO2P.Add(1)
				return
			}
			e.root.Send(self, &replyIn{seq: mk.seq, genStart: genStart})
		case "operatorAssigned":
			var oa struct {
				OperatorName string `json:"operatorName"`
			}
			_ = json.Unmarshal(raw, &oa)
			if n, err := strconv.Atoi(strings.TrimPrefix(oa.OperatorName, operatorNamePrefix)); err == nil {
				e.root.Send(self, &assignedTo{attempt: attempt, op: n})
			}
		case "chatError":
			e.chatError(raw)
		}
	}
}

// repliesTo says whether message (slot, seq) gets a reply: its operator
// (slot modulo the operators) replies with the chance asked, decided by a
// hash so that the player knows it too, and only if it was joined.
func (e *env) repliesTo(slot, seq int, set *opSet) bool {
	n := len(e.ops)
	if n == 0 || e.sc.ReplyChance == 0 {
		return false
	}
	if e.owners != nil { // its owner replies, and it alone received it
		return set.n == 1 && unit(e.sc.Seed, uint64(slot), uint64(seq)) < e.sc.ReplyChance
	}
	return set.members.has(slot%n) && unit(e.sc.Seed, uint64(slot), uint64(seq)) < e.sc.ReplyChance
}

// unit hashes its inputs to a uniform number in [0,1) (splitmix64).
func unit(seed, a, b uint64) float64 {
	x := seed ^ a*0x9e3779b97f4a7c15 ^ b*0xbf58476d1ce4e5b9
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) / (1 << 53)
}

// Wire payloads, with the contract's JSON names.
type (
	join struct {
		Role       string `json:"role"`
		Name       string `json:"name"`
		Username   string `json:"username,omitempty"`
		OperatorID int    `json:"operatorId,omitempty"`
	}
	textMessage struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}
	imageMessage struct {
		Type     string `json:"type"`
		Image    string `json:"image"`
		Name     string `json:"name"`
		MimeType string `json:"mimeType"`
		Size     int    `json:"size"`
	}
	claim struct {
		ClientID string `json:"clientId"`
	}
	typing struct {
		To       string `json:"to,omitempty"`
		IsTyping bool   `json:"isTyping"`
	}
	operatorMessage struct {
		To           string `json:"to"`
		Type         string `json:"type"`
		Message      string `json:"message"`
		OperatorID   int    `json:"operatorId"`
		OperatorName string `json:"operatorName"`
	}
)
