package actors

import (
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard/switchboard/messages"
	"github.com/switchboard/switchboard/metrics"
)

// session is one participant's actor. It enforces its socket's limits and
// identity, forwards its events to the router in the order they arrived,
// answers refusals and acknowledgements, and writes the router's frames to
// the socket.
//
// With connection-state recovery it outlives its transport: when the
// transport drops without a goodbye the session is away for the recovery
// window, keeps what the router sends it, and a reconnecting socket that
// names its private id and last offset takes its place and gets exactly
// what it missed. When it stops, for whatever reason, its socket is
// closed, and the router, which watches it, removes it from presence.
type session struct {
	conn      Conn // nil while away
	id        string
	privateID string // "" when recovery is off
	router    *actor.PID
	log       *slog.Logger
	policy    *Policy
	met       *metrics.Metrics
	identity  *messages.Identity // from a verified handshake token, or nil
	authErr   error              // why a presented token was refused
	messages  bucket
	typing    bucket
	abuse     strikes
	closed    string // why the session is ending, once it is

	// Recovery (nil log when off).
	replay *replayLog
	writes uint64 // frames written to the current conn
	away   bool
	epoch  int // counts transports, so a stale timer changes nothing

	// resumeToken lets a reloaded page take this player's conversation
	// back (handed out in its join's ack); quietRejoin marks the next join
	// as such a page's, which operators need not hear of again.
	resumeToken string
	quietRejoin bool

	// Events a fresh socket sent before its join (a client flushes its
	// send buffer on reconnect before its connect handler joins): applied
	// after the join instead of refused.
	joined bool
	held   []messages.RouterMessage

	// With stored sessions (a cluster): the last frame of the player's
	// stored conversation written or kept here, to drop a frame that
	// came twice and to notice one that went missing on the way.
	seqOn    bool
	seqEpoch string
	lastSeq  uint64
	catchAt  time.Time
	// markSent and markAt: the last confirmed stored frame told to the
	// store (where a reload on another node starts) and when.
	markSent uint64
	markAt   time.Time
}

// Messages a session sends itself from timers.
type (
	awayExpired  struct{ epoch int }
	holdExpired  struct{}
	socketClosed struct {
		conn        Conn
		reason      string
		recoverable bool
	}
	// resume asks a session to take a reconnecting socket; it responds
	// with *resumed.
	resume struct {
		conn      Conn
		offset    string
		hasOffset bool
		// reload: a new page with proof of identity (a resume token or its
		// token's sub) but nothing read: it gets everything not confirmed.
		reload   bool
		identity *messages.Identity
		authErr  error
	}
	// resumeKeys tells the hub which keys find this session on a reload.
	resumeKeys struct {
		pid  *actor.PID
		id   string
		keys []string
	}
	resumed struct {
		ok        bool
		pid       *actor.PID
		id        string
		privateID string
		missed    int
		why       string
		// notHere: this node has no such session (another may).
		notHere bool
	}
)

func newSession(conn Conn, privateID string, router *actor.PID, log *slog.Logger, p *Policy, met *metrics.Metrics, id *messages.Identity, authErr error) *session {
	now := time.Now()
	s := &session{
		conn: conn, id: conn.ID(), privateID: privateID, router: router, log: log, policy: p, met: met, identity: id, authErr: authErr,
		messages: newBucket(p.Messages, now),
		typing:   newBucket(p.Typing, now),
		abuse:    strikes{limit: p.AbuseLimit, win: p.AbuseWindow},
	}
	if privateID != "" {
		s.replay = newReplayLog(p.Recovery.MaxFrames, p.Recovery.MaxBytes)
	}
	return s
}

func (s *session) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *messages.Deliver:
		if s.seqOn && !s.inSequence(ctx, m.Frame) {
			return
		}
		s.deliver(ctx, m.Frame)
	case *messages.Join:
		s.join(ctx, m)
	case *messages.ClientTyping:
		s.forward(ctx, m, "clientTyping", &s.typing)
	case *messages.OperatorTyping:
		s.forward(ctx, m, "operatorTyping", &s.typing)
	case *messages.ClientMessage:
		s.forward(ctx, m, "clientMessage", &s.messages)
	case *messages.OperatorMessage:
		s.forward(ctx, m, "operatorMessage", &s.messages)
	case *messages.EndChat:
		s.forward(ctx, m, "endChat", &s.messages)
	case *messages.RoutingRequest:
		s.forward(ctx, m, m.Kind.Event(), &s.messages)
	case *messages.Unknown:
		s.unknown(ctx, m)
	case *messages.Refused:
		s.refused(ctx, m)
	case *messages.Accepted:
		reply := &messages.AckReply{OK: true, ID: m.ID, Timestamp: m.Timestamp, Queued: m.Queued, Away: m.Away}
		if m.ClientID != "" && s.replay != nil {
			reply.ClientID, reply.ResumeToken = m.ClientID, s.ensureResumeToken(ctx)
		}
		m.Ack(reply)
	case *socketClosed:
		s.socketClosed(ctx, m)
	case *resume:
		ctx.Respond(s.resume(ctx, m))
	case *awayExpired:
		if s.away && m.epoch == s.epoch {
			s.met.Expired()
			s.end(ctx, "recovery window ended")
		}
	case *holdExpired:
		s.releaseHeld(ctx)
	case *caughtUp:
		s.caughtUp(ctx, m)
	case *needCatchUp:
		s.catchUp(ctx, true)
	case *adoptStart:
		ctx.Respond(s.adoptStart(ctx, m))
	case *moveOut:
		s.closed = "taken over by another node"
		if s.conn != nil {
			s.conn.Abandon()
		}
		s.log.Info("session taken over by another node", "socket", s.id)
		ctx.Stop(ctx.Self())
	case *actor.Stopped:
		if s.conn != nil && s.closed == "" {
			// Stopped by a failure, by abuse or by shutdown: the socket must
			// not linger without an actor behind it.
			s.conn.Close("session stopped")
		}
	}
}

// deliver writes a router frame, keeping it for recovery when it has an
// offset.
func (s *session) deliver(ctx actor.Context, f *messages.Frame) {
	if s.replay == nil || f.Offset == "" {
		if s.conn != nil {
			s.write(f)
			s.met.Delivered(f.Event, f.At)
		}
		return
	}
	if s.away {
		if !s.replay.add(f, 0) {
			// The client can no longer be brought up to date: it would come
			// back as a fresh session, so end this one now.
			s.end(ctx, "recovery log full while away")
		}
		return
	}
	s.replay.confirm(s.conn.Confirmed())
	if s.seqOn {
		s.markConfirmed(ctx, false)
	}
	s.write(f)
	s.replay.add(f, s.writes)
	s.met.Delivered(f.Event, f.At)
}

// markConfirmed tells the store, at most once a second unless forced, the
// last stored frame its client is known to have read: a reloaded page on
// another node gets what came after it.
func (s *session) markConfirmed(ctx actor.Context, force bool) {
	_, n, ok := redisOffset(s.replay.base)
	if !ok || n <= s.markSent {
		return
	}
	now := time.Now()
	if !force && now.Sub(s.markAt) < time.Second {
		return
	}
	s.markSent, s.markAt = n, now
	ctx.Send(s.router, &confirmedMark{id: s.id, n: n})
}

func (s *session) write(f *messages.Frame) {
	s.writes++
	s.conn.Write(f)
}

func (s *session) join(ctx actor.Context, m *messages.Join) {
	m.Session = ctx.Self()
	m.Resumed, s.quietRejoin = s.quietRejoin, false
	if code, reason := s.admit(m); code != "" {
		s.refused(ctx, &messages.Refused{Event: "join", Code: code, Reason: reason, Ack: m.Ack})
		return
	}
	if s.limited(ctx, &m.Origin, "join", &s.messages) {
		return
	}
	ctx.Send(s.router, m)
	if !s.joined {
		s.joined = true
		s.releaseHeld(ctx)
	}
}

// admit checks a join against the socket's verified identity.
func (s *session) admit(m *messages.Join) (code, reason string) {
	if s.authErr != nil {
		return messages.CodeUnauthorized, s.authErr.Error()
	}
	id := s.identity
	switch m.Payload.Role {
	case messages.RoleOperator:
		if id != nil && id.Role == messages.RoleOperator {
			m.Verified = id
		} else if s.policy.OperatorAuth {
			return messages.CodeUnauthorized, "operators must present a valid token"
		}
	case messages.RoleClient:
		if id != nil && id.Role == messages.RoleClient {
			m.Verified = id
		} else if id != nil || s.policy.ClientTokenRequired {
			return messages.CodeUnauthorized, "clients must present a valid client token"
		}
	}
	return "", ""
}

// forward passes an event to the router if the socket's bucket allows it;
// before the socket's join it is held, within bounds.
func (s *session) forward(ctx actor.Context, m messages.RouterMessage, event string, b *bucket) {
	o := m.Src()
	o.Session = ctx.Self()
	if !s.joined && s.policy.HoldBeforeJoin > 0 {
		if len(s.held) < s.policy.HoldBeforeJoin {
			if len(s.held) == 0 {
				self, sys := ctx.Self(), ctx.ActorSystem()
				time.AfterFunc(s.policy.HoldFor, func() { sys.Root.Send(self, &holdExpired{}) })
			}
			s.held = append(s.held, m)
			return
		}
		// Past the bound the event goes on, and the router refuses it.
	}
	if s.limited(ctx, o, event, b) {
		return
	}
	ctx.Send(s.router, m)
}

// releaseHeld hands the held events to the router in order: after the
// join, or when no join came in time (then the router refuses them).
func (s *session) releaseHeld(ctx actor.Context) {
	held := s.held
	s.held = nil
	for _, m := range held {
		b := &s.messages
		switch m.(type) {
		case *messages.ClientTyping, *messages.OperatorTyping:
			b = &s.typing
		}
		if !s.limited(ctx, m.Src(), eventName(m), b) {
			ctx.Send(s.router, m)
		}
	}
}

func eventName(m messages.RouterMessage) string {
	if rr, ok := m.(*messages.RoutingRequest); ok {
		return rr.Kind.Event()
	}
	switch m.(type) {
	case *messages.ClientTyping:
		return "clientTyping"
	case *messages.OperatorTyping:
		return "operatorTyping"
	case *messages.ClientMessage:
		return "clientMessage"
	case *messages.OperatorMessage:
		return "operatorMessage"
	case *messages.EndChat:
		return "endChat"
	}
	return "join"
}

// unknown counts an event the contract does not name against the socket's
// message rate: it delivers nothing, but is not free to send either.
func (s *session) unknown(ctx actor.Context, m *messages.Unknown) {
	if !s.messages.take(time.Now()) {
		s.refused(ctx, &messages.Refused{Event: m.Event, Code: messages.CodeRateLimited, Reason: "too many events; slow down", Ack: m.Ack})
	}
}

// limited refuses an event over the socket's rate.
func (s *session) limited(ctx actor.Context, o *messages.Origin, event string, b *bucket) bool {
	if b.take(time.Now()) {
		return false
	}
	s.refused(ctx, &messages.Refused{Event: event, Code: messages.CodeRateLimited, Reason: "too many events; slow down", Ack: o.Ack})
	return true
}

// refused answers a refused event, and disconnects a socket that keeps
// sending refused events.
func (s *session) refused(ctx actor.Context, m *messages.Refused) {
	s.met.Refused(m.Event, m.Code)
	if s.conn == nil {
		return // away: an answer to a lost transport is lost with it
	}
	if m.Ack != nil {
		m.Ack(&messages.AckReply{OK: false, Error: &messages.AckError{Code: m.Code, Message: m.Reason}})
	} else {
		s.write(messages.MustFrame(messages.EventChatError, &messages.ChatError{Code: m.Code, Message: m.Reason, Event: m.Event}))
	}
	if s.abuse.add(time.Now()) && s.closed == "" {
		s.log.Warn("disconnecting abusive socket", "socket", s.id, "refusals", len(s.abuse.times), "window", s.policy.AbuseWindow.String(), "last", m.Code)
		s.closed = "abuse"
		s.conn.Close("too many refused events")
		ctx.Stop(ctx.Self())
	}
}

// socketClosed is the end of a transport: the end of the session, or,
// when the transport dropped without a goodbye and recovery is on, the
// start of the recovery window.
func (s *session) socketClosed(ctx actor.Context, m *socketClosed) {
	if m.conn != s.conn {
		return // a transport that a recovered socket took over from
	}
	if !m.recoverable || s.replay == nil || !s.joined {
		s.closed = m.reason
		s.conn = nil
		ctx.Stop(ctx.Self())
		return
	}
	if s.seqOn {
		s.replay.confirm(m.conn.Confirmed())
		s.markConfirmed(ctx, true)
	}
	s.conn = nil
	s.away = true
	s.epoch++
	epoch, self, sys := s.epoch, ctx.Self(), ctx.ActorSystem()
	time.AfterFunc(s.policy.Recovery.Window, func() { sys.Root.Send(self, &awayExpired{epoch: epoch}) })
	ctx.Send(s.router, &messages.Away{Session: self})
	s.met.Away()
	s.log.Info("participant away; recoverable", "socket", s.id, "reason", m.reason, "window", s.policy.Recovery.Window.String())
}

// end stops the session for good; the router sees it leave.
func (s *session) end(ctx actor.Context, why string) {
	if s.closed != "" {
		return
	}
	s.closed = why
	if s.conn != nil {
		s.conn.Close(why)
	}
	s.log.Info("session ended", "socket", s.id, "reason", why)
	ctx.Stop(ctx.Self())
}

// resume lets a reconnecting socket take this session's place, when its
// token proves the same identity and every frame after its offset is
// known. Then the missed frames are written to it, in order, before the
// transport answers CONNECT.
func (s *session) resume(ctx actor.Context, m *resume) *resumed {
	if s.closed != "" || s.replay == nil {
		return &resumed{why: "session ended"}
	}
	if m.authErr != nil || !sameIdentity(s.identity, m.identity) {
		return &resumed{why: "token does not prove the same identity"}
	}
	if s.conn != nil {
		s.replay.confirm(s.conn.Confirmed())
	}
	missed, ok := s.replay.entries, true
	if !m.reload {
		missed, ok = s.replay.after(m.offset, m.hasOffset)
	}
	if !ok {
		// The client would miss something: it starts afresh, and this
		// session's chat ends now rather than at the window's end.
		s.end(ctx, "recovery impossible: frames after the offset are gone")
		return &resumed{why: "frames after the offset are gone"}
	}
	if old := s.conn; old != nil {
		// A half-open transport the client has already given up on: it goes
		// quietly, and its late close changes nothing (socket.io #4880).
		old.Abandon()
	}
	s.conn, s.writes = m.conn, 0
	for i := range missed {
		s.write(missed[i].frame)
		missed[i].seq = s.writes
	}
	s.epoch++
	wasAway := s.away
	s.away = false
	if wasAway {
		ctx.Send(s.router, &messages.Back{Session: ctx.Self()})
	}
	s.quietRejoin = m.reload
	s.met.Recovered()
	s.log.Info("socket recovered", "socket", s.id, "missed", len(missed), "wasAway", wasAway, "reload", m.reload)
	return &resumed{ok: true, pid: ctx.Self(), id: s.id, privateID: s.privateID, missed: len(missed)}
}

// ensureResumeToken makes the player's resume token on its first accepted
// join and registers it, with its token's sub, with the hub.
func (s *session) ensureResumeToken(ctx actor.Context) string {
	if s.resumeToken == "" {
		s.resumeToken = newPrivateID()
		keys := []string{resumeByToken + s.resumeToken}
		if id := s.identity; id != nil && id.Role == messages.RoleClient && id.Subject != "" {
			keys = append(keys, resumeBySubject+id.Subject)
		}
		ctx.Send(ctx.Parent(), &resumeKeys{pid: ctx.Self(), id: s.id, keys: keys})
	}
	return s.resumeToken
}

// Keys under which the hub finds a player's session on a reload.
const (
	resumeByToken   = "token:"
	resumeBySubject = "sub:"
)

// sameIdentity tells whether a token presented on recovery proves what the
// first one did: none then, none now; or the same role and subject.
func sameIdentity(a, b *messages.Identity) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Role == b.Role && a.OperatorID == b.OperatorID && a.Username == b.Username && a.Subject == b.Subject
}

// adoptStart starts a session taken over from another node: the player's
// frames after its offset, read from the store, are written before the
// transport answers CONNECT, and the router is told to list it quietly.
type adoptStart struct {
	a *adoption
}

func (s *session) adoptStart(ctx actor.Context, m *adoptStart) *resumed {
	if m.a.op {
		return s.adoptOperatorStart(ctx, m.a)
	}
	s.joined, s.quietRejoin = true, true
	s.seqEpoch, s.lastSeq = m.a.epoch, m.a.n
	for _, f := range m.a.frames {
		s.write(f)
		s.replay.add(f, s.writes)
	}
	ctx.Send(s.router, &adopted{session: ctx.Self(), member: m.a.member})
	// Frames stored after adopt.lua read them may have reached this node
	// before the router listed the player: read them again.
	ctx.Send(s.router, &catchUp{id: s.id, after: s.lastSeq})
	s.met.Recovered()
	s.log.Info("socket recovered from another node", "socket", s.id, "missed", len(m.a.frames), "from", m.a.oldNode)
	return &resumed{ok: true, pid: ctx.Self(), id: s.id, privateID: s.privateID, missed: len(m.a.frames)}
}

// inSequence checks a frame of the player's stored conversation against
// the last one: a duplicate is dropped, and a gap (a frame lost on the way,
// e.g. while the subscription was down) is filled from the store first.
func (s *session) inSequence(ctx actor.Context, f *messages.Frame) bool {
	epoch, n, ok := redisOffset(f.Offset)
	if !ok {
		return true
	}
	if epoch != s.seqEpoch {
		s.seqEpoch, s.lastSeq = epoch, 0
	}
	switch {
	case n <= s.lastSeq:
		return false
	case n > s.lastSeq+1:
		s.catchUp(ctx, false)
		return false
	}
	s.lastSeq = n
	return true
}

// catchUp asks for the stored frames after the last, at most twice a
// second unless forced.
func (s *session) catchUp(ctx actor.Context, force bool) {
	now := time.Now()
	if !force && now.Sub(s.catchAt) < 500*time.Millisecond {
		return
	}
	s.catchAt = now
	ctx.Send(s.router, &catchUp{id: s.id, after: s.lastSeq})
}

// caughtUp delivers stored frames that this session has not had, in order.
// A frame the store no longer has is a gap that cannot be filled: the
// rest is delivered all the same.
func (s *session) caughtUp(ctx actor.Context, m *caughtUp) {
	for _, f := range m.frames {
		epoch, n, ok := redisOffset(f.Offset)
		if !ok || (epoch == s.seqEpoch && n <= s.lastSeq) {
			continue
		}
		if epoch != s.seqEpoch || n > s.lastSeq+1 {
			s.log.Warn("stored frames missing; delivering the rest", "socket", s.id, "after", s.lastSeq, "next", n)
		}
		s.seqEpoch, s.lastSeq = epoch, n
		s.deliver(ctx, f)
		if s.closed != "" {
			return
		}
	}
}
