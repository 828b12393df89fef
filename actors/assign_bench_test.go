//go:build unix

package actors

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/messages"
)

// BenchmarkRoutingFanOut measures one player message through its session,
// the router and out to the operators that receive it, waiting for every
// delivery: broadcast with 10 operators (every operator gets it) beside
// auto with 50 (its owner alone does). deliveries/msg is the fan-out;
// cpu-ns/msg the process's CPU time per message, steadier than ns/op on a
// machine that other work shares.
func BenchmarkRoutingFanOut(b *testing.B) {
	for _, bc := range []struct {
		mode      RoutingMode
		operators int
	}{{RoutingBroadcast, 10}, {RoutingAuto, 10}, {RoutingAuto, 50}} {
		b.Run(fmt.Sprintf("%s/%dOperators", bc.mode, bc.operators), func(b *testing.B) {
			const players = 2000
			s, err := Start(Options{Logger: quietLogger(), Routing: Routing{Mode: bc.mode, MaxChatsPerOperator: players}})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = s.Stop(5 * time.Second) }()
			var delivered, sink atomic.Int64
			for i := range bc.operators {
				id := fmt.Sprint("op", i)
				sess, _ := s.Connect(&countConn{id: id, n: &delivered}, nil, nil)
				sess.Event(&messages.Join{Origin: messages.Origin{From: id}, Payload: messages.JoinPayload{Role: messages.RoleOperator, OperatorID: messages.ID{Num: float64(i + 1), Kind: messages.IDNumber}}})
			}
			cls := make([]*Session, players)
			for i := range cls {
				id := fmt.Sprint("cl", i)
				cls[i], _ = s.Connect(&countConn{id: id, n: &sink}, nil, nil)
				cls[i].Event(&messages.Join{Origin: messages.Origin{From: id}, Payload: messages.JoinPayload{Role: messages.RoleClient, Name: messages.S("p")}})
			}
			// Every join announced: newChat to every operator, or to its owner
			// with chatAssigned to every operator.
			setup := int64(players * bc.operators)
			if bc.mode == RoutingAuto {
				setup += players
			}
			waitCount(b, &delivered, setup)
			delivered.Store(0)
			payload := messages.ClientMessagePayload{Content: messages.Content{Type: messages.KindText, Message: messages.S("hola")}}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := range b.N {
				cl := cls[i%players]
				cl.Event(&messages.ClientMessage{Origin: messages.Origin{From: cl.ID(), At: time.Now()}, Payload: payload})
			}
			per := int64(bc.operators)
			if bc.mode == RoutingAuto {
				per = 1
			}
			waitCount(b, &delivered, int64(b.N)*per)
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/msg")
			time.Sleep(20 * time.Millisecond) // anything past the expected count would show as more than per
			b.ReportMetric(float64(delivered.Load())/float64(b.N), "deliveries/msg")
		})
	}
}

func waitCount(b *testing.B, n *atomic.Int64, want int64) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for n.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d deliveries", n.Load(), want)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
