package actors

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/redis/go-redis/v9"
	"github.com/switchboard/switchboard/messages"
)

// Operators across nodes. An operator's frames are not stored per
// operator: every event for all operators already goes through the
// cluster's one feed (P:feed, cluster_feed.go), so an operator whose node
// died is served from it. What makes that exact is the offset: with
// stored sessions on, every frame the router makes carries an anchor,
// "<prefix><seq>~<feed id>": the process that made it, its number there,
// and the last feed entry that process's router had applied when it made
// it. (Under claim and auto, the feed also holds deliveries addressed to
// some operators and Redis's decisions, which the replay tells as every
// node's router does: opRouting.) Frames from other nodes' feed entries are
// stamped again with such an offset on arrival (one copy per node, not
// per operator). So an operator that saw offset O has seen every feed
// entry up to O's feed id, and every event O's process made up to O's
// number; what it missed is the rest of the feed after O's feed id,
// minus what O's process made up to O's number, minus its own broadcasts.
//
// What is not in the feed makes recovery impossible, never partial: an
// offset inside the operator's join-time newChat list, an offset without
// an anchor, a feed trimmed after the anchor, or an event this node told
// its operators alone (presence caught up after a Redis outage, a gone
// node's players): then the operator gets a fresh session.

// anchorSep separates an offset's process and number from its feed anchor.
const anchorSep = '~'

// nextAnchored is next with the feed anchor: one allocation, as next.
func (s *idSource) nextAnchored(feed string) string {
	s.seq++
	return s.prefix + strconv.FormatUint(s.seq, 36) + string(anchorSep) + feed
}

// opAnchor is a parsed anchored offset.
type opAnchor struct {
	prefix string // the process's offset prefix, "-" included
	seq    uint64 // its frame number there
	feed   string // the feed id its router had applied ("" unknown)
	// sub: in a takeover's replay, the frames of feed entry feed that the
	// operator has seen when that entry makes several for it (a routing
	// decision: newChat then chatAssigned); the entries before it whole.
	// 0: the entry whole.
	sub int
}

// subSep separates a replayed frame's feed anchor from its sub count.
const subSep = '.'

func (a opAnchor) String() string {
	s := a.prefix + strconv.FormatUint(a.seq, 36) + string(anchorSep) + a.feed
	if a.sub > 0 {
		s += string(subSep) + strconv.Itoa(a.sub)
	}
	return s
}

// parseAnchor parses an anchored offset; ok false for any other.
func parseAnchor(off string) (opAnchor, bool) {
	i := strings.IndexByte(off, anchorSep)
	if i <= 0 {
		return opAnchor{}, false
	}
	head := off[:i]
	j := strings.LastIndexByte(head, '-')
	if j < 0 {
		return opAnchor{}, false
	}
	seq, err := strconv.ParseUint(head[j+1:], 36, 64)
	if err != nil {
		return opAnchor{}, false
	}
	a := opAnchor{prefix: head[:j+1], seq: seq, feed: off[i+1:]}
	if feed, sub, ok := strings.Cut(a.feed, string(subSep)); ok {
		n, err := strconv.Atoi(sub)
		if err != nil || n <= 0 {
			return opAnchor{}, false
		}
		a.feed, a.sub = feed, n
	}
	return a, true
}

// joinAnchor is what an operator's stored record says of its last join:
// where the router stood before its newChat list and where after it.
type joinAnchor struct {
	before  opAnchor
	listEnd uint64
}

func (j joinAnchor) encode() string {
	return j.before.String() + "|" + strconv.FormatUint(j.listEnd, 36)
}

func parseJoinAnchor(s string) (joinAnchor, bool) {
	head, end, ok := strings.Cut(s, "|")
	if !ok {
		return joinAnchor{}, false
	}
	a, ok := parseAnchor(head)
	n, err := strconv.ParseUint(end, 36, 64)
	if !ok || err != nil || n < a.seq {
		return joinAnchor{}, false
	}
	return joinAnchor{before: a, listEnd: n}, true
}

// replayFrom tells where a recovering operator's missed events start: its
// offset's anchor, or its join's when it saw nothing; why when its offset
// is inside the join's newChat list (not in the feed) or unanchored.
func (j joinAnchor) replayFrom(offset string, hasOffset bool) (opAnchor, string) {
	list := j.listEnd > j.before.seq
	if !hasOffset {
		if list {
			return opAnchor{}, "the client saw none of its newChat list"
		}
		return j.before, ""
	}
	a, ok := parseAnchor(offset)
	switch {
	case !ok || a.feed == "":
		return opAnchor{}, "offset without a feed anchor"
	case list && (a.prefix != j.before.prefix || a.seq < j.listEnd):
		return opAnchor{}, "offset inside the operator's newChat list"
	}
	return a, ""
}

// packetOffset finds the offset a packet carries as its last argument: the
// index of its `,"` and the offset; -1 when it carries none.
func packetOffset(p []byte) (int, []byte) {
	n := len(p)
	if n < 5 || p[n-1] != ']' || p[n-2] != '"' {
		return -1, nil
	}
	q := bytes.LastIndexByte(p[:n-2], '"')
	if q < 1 || p[q-1] != ',' {
		return -1, nil
	}
	return q - 1, p[q+1 : n-2]
}

// restamp is f with offset off in place of the one its packet carries.
func restamp(f *messages.Frame, off string) *messages.Frame {
	i, _ := packetOffset(f.Packet)
	if i < 0 {
		return f
	}
	p := make([]byte, 0, i+len(off)+4)
	p = append(p, f.Packet[:i]...)
	p = append(p, `,"`...)
	p = append(p, off...)
	p = append(p, `"]`...)
	return &messages.Frame{Event: f.Event, At: f.At, Packet: p, Offset: off}
}

// opReplay picks, from the feed entries after from.feed (oldest first),
// what a recovering operator missed. The adopting node's router listed the
// operator when it had applied the feed up to upto and made its frames up
// to own.seq: later entries reach the operator live, except this node's
// own earlier ones (delivered locally before they were written).
type opReplay struct {
	sid  string
	from opAnchor
	upto string
	own  opAnchor
	// routing: under claim and auto, what the decisions in the feed are
	// told with (nil in broadcast mode).
	routing *opRouting
}

// pick chooses the frames; with from.sub the first entry is from's own,
// of which the operator saw the first sub frames.
func (o *opReplay) pick(entries []feedEntry) ([]*messages.Frame, string) {
	var out []*messages.Frame
	var closes map[string]int // chat "client|seq" → the index of its last close
	if o.routing != nil {
		closes = o.routing.closes(entries)
	}
	for i, en := range entries {
		e, err := decodeEnvelope(en.env)
		if err != nil {
			return nil, "feed entry unreadable"
		}
		partial := i == 0 && o.from.sub > 0 && en.id == o.from.feed
		if partial && e.kind != kindRouting {
			return nil, "offset inside a feed entry that made one frame"
		}
		body := e.body
		switch e.kind {
		case kindOperator:
			if e.arg == o.sid {
				continue // its own broadcast
			}
		case kindAnnounce:
		case kindGone:
			// Delivered from the feed alone, its writer's operators too:
			// its place in the feed says who had it.
			if compareStreamID(en.id, o.upto) > 0 {
				continue
			}
			f := &messages.Frame{Event: e.event, Packet: e.body}
			if restamped := restamp(f, opAnchor{prefix: o.from.prefix, seq: o.from.seq, feed: en.id}.String()); restamped != f {
				out = append(out, restamped)
			}
			continue
		case kindAgents:
			if o.routing == nil {
				return nil, "routed deliveries in the feed"
			}
			keys, packet, _ := strings.Cut(string(e.body), "\n")
			var to []string
			if json.Unmarshal([]byte(keys), &to) != nil {
				return nil, "feed entry unreadable"
			}
			if e.arg == o.sid || !slices.Contains(to, o.routing.key) {
				continue // not for it
			}
			body = []byte(packet)
		case kindRouting:
			if o.routing == nil || compareStreamID(en.id, o.upto) > 0 {
				continue // none in broadcast mode; later ones are told it live
			}
			frames, chat, why := o.routing.render(e.body)
			if why != "" {
				return nil, why
			}
			if len(frames) > 0 && closes[chat] > i {
				// Its own node may have forgotten the chat before this
				// decision came back, and told it nothing: not known here.
				return nil, "a decision about a chat that ended meanwhile"
			}
			skip := 0
			if partial {
				skip = o.from.sub
			}
			for k, f := range frames {
				if k < skip {
					continue
				}
				at := opAnchor{prefix: o.from.prefix, seq: o.from.seq, feed: en.id}
				if k < len(frames)-1 {
					at.sub = k + 1
				}
				out = append(out, encodeReplayed(f, at))
			}
			continue
		default:
			continue
		}
		at, off := packetOffset(body)
		if at < 0 {
			continue // volatile: never replayed
		}
		src, anchored := parseAnchor(string(off))
		if anchored && src.prefix == o.from.prefix && src.seq <= o.from.seq {
			continue // seen before its offset
		}
		live := compareStreamID(en.id, o.upto) > 0
		if live && !(anchored && src.prefix == o.own.prefix && src.seq <= o.own.seq) {
			continue // reaches it live
		}
		f := &messages.Frame{Event: e.event, Packet: body}
		if e.at != 0 {
			f.At = time.UnixMilli(e.at)
		}
		// Seen up to this entry, and up to the same frame of its old process.
		out = append(out, restamp(f, opAnchor{prefix: o.from.prefix, seq: o.from.seq, feed: en.id}.String()))
	}
	return out, ""
}

// replayedFrame is an event a takeover makes from a routing decision.
type replayedFrame struct {
	event   string
	payload any
}

func encodeReplayed(r replayedFrame, at opAnchor) *messages.Frame {
	f, err := messages.EncodeFrameOffset(r.event, r.payload, at.String())
	if err != nil {
		panic(err) // every payload type here encodes
	}
	return f
}

// opRouting is what a takeover under claim or auto tells the decisions in
// the feed with, as every node's router tells them (routingEvent): the
// operators' ids and names, and the newChat of the open chats, as the
// adopting node knows them when it lists the operator.
type opRouting struct {
	key    string // the operator's agent key
	auto   bool
	agents map[string]agentName
	chats  map[string]*messages.NewChat
}

type agentName struct {
	id   messages.ID
	name messages.Str
}

// closes indexes the chats' ends among the entries.
func (o *opRouting) closes(entries []feedEntry) map[string]int {
	out := map[string]int{}
	for i, en := range entries {
		if !strings.HasPrefix(en.env, string(kindRouting)) {
			continue
		}
		e, err := decodeEnvelope(en.env)
		if err != nil {
			continue
		}
		var d routeEvent
		if json.Unmarshal(e.body, &d) == nil && d.T == "close" {
			out[d.C+"|"+strconv.FormatUint(d.S, 10)] = i
		}
	}
	return out
}

// render is what a decision told the operator on its old node: every
// operator hears chatAssigned and chatQueued; an owner in auto mode (and
// at a chat's open) newChat first. why: what cannot be told for sure.
func (o *opRouting) render(body []byte) (frames []replayedFrame, chat, why string) {
	var e routeEvent
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, "", "routing decision unreadable"
	}
	chat = e.C + "|" + strconv.FormatUint(e.S, 10)
	assigned := func(introduce bool) {
		g, ok := o.agents[e.O]
		if !ok {
			why = "a decision names an operator not known here"
			return
		}
		if introduce && e.O == o.key {
			nc := o.chats[e.C]
			if nc == nil {
				why = "a chat given to it is not open here"
				return
			}
			frames = append(frames, replayedFrame{messages.EventNewChat, nc})
		}
		frames = append(frames, replayedFrame{messages.EventChatAssigned, &messages.ChatAssigned{ClientID: e.C, OperatorID: g.id, OperatorName: g.name}})
	}
	switch e.T {
	case "open":
		if e.O != "" {
			assigned(true)
			break
		}
		if e.P <= 0 {
			return nil, "", "a queued chat without its position"
		}
		frames = append(frames, replayedFrame{messages.EventChatQueued, &messages.ChatQueued{ClientID: e.C, Position: e.P}})
	case "assign":
		assigned(o.auto)
	case "queue":
		if e.P <= 0 {
			return nil, "", "a queued chat without its position"
		}
		frames = append(frames, replayedFrame{messages.EventChatQueued, &messages.ChatQueued{ClientID: e.C, Position: e.P}})
	case "watch":
		if e.O == o.key {
			return nil, "", "it started or stopped watching a chat"
		}
	case "close", "status":
	default:
		return nil, "", "an unknown routing decision"
	}
	if why != "" {
		return nil, "", why
	}
	return frames, chat, ""
}

// Messages of an operator's takeover.
type (
	// adoptedOperator asks the router to list an operator taken over from
	// another node, quietly, and the bridge to read what it missed; the
	// answer comes on reply.
	adoptedOperator struct {
		session *actor.PID
		member  *Member
		from    opAnchor
		reply   chan *opRead
	}
	// opReadJob is the bridge's read of the feed for a takeover, run by
	// the worker after every write queued before it.
	opReadJob struct {
		replay *opReplay
		reply  chan *opRead
	}
	// opRead is what a takeover read: the frames missed, or why not.
	opRead struct {
		frames []*messages.Frame
		why    string
	}
	// feedPosition tells the router where the feed stood at the bridge's
	// first read of it (later, each feed delivery carries its id).
	feedPosition struct{ id string }
)

// adoptedOperator lists an operator taken over from another node and asks
// for what it missed. Any doubt is a refusal: the session then ends and
// the client starts afresh.
func (r *router) adoptedOperator(ctx actor.Context, m *adoptedOperator) {
	fail := func(why string) { m.reply <- &opRead{why: why} }
	p := m.member.participant()
	switch {
	case r.cl == nil || !r.cl.opAdopt || r.cl.bridge == nil || !r.cl.state.Up:
		fail("operators' takeover needs the cluster's store")
		return
	case r.cl.feedAt == "":
		fail("this node has not read the feed yet")
		return
	case r.pr.byID[p.id] != nil:
		fail("already here")
		return
	case r.asg.enabled() && !r.clustered():
		fail("routing's decisions are not taken in Redis")
		return
	case r.asg.enabled() && !r.orphaned(p.id):
		// Its old node may still count its socket in Redis: the two
		// counts could cross, and its chats go back to the queue.
		fail("its old node is not known gone yet")
		return
	case r.asg.enabled() && compareStreamID(m.from.feed, r.cl.feedAt) > 0:
		// Its old node had applied decisions that this one has not:
		// they would be told it twice.
		fail("its old node had read the feed further than this one")
		return
	case !r.cl.localOnlyAt.IsZero() && r.cl.localOnlyAt.After(feedTime(m.from.feed).Add(-r.cl.skew)):
		// This node told its operators something the feed does not hold
		// (a gone node's players, presence caught up after an outage);
		// the operator's node may have too, or may have died before it.
		fail("events since its offset that the feed does not hold")
		return
	}
	p.node, p.session, p.away = "", m.session, false
	r.cl.remote.remove(p.id)
	delete(r.cl.orphans, p.id)
	r.pr.upsert(p)
	ctx.Watch(m.session)
	r.met.Joined("none", p.role.String())
	upto, own := r.cl.feedAt, opAnchor{prefix: r.offsets.prefix, seq: r.offsets.seq, feed: r.cl.feedAt}
	if compareStreamID(m.from.feed, upto) > 0 {
		// Its old node had applied entries this one has not yet: when
		// they arrive here, it has them already.
		if r.cl.opSkip == nil {
			r.cl.opSkip = map[string]string{}
		}
		r.cl.opSkip[p.id] = m.from.feed
	}
	mem := memberOf(p)
	mem.Quiet = true
	r.toBridge(ctx, &clusterJoined{m: mem, anchor: joinAnchor{before: own, listEnd: own.seq}.encode()})
	replay := &opReplay{sid: p.id, from: m.from, upto: upto, own: own}
	if r.asg.enabled() {
		replay.routing = r.adoptRouting(ctx, p)
	}
	ctx.Send(r.cl.bridge, &opReadJob{replay: replay, reply: m.reply})
	r.log.Info("operator taken over from another node", "socket", p.id)
	// What waited for an operator online: after what it missed.
	r.flushQueue(ctx)
}

// orphanQuery asks the router whether an operator's node is known gone
// (the answer is a bool): under routing only then is it taken over.
type orphanQuery struct{ id string }

// orphaned tells whether a remote operator's node is known gone here.
func (r *router) orphaned(id string) bool {
	_, ok := r.cl.orphans[id]
	return ok
}

// adoptRouting moves an operator taken over here into this node's
// routing table (it keeps its chats: the socket is only counted here
// now, in Redis too) and tells what its replay needs to tell the
// decisions it missed.
func (r *router) adoptRouting(ctx actor.Context, p *participant) *opRouting {
	r.asg.socketLeft(p.id) // its socket on its old node
	g := r.asg.operatorJoined(p, 0)
	r.clusterHere(ctx, g, 0)
	o := &opRouting{key: g.key, auto: r.asg.mode == RoutingAuto,
		agents: make(map[string]agentName, len(r.asg.agents)), chats: make(map[string]*messages.NewChat, len(r.asg.chats))}
	for key, a := range r.asg.agents {
		o.agents[key] = agentName{id: a.id, name: a.name}
	}
	for id := range r.asg.chats {
		if c := r.client(id); c != nil {
			o.chats[id] = &messages.NewChat{ClientID: c.id, Username: c.displayName(), Phone: c.phone}
		}
	}
	return o
}

// feedTime is when a feed entry was written (zero when unknown).
func feedTime(id string) time.Time {
	ms, _ := splitStreamID(id)
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(int64(ms))
}

// localOnly records that this node told its operators something that is
// not in the feed (see adoptedOperator).
func (r *router) localOnly() {
	if r.cl != nil && r.cl.opAdopt {
		r.cl.localOnlyAt = time.Now()
	}
}

// opStamp gives a feed frame for local operators this node's own anchored
// offset, and remembers how far the feed was applied.
func (r *router) opStamp(m *RemoteDeliver) *messages.Frame {
	if m.FeedID != "" {
		r.cl.feedAt = m.FeedID
	}
	if len(r.pr.operators) == 0 {
		return m.Frame
	}
	return restamp(m.Frame, r.offsets.nextAnchored(r.cl.feedAt))
}

// toLocalOperatorsSkipping is toLocalOperators for a feed entry while
// operators taken over here still await entries their old node had
// applied before this one.
func (r *router) toLocalOperatorsSkipping(ctx actor.Context, f *messages.Frame, except, feedID string) {
	d := &messages.Deliver{Frame: f}
	for id, op := range r.pr.operators {
		if id == except {
			continue
		}
		if skip, ok := r.cl.opSkip[id]; ok {
			if feedID != "" && compareStreamID(feedID, skip) <= 0 {
				continue
			}
			delete(r.cl.opSkip, id)
		}
		ctx.Send(op.session, d)
	}
}

// readOpReplay is the worker's read for a takeover: the feed after the
// anchor, refused when anything after it may have been trimmed. The feed
// is only ever trimmed from its head, so the anchor's own entry still
// there proves that nothing after it went; an anchor before the feed's
// first entry ("0-0") needs a feed that never lost one.
func (b *redisBridge) readOpReplay(ctx context.Context, rdb *redis.Client, j *opReadJob) *opRead {
	key := b.key("feed")
	from := j.replay.from.feed
	if from == "0-0" {
		info, err := rdb.XInfoStream(ctx, key).Result()
		switch {
		case err != nil && !strings.Contains(err.Error(), "no such key"):
			return &opRead{why: fmt.Sprintf("feed unreadable: %v", err)}
		case err == nil && info.EntriesAdded != info.Length:
			return &opRead{why: "feed entries after the offset are gone"}
		}
	} else if ms, _ := splitStreamID(from); ms == 0 {
		return &opRead{why: "no feed anchor"}
	}
	msgs, err := rdb.XRange(ctx, key, from, "+").Result()
	if err != nil {
		return &opRead{why: fmt.Sprintf("feed unreadable: %v", err)}
	}
	if from != "0-0" {
		if len(msgs) == 0 || msgs[0].ID != from {
			return &opRead{why: "feed entries after the offset are gone"}
		}
	}
	entries := make([]feedEntry, 0, len(msgs))
	for _, m := range msgs {
		env, _ := m.Values["m"].(string)
		entries = append(entries, feedEntry{id: m.ID, env: env})
	}
	entries = unseen(entries, j.replay.from)
	frames, why := j.replay.pick(entries)
	return &opRead{frames: frames, why: why}
}

// unseen drops the anchor's own entry from a read that starts with it
// unless the operator saw only part of it (a sub offset).
func unseen(entries []feedEntry, from opAnchor) []feedEntry {
	if len(entries) > 0 && entries[0].id == from.feed && from.sub == 0 {
		return entries[1:] // seen whole
	}
	return entries
}

// adoptOperatorStart is adoptStart for an operator: listed by the router,
// the frames it missed read from the feed and written before the
// transport answers CONNECT. A refusal ends the session (the client
// starts afresh).
func (s *session) adoptOperatorStart(ctx actor.Context, a *adoption) *resumed {
	s.joined = true
	reply := make(chan *opRead, 1)
	ctx.Send(s.router, &adoptedOperator{session: ctx.Self(), member: a.member, from: a.opFrom, reply: reply})
	var res *opRead
	select {
	case res = <-reply:
	case <-time.After(opTakeoverWait):
		res = &opRead{why: "the feed did not answer in time"}
	}
	if res.why != "" {
		// The transport answers it as a fresh session: not this one's to close.
		s.conn = nil
		s.end(ctx, "operator takeover impossible: "+res.why)
		return &resumed{why: res.why}
	}
	for _, f := range res.frames {
		s.write(f)
		s.replay.add(f, s.writes)
	}
	s.met.Recovered()
	s.log.Info("operator recovered from another node", "socket", s.id, "missed", len(res.frames), "from", a.oldNode)
	return &resumed{ok: true, pid: ctx.Self(), id: s.id, privateID: s.privateID, missed: len(res.frames)}
}

// opTakeoverWait bounds an operator's takeover (within the hub's ask).
const opTakeoverWait = 1500 * time.Millisecond

// announce tells every node's operators of a player's join or end: this
// node's at once, the others' through the feed (one source, so that an
// operator taken over elsewhere finds it there).
func (r *router) announce(ctx actor.Context, f *messages.Frame, clientID string) {
	r.toLocalOperators(ctx, f, "")
	r.toBridge(ctx, &clusterDeliver{frame: f, announce: clientID})
}

// announced tells whether a player's newChat or chatEnded from the feed is
// news here: false when a presence re-read told it already.
func (r *router) announced(m *RemoteDeliver) bool {
	id := m.Announce
	if ev, ok := r.cl.bySnap[id]; ok && ev == m.Frame.Event {
		delete(r.cl.bySnap, id)
		return false
	}
	if r.cl.shown == nil {
		r.cl.shown = map[string]bool{}
	}
	if m.Frame.Event == messages.EventNewChat {
		r.cl.shown[id] = true
	} else {
		delete(r.cl.shown, id)
	}
	return true
}

// remoteJoinedAnnounce: with operators across nodes, a player's newChat
// comes through the feed from its node; presence tells it only when it
// could not (a quiet join of a player unknown here, or a re-read after
// missed events that the feed may not hold), and this node alone then.
func (r *router) remoteJoinedAnnounce(ctx actor.Context, m *RemoteJoined, p, old *participant, orphan bool) {
	if old != nil || (m.Member.Quiet && orphan) || (!m.Member.Quiet && !m.Resync) || r.cl.shown[p.id] {
		return
	}
	r.showBySnap(p.id, messages.EventNewChat)
	r.toLocalOperators(ctx, r.newChatFrame(p), "")
}

// remoteLeftAnnounce is remoteJoinedAnnounce for a player's end.
func (r *router) remoteLeftAnnounce(ctx actor.Context, m *RemoteLeft, id string) {
	if !m.Resync || !r.cl.shown[id] {
		return
	}
	r.showBySnap(id, messages.EventChatEnded)
	r.toLocalOperators(ctx, r.disconnectedFrame(id), "")
}

func (r *router) showBySnap(id, event string) {
	r.localOnly()
	if r.cl.bySnap == nil {
		r.cl.bySnap = map[string]string{}
	}
	if r.cl.shown == nil {
		r.cl.shown = map[string]bool{}
	}
	r.cl.bySnap[id] = event
	if event == messages.EventNewChat {
		r.cl.shown[id] = true
	} else {
		delete(r.cl.shown, id)
	}
}

// orphanOperator keeps a gone node's operator listed, away, until its
// window ends: not online (what players say meanwhile waits in the queue),
// but not gone either, so that it can be taken over.
func (r *router) orphanOperator(ctx actor.Context, p *participant, since time.Time) {
	if _, ok := r.cl.orphans[p.id]; ok {
		return
	}
	left := time.Until(since.Add(r.cl.window))
	if left <= 0 {
		r.cl.remote.remove(p.id)
		r.toBridge(ctx, &forgetSession{id: p.id, node: p.node})
		return
	}
	p.away = true
	if r.cl.orphanOps == nil {
		r.cl.orphanOps = map[string]bool{}
	}
	r.cl.orphanOps[p.id] = true
	r.expireOrphanIn(ctx, p.id, left)
}

// goneFrame tells every node's operators of a gone node's player's away
// ("a") or end ("e"). With operators across nodes every node asks Redis
// and one writes it to the feed, which every node delivers (one source, so
// that an operator taken over elsewhere finds it there); else each node
// tells its own operators.
func (r *router) goneFrame(ctx actor.Context, f *messages.Frame, p *participant, what string) {
	if r.cl == nil || !r.cl.opAdopt || r.cl.bridge == nil || !r.cl.state.Up {
		if r.cl != nil && r.cl.opAdopt {
			r.localOnly()
		}
		r.toLocalOperators(ctx, f, "")
		return
	}
	r.toBridge(ctx, &clusterDeliver{frame: f, gone: what, goneKey: p.node + "/" + r.cl.goneInc[p.node], goneNode: p.node, goneID: p.id})
}
