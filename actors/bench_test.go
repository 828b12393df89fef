package actors

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard/switchboard/messages"
)

// countConn counts writes, as a socket that never blocks.
type countConn struct {
	id string
	n  *atomic.Int64
}

func (c *countConn) ID() string            { return c.id }
func (c *countConn) Write(*messages.Frame) { c.n.Add(1) }
func (c *countConn) Close(string)          {}
func (c *countConn) Confirmed() uint64     { return 0 }
func (c *countConn) Abandon()              {}

// BenchmarkRouterFanOut measures one client message through a session, the
// router and out to every operator's session, waiting for every delivery.
func BenchmarkRouterFanOut(b *testing.B) {
	for _, ops := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("%dOperators", ops), func(b *testing.B) {
			s, err := Start(Options{Logger: quietLogger()})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = s.Stop(5 * time.Second) }()
			var delivered atomic.Int64
			for i := range ops {
				sess, _ := s.Connect(&countConn{id: fmt.Sprint("op", i), n: &delivered}, nil, nil)
				sess.Event(&messages.Join{Origin: messages.Origin{From: fmt.Sprint("op", i)}, Payload: messages.JoinPayload{Role: messages.RoleOperator}})
			}
			var sink atomic.Int64
			cl, _ := s.Connect(&countConn{id: "cl", n: &sink}, nil, nil)
			cl.Event(&messages.Join{Origin: messages.Origin{From: "cl"}, Payload: messages.JoinPayload{Role: messages.RoleClient, Name: messages.S("Bob")}})
			for delivered.Load() < int64(ops) { // the newChat of the client
				time.Sleep(time.Millisecond)
			}
			delivered.Store(0)
			payload := messages.ClientMessagePayload{Content: messages.Content{Type: messages.KindText, Message: messages.S("hola")}}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				cl.Event(&messages.ClientMessage{Origin: messages.Origin{From: "cl", At: time.Now()}, Payload: payload})
			}
			want := int64(b.N * ops)
			for delivered.Load() < want {
				time.Sleep(50 * time.Microsecond)
			}
			b.ReportMetric(float64(want)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
