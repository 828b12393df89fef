package loadtest

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// scheduler delivers timed messages to actors: the next Poisson arrival,
// the end of a typing pause, an operator's reply after its think time, a
// reconnection after a backoff. One goroutine and one timer serve every
// participant, instead of a timer per participant.
type scheduler struct {
	root *actor.RootContext
	mu   sync.Mutex
	q    timerQueue
	seq  uint64
	wake chan struct{}
	quit chan struct{}
	done chan struct{}
}

type timed struct {
	at  time.Time
	seq uint64 // keeps equal deadlines in the order they were asked
	to  *actor.PID
	msg any
}

// timerQueue is a binary min-heap of deadlines, typed: container/heap's
// interface boxed every entry on the heap, one allocation per timer, and
// there is one timer per player message and per reply.
type timerQueue []timed

func (q timerQueue) less(i, j int) bool {
	if q[i].at.Equal(q[j].at) {
		return q[i].seq < q[j].seq
	}
	return q[i].at.Before(q[j].at)
}

func (q *timerQueue) push(t timed) {
	*q = append(*q, t)
	h := *q
	for i := len(h) - 1; i > 0; {
		parent := (i - 1) / 2
		if !h.less(i, parent) {
			break
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
}

// pop removes and returns the earliest deadline; the queue must not be
// empty.
func (q *timerQueue) pop() timed {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h[last] = timed{} // no reference kept to a delivered message
	h = h[:last]
	for i := 0; ; {
		l, r, least := 2*i+1, 2*i+2, i
		if l < len(h) && h.less(l, least) {
			least = l
		}
		if r < len(h) && h.less(r, least) {
			least = r
		}
		if least == i {
			break
		}
		h[i], h[least] = h[least], h[i]
		i = least
	}
	*q = h
	return top
}

func newScheduler(root *actor.RootContext) *scheduler {
	s := &scheduler{root: root, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go s.run()
	return s
}

// after sends msg to pid once d has passed.
func (s *scheduler) after(d time.Duration, pid *actor.PID, msg any) {
	s.mu.Lock()
	s.seq++
	s.q.push(timed{at: time.Now().Add(d), seq: s.seq, to: pid, msg: msg})
	first := s.q[0].seq == s.seq
	s.mu.Unlock()
	if first { // a new earliest deadline: the loop must re-arm its timer
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// stop drops whatever is still pending.
func (s *scheduler) stop() {
	close(s.quit)
	<-s.done
}

func (s *scheduler) run() {
	defer close(s.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	var due []timed
	for {
		s.mu.Lock()
		now := time.Now()
		for len(s.q) > 0 && !s.q[0].at.After(now) {
			due = append(due, s.q.pop())
		}
		wait := time.Hour
		if len(s.q) > 0 {
			wait = s.q[0].at.Sub(now)
		}
		s.mu.Unlock()
		for i, d := range due {
			s.root.Send(d.to, d.msg)
			due[i] = timed{}
		}
		due = due[:0]
		t.Reset(wait)
		select {
		case <-t.C:
		case <-s.wake:
		case <-s.quit:
			return
		}
	}
}
