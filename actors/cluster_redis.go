package actors

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"github.com/switchboard/switchboard/messages"
	"github.com/switchboard/switchboard/metrics"
)

// The Redis bridge. What it keeps in Redis, under the prefix P:
//
//	P:nodes             hash  node id → "incarnation seq beat": each node's heartbeat
//	P:presence:<node>   hash  socket id → member JSON, plus _inc and _seq; TTL
//	P:events            channel: presence changes and deliveries to operators
//	P:node:<node>       channel: deliveries to one node's clients
//
// A node's presence changes carry a sequence number, written in the same
// MULTI as the hash, so a node that reads a presence hash knows which
// events it already includes: it buffers the events that arrive while it
// reads, and replays those that come after. A gap in the sequence, a new
// incarnation of a node, a Redis outage or a resubscription makes it read
// the hash again (resync); it then tells its router only what changed, so
// no operator sees a newChat or a chatEnded twice.
//
// The bridge actor owns all of that state. go-redis runs on goroutines of
// its own: one reads the subscription and sends each message to the actor;
// one worker executes the actor's commands in order and sends back what it
// read. Neither keeps any state of the cluster.

// Envelope kinds on the channels.
const (
	kindJoin     = 'J' // body: member JSON; arg: socket id
	kindLeave    = 'L' // arg: socket id
	kindHello    = 'H' // the node rewrote its presence: read it again
	kindBye      = 'B' // the node is leaving the cluster
	kindOperator = 'O' // body: packet; arg: the operator socket to skip
	kindClient   = 'C' // body: packet; arg: the client socket
	kindSeq      = 'S' // a player's stored frame; inc: store epoch; seq: its number; arg: the client socket
	kindMoved    = 'M' // another node took the session of socket arg over
	kindRouting  = 'R' // a routing decision (assign_redis.go); body: its JSON
	kindAgents   = 'A' // body: a JSON list of operators, a newline, the packet; arg: the socket to skip
	kindAnnounce = 'N' // a player's newChat or chatEnded from its node; body: packet; arg: the player
	kindGone     = 'G' // a gone node's player's chatAway or chatEnded, written once for every node (its writer too); body: packet
)

// envelope is one message on a channel: a header line
// "kind|node|inc|seq|atMillis|event|arg" and the raw body after it, so a
// frame's packet travels as it was encoded, never re-encoded.
type envelope struct {
	kind  byte
	node  string
	inc   string
	seq   uint64
	at    int64
	event string
	arg   string
	body  []byte
}

func (e *envelope) encode() []byte {
	var b bytes.Buffer
	b.Grow(64 + len(e.body))
	b.WriteByte(e.kind)
	for _, f := range []string{e.node, e.inc, strconv.FormatUint(e.seq, 10), strconv.FormatInt(e.at, 10), e.event, e.arg} {
		b.WriteByte('|')
		b.WriteString(f)
	}
	b.WriteByte('\n')
	b.Write(e.body)
	return b.Bytes()
}

func decodeEnvelope(s string) (*envelope, error) {
	head, body, ok := strings.Cut(s, "\n")
	f := strings.Split(head, "|")
	if !ok || len(f) != 7 || len(f[0]) != 1 {
		return nil, errors.New("malformed cluster message")
	}
	e := &envelope{kind: f[0][0], node: f[1], inc: f[2], event: f[5], arg: f[6], body: []byte(body)}
	var err1, err2 error
	e.seq, err1 = strconv.ParseUint(f[3], 10, 64)
	e.at, err2 = strconv.ParseInt(f[4], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("malformed cluster message: %w", err)
	}
	return e, nil
}

// bridgeState is everything the bridge knows. Like the router's presence
// it outlives a restart of the actor: a restarted bridge must not announce
// a new incarnation, which would end every chat of this node elsewhere.
type bridgeState struct {
	inc   string            // this process's incarnation
	seq   uint64            // presence changes made, published or not
	local map[string][]byte // own members' JSON by socket id
	nodes map[string]*remoteNode
	up    bool
	// dirty: the presence hash in Redis may differ from local (a write
	// failed or Redis lost it): the next heartbeat rewrites it whole.
	dirty bool
	live  int // nodes seen alive, this one included
	// fields is each P:nodes field's value and since when it has not
	// changed: a field that never changes is a dead node's leftover.
	fields map[string]fieldSeen
	// records are the local players whose stored sessions the heartbeat
	// keeps alive.
	records map[string]*storedPlayer
	// feed: how far the operators' feed was applied (cluster_feed.go).
	feed feedCursor
	// The nodes' figures (cluster_figures.go): this node's snapshot maker,
	// the latest snapshots read, when a dashboard last asked for them, and
	// whether an exchange is in flight.
	figMake    func() []byte
	figs       map[string][]byte
	figWanted  time.Time
	figPending bool
}

// storedPlayer is what the heartbeat renews of a local player's stored
// session: its keys for a reload, and the last frame it confirmed.
type storedPlayer struct {
	reloadKeys []string
	mark       uint64
	markDirty  bool
}

type fieldSeen struct {
	value string
	since time.Time
}

// remoteNode is what this node knows of another.
type remoteNode struct {
	inc     string
	applied uint64             // last presence change applied
	members map[string]*member // by socket id
	// syncing: a read of its presence hash is wanted; events are buffered
	// until it arrives. reading: one is in flight.
	syncing, reading bool
	buffer           []*envelope
	beat             string    // its last heartbeat value
	changed          time.Time // when that value last changed, on our clock
	behind           uint64    // its published seq, when ahead of applied at the last beat
	// seen: a snapshot of this incarnation was applied: a later one is a
	// re-read after missed events (RemoteJoined.Resync).
	seen bool
}

type member struct {
	raw string
	m   *Member
}

// Messages the bridge's goroutines send it.
type (
	beatTick   struct{}
	subscribed struct{}
	published  struct{ env string }
	beatResult struct {
		full  bool
		nodes map[string]string
		lost  bool // our presence hash was gone: Redis restarted
		err   error
	}
	snapshotResult struct {
		node   string
		fields map[string]string
		err    error
	}
	ioFailed struct {
		what string
		err  error
	}
	// feedRead is what the worker read of the operators' feed.
	feedRead struct {
		entries []feedEntry
		last    string
		err     error
	}
	// storeDone: the writes these acknowledgements wait for were stored
	// (ok) or not (failed).
	storeDone struct {
		ok, failed []*ackAfterStore
	}
)

// ioJob is one unit of work for the worker: publishes are batched into one
// MULTI; a heartbeat or a snapshot read runs on its own.
type ioJob struct {
	pub   *pubJob
	beat  *beatJob
	read  string // node whose presence to read
	drop  string // node field to remove from P:nodes
	catch *catchUp
	drain chan struct{}
	// feed asks for the operators' feed after an id (nil: no read).
	feed   *string
	figs   *figuresJob
	opRead *opReadJob
}

type pubJob struct {
	channel string
	payload []byte
	// set or del change the presence hash in the same MULTI.
	set, del string
	value    []byte
	seq      uint64
	// script runs instead of a publish (the stored sessions' writes).
	script *redis.Script
	keys   []string
	args   []any
	// wid numbers a player's frame's write; with ack (instead of any
	// command), the write the acknowledgement waits for.
	wid uint64
	ack *ackAfterStore
}

type beatJob struct {
	inc   string
	full  map[string][]byte // nil: refresh only
	value string            // "inc seq beat"
	seq   uint64
	hello []byte // published after a full rewrite
	// refresh: players whose stored sessions' TTLs to renew; marks: the
	// confirmed frames to record.
	refresh []string
	reload  []string
	marks   map[string]uint64
}

type redisBridge struct {
	o      ClusterOptions
	st     *bridgeState
	router *actor.PID
	log    *slog.Logger
	met    *metrics.Metrics

	rdb    *redis.Client
	ps     *redis.PubSub
	jobs   chan ioJob
	stop   context.CancelFunc
	beatN  uint64
	events string // channel names
	mine   string

	// Stored sessions (cluster_store.go); seq is false with recovery off.
	seq bool
	// lastSeq is what became of the last write an acknowledgement may
	// follow (a player's frame sent to the store, or a player's message to
	// the operators' feed).
	lastSeq seqOutcome
	// feedReading: a read of the feed is in flight.
	feedReading bool
	// feedID: the feed entry being applied ("" for other messages).
	feedID   string
	writes   uint64 // writes acknowledgements follow (lastSeq), numbering their jobs
	keys     storeKeys
	ttl      time.Duration
	maxLen   int
	maxBytes int // of a player's stored frames
}

type seqOutcome uint8

const (
	seqQueued  seqOutcome = iota // its write waits for the worker
	seqDirect                    // Redis was away: a local player got it directly
	seqDropped                   // Redis was away, or the queue full: not delivered
)

// jobQueue bounds what waits for Redis: past it (a slow or lost Redis)
// deliveries to other nodes are dropped and counted, never queued without
// bound, and local traffic goes on.
const jobQueue = 8192

func newIncarnation() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newBridgeState() *bridgeState {
	return &bridgeState{inc: newIncarnation(), local: make(map[string][]byte), nodes: make(map[string]*remoteNode), dirty: true, live: 1, fields: make(map[string]fieldSeen), records: make(map[string]*storedPlayer)}
}

func (b *redisBridge) key(parts ...string) string {
	return b.o.Prefix + ":" + strings.Join(parts, ":")
}

func (b *redisBridge) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		b.start(ctx)
	case *clusterJoined:
		b.localJoined(m)
	case *clusterLeft:
		b.localLeft(m)
	case *clusterDeliver:
		b.deliver(ctx, m)
	case *catchUp:
		if b.seq {
			b.enqueue(ioJob{catch: m})
		}
	case *forgetSession:
		if b.seq {
			b.enqueue(ioJob{pub: &pubJob{script: forgetScript, keys: []string{b.keys.record(m.id), b.keys.stream(m.id)}, args: []any{m.node}}})
		}
	case *drainBridge:
		if !b.st.up || !b.enqueue(ioJob{drain: m.done}) {
			close(m.done)
		}
	case *published:
		if id, env, ok := splitFeed(m.env); ok {
			for _, e := range b.st.feed.live(feedEntry{id: id, env: env}) {
				b.feedID = e.id
				b.received(ctx, e.env)
			}
			b.feedID = ""
			return
		}
		b.received(ctx, m.env)
	case *feedRead:
		b.feedReading = false
		if m.err != nil {
			b.log.Warn("cluster: could not read the operators' feed; retrying", "err", m.err)
		}
		for _, e := range b.st.feed.caught(m.entries, m.last, m.err == nil) {
			b.feedID = e.id
			b.received(ctx, e.env)
		}
		b.feedID = ""
		if m.err == nil && b.seq {
			// Where the feed stands: operators' anchors start here.
			ctx.Send(b.router, &feedPosition{id: cmpOr(b.st.feed.last, "0-0")})
		}
	case *subscribed:
		// (Re)subscribed: events may have been missed while the
		// subscription was down, so read every node again and rewrite our own.
		b.st.dirty = true
		b.resyncAll()
		b.st.feed.resync()
		b.readFeed()
		b.heartbeat()
		if b.seq {
			ctx.Send(b.router, &resubscribed{})
		}
	case *beatTick:
		b.heartbeat()
	case *beatResult:
		b.beatDone(ctx, m)
	case *figuresSource, *figuresTick, *figuresQuery, *figuresResult:
		b.figures(ctx, m)
	case *snapshotResult:
		b.snapshot(ctx, m)
	case *caughtUp:
		ctx.Send(b.router, m)
	case *ackAfterStore:
		b.ackAfterStore(ctx, m)
	case *opReadJob:
		if !b.st.up || !b.enqueue(ioJob{opRead: m}) {
			m.reply <- &opRead{why: "the cluster's store is unreachable"}
		}
	case *storeReloadKeys:
		if sp := b.st.records[m.id]; sp != nil && b.seq {
			sp.reloadKeys = append(sp.reloadKeys, m.keys...)
			keys := []string{b.keys.record(m.id)}
			for _, k := range m.keys {
				keys = append(keys, b.keys.reload(k))
			}
			b.enqueue(ioJob{pub: &pubJob{script: reloadKeysScript, keys: keys, args: []any{m.id, b.ttl.Milliseconds()}}})
		}
	case *confirmedMark:
		if sp := b.st.records[m.id]; sp != nil && m.n > sp.mark {
			sp.mark, sp.markDirty = m.n, true
		}
	case *storeDone:
		for _, a := range m.ok {
			b.answer(ctx, a, true)
		}
		for _, a := range m.failed {
			b.answer(ctx, a, false)
		}
	case *ioFailed:
		b.met.ClusterError()
		if m.what == "presence" {
			b.st.dirty = true
		}
		b.down(ctx, m.err)
	case *actor.Stopping:
		b.leave()
	case *actor.Restarting:
		b.close()
	case *actor.Stopped:
		b.close()
	}
}

func (b *redisBridge) start(ctx actor.Context) {
	opt, err := redis.ParseURL(b.o.RedisURL)
	if err != nil {
		// Config validated the URL; this cannot happen.
		panic(fmt.Errorf("cluster: REDIS_URL: %w", err))
	}
	// Short timeouts: a lost Redis must be noticed within a heartbeat, and
	// no command may hold the worker long. Retries are ours (the next
	// heartbeat), not the client's.
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = time.Second, time.Second, time.Second, time.Second
	opt.MaxRetries = -1
	opt.DisableIdentity = true
	opt.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	b.rdb = redis.NewClient(opt)
	b.events, b.mine = b.key("events"), b.key("node", b.o.NodeID)
	b.st.figPending = false // a previous incarnation's worker is gone

	sys, self := ctx.ActorSystem().Root, ctx.Self()
	send := func(msg any) { sys.Send(self, msg) }
	runCtx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	b.jobs = make(chan ioJob, jobQueue)
	b.ps = b.rdb.Subscribe(runCtx, b.events, b.mine)
	go func() {
		for msg := range b.ps.ChannelWithSubscriptions(redis.WithChannelSize(4096)) {
			switch m := msg.(type) {
			case *redis.Message:
				send(&published{env: m.Payload})
			case *redis.Subscription:
				if m.Kind == "subscribe" && m.Channel == b.mine {
					send(&subscribed{})
				}
			}
		}
	}()
	go b.work(runCtx, b.rdb, b.jobs, send)
	go func() {
		t := time.NewTicker(b.o.Heartbeat)
		defer t.Stop()
		figs := time.NewTicker(figuresEvery)
		defer figs.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
				send(&beatTick{})
			case <-figs.C:
				send(&figuresTick{})
			}
		}
	}()
	b.log.Info("cluster bridge started", "redis", redactURL(b.o.RedisURL), "incarnation", b.st.inc, "heartbeat", b.o.Heartbeat.String(), "deadAfter", b.o.DeadAfter.String())
	b.heartbeat()
}

// close releases the connections; the state stays for the next incarnation.
func (b *redisBridge) close() {
	if b.stop == nil {
		return
	}
	b.stop()
	b.stop = nil
	_ = b.ps.Close()
	_ = b.rdb.Close()
}

// leave tells the other nodes at once that this node is going, so they
// end what is left of its chats without waiting for its heartbeat to stop.
func (b *redisBridge) leave() {
	if b.rdb == nil || !b.st.up {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	bye := (&envelope{kind: kindBye, node: b.o.NodeID, inc: b.st.inc}).encode()
	_, err := b.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HDel(ctx, b.key("nodes"), b.o.NodeID)
		p.Del(ctx, b.key("presence", b.o.NodeID))
		p.Publish(ctx, b.events, bye)
		return nil
	})
	if err != nil {
		b.log.Warn("cluster: could not announce leaving; other nodes notice within the heartbeat bound", "err", err)
	}
}

// enqueue hands the worker a job without ever blocking the actor.
func (b *redisBridge) enqueue(j ioJob) bool {
	select {
	case b.jobs <- j:
		return true
	default:
		b.met.ClusterDropped()
		return false
	}
}

func (b *redisBridge) localJoined(m *clusterJoined) {
	raw, _ := json.Marshal(m.m)
	b.st.local[m.m.ID] = raw
	b.st.seq++
	b.publishPresence(&envelope{kind: kindJoin, arg: m.m.ID, body: raw}, &pubJob{set: m.m.ID, value: raw})
	if b.seq && (m.m.Role == messages.RoleClient.String() || m.anchor != "") {
		// The join a recovering node needs to take the player (or the
		// operator, with its join's anchor) over.
		if b.st.records[m.m.ID] == nil {
			b.st.records[m.m.ID] = &storedPlayer{}
		}
		args := []any{raw}
		if m.anchor != "" {
			args = append(args, m.anchor)
		}
		b.enqueue(ioJob{pub: &pubJob{script: memberScript, keys: []string{b.keys.record(m.m.ID)}, args: args}})
	}
}

func (b *redisBridge) localLeft(m *clusterLeft) {
	if _, ok := b.st.local[m.id]; !ok {
		return
	}
	delete(b.st.local, m.id)
	delete(b.st.records, m.id)
	b.st.seq++
	e := &envelope{kind: kindLeave, arg: m.id}
	if m.moved {
		e.event = "moved"
	} else if b.seq {
		b.enqueue(ioJob{pub: &pubJob{script: forgetScript, keys: []string{b.keys.record(m.id), b.keys.stream(m.id)}, args: []any{b.o.NodeID}}})
	}
	b.publishPresence(e, &pubJob{del: m.id})
}

func (b *redisBridge) publishPresence(e *envelope, j *pubJob) {
	if !b.st.up {
		b.st.dirty = true // rewritten whole when Redis is back
		return
	}
	e.node, e.inc, e.seq = b.o.NodeID, b.st.inc, b.st.seq
	j.channel, j.payload, j.seq = b.events, e.encode(), b.st.seq
	if !b.enqueue(ioJob{pub: j}) {
		b.st.dirty = true
	}
}

func (b *redisBridge) deliver(ctx actor.Context, m *clusterDeliver) {
	if !b.st.up {
		if m.seq && m.toNode == b.o.NodeID {
			// Redis went away as the router sent it: a local player still gets it.
			ctx.Send(b.router, &RemoteDeliver{Frame: m.frame, ToClient: m.toClient})
			b.lastSeq = seqDirect
			return
		}
		if m.seq || m.acked {
			// Other nodes' operators never get it: the sender hears so.
			b.lastSeq = seqDropped
		}
		b.met.ClusterDropped()
		return
	}
	if m.seq {
		b.lastSeq = seqDropped
		if b.sequence(m) {
			b.lastSeq = seqQueued
		}
		return
	}
	e := &envelope{kind: kindOperator, node: b.o.NodeID, inc: b.st.inc, event: m.frame.Event, arg: m.except, body: m.frame.Packet}
	if !m.frame.At.IsZero() {
		e.at = m.frame.At.UnixMilli()
	}
	if m.toClient == "" {
		// To every operator, or to some operators wherever their sockets
		// are (routing): through the feed, which a node whose
		// subscription dropped reads again.
		if len(m.toAgents) > 0 {
			keys, _ := json.Marshal(m.toAgents)
			e.kind, e.body = kindAgents, append(append(keys, '\n'), m.frame.Packet...)
		}
		if m.announce != "" {
			e.kind, e.arg = kindAnnounce, m.announce
		}
		if m.gone != "" {
			// Every node asks; the first one's is written, if the player's
			// session is still its dead node's.
			e.kind = kindGone
			j := &pubJob{script: goneScript, keys: []string{b.key("feed"), b.key("g", m.gone, m.goneKey, m.goneID), b.keys.record(m.goneID)},
				args: []any{e.encode(), feedMaxLen, b.events, b.ttl.Milliseconds(), m.goneNode}}
			b.enqueue(ioJob{pub: j})
			return
		}
		j := &pubJob{script: feedScript, keys: []string{b.key("feed")}, args: []any{e.encode(), feedMaxLen, b.events}}
		if m.acked {
			// Numbered like a player's frame: its acknowledgement follows it.
			b.writes++
			j.wid = b.writes
			b.lastSeq = seqDropped
		}
		if b.enqueue(ioJob{pub: j}) && m.acked {
			b.lastSeq = seqQueued
		}
		return
	}
	e.kind, e.arg = kindClient, m.toClient
	b.enqueue(ioJob{pub: &pubJob{channel: b.key("node", m.toNode), payload: e.encode()}})
}

// sequence hands a player's frame to append.lua, which numbers it, stores
// it and publishes it to the player's node; false when it cannot.
func (b *redisBridge) sequence(m *clusterDeliver) bool {
	f := m.frame
	at := int64(0)
	if !f.At.IsZero() {
		at = f.At.UnixMilli()
	}
	head := string(f.Packet[:len(f.Packet)-len(f.Offset)-4]) // without `,"offset"]`
	j := &pubJob{script: appendScript, keys: []string{b.keys.record(m.toClient), b.keys.stream(m.toClient)}, args: []any{
		head, f.Offset, b.o.NodeID, b.st.inc, at, f.Event, m.toClient, b.maxLen, b.ttl.Milliseconds(), b.keys.nodeChannel(), m.toNode, b.maxBytes,
	}}
	b.writes++
	j.wid = b.writes
	return b.enqueue(ioJob{pub: j})
}

// ackLedger is the worker's memory of players' writes that failed, by
// their numbers (wid), oldest first: an acknowledgement that follows a
// write is answered from it. Writes are numbered in the order they are
// queued and acknowledgements asked in that order too, so what is older
// than the one asked about is forgotten.
type ackLedger struct {
	ranges [][2]uint64
}

// failed records the writes lo to hi as not stored.
func (l *ackLedger) failed(lo, hi uint64) { l.ranges = append(l.ranges, [2]uint64{lo, hi}) }

// stored tells whether write wid was stored; ask in increasing wid.
func (l *ackLedger) stored(wid uint64) bool {
	for len(l.ranges) > 0 && l.ranges[0][1] < wid {
		l.ranges = l.ranges[1:]
	}
	return len(l.ranges) == 0 || l.ranges[0][0] > wid
}

// readFeed asks the worker for the operators' feed after the last entry
// applied, once at a time.
func (b *redisBridge) readFeed() {
	if b.feedReading || !b.st.feed.catching {
		return
	}
	after := b.st.feed.last
	if b.enqueue(ioJob{feed: &after}) {
		b.feedReading = true
	}
}

// ackAfterStore answers an acknowledgement when the write of the frame
// sent just before it is done: the worker runs jobs in order, so a marker
// queued after the write is reached once the write's batch has run.
func (b *redisBridge) ackAfterStore(ctx actor.Context, a *ackAfterStore) {
	switch b.lastSeq {
	case seqQueued:
		if !b.enqueue(ioJob{pub: &pubJob{ack: a, wid: b.writes}}) {
			b.answer(ctx, a, false)
		}
	case seqDirect:
		b.answer(ctx, a, true)
	default:
		b.answer(ctx, a, false)
	}
}

// answer acknowledges a message, or tells its sender that it was not
// stored (and so maybe not delivered).
func (b *redisBridge) answer(ctx actor.Context, a *ackAfterStore, ok bool) {
	if ok {
		ctx.Send(a.session, a.acc)
		return
	}
	ctx.Send(a.session, &messages.Refused{Event: a.event, Code: messages.CodeUnavailable, Reason: "not stored: the cluster's store is unreachable; send it again", Ack: a.acc.Ack})
}

// received applies one message from a channel.
func (b *redisBridge) received(ctx actor.Context, raw string) {
	e, err := decodeEnvelope(raw)
	if err != nil {
		b.met.ClusterError()
		b.log.Warn("cluster: message ignored", "err", err)
		return
	}
	switch e.kind {
	case kindSeq, kindClient:
		// Possibly from this node itself: a player's frames all pass
		// through the store.
		b.met.ClusterReceived()
		f := &messages.Frame{Event: e.event, Packet: e.body}
		if e.kind == kindSeq {
			f.Offset = e.inc + string(offsetSep) + strconv.FormatUint(e.seq, 10)
		}
		if e.at != 0 {
			f.At = time.UnixMilli(e.at)
		}
		ctx.Send(b.router, &RemoteDeliver{Frame: f, ToClient: e.arg})
		return
	case kindMoved:
		if e.node != b.o.NodeID {
			ctx.Send(b.router, &movedOut{id: e.arg, node: e.node})
		}
		return
	case kindRouting:
		// Every node applies every decision, its own too, in Redis's order.
		ctx.Send(b.router, &RoutingEvent{Body: e.body, FeedID: b.feedID})
		return
	case kindGone:
		// Its writer's operators too: no node told them before.
		b.met.ClusterReceived()
		f := &messages.Frame{Event: e.event, Packet: e.body}
		ctx.Send(b.router, &RemoteDeliver{Frame: f, FeedID: b.feedID})
		return
	case kindAgents:
		if e.node == b.o.NodeID {
			return // its sockets here had it from the router
		}
		keys, packet, _ := bytes.Cut(e.body, []byte{'\n'})
		d := &RemoteDeliver{Frame: &messages.Frame{Event: e.event, Packet: packet}, Except: e.arg, FeedID: b.feedID}
		if e.at != 0 {
			d.Frame.At = time.UnixMilli(e.at)
		}
		if json.Unmarshal(keys, &d.ToAgents) == nil && len(d.ToAgents) > 0 {
			b.met.ClusterReceived()
			ctx.Send(b.router, d)
		}
		return
	}
	if e.node == b.o.NodeID {
		return // our own broadcast: its local part is delivered already
	}
	b.met.ClusterReceived()
	switch e.kind {
	case kindOperator, kindAnnounce:
		f := &messages.Frame{Event: e.event, Packet: e.body}
		if e.at != 0 {
			f.At = time.UnixMilli(e.at)
		}
		d := &RemoteDeliver{Frame: f, FeedID: b.feedID}
		if e.kind == kindAnnounce {
			d.Announce = e.arg
		} else {
			d.Except = e.arg
		}
		ctx.Send(b.router, d)
	case kindBye:
		if rn := b.st.nodes[e.node]; rn != nil && rn.inc == e.inc {
			b.gone(ctx, e.node, "left the cluster", time.Now())
		}
	case kindJoin, kindLeave, kindHello:
		b.presenceEvent(ctx, e)
	}
}

// node returns what is known of a node, starting afresh (and ending its
// previous incarnation's chats) when inc is new.
func (b *redisBridge) node(ctx actor.Context, id, inc string) *remoteNode {
	rn := b.st.nodes[id]
	if rn != nil && rn.inc == inc {
		return rn
	}
	if rn != nil {
		b.gone(ctx, id, "restarted", time.Now())
	}
	rn = &remoteNode{inc: inc, members: make(map[string]*member), changed: time.Now()}
	b.st.nodes[id] = rn
	b.requestSnapshot(id, rn)
	return rn
}

func (b *redisBridge) presenceEvent(ctx actor.Context, e *envelope) {
	rn := b.node(ctx, e.node, e.inc)
	rn.changed = time.Now()
	if e.kind == kindHello {
		b.requestSnapshot(e.node, rn)
		return
	}
	switch {
	case rn.syncing:
		rn.buffer = append(rn.buffer, e)
	case e.seq <= rn.applied:
		// already in what we have
	case e.seq > rn.applied+1:
		// Missed one (dropped while Redis was away): read the whole.
		rn.buffer = append(rn.buffer, e)
		b.requestSnapshot(e.node, rn)
	default:
		b.apply(ctx, e.node, rn, e)
	}
}

func (b *redisBridge) apply(ctx actor.Context, node string, rn *remoteNode, e *envelope) {
	rn.applied = e.seq
	switch e.kind {
	case kindJoin:
		b.setMember(ctx, node, rn, e.arg, string(e.body), false)
	case kindLeave:
		if rn.members[e.arg] != nil {
			delete(rn.members, e.arg)
			ctx.Send(b.router, &RemoteLeft{Node: node, ID: e.arg, Moved: e.event == "moved"})
		}
	}
}

// setMember records a member and tells the router, unless nothing changed.
func (b *redisBridge) setMember(ctx actor.Context, node string, rn *remoteNode, id, raw string, resync bool) {
	if old := rn.members[id]; old != nil && old.raw == raw {
		return
	}
	m := &Member{}
	if err := json.Unmarshal([]byte(raw), m); err != nil || m.ID != id {
		b.log.Warn("cluster: member ignored", "peer", node, "socket", id, "err", err)
		return
	}
	m.Node = node
	rn.members[id] = &member{raw: raw, m: m}
	ctx.Send(b.router, &RemoteJoined{Member: m, Resync: resync})
}

func (b *redisBridge) requestSnapshot(id string, rn *remoteNode) {
	rn.syncing = true
	if rn.reading || !b.st.up {
		return
	}
	if b.enqueue(ioJob{read: id}) {
		rn.reading = true
	}
}

func (b *redisBridge) resyncAll() {
	for id, rn := range b.st.nodes {
		b.requestSnapshot(id, rn)
	}
}

// snapshot applies a node's presence hash: what changed since our model
// goes to the router, then the events buffered meanwhile are replayed.
func (b *redisBridge) snapshot(ctx actor.Context, res *snapshotResult) {
	rn := b.st.nodes[res.node]
	if rn == nil {
		return
	}
	rn.reading = false
	if res.err != nil {
		return // still syncing: the next heartbeat asks again
	}
	inc, seqText := res.fields["_inc"], res.fields["_seq"]
	if inc == "" || seqText == "" {
		// Not written yet (Redis restarted): its heartbeat may have put
		// back its incarnation alone, before it rewrites the hash whole.
		// Read as it is, its members would seem gone. Its hello will come.
		return
	}
	if inc != rn.inc {
		rn = b.node(ctx, res.node, inc) // a read of the new one is queued; applying this one first is harmless
	}
	seq, _ := strconv.ParseUint(seqText, 10, 64)
	resync := rn.seen
	rn.seen = true
	for id := range rn.members {
		if _, ok := res.fields[id]; !ok {
			delete(rn.members, id)
			ctx.Send(b.router, &RemoteLeft{Node: res.node, ID: id, Resync: resync})
		}
	}
	for id, raw := range res.fields {
		// Only these two are not members: a socket id may begin with "_".
		if id != "_inc" && id != "_seq" {
			b.setMember(ctx, res.node, rn, id, raw, resync)
		}
	}
	rn.applied, rn.syncing, rn.behind = seq, false, 0
	buf := rn.buffer
	rn.buffer = nil
	slices.SortStableFunc(buf, func(x, y *envelope) int { return compareUint(x.seq, y.seq) })
	for i, e := range buf {
		if e.inc != rn.inc || e.seq <= rn.applied {
			continue
		}
		if e.seq > rn.applied+1 {
			rn.buffer = buf[i:]
			b.requestSnapshot(res.node, rn)
			return
		}
		b.apply(ctx, res.node, rn, e)
	}
}

func compareUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// heartbeat refreshes our liveness and presence, rewriting the presence
// whole when it may be stale, and reads every node's heartbeat.
func (b *redisBridge) heartbeat() {
	b.beatN++
	j := &beatJob{inc: b.st.inc, value: b.st.inc + " " + strconv.FormatUint(b.st.seq, 10) + " " + strconv.FormatUint(b.beatN, 10), seq: b.st.seq}
	if b.st.dirty {
		j.full = make(map[string][]byte, len(b.st.local))
		for id, raw := range b.st.local {
			j.full[id] = raw
		}
		j.hello = (&envelope{kind: kindHello, node: b.o.NodeID, inc: b.st.inc, seq: b.st.seq}).encode()
		b.st.dirty = false
	}
	if len(b.st.records) > 0 {
		j.refresh = make([]string, 0, len(b.st.records))
		for id, sp := range b.st.records {
			j.refresh = append(j.refresh, id)
			for _, k := range sp.reloadKeys {
				j.reload = append(j.reload, b.keys.reload(k))
			}
			if sp.markDirty {
				if j.marks == nil {
					j.marks = map[string]uint64{}
				}
				j.marks[id], sp.markDirty = sp.mark, false
			}
		}
	}
	if !b.enqueue(ioJob{beat: j}) && j.full != nil {
		b.st.dirty = true
	}
}

func (b *redisBridge) beatDone(ctx actor.Context, res *beatResult) {
	if res.err != nil {
		if res.full {
			b.st.dirty = true
		}
		b.met.ClusterError()
		b.down(ctx, res.err)
		return
	}
	now := time.Now()
	if !b.st.up {
		b.st.up = true
		b.met.ClusterUp(true)
		b.log.Info("cluster: redis reachable; synchronising presence", "redis", redactURL(b.o.RedisURL))
		b.sendState(ctx)
		// The others could not refresh while Redis was away either: give
		// them a full bound from now before calling them dead.
		for _, rn := range b.st.nodes {
			rn.changed = now
		}
		b.resyncAll()
	}
	if res.lost {
		b.st.dirty = true
		b.heartbeat()
	}
	if b.st.feed.catching {
		b.readFeed() // the last read failed or was not queued
	}
	b.unchangedSince(res.nodes, now)
	live := 1
	for id, v := range res.nodes {
		if id == b.o.NodeID {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 3 {
			continue
		}
		rn := b.st.nodes[id]
		if rn == nil || rn.inc != f[0] {
			if rn == nil && now.Sub(b.st.fields[id].since) > b.o.DeadAfter {
				b.enqueue(ioJob{drop: id}) // a dead node's leftover field
				continue
			}
			rn = b.node(ctx, id, f[0])
		}
		if rn.beat != v {
			rn.beat, rn.changed = v, now
		}
		if now.Sub(rn.changed) <= b.o.DeadAfter {
			live++
		}
		// Its published seq is ahead of ours twice in a row: an event was
		// lost (dropped on its side, or missed on ours). Read it whole.
		seq, _ := strconv.ParseUint(f[1], 10, 64)
		switch {
		case seq <= rn.applied || rn.syncing:
			rn.behind = 0
		case rn.behind == seq:
			b.requestSnapshot(id, rn)
		default:
			rn.behind = seq
		}
		if rn.syncing && !rn.reading {
			b.requestSnapshot(id, rn)
		}
	}
	for id, rn := range b.st.nodes {
		if now.Sub(rn.changed) > b.o.DeadAfter {
			b.gone(ctx, id, "heartbeat missing", rn.changed)
			b.enqueue(ioJob{drop: id})
		}
	}
	if live != b.st.live {
		b.st.live = live
		b.met.ClusterNodes(live)
		b.sendState(ctx)
	}
}

// unchangedSince is since when a node's heartbeat field has had this
// value. Fields no longer in the hash are forgotten.
func (b *redisBridge) unchangedSince(nodes map[string]string, now time.Time) {
	for id := range b.st.fields {
		if _, ok := nodes[id]; !ok {
			delete(b.st.fields, id)
		}
	}
	for id, v := range nodes {
		if s, ok := b.st.fields[id]; !ok || s.value != v {
			b.st.fields[id] = fieldSeen{value: v, since: now}
		}
	}
}

func (b *redisBridge) gone(ctx actor.Context, id, reason string, since time.Time) {
	rn, ok := b.st.nodes[id]
	if !ok {
		return
	}
	delete(b.st.nodes, id)
	ctx.Send(b.router, &NodeGone{Node: id, Reason: reason, Since: since, Inc: rn.inc})
}

func (b *redisBridge) down(ctx actor.Context, err error) {
	if !b.st.up {
		return
	}
	b.st.up = false
	b.met.ClusterUp(false)
	b.log.Error("cluster: redis unreachable; serving this node's sockets only until it is back", "err", err)
	b.sendState(ctx)
}

func (b *redisBridge) sendState(ctx actor.Context) {
	ctx.Send(b.router, &ClusterState{Node: b.o.NodeID, Up: b.st.up, Nodes: b.st.live})
}

// work executes jobs in order. It is I/O only: what it reads goes back to
// the actor as messages.
func (b *redisBridge) work(ctx context.Context, rdb *redis.Client, jobs <-chan ioJob, send func(any)) {
	_ = loadScripts(ctx, rdb) // else the first NOSCRIPT loads them
	batch := make([]*pubJob, 0, 256)
	var ledger ackLedger
	flush := func() {
		if len(batch) == 0 {
			return
		}
		presence := false
		var acks []*pubJob
		cmds := make([]redis.Cmder, len(batch)) // each job's, by its index in batch
		exec := func(which []int, evalsha bool) error {
			_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
				for _, i := range which {
					j := batch[i]
					if j.ack != nil {
						continue
					}
					if j.script != nil {
						if evalsha {
							cmds[i] = j.script.EvalSha(ctx, p, j.keys, j.args...)
						} else {
							cmds[i] = j.script.Eval(ctx, p, j.keys, j.args...)
						}
						continue
					}
					if j.set != "" || j.del != "" {
						presence = true
						key := b.key("presence", b.o.NodeID)
						if j.set != "" {
							p.HSet(ctx, key, j.set, j.value, "_seq", j.seq)
						} else {
							p.HDel(ctx, key, j.del)
							p.HSet(ctx, key, "_seq", j.seq)
						}
					}
					cmds[i] = p.Publish(ctx, j.channel, j.payload)
				}
				return nil
			})
			return err
		}
		lo, hi := uint64(0), uint64(0)
		for _, j := range batch {
			switch {
			case j.ack != nil:
				acks = append(acks, j)
			case j.wid != 0:
				lo, hi = cmp.Or(lo, j.wid), j.wid
			}
		}
		var err error
		if len(acks) < len(batch) {
			all := make([]int, len(batch))
			for i := range all {
				all[i] = i
			}
			err = exec(all, true)
		}
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// Redis restarted and forgot the scripts: the scripts' commands
			// did nothing, so they run again (with their text) and the rest
			// is not repeated.
			var again []int
			for i, j := range batch {
				if j.script != nil && cmds[i] != nil && redis.HasErrorPrefix(cmds[i].Err(), "NOSCRIPT") {
					again = append(again, i)
				}
			}
			_ = loadScripts(ctx, rdb)
			err = nil
			if len(again) > 0 {
				err = exec(again, false)
			}
		}
		if err != nil {
			what := "publish"
			if presence {
				what = "presence"
			}
			send(&ioFailed{what: what, err: err})
		} else {
			b.met.ClusterPublished(len(batch) - len(acks))
		}
		if err != nil && hi != 0 {
			ledger.failed(lo, hi)
		} else if err == nil && len(acks) > 0 {
			// A frame that was neither stored nor heard by any node.
			for i, j := range batch {
				if c, ok := cmds[i].(*redis.Cmd); ok && j.wid != 0 && j.ack == nil {
					if n, _ := c.Int64(); n < 0 {
						ledger.failed(j.wid, j.wid)
					}
				}
			}
		}
		if acks != nil {
			// Each acknowledgement follows its write, in this batch or
			// an earlier one: it fails if that write's batch failed.
			done := &storeDone{}
			for _, j := range acks {
				if ledger.stored(j.wid) {
					done.ok = append(done.ok, j.ack)
				} else {
					done.failed = append(done.failed, j.ack)
				}
			}
			send(done)
		}
		clear(batch)
		batch = batch[:0]
	}
	run := func(j ioJob) {
		switch {
		case j.beat != nil:
			send(b.runBeat(ctx, rdb, j.beat))
		case j.read != "":
			fields, err := rdb.HGetAll(ctx, b.key("presence", j.read)).Result()
			send(&snapshotResult{node: j.read, fields: fields, err: err})
		case j.drop != "":
			_ = rdb.HDel(ctx, b.key("nodes"), j.drop).Err()
		case j.catch != nil:
			if res := b.readStored(ctx, rdb, j.catch); res != nil {
				send(res)
			}
		case j.drain != nil:
			close(j.drain)
		case j.feed != nil:
			send(b.readFeedAfter(ctx, rdb, *j.feed))
		case j.figs != nil:
			send(b.runFigures(ctx, rdb, j.figs))
		case j.opRead != nil:
			j.opRead.reply <- b.readOpReplay(ctx, rdb, j.opRead)
		}
	}
	for {
		var j ioJob
		select {
		case <-ctx.Done():
			return
		case j = <-jobs:
		}
		if j.pub == nil {
			run(j)
			continue
		}
		batch = append(batch, j.pub)
	more:
		for len(batch) < cap(batch) {
			select {
			case j = <-jobs:
				if j.pub == nil {
					flush()
					run(j)
					break more
				}
				batch = append(batch, j.pub)
			default:
				break more
			}
		}
		flush()
	}
}

// readFeedAfter reads the operators' feed after an id; after "" reads
// only the last id (where a node's first read starts).
func (b *redisBridge) readFeedAfter(ctx context.Context, rdb *redis.Client, after string) *feedRead {
	key := b.key("feed")
	if after == "" {
		last, err := rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
		res := &feedRead{err: err}
		if len(last) > 0 {
			res.last = last[0].ID
		}
		return res
	}
	ms, seq := splitStreamID(after)
	from := strconv.FormatUint(ms, 10) + "-" + strconv.FormatUint(seq+1, 10) // "(" needs Redis 6.2
	msgs, err := rdb.XRangeN(ctx, key, from, "+", feedMaxLen).Result()
	res := &feedRead{err: err}
	for _, m := range msgs {
		env, _ := m.Values["m"].(string)
		res.entries = append(res.entries, feedEntry{id: m.ID, env: env})
	}
	if len(res.entries) > 0 {
		b.log.Info("cluster: operators' feed read after a gap", "after", after, "entries", len(res.entries))
	}
	return res
}

// readStored reads a player's stored frames after c.after, for its session
// to catch up with (nil when there are none or Redis cannot say).
func (b *redisBridge) readStored(ctx context.Context, rdb *redis.Client, c *catchUp) *caughtUp {
	var epoch *redis.StringCmd
	var entries *redis.XMessageSliceCmd
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		epoch = p.HGet(ctx, b.keys.record(c.id), "epoch")
		entries = p.XRangeN(ctx, b.keys.stream(c.id), strconv.FormatUint(c.after+1, 10)+"-0", "+", int64(b.maxLen))
		return nil
	})
	if err != nil || len(entries.Val()) == 0 {
		return nil
	}
	out := &caughtUp{id: c.id}
	for _, e := range entries.Val() {
		n, _, _ := strings.Cut(e.ID, "-")
		p, _ := e.Values["p"].(string)
		ev, _ := e.Values["e"].(string)
		out.frames = append(out.frames, &messages.Frame{Event: ev, Packet: []byte(p), Offset: epoch.Val() + string(offsetSep) + n})
	}
	return out
}

func (b *redisBridge) runBeat(ctx context.Context, rdb *redis.Client, j *beatJob) *beatResult {
	key := b.key("presence", b.o.NodeID)
	var lost *redis.BoolCmd
	var nodes *redis.MapStringStringCmd
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if j.full != nil {
			p.Del(ctx, key)
			args := make([]any, 0, 2*len(j.full)+4)
			for id, raw := range j.full {
				args = append(args, id, raw)
			}
			args = append(args, "_inc", j.inc, "_seq", j.seq)
			p.HSet(ctx, key, args...)
		} else {
			lost = p.HSetNX(ctx, key, "_inc", j.inc)
		}
		p.Expire(ctx, key, b.o.TTL)
		p.HSet(ctx, b.key("nodes"), b.o.NodeID, j.value)
		if j.hello != nil {
			p.Publish(ctx, b.events, j.hello)
		}
		for id, n := range j.marks {
			// Before the TTLs below: a record Redis lost is not left without one.
			p.HSet(ctx, b.keys.record(id), "c", n)
		}
		for _, id := range j.refresh {
			p.PExpire(ctx, b.keys.record(id), b.ttl)
			p.PExpire(ctx, b.keys.stream(id), b.ttl)
		}
		for _, k := range j.reload {
			p.PExpire(ctx, k, b.ttl)
		}
		nodes = p.HGetAll(ctx, b.key("nodes"))
		return nil
	})
	if err != nil {
		return &beatResult{full: j.full != nil, err: fmt.Errorf("heartbeat: %w", err)}
	}
	res := &beatResult{full: j.full != nil, nodes: nodes.Val()}
	if lost != nil {
		res.lost = lost.Val()
	}
	return res
}

// redactURL hides a password in a Redis URL for logs.
func redactURL(s string) string {
	head, rest, ok := strings.Cut(s, "://")
	if !ok {
		return s
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		return head + "://***@" + rest[at+1:]
	}
	return s
}
