package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/redis/go-redis/v9"
	"github.com/switchboard/switchboard/messages"
	"github.com/switchboard/switchboard/metrics"
)

// Options configure the actor system. The zero value works.
type Options struct {
	Logger *slog.Logger
	// Now is the router's clock; tests may fix it.
	Now func() time.Time
	// Metrics records what the actors see; nil records nothing.
	Metrics *metrics.Metrics
	// Gate bounds connections per client address.
	Gate GateLimits
	// Policy is what every session enforces on its socket.
	Policy Policy
	// AskTimeout bounds a request to an actor (spawn, /health, /stats). Default 5s.
	AskTimeout time.Duration
	// RouterMiddleware and SessionMiddleware wrap the actors' Receive: tests
	// use them to watch messages or to inject failures.
	RouterMiddleware  []actor.ReceiverMiddleware
	SessionMiddleware []actor.ReceiverMiddleware
	// Cluster joins this node to others through Redis; the zero value is
	// one node in process.
	Cluster ClusterOptions
	// Queue bounds the offline queue; the zero value turns it off.
	Queue QueueLimits
	// Routing assigns chats to operators; the zero value broadcasts every
	// chat to every operator, as the guide's server does.
	Routing Routing
}

// System is the running actor system: a hub supervising the router and
// one session per socket. Its methods are safe for concurrent use; they
// only send messages.
type System struct {
	sys    *actor.ActorSystem
	hub    *actor.PID
	router *actor.PID
	gate   *actor.PID
	ask    time.Duration
	log    *slog.Logger
	// routerLoop is the router's goroutine, ended by Stop.
	routerLoop *dedicated
	// failed is closed with failure set when the router or the bridge
	// was stopped for failing too often.
	failed   chan struct{}
	failOnce sync.Once
	failure  error
	// store keeps sessions in Redis (a cluster with recovery on), or nil.
	store *clusterStore
	// bridge is the cluster bridge, or nil on a single node.
	bridge *actor.PID
}

// Start spawns the hub and the router.
func Start(o Options) (*System, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.AskTimeout <= 0 {
		o.AskTimeout = 5 * time.Second
	}
	// The runtime logs dead letters at info: at scale a frame for a socket
	// that just left is normal, so only its warnings reach our log.
	sys := actor.NewActorSystem(QuietRuntime(o.Logger))

	pr := newPresence()
	ids := newIDSource(o.Now())
	queue := newOfflineQueue(o.Queue)
	asg := newAssignments(o.Routing) // like presence, kept across router restarts
	var offsets *idSource
	if o.Policy.Recovery.Window > 0 {
		offsets = newOffsetSource(o.Now())
	}
	var cv *clusterView
	var clusterProps func(*actor.PID) *actor.Props
	var store *clusterStore
	if o.Cluster.enabled() {
		o.Cluster.defaults()
		redis.SetLogger(redisLog{o.Logger.With("component", "redis")})
		window := o.Policy.Recovery.Window
		cv = &clusterView{node: o.Cluster.NodeID, remote: newRemotePresence(), state: ClusterState{Node: o.Cluster.NodeID, Nodes: 1},
			window: window, seq: window > 0, orphans: map[string]int{},
			// Operators are taken over through the feed (in every routing
			// mode: cluster_operators.go).
			opAdopt: window > 0, skew: o.Cluster.DeadAfter + 2*o.Cluster.Heartbeat}
		if window > 0 {
			var err error
			if store, err = newClusterStore(o.Cluster, window, max(o.Policy.Recovery.MaxFrames, 1)); err != nil {
				return nil, fmt.Errorf("start actors: %w", err)
			}
		}
		st := newBridgeState()
		if asg.rw != nil {
			// Its operators' sockets in Redis are named by this incarnation,
			// which the other nodes learn of its death by.
			asg.rw.inc = st.inc
		}
		co, bridgeLog := o.Cluster, o.Logger.With("component", "cluster")
		seq, maxLen := store != nil, max(o.Policy.Recovery.MaxFrames, 1)
		maxBytes := o.Policy.Recovery.MaxBytes
		if maxBytes <= 0 {
			maxBytes = math.MaxInt // no byte bound set
		}
		clusterProps = func(router *actor.PID) *actor.Props {
			return actor.PropsFromProducer(func() actor.Actor {
				// Every incarnation gets the same state, as the router does.
				return &redisBridge{o: co, st: st, router: router, log: bridgeLog, met: o.Metrics,
					seq: seq, keys: storeKeys{co.Prefix}, ttl: recordTTL(co, window), maxLen: maxLen, maxBytes: maxBytes}
			})
		}
	}
	routerLog := o.Logger.With("component", "router")
	routerLoop := newDedicated()
	routerProps := actor.PropsFromProducer(func() actor.Actor {
		// Every incarnation gets the same presence: only one runs at a time.
		return &router{pr: pr, cl: cv, log: routerLog, now: o.Now, ids: ids, met: o.Metrics, offsets: offsets, queue: queue, asg: asg}
	}, actor.WithReceiverMiddleware(o.RouterMiddleware...), actor.WithMailbox(actor.Unbounded(metrics.MailboxStats{M: o.Metrics})),
		actor.WithDispatcher(routerLoop))

	sessionLog := o.Logger.With("component", "session")
	policy := o.Policy
	sessionProps := func(req *spawnSession, privateID string, router *actor.PID) *actor.Props {
		return actor.PropsFromProducer(func() actor.Actor {
			s := newSession(req.conn, privateID, router, sessionLog, &policy, o.Metrics, req.identity, req.authErr)
			if req.id != "" {
				s.id = req.id
			}
			s.seqOn = store != nil && privateID != ""
			return s
		}, actor.WithReceiverMiddleware(o.SessionMiddleware...), actor.WithDispatcher(sessionDispatcher))
	}

	recovery := policy.Recovery.Window > 0
	failed := make(chan struct{})
	s := &System{failed: failed, store: store}
	hubProps := actor.PropsFromProducer(func() actor.Actor {
		return &hub{routerProps: routerProps, sessionProps: sessionProps, clusterProps: clusterProps, recovery: recovery, stored: store != nil}
	}, actor.WithSupervisor(&supervisor{log: o.Logger.With("component", "supervisor"), max: 10, window: 10 * time.Second, fatal: s.fail}))
	// A start that fails leaves nothing running.
	fail := func(err error) (*System, error) {
		sys.Shutdown()
		routerLoop.close()
		if store != nil {
			store.close()
		}
		return nil, fmt.Errorf("start actors: %w", err)
	}
	hubPID, err := sys.Root.SpawnNamed(hubProps, "hub")
	if err != nil {
		return fail(err)
	}
	gateLimits := o.Gate
	gatePID, err := sys.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return &gate{limits: gateLimits} }), "gate")
	if err != nil {
		return fail(fmt.Errorf("gate: %w", err))
	}
	s.sys, s.hub, s.gate, s.ask, s.log, s.routerLoop = sys, hubPID, gatePID, o.AskTimeout, o.Logger, routerLoop
	res, err := sys.Root.RequestFuture(hubPID, &routerPIDQuery{}, s.ask).Result()
	if err != nil {
		return fail(fmt.Errorf("router: %w", err))
	}
	s.router = res.(*actor.PID)
	if store != nil && asg.enabled() {
		store.opGone = func(sid string) bool {
			res, err := sys.Root.RequestFuture(s.router, &orphanQuery{id: sid}, s.ask).Result()
			gone, _ := res.(bool)
			return err == nil && gone
		}
	}
	if clusterProps != nil {
		res, err := sys.Root.RequestFuture(hubPID, &bridgePIDQuery{}, s.ask).Result()
		if err != nil {
			return fail(fmt.Errorf("cluster bridge: %w", err))
		}
		s.bridge = res.(*actor.PID)
	}
	return s, nil
}

// Connect spawns the session actor for a new socket. identity is what the
// handshake's token proved (nil for none); authErr why a presented token
// was refused, which the session answers when the socket joins.
func (s *System) Connect(c Conn, identity *messages.Identity, authErr error) (*Session, error) {
	res, err := s.sys.Root.RequestFuture(s.hub, &spawnSession{conn: c, identity: identity, authErr: authErr}, s.ask).Result()
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", c.ID(), err)
	}
	sp := res.(*spawned)
	if s.store != nil && sp.privateID != "" {
		// Before the CONNECT reply carries the private id: a quick
		// reconnect elsewhere must find it (redis-streams-adapter #26).
		if err := s.store.register(c.ID(), sp.privateID, identity); err != nil {
			s.log.Warn("session not stored; it recovers on this node only", "socket", c.ID(), "err", err)
		}
	}
	return &Session{sys: s.sys, pid: sp.pid, id: c.ID(), privateID: sp.privateID}, nil
}

// ResumeRequest is what a reconnecting socket presents: its private id and the
// offset of the last event it saw (HasOffset false: it saw none), with the
// token of its new handshake, verified again.
type ResumeRequest struct {
	// PrivateID and the offset recover a socket whose transport dropped.
	PrivateID string
	Offset    string
	HasOffset bool
	// ResumeToken, or the Identity's Subject, instead let a reloaded page
	// (which read nothing) take its player's conversation back.
	ResumeToken string
	Identity    *messages.Identity
	AuthErr     error
}

// Resume gives a reconnecting socket its old session back: the same socket
// id, with every event it missed already written to c. A nil Session (and
// why) means it cannot, and the socket starts afresh with Connect.
func (s *System) Resume(c Conn, r ResumeRequest) (*Session, string) {
	req := &resumeSession{privateID: r.PrivateID, resume: resume{conn: c, offset: r.Offset, hasOffset: r.HasOffset, identity: r.Identity, authErr: r.AuthErr}}
	if r.PrivateID == "" {
		switch id := r.Identity; {
		case r.ResumeToken != "":
			req.key = resumeByToken + r.ResumeToken
		case id != nil && id.Role == messages.RoleClient && id.Subject != "":
			req.key = resumeBySubject + id.Subject
		default:
			return nil, "nothing to resume by"
		}
		req.reload = true
	}
	res, err := s.sys.Root.RequestFuture(s.hub, req, s.ask).Result()
	if err != nil {
		return nil, "session did not answer: " + err.Error()
	}
	ans := res.(*resumed)
	if !ans.ok && s.store != nil && r.PrivateID != "" && ans.notHere {
		return s.adopt(c, r)
	}
	if !ans.ok && s.store != nil && req.key != "" && ans.notHere {
		return s.reloadElsewhere(c, r, req.key)
	}
	if !ans.ok {
		return nil, ans.why
	}
	return &Session{sys: s.sys, pid: ans.pid, id: ans.id, privateID: ans.privateID}, ""
}

// adopt takes a session over from another node (stopped, killed, or
// still holding a half-open transport), from its stored record.
func (s *System) adopt(c Conn, r ResumeRequest) (*Session, string) {
	if r.AuthErr != nil {
		return nil, "token refused"
	}
	var a *adoption
	var why string
	if _, _, redisOff := redisOffset(r.Offset); !r.HasOffset || !redisOff {
		// Not a player's stored offset: maybe an operator's (or a player
		// that saw nothing yet, which goes on below).
		var op bool
		if a, why, op = s.store.adoptOperator(r); op && a == nil {
			return nil, why
		}
	}
	if a == nil {
		if a, why = s.store.adopt(r); a == nil {
			return nil, why
		}
	}
	res, err := s.sys.Root.RequestFuture(s.hub, &adoptSession{conn: c, identity: r.Identity, privateID: r.PrivateID, a: a}, s.ask).Result()
	if err != nil {
		return nil, "session did not answer: " + err.Error()
	}
	ans := res.(*resumed)
	if !ans.ok {
		return nil, ans.why
	}
	return &Session{sys: s.sys, pid: ans.pid, id: ans.id, privateID: ans.privateID}, ""
}

// reloadElsewhere resumes a reloaded page whose player's session is not
// on this node: found in the store by its key, it is taken over from its
// node (or found here, if this node took it over already) with the frames
// after the last one its client confirmed.
func (s *System) reloadElsewhere(c Conn, r ResumeRequest, key string) (*Session, string) {
	pid, offset, why := s.store.reloadTarget(key)
	if pid == "" {
		return nil, why
	}
	// Taken over here under an earlier key: the local session answers.
	req := &resumeSession{privateID: pid, resume: resume{conn: c, reload: true, identity: r.Identity, authErr: r.AuthErr}}
	if res, err := s.sys.Root.RequestFuture(s.hub, req, s.ask).Result(); err == nil {
		if ans := res.(*resumed); ans.ok {
			return &Session{sys: s.sys, pid: ans.pid, id: ans.id, privateID: ans.privateID}, ""
		} else if !ans.notHere {
			return nil, ans.why
		}
	}
	r.PrivateID, r.Offset, r.HasOffset = pid, offset, offset != ""
	return s.adopt(c, r)
}

// Admit asks whether addr may open a new connection; it returns why not, or
// "" when it may.
func (s *System) Admit(addr string) string {
	res, err := s.sys.Root.RequestFuture(s.gate, &admit{addr: addr}, s.ask).Result()
	if err != nil {
		return "busy; retry shortly"
	}
	return res.(*gateAnswer).reason
}

// Opened and Closed keep the count of open connections per address.
func (s *System) Opened(addr string) { s.sys.Root.Send(s.gate, &opened{addr: addr}) }

// Closed is Opened's counterpart.
func (s *System) Closed(addr string) { s.sys.Root.Send(s.gate, &closed{addr: addr}) }

// Health asks the router for its counts.
func (s *System) Health(ctx context.Context) (*messages.Health, error) {
	res, err := s.request(ctx, &messages.HealthQuery{})
	if err != nil {
		return nil, fmt.Errorf("health: %w", err)
	}
	return res.(*messages.Health), nil
}

// Stats asks the router for its presence list.
func (s *System) Stats(ctx context.Context) (*messages.Stats, error) {
	res, err := s.request(ctx, &messages.StatsQuery{})
	if err != nil {
		return nil, fmt.Errorf("stats: %w", err)
	}
	return res.(*messages.Stats), nil
}

func (s *System) request(ctx context.Context, msg any) (any, error) {
	timeout := s.ask
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if timeout <= 0 {
		return nil, context.DeadlineExceeded
	}
	return s.sys.Root.RequestFuture(s.router, msg, timeout).Result()
}

// Failed is closed when the router or the cluster bridge was stopped for
// failing too often; Failure then says why. The process should exit.
func (s *System) Failed() <-chan struct{} { return s.failed }

// Failure is why Failed was closed.
func (s *System) Failure() error {
	<-s.failed
	return s.failure
}

func (s *System) fail(err error) {
	s.failOnce.Do(func() {
		s.failure = err
		close(s.failed)
	})
}

// Router is the router's PID, for tests that talk to it directly.
func (s *System) Router() *actor.PID { return s.router }

// Root is the root context, for tests that spawn observers.
func (s *System) Root() *actor.RootContext { return s.sys.Root }

// Stop stops the hub, and with it every session and the router, waiting
// at most timeout for them to finish.
func (s *System) Stop(timeout time.Duration) error {
	if s.store != nil {
		// The players' last frames are stored before the node says bye, and
		// their sessions' ends are no chat's end: they recover elsewhere.
		wait := min(timeout/2, 2*time.Second)
		if res, err := s.sys.Root.RequestFuture(s.router, &shutdownNotice{}, wait).Result(); err == nil {
			select {
			case <-res.(chan struct{}):
			case <-time.After(wait):
			}
		}
		defer s.store.close()
	}
	done := make(chan error, 1)
	go func() {
		s.sys.Root.Stop(s.gate)
		done <- s.sys.Root.StopFuture(s.hub).Wait()
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		err = errors.New("timed out")
	}
	s.sys.Shutdown()
	s.routerLoop.close()
	if err != nil {
		return fmt.Errorf("stop actors: %w", err)
	}
	return nil
}

// redisLog sends go-redis's own messages (reconnect attempts, which repeat
// through an outage) to our log at debug: the bridge logs the outage once.
type redisLog struct{ l *slog.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.l.Debug(fmt.Sprintf(format, v...))
}

// QuietRuntime logs the actor runtime's warnings and errors to log, and
// drops its info lines: it logs every dead letter at info, and at scale a
// frame for a socket that just left, or a closing crowd, makes many.
func QuietRuntime(log *slog.Logger) actor.ConfigOption {
	libLog := slog.New(minLevel{log.Handler(), slog.LevelWarn}).With("component", "protoactor")
	return actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return libLog })
}

// minLevel raises a handler's threshold without touching the handler.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.min}
}

func (h minLevel) WithGroup(n string) slog.Handler { return minLevel{h.Handler.WithGroup(n), h.min} }
