package transport

import (
	"cmp"
	"errors"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard/switchboard/transport/ws"
)

// The memory guard keeps the process within its memory budget
// (cfg.MemoryLimit) before the kernel's OOM killer would end it, and every
// socket with it. Every memTick it reads what is in use: the live heap and
// goroutine stacks (runtime/metrics, without stopping the world), or, if
// more, what the transport counts itself of peers' unfinished input. Past
// shedAt of the budget, handshakes are refused with 503 and the sockets
// holding the most (unfinished input, unsent output, a polling queue) are
// cut with 1013, each with a log line, until what is in use can fall under
// recoverAt; handshakes are admitted again once it has.

const (
	memTick = 200 * time.Millisecond
	// shedAt and recoverAt are fractions of the budget, in tenths: the gap
	// keeps the guard from flapping.
	// Under GOMEMLIMIT (nine tenths of the budget), so that shedding
	// starts before the collector has to run without pause.
	shedAt    = 8
	recoverAt = 7
	// minCut is the least a socket must hold to be cut: cutting sockets
	// that hold nothing frees nothing.
	minCut = 64 << 10
	// maxCutsPerTick bounds one round; the next follows a tick later, once
	// the collector has seen what the last one freed.
	maxCutsPerTick = 64
	// staleGC is how long the guard waits, while over, for a collection to
	// bring news before it runs one itself.
	staleGC = 2 * time.Second

	// A burst of arrivals (a deploy's reconnections: handshakes, long-polls,
	// the upgrades' HTTP connections) leaves the heap with garbage and free
	// pages, and with little allocating afterwards no collection comes to
	// let the runtime return them: an idle server would keep the burst's
	// RSS for good. Once the process has been quiet for trimQuiet (no
	// collection, and less than trimMin allocated since the quiet began),
	// the guard collects and hands the free pages back, if the heap holds
	// at least trimMin; at most once per collection the runtime ran itself
	// and per trimEvery. A server at work allocates more: no trim.
	trimQuiet = 5 * time.Second
	trimEvery = time.Minute
	trimMin   = 16 << 20

	// A burst's connections outlive it: net/http ends the polling phase's
	// idle keep-alives after the idle timeout, and connections that never
	// sent a request after the header timeout, often after the quiet
	// spell's trim; each leaves a goroutine's stack and its buffers to the
	// heap, which with nothing allocating stay in RSS (3 to 6 KB more per
	// upgraded session after 5,000 arrivals). So once the goroutines have
	// fallen by trimGoroutines and by a quarter from their most since the
	// last trim, the next quiet spell trims again without waiting for
	// trimEvery. Goroutines that come and go while the server works
	// (fewer than a quarter) never qualify, and a working server is not
	// quiet.
	trimGoroutines = 256
)

var memSamples = []string{"/gc/heap/live:bytes", "/memory/classes/heap/stacks:bytes", "/gc/cycles/total:gc-cycles",
	"/memory/classes/heap/objects:bytes", "/memory/classes/heap/free:bytes", "/gc/heap/allocs:bytes",
	"/sched/goroutines:goroutines"}

type memGuard struct {
	s        *Server
	budget   int64
	shedding atomic.Bool
	samples  []metrics.Sample
	done     chan struct{}
	stopped  sync.Once

	cycles uint64    // collections seen
	newsAt time.Time // when the last one was seen
	// quietSince is when the process last collected or had allocated
	// trimMin since the one before, allocsAt what it had allocated then.
	quietSince time.Time
	allocsAt   int64
	lastCut    time.Time
	trimmedAt  uint64 // the collections seen at the last trim
	lastTrim   time.Time
	// goroutines is the count at the last look, peakG the most seen since
	// the last trim.
	goroutines, peakG int64
}

// startMemGuard watches memory against budget until stop; nil for none.
func (s *Server) startMemGuard(budget int64) *memGuard {
	if budget <= 0 {
		return nil
	}
	m := &memGuard{s: s, budget: budget, done: make(chan struct{}), newsAt: time.Now()}
	for _, name := range memSamples {
		m.samples = append(m.samples, metrics.Sample{Name: name})
	}
	go m.run()
	return m
}

// over tells whether the server is past its budget and refuses handshakes.
func (m *memGuard) over() bool { return m != nil && m.shedding.Load() }

func (m *memGuard) stop() {
	if m != nil {
		m.stopped.Do(func() { close(m.done) })
	}
}

func (m *memGuard) run() {
	t := time.NewTicker(memTick)
	defer t.Stop()
	for {
		select {
		case <-m.done:
			return
		case now := <-t.C:
			m.tick(now)
		}
	}
}

// used is what the process holds now, by the runtime's count or the
// transport's, whichever is more.
func (m *memGuard) used(now time.Time) int64 {
	metrics.Read(m.samples)
	var heap int64
	for _, s := range m.samples[:2] {
		if s.Value.Kind() == metrics.KindUint64 {
			heap += int64(s.Value.Uint64())
		}
	}
	allocs := sampleValue(m.samples[5])
	if c := m.samples[2].Value; c.Kind() == metrics.KindUint64 && c.Uint64() != m.cycles {
		m.cycles, m.newsAt = c.Uint64(), now
		m.quietSince, m.allocsAt = now, allocs
	} else if allocs-m.allocsAt >= trimMin {
		m.quietSince, m.allocsAt = now, allocs
	}
	m.goroutines = sampleValue(m.samples[6])
	m.peakG = max(m.peakG, m.goroutines)
	return max(heap, m.s.accounted())
}

// objects is the heap's objects, live or not yet found dead: an upper
// bound of the live heap, read with used.
func (m *memGuard) objects() int64 { return sampleValue(m.samples[3]) }

func (m *memGuard) tick(now time.Time) {
	used := m.used(now)
	switch {
	case used >= m.budget/10*shedAt:
		if !m.shedding.Swap(true) {
			m.s.log.Warn("memory over budget: refusing new connections and cutting the sockets that hold the most",
				"used", used, "budget", m.budget)
		}
		if now.Sub(m.lastCut) >= memTick && m.cut(used-m.budget/10*recoverAt) > 0 {
			m.lastCut = now
			m.refresh(now) // see what the cuts freed before the next round
			return
		}
		if now.Sub(m.newsAt) > staleGC {
			m.refresh(now) // nothing allocates: the live heap may be old news
		}
	case used < m.budget/10*recoverAt && m.shedding.Load():
		m.shedding.Store(false)
		m.s.log.Info("memory back under budget: accepting new connections", "used", used, "budget", m.budget)
	case m.shedding.Load() && now.Sub(m.newsAt) > staleGC:
		// Between the marks while refusing: with nothing allocating, no
		// collection comes to say the attackers' memory is free, and the
		// server would refuse newcomers for good. Count again.
		m.refresh(now)
	case m.objects() >= m.budget/10*shedAt && now.Sub(m.newsAt) > staleGC:
		// The heap with its garbage is past the mark and the last count
		// of what lives is old: count again (at most every staleGC).
		m.refresh(now)
	case now.Sub(m.quietSince) > trimQuiet &&
		(m.cycles != m.trimmedAt && now.Sub(m.lastTrim) > trimEvery || m.burstEnded()):
		m.trim(now)
	}
}

// burstEnded tells whether the goroutines have fallen since the last trim
// by enough to have freed memory worth another (see trimGoroutines).
func (m *memGuard) burstEnded() bool {
	fell := m.peakG - m.goroutines
	return !m.lastTrim.IsZero() && fell >= trimGoroutines && fell >= m.peakG/4
}

// trim returns the heap's free pages to the system after a burst (see
// trimQuiet).
func (m *memGuard) trim(now time.Time) {
	m.trimmedAt, m.peakG = m.cycles, m.goroutines
	held := sampleValue(m.samples[3]) + sampleValue(m.samples[4])
	if held < trimMin {
		return
	}
	// Two collections: objects kept in sync.Pools live through the first.
	runtime.GC()
	debug.FreeOSMemory()
	m.used(now) // sees the collection it ran
	m.trimmedAt, m.lastTrim, m.peakG = m.cycles, now, m.goroutines
	m.s.log.Debug("memory returned to the system after a quiet spell", "heap", held,
		"kept", sampleValue(m.samples[3])+sampleValue(m.samples[4]), "took", time.Since(now))
}

// sampleValue is a sample's value (bytes, counts), 0 if unsupported.
func sampleValue(s metrics.Sample) int64 {
	if s.Value.Kind() == metrics.KindUint64 {
		return int64(s.Value.Uint64())
	}
	return 0
}

// refresh runs a collection, on the guard's goroutine only, so that the
// live heap it reads next is today's.
func (m *memGuard) refresh(now time.Time) {
	runtime.GC()
	m.newsAt = now
}

// holder is a socket and what it holds.
type holder struct {
	n   int64
	e   *eioSocket // nil for a probe or a library socket
	ws  *ws.Conn   // a probe websocket that has not taken its session over
	sid string
	lib *socketConn // a library (Engine.IO 3) socket
}

// cut ends the sockets holding the most, largest first, until they held
// need bytes together; it returns how many it cut.
func (m *memGuard) cut(need int64) int {
	var hs []holder
	add := func(h holder) {
		if h.n >= minCut {
			hs = append(hs, h)
		}
	}
	s := m.s
	if s.wss != nil {
		s.wss.Each(func(h ws.Handler) {
			switch h := h.(type) {
			case *eioSocket:
				add(holder{n: h.holding(), e: h})
			case *upgradeConn:
				if h.p.ws.Load() == h.c { // it carries its session
					add(holder{n: h.p.e.holding(), e: h.p.e})
				} else {
					add(holder{n: h.c.Holding(), ws: h.c, sid: h.p.sid})
				}
			}
		})
	}
	s.polls.each(func(p *pollConn) { add(holder{n: p.e.holding(), e: p.e}) })
	s.library.each(func(c *socketConn) { add(holder{n: c.pending.Load(), lib: c}) })
	slices.SortFunc(hs, func(a, b holder) int { return cmp.Compare(b.n, a.n) })
	cut := 0
	for _, h := range hs {
		if need <= 0 || cut == maxCutsPerTick {
			break
		}
		if h.lib != nil {
			// The library has no close code to give: its connection is
			// closed, its queue dropped with it. One that closed since
			// the count frees nothing here.
			if !h.lib.end("server over its memory budget", true) {
				continue
			}
			need -= h.n
			cut++
			s.met.Refused("connection", "memory_budget")
			s.log.Warn("socket cut: server over its memory budget", "socket", h.lib.id, "remote", h.lib.addr,
				"transport", "library", "held", h.n, "budget", m.budget)
			continue
		}
		need -= h.n
		cut++
		s.met.Refused("connection", "memory_budget")
		if h.e == nil {
			s.log.Warn("websocket cut: server over its memory budget", "session", h.sid, "held", h.n, "budget", m.budget)
			h.ws.Shed(ws.CloseTryAgain, reasonBusy)
			continue
		}
		s.log.Warn("socket cut: server over its memory budget", "socket", h.e.ID(), "remote", h.e.addr,
			"transport", h.e.transportName(), "held", h.n, "budget", m.budget)
		h.e.cut()
	}
	return cut
}

// holding is what the socket holds for its peer: unfinished input,
// unsent output, a binary event's attachments.
func (e *eioSocket) holding() int64 {
	n := e.binaryHeld()
	switch c := e.c.(type) {
	case *ws.Conn:
		n += c.Holding()
	case *pollConn:
		n += c.holding()
	}
	return n
}

// cut ends the socket for the memory guard (1013 on a websocket), freeing
// what it holds at once.
func (e *eioSocket) cut() {
	if e.closed.Swap(true) {
		return
	}
	switch c := e.c.(type) {
	case *ws.Conn:
		c.Shed(ws.CloseTryAgain, reasonBusy)
	case *pollConn:
		c.shed()
	}
	if b := e.binary.Load(); b != nil {
		e.dropBinary(b)
	}
}

// accounted is what the transport counts itself of peers' input not yet
// handled: websocket frames and messages not yet whole, binary events
// waiting for attachments, polling bodies being read (all taken from the
// websocket server's buffer budget).
func (s *Server) accounted() int64 {
	if s.wss == nil {
		return 0
	}
	return s.wss.Buffered()
}

// busy says why the server refuses new connections now, or "".
func (s *Server) busy() string {
	if s.mem.over() {
		return "the server is over its memory budget; retry shortly"
	}
	if s.wss != nil {
		budget := int64(max(cmp.Or(s.cfg.MaxBufferedBytes, ws.DefaultMaxBuffered), s.wssMaxPayload))
		if s.wss.Buffered() >= budget/10*shedAt {
			return "the server's budget for unfinished messages is nearly spent; retry shortly"
		}
	}
	return ""
}

// errBusy ends a polling body that does not fit the server's budget.
var errBusy = errors.New("polling: server buffer budget exhausted")

// holding is what a polling session holds: its queue and the body of a
// POST under way, or after an upgrade what its websocket holds.
func (p *pollConn) holding() int64 {
	if c := p.ws.Load(); c != nil {
		return c.Holding()
	}
	return int64(p.Pending()) + p.e.reading.Load()
}

// shed closes the session for the memory guard: its queue is dropped,
// since the close packet need not wait behind it.
func (p *pollConn) shed() {
	if c := p.ws.Load(); c != nil {
		c.Shed(ws.CloseTryAgain, reasonBusy)
		return
	}
	p.mu.Lock()
	if p.state != stateClosed && p.ws.Load() == nil {
		putBuf(p.out)
		p.out = nil
	}
	p.mu.Unlock()
	p.Close(ws.CloseTryAgain, reasonBusy)
}
