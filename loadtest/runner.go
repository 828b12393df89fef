package loadtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/switchboard/switchboard/actors"
)

// RunOptions are how a caller watches a run.
type RunOptions struct {
	// Log receives warnings (slow operators, a stop that timed out);
	// default: discarded.
	Log *slog.Logger
	// OnProgress is called about once a second from one goroutine.
	OnProgress func(Progress)
}

// Progress is the live state of a run.
type Progress struct {
	Elapsed                     time.Duration
	Phase                       string // operators, players, load, drain
	Players, Operators          int64
	TargetPlayers, TargetOps    int
	SentPerS, DeliverPerS       float64
	P99                         float64 // ms, player→operator, whole run so far
	Errors, Failures, Misrouted int64
}

// reserveFDs is what the process needs besides participants: stdio, the
// report files, DNS, the odd idle HTTP connection.
const reserveFDs = 128

// Run executes a scenario: operators connect and join, players ramp up
// and talk for the duration, then everything in flight drains and the
// ledgers are joined into the result. Cancelling ctx ends the load early
// and still reports.
func Run(ctx context.Context, sc Scenario, o RunOptions) (*Result, error) {
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	mx, _ := parseMix(sc.Transport)
	limit, err := raiseFileLimit()
	if err != nil {
		log.Warn("cannot raise the open-file limit", "err", err)
	}
	need := int(float64(sc.Players+sc.Operators)*mx.socketsPer()) + reserveFDs
	if limit > 0 && need > limit {
		return nil, fmt.Errorf("%d players and %d operators over %s need about %d file descriptors, but this process may open %d (ulimit -n; hard limit included): raise the limit or split the crowd over several processes",
			sc.Players, sc.Operators, sc.Transport, need, limit)
	}

	m := newMetrics()
	sys := actor.NewActorSystem(actors.QuietRuntime(log))
	var pending sync.WaitGroup // connections being dialled or closed
	e := &env{
		sc:      &sc,
		m:       m,
		clk:     newClock(),
		root:    sys.Root,
		ready:   newReadiness(),
		reg:     &registry{},
		players: make([]*playerLedger, sc.Players),
		ops:     make([]*operatorLedger, sc.Operators),
		mix:     mx,
		dialer:  newDialer(sc.Insecure, sc.ConnectTimeout),
		http:    newHTTPClient(sc.Insecure, sc.Players+sc.Operators),
		tokens:  newTokens(&sc),
		pay:     newPayloads(sc.TextSize, sc.ImageSize),
		log:     log,
	}
	for i := range e.players {
		e.players[i] = &playerLedger{conn: conn{pending: &pending}}
	}
	if sc.routed() {
		e.owners = make([]*opSet, sc.Operators)
		for i := range e.owners {
			e.owners[i] = &opSet{n: 1}
			e.owners[i].members.add(i)
		}
	}
	for i := range e.ops {
		e.ops[i] = &operatorLedger{conn: conn{pending: &pending}, seen: make([]bitset, sc.Players), replied: make([]bitset, sc.Players)}
	}
	crowdPID, err := sys.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return &crowd{e: e, rng: rand.New(rand.NewPCG(sc.Seed, 0xd209))} },
		actor.WithSupervisor(&supervisor{m: m, max: sc.MaxRestarts, window: time.Minute})), "crowd")
	if err != nil {
		sys.Shutdown()
		return nil, fmt.Errorf("start participants: %w", err)
	}
	e.sched = newScheduler(sys.Root) // before the first participant, which uses it

	r := &run{e: e, crowd: crowdPID, phase: "operators", smp: newSampler(m), onProgress: o.OnProgress, stop: make(chan struct{}), done: make(chan struct{})}
	go r.sample()

	// Operators first, all joined, so that every player message has its
	// full set of recipients from the first one on.
	r.ramp(ctx, true, sc.Operators)
	r.waitOperators(ctx, sc.ConnectTimeout+sc.Settle+time.Second)
	r.setPhase("players")
	r.ramp(ctx, false, sc.Players)
	r.setPhase("load")
	steady := window{from: time.Now(), sent: m.Sent.Load(), delivered: m.UniqueP2O.Load(), replies: m.Replies.Load()}
	if sc.BlipRate > 0 || sc.Storm != "" {
		go r.disrupt(ctx, steady.from.Add(sc.Duration))
	}
	select {
	case <-ctx.Done():
	case <-time.After(sc.Duration):
	}
	loadEnd := time.Now()
	steady.to, steady.sent, steady.delivered, steady.replies = loadEnd, m.Sent.Load()-steady.sent, m.UniqueP2O.Load()-steady.delivered, m.Replies.Load()-steady.replies
	atEnd := struct{ players, operators int64 }{m.PlayersConnected.Load(), m.OperatorsConnected.Load()}
	r.stopSending()
	r.setPhase("drain")
	r.drain(sc.Drain)

	close(r.stop)
	<-r.done
	r.smp.sample(time.Now())
	if err := sys.Root.StopFuture(crowdPID).Wait(); err != nil {
		log.Warn("participants did not all stop in time", "err", err)
	}
	for _, ol := range e.ops {
		ol.freeze()
	}
	e.sched.stop()
	waitTimeout(&pending, sc.ConnectTimeout+time.Second)
	sys.Shutdown()

	p2o, o2p := account(e.players, e.ops, m)
	return buildResult(&sc, e, atEnd.players, atEnd.operators, p2o, o2p, steady, r.smp.samples), nil
}

// window is the steady load, from the last arrival to the end: what the
// throughput averages cover (the counts are differences over it).
type window struct {
	from, to                 time.Time
	sent, delivered, replies int64
}

// run is the runner's own state while a scenario executes.
type run struct {
	e          *env
	crowd      *actor.PID
	mu         sync.Mutex
	phase      string
	smp        *sampler
	onProgress func(Progress)
	stop, done chan struct{}
}

func (r *run) setPhase(p string) {
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
}

// ramp spawns n participants at Scenario.Ramp per second.
func (r *run) ramp(ctx context.Context, operators bool, n int) {
	start := time.Now()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	spawned := 0
	for spawned < n {
		want := min(n, int(time.Since(start).Seconds()*r.e.sc.Ramp)+1)
		if want > spawned {
			r.e.root.Send(r.crowd, &spawn{operators: operators, from: spawned, to: want})
			spawned = want
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *run) waitOperators(ctx context.Context, timeout time.Duration) {
	want := int64(r.e.sc.Operators)
	deadline := time.Now().Add(timeout)
	for r.e.m.OperatorsReady.Load() < want {
		if time.Now().After(deadline) {
			r.e.log.Warn("not every operator joined in time; players start anyway", "joined", r.e.m.OperatorsReady.Load(), "operators", want)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// stopSending tells every participant that the load is over and waits
// until each has heard it: only then is the set of messages in flight
// final, and the drain can tell when it has all arrived.
func (r *run) stopSending() {
	res, err := r.e.root.RequestFuture(r.crowd, &members{}, 10*time.Second).Result()
	if err != nil {
		r.e.log.Warn("cannot list participants to stop them", "err", err)
		return
	}
	pids := res.([]*actor.PID)
	futures := make([]*actor.Future, len(pids))
	for i, pid := range pids {
		futures[i] = r.e.root.RequestFuture(pid, &stopSending{}, 5*time.Second)
	}
	for _, f := range futures {
		_ = f.Wait() // a participant given up on meanwhile never answers: its timeout is enough
	}
}

// drain waits until every expected copy has arrived and every dropped
// participant has reconnected (what it buffered meanwhile is expected
// too), or for at most d.
func (r *run) drain(d time.Duration) {
	m := r.e.m
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if m.UniqueP2O.Load() >= m.ExpectedP2O.Load() && m.UniqueO2P.Load() >= m.Replies.Load() &&
			m.Reconnects.Load() >= m.Blips.Load()+m.StormDrops.Load() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *run) sample() {
	defer close(r.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case now := <-t.C:
			s := r.smp.sample(now)
			if r.onProgress == nil {
				continue
			}
			m := r.e.m
			r.mu.Lock()
			phase := r.phase
			r.mu.Unlock()
			_, errs := m.Errors()
			p2o := m.P2O.Snapshot()
			r.onProgress(Progress{
				Elapsed: now.Sub(m.start), Phase: phase,
				Players: s.Players, Operators: s.Operators,
				TargetPlayers: r.e.sc.Players, TargetOps: r.e.sc.Operators,
				SentPerS: s.SentPerS, DeliverPerS: s.DeliverPerS,
				P99:    float64(p2o.Quantile(0.99)) / 1000,
				Errors: errs, Failures: m.Failures.Load(),
				Misrouted: m.MisroutedP2O.Load() + m.MisroutedO2P.Load(),
			})
		}
	}
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}
