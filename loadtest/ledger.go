package loadtest

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/internal/jsonscan"
)

// The ledgers are the accounting: each player's records what it sent and
// whom it expected to receive it; each operator's what it received and
// what it replied. Each ledger is written only by its participant's actor
// (all incarnations of it, one at a time), except an operator's receipts,
// which its connection's reader writes under a lock (at tens of thousands
// a second, a message to the actor for each cost more than the count);
// the runner reads them once every actor has stopped and the receipts are
// frozen, and joins them into Accounts.

// bitset is a growable set of small non-negative integers.
type bitset []uint64

// add sets i and reports whether it was already set.
func (b *bitset) add(i int) bool {
	w := i / 64
	if w >= len(*b) {
		*b = append(*b, make([]uint64, w-len(*b)+1+len(*b)/2)...)
	}
	m := uint64(1) << (i % 64)
	had := (*b)[w]&m != 0
	(*b)[w] |= m
	return had
}

// remove clears i and reports whether it was set.
func (b bitset) remove(i int) bool {
	if !b.has(i) {
		return false
	}
	b[i/64] &^= 1 << (i % 64)
	return true
}

func (b bitset) has(i int) bool {
	w := i / 64
	return w < len(b) && b[w]&(1<<(i%64)) != 0
}

func (b bitset) each(fn func(i int)) {
	for w, x := range b {
		for x != 0 {
			fn(w*64 + bits.TrailingZeros64(x))
			x &= x - 1
		}
	}
}

// opSet is the operators that were joined when a message was sent: those
// must each receive it. It is immutable; a change makes a new one, so a
// message keeps a pointer rather than a copy.
type opSet struct {
	members bitset
	n       int
}

// readiness tracks which operators are joined now.
type readiness struct {
	mu  sync.Mutex
	cur atomic.Pointer[opSet]
}

func newReadiness() *readiness {
	r := &readiness{}
	r.cur.Store(&opSet{})
	return r
}

func (r *readiness) load() *opSet { return r.cur.Load() }

// set marks operator i joined or gone; it reports whether that changed.
func (r *readiness) set(i int, ready bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.cur.Load()
	if old.members.has(i) == ready {
		return false
	}
	next := &opSet{members: append(bitset(nil), old.members...), n: old.n}
	if ready {
		next.members.add(i)
		next.n++
	} else {
		next.members[i/64] &^= 1 << (i % 64)
		next.n--
	}
	r.cur.Store(next)
	return true
}

// playerLedger is one player slot's record, across its connections.
type playerLedger struct {
	conn conn
	// expected[seq] is who had to receive message seq; nil if it was never
	// sent (the write failed).
	expected []*opSet
	sentAt   []int64 // unix ns of each seq's send
	replies  bitset  // seqs whose reply arrived
	copies   int     // reply copies beyond the first
	refused  int     // messages the server refused through their ack
	failures int     // consecutive failed connections, for the backoff
	fresh    []gap   // reconnections that the server could not recover
}

// operatorLedger is one operator's record, across its connections.
type operatorLedger struct {
	conn conn
	// rx guards seen, copies and frozen: they are written by the reader
	// goroutine of the operator's connection (of each of its connections,
	// which a reconnection can overlap), where each message is read, and
	// read by the runner once the ledger is frozen.
	rx       sync.Mutex
	seen     []bitset // by player slot: the seqs received
	copies   int      // message copies beyond the first
	frozen   bool     // the run is over: what arrives now is not counted
	replied  []bitset // by player slot: the seqs replied to
	refused  int      // replies the server refused through their ack
	failures int
	fresh    []gap       // reconnections that the server could not recover
	ready    atomic.Bool // joined: the reader goroutine checks it before waking the actor
}

// received records a player message (slot, seq) at the operator; false
// for a copy beyond the first, or once the ledger is frozen.
func (l *operatorLedger) received(slot, seq int) bool {
	l.rx.Lock()
	defer l.rx.Unlock()
	if l.frozen {
		return false
	}
	if l.seen[slot].add(seq) {
		l.copies++
		return false
	}
	return true
}

// freeze ends the operator's receipts: the runner joins the ledgers after
// it, as it did once the actors that kept them had stopped.
func (l *operatorLedger) freeze() {
	l.rx.Lock()
	l.frozen = true
	l.rx.Unlock()
}

// registry maps socket ids to the player behind them, so that an operator
// can check an incomingMessage's `from` and time a player's join. Every
// operator's reader looks up every message's `from`, straight from the
// payload's bytes: plain maps under read locks, sharded so the readers do
// not share one lock's cache line.
type registry struct{ shards [regShards]regShard }

type regShard struct {
	mu sync.RWMutex
	m  map[string]regEntry
}

const regShards = 16

type regEntry struct {
	id  string
	who *identity
}

// identity is one player connection as the operators see it.
type identity struct {
	slot     int
	joinSent atomic.Int64 // unix nanos, 0 until the join is sent
	joined   atomic.Bool  // the join was timed (first evidence wins)
	left     atomic.Bool  // the player is leaving: do not reply
}

// shard picks a socket id's shard from its last byte (ids are random);
// last is 0 for the empty id.
func (r *registry) shard(last byte) *regShard { return &r.shards[int(last)%regShards] }

func lastByte[T string | []byte](id T) byte {
	if len(id) == 0 {
		return 0
	}
	return id[len(id)-1]
}

func (r *registry) add(id string, who *identity) {
	sh := r.shard(lastByte(id))
	sh.mu.Lock()
	if sh.m == nil {
		sh.m = map[string]regEntry{}
	}
	sh.m[id] = regEntry{id: id, who: who}
	sh.mu.Unlock()
}

func (r *registry) get(id string) *identity {
	sh := r.shard(lastByte(id))
	sh.mu.RLock()
	e := sh.m[id]
	sh.mu.RUnlock()
	return e.who
}

// lookup finds the socket whose id is the JSON string raw, and returns its
// id as registered (no copy of the payload's bytes is made).
func (r *registry) lookup(raw []byte) (string, *identity) {
	p, ok := jsonscan.Plain(raw)
	if !ok { // escaped, or absent: not an id this tool registered in plain
		id, _ := jsonscan.Unquote(raw)
		return id, r.get(id)
	}
	sh := r.shard(lastByte(p))
	sh.mu.RLock()
	e := sh.m[string(p)]
	sh.mu.RUnlock()
	return e.id, e.who
}

// Accounts is the fate of every message in one direction. Delivered plus
// Lost is Expected; Duplicated, Misrouted and Unexpected count copies
// received beyond that.
type Accounts struct {
	Sent      int64 `json:"sent"`
	Expected  int64 `json:"expected"`
	Delivered int64 `json:"delivered"`
	Lost      int64 `json:"lost"`
	// Duplicated counts copies beyond the first at the right participant.
	Duplicated int64 `json:"duplicated"`
	// Misrouted counts copies that reached the wrong participant: a reply
	// at another player, or a message whose `from` names another socket.
	// The intended recipient missed it, so it is also Lost.
	Misrouted int64 `json:"misrouted"`
	// Unexpected counts copies at an operator that was joining or leaving
	// when the message was sent: neither expected nor wrong.
	Unexpected int64 `json:"unexpected"`
	// Refused counts messages (in Sent) that the server refused through
	// their acknowledgement, a rate limit for instance: none was expected.
	Refused   int64   `json:"refused"`
	LossRatio float64 `json:"loss_ratio"`
	// LostFresh is the part of Lost that fresh sessions explain: copies
	// due to a socket while it was down, which the server could not
	// recover (it gave the socket a new id), or replies to a message that
	// a since-replaced socket sent. 0 when the server recovers every one.
	LostFresh int64 `json:"lost_fresh"`
}

func (a *Accounts) add(b Accounts) {
	a.Sent += b.Sent
	a.Expected += b.Expected
	a.Delivered += b.Delivered
	a.Lost += b.Lost
	a.Duplicated += b.Duplicated
	a.Misrouted += b.Misrouted
	a.Unexpected += b.Unexpected
	a.Refused += b.Refused
	a.LostFresh += b.LostFresh
	a.finish()
}

func (a *Accounts) finish() {
	a.LossRatio = 0
	if a.Expected > 0 {
		a.LossRatio = float64(a.Lost) / float64(a.Expected)
	}
}

// account joins the ledgers: every (message, recipient) pair that was
// expected is delivered or lost.
func account(players []*playerLedger, ops []*operatorLedger, m *Metrics) (p2o, o2p Accounts) {
	for slot, pl := range players {
		for seq, set := range pl.expected {
			if set == nil {
				continue
			}
			p2o.Sent++
			set.members.each(func(op int) {
				p2o.Expected++
				switch {
				case slot < len(ops[op].seen) && ops[op].seen[slot].has(seq):
					p2o.Delivered++
				case len(ops[op].fresh) > 0 && seq < len(pl.sentAt) && inGap(ops[op].fresh, pl.sentAt[seq]):
					p2o.LostFresh++
				}
			})
		}
	}
	for op, ol := range ops {
		p2o.Duplicated += int64(ol.copies)
		for slot, seen := range ol.seen {
			seen.each(func(seq int) {
				if slot >= len(players) || seq >= len(players[slot].expected) || players[slot].expected[seq] == nil || !players[slot].expected[seq].members.has(op) {
					p2o.Unexpected++
				}
			})
		}
		for slot, replied := range ol.replied {
			replied.each(func(seq int) {
				o2p.Sent++
				o2p.Expected++
				pl := players[slot]
				switch {
				case pl.replies.has(seq):
					o2p.Delivered++
				case len(pl.fresh) > 0 && seq < len(pl.sentAt) && sentBefore(pl.fresh, pl.sentAt[seq]):
					o2p.LostFresh++
				}
			})
		}
	}
	for _, pl := range players {
		o2p.Duplicated += int64(pl.copies)
		p2o.Refused += int64(pl.refused)
	}
	for _, ol := range ops {
		o2p.Refused += int64(ol.refused)
	}
	p2o.Sent += p2o.Refused
	o2p.Sent += o2p.Refused
	p2o.Lost = p2o.Expected - p2o.Delivered
	o2p.Lost = o2p.Expected - o2p.Delivered
	p2o.Misrouted = m.MisroutedP2O.Load()
	o2p.Misrouted = m.MisroutedO2P.Load()
	p2o.finish()
	o2p.finish()
	return p2o, o2p
}

// conn holds a participant's current connection across actor restarts,
// and makes sure that no connection outlives its participant: a dial that
// completes after the participant moved on is closed at once.
type conn struct {
	mu      sync.Mutex
	attempt int
	stopped bool
	c       closer
	pending *sync.WaitGroup // dials and closes under way: the runner waits for them before it reports
}

type closer interface{ Close() }

// next ends the current connection (if any) and starts a new attempt.
func (c *conn) next() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked()
	c.attempt++
	return c.attempt
}

// adopt keeps a dialled connection if its attempt is still current.
func (c *conn) adopt(attempt int, cl closer) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped || attempt != c.attempt {
		return false // the caller closes it
	}
	c.c = cl
	return true
}

// stop ends the connection for good.
func (c *conn) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	c.attempt++
	c.closeLocked()
}

func (c *conn) closeLocked() {
	if c.c == nil {
		return
	}
	cl := c.c
	c.c = nil
	c.pending.Add(1)
	go func() { // a polling close is an HTTP round trip: do not hold the actor
		defer c.pending.Done()
		cl.Close()
	}()
}

// backoff is the wait before reconnecting after n consecutive failures:
// 100 ms doubling to 5 s, so a server that refuses everyone is not
// hammered by thousands of participants at once.
func backoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	return min(100*time.Millisecond<<min(n-1, 6), 5*time.Second)
}
