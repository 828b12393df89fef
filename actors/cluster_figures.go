package actors

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/redis/go-redis/v9"
)

// Every node's figures on every node's dashboard. Once a second the bridge
// asks the node for a snapshot of its own figures (the transport builds it:
// the bridge only carries bytes) and writes it to Redis under
// P:figures:<node> with a short TTL, so a dead node's snapshot is gone
// within figuresTTL. While a dashboard reads them, the same round trip
// reads every live node's snapshot back; the bridge keeps the latest for
// ClusterFigures to answer at once, never waiting on Redis.

const (
	figuresEvery = time.Second
	// figuresTTL outlives a couple of late writes on a loaded node.
	figuresTTL = 3 * time.Second
	// figuresWanted is how long after a dashboard's last read the bridge
	// keeps reading the other nodes' snapshots.
	figuresWanted = 10 * time.Second
)

// Messages of the figures' exchange.
type (
	// figuresSource gives the bridge the node's snapshot maker (nil: stop
	// publishing).
	figuresSource struct{ make func() []byte }
	figuresTick   struct{}
	// figuresQuery asks the bridge for the latest snapshots; it responds
	// with a ClusterFigures.
	figuresQuery struct{}
	figuresJob   struct {
		make  func() []byte
		nodes []string // whose snapshots to read; nil: write only
	}
	figuresResult struct {
		read  bool
		nodes map[string][]byte
		err   error
	}
)

// ClusterFigures are the nodes' latest snapshots as each wrote them (JSON,
// made by the function given to PublishFigures), by node id; a node whose
// snapshot is missing or expired is absent.
type ClusterFigures map[string][]byte

// PublishFigures makes this node write make's snapshot to the cluster once
// a second, for every node's dashboard; it does nothing on a single node.
// make runs on the bridge's I/O goroutine and must be safe to call there.
func (s *System) PublishFigures(make func() []byte) {
	if s.bridge != nil {
		s.sys.Root.Send(s.bridge, &figuresSource{make: make})
	}
}

// ClusterFigures is every live node's latest snapshot, this one's
// included; nil on a single node. The first call after a quiet spell
// starts the reading, so it may come back empty: a dashboard asks again.
func (s *System) ClusterFigures(ctx context.Context) (ClusterFigures, error) {
	if s.bridge == nil {
		return nil, nil
	}
	timeout := s.ask
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	res, err := s.sys.Root.RequestFuture(s.bridge, &figuresQuery{}, timeout).Result()
	if err != nil {
		return nil, fmt.Errorf("cluster figures: %w", err)
	}
	return res.(ClusterFigures), nil
}

// figures handles the bridge's side of the exchange.
func (b *redisBridge) figures(ctx actor.Context, msg any) {
	switch m := msg.(type) {
	case *figuresSource:
		b.st.figMake = m.make
		b.figuresTick()
	case *figuresTick:
		b.figuresTick()
	case *figuresQuery:
		quiet := time.Since(b.st.figWanted) > figuresWanted
		b.st.figWanted = time.Now()
		if quiet {
			b.figuresTick() // start reading now, not at the next tick
		}
		out := make(ClusterFigures, len(b.st.figs))
		for id, raw := range b.st.figs {
			out[id] = raw
		}
		ctx.Respond(out)
	case *figuresResult:
		b.st.figPending = false
		if m.err != nil {
			b.log.Debug("cluster: figures not exchanged", "err", m.err)
			return
		}
		if m.read {
			b.st.figs = m.nodes
		}
	}
}

// figuresTick queues the second's write, and the read while a dashboard
// wants it; one at a time, so a slow Redis never piles them up.
func (b *redisBridge) figuresTick() {
	if !b.st.up {
		b.st.figs = nil // nothing read is current while Redis is away
		return
	}
	if b.st.figPending {
		return
	}
	j := &figuresJob{make: b.st.figMake}
	if time.Since(b.st.figWanted) <= figuresWanted {
		j.nodes = append(make([]string, 0, len(b.st.nodes)+1), b.o.NodeID)
		for id := range b.st.nodes {
			j.nodes = append(j.nodes, id)
		}
		slices.Sort(j.nodes)
	} else {
		b.st.figs = nil // stale by the time anyone asks
	}
	if j.make == nil && j.nodes == nil {
		return
	}
	// Not b.enqueue: a second's figures skipped behind a full queue are no
	// dropped message to count.
	select {
	case b.jobs <- ioJob{figs: j}:
		b.st.figPending = true
	default:
	}
}

// runFigures writes this node's snapshot and reads the others', in one
// round trip.
func (b *redisBridge) runFigures(ctx context.Context, rdb *redis.Client, j *figuresJob) *figuresResult {
	var own []byte
	if j.make != nil {
		own = j.make()
	}
	var got *redis.SliceCmd
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if own != nil {
			p.Set(ctx, b.key("figures", b.o.NodeID), own, figuresTTL)
		}
		if len(j.nodes) > 0 {
			keys := make([]string, len(j.nodes))
			for i, id := range j.nodes {
				keys[i] = b.key("figures", id)
			}
			got = p.MGet(ctx, keys...)
		}
		return nil
	})
	if err != nil {
		return &figuresResult{err: fmt.Errorf("figures: %w", err)}
	}
	res := &figuresResult{read: got != nil}
	if got != nil {
		res.nodes = make(map[string][]byte, len(j.nodes))
		for i, v := range got.Val() {
			if s, ok := v.(string); ok {
				res.nodes[j.nodes[i]] = []byte(s)
			}
		}
	}
	return res
}
