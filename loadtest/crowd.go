package loadtest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Messages to the crowd.
type (
	// spawn asks for participants [from, to) of one kind.
	spawn struct {
		operators bool
		from, to  int
	}
	// members asks for the participants' PIDs.
	members struct{}
)

// crowd is the parent of every participant; its supervisor restarts a
// failed one. Stopping the crowd stops them all, and its stop completes
// only once each has stopped.
type crowd struct {
	e            *env
	players, ops []*actor.PID // a restarted participant keeps its PID
	rng          *rand.Rand   // picks whom a drop hits
}

func (c *crowd) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *spawn:
		for i := m.from; i < m.to; i++ {
			var props *actor.Props
			if m.operators {
				props = actor.PropsFromProducer(func() actor.Actor { return newOperator(c.e, i) })
			} else {
				props = actor.PropsFromProducer(func() actor.Actor { return newPlayer(c.e, i) })
			}
			pid := ctx.Spawn(props)
			if m.operators {
				c.ops = append(c.ops, pid)
			} else {
				c.players = append(c.players, pid)
			}
		}
	case *members:
		ctx.Respond(ctx.Children())
	case *drop:
		c.dropSome(ctx, m)
	}
}

// supervisor restarts a failed participant and counts the failure by its
// kind; one that fails MaxRestarts times within a minute is given up on.
type supervisor struct {
	m      *Metrics
	max    int
	window time.Duration
}

func (s *supervisor) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason any, _ any) {
	s.m.Failures.Add(1)
	s.m.Error(failureKind(reason))
	if rs.NumberOfFailures(s.window) >= s.max {
		s.m.GaveUp.Add(1)
		sup.StopChildren(child)
		return
	}
	rs.Fail()
	sup.RestartChildren(child)
}

// failureKind names a failure for the error table; a panic that is not a
// *failure is a bug in the load tool, and says so.
func failureKind(reason any) string {
	var f *failure
	if err, ok := reason.(error); ok && errors.As(err, &f) {
		return f.kind
	}
	return fmt.Sprintf("load tool bug: %v", reason)
}
