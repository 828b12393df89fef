package transport

import (
	"log/slog"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

// After a burst the guard hands the heap's free pages back once the
// process has been quiet for trimQuiet, and not before.
func TestGuardTrimsAfterAQuietSpell(t *testing.T) {
	m := &memGuard{s: &Server{log: slog.New(slog.DiscardHandler)}, budget: 1 << 40, done: make(chan struct{})}
	for _, name := range memSamples {
		m.samples = append(m.samples, metrics.Sample{Name: name})
	}
	free := func() int64 {
		s := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
		metrics.Read(s)
		return int64(s[0].Value.Uint64())
	}
	// A collection of the runtime's own between the guard's two looks (the
	// race detector allocates) starts the quiet spell over: try again.
	for attempt := 0; ; attempt++ {
		burst := make([][]byte, 0, 1024)
		for range 1024 {
			burst = append(burst, make([]byte, 64<<10))
		}
		runtime.KeepAlive(burst)
		burst = nil
		runtime.GC()
		runtime.GC()
		start := time.Now()
		m.used(start) // sees the collections: the quiet spell starts now
		cycles := m.cycles
		m.tick(start.Add(trimQuiet / 2))
		if f := free(); f < 32<<20 {
			// The runtime may return pages by itself (it does after an
			// earlier trim in the same process): nothing left to show.
			t.Skipf("the runtime returned the burst itself (%d MiB free)", f>>20)
		}
		m.tick(start.Add(trimQuiet + memTick))
		f := free()
		if f <= 8<<20 {
			return
		}
		if m.cycles == cycles+2 || attempt == 4 { // its own two collections ran: it did trim
			t.Fatalf("free heap %d MiB after the quiet spell: the guard did not return it", f>>20)
		}
	}
}

// burstBuffer is what each goroutine of a test's burst holds: a variable,
// so that it is on the heap, as a connection's buffers are.
var burstBuffer = 32 << 10

// Connections that end after the quiet spell's trim (net/http's idle
// keep-alives, connections that never sent a request) leave their stacks
// and buffers to the heap: once their goroutines are gone, the next quiet
// spell trims again, without waiting a minute.
func TestGuardTrimsAgainOnceABurstsGoroutinesEnd(t *testing.T) {
	m := &memGuard{s: &Server{log: slog.New(slog.DiscardHandler)}, budget: 1 << 40, done: make(chan struct{})}
	for _, name := range memSamples {
		m.samples = append(m.samples, metrics.Sample{Name: name})
	}
	for attempt := 0; ; attempt++ {
		// A burst's connections: goroutines each holding memory.
		const n = 1024
		release := make(chan struct{})
		var started, ended sync.WaitGroup
		started.Add(n)
		ended.Add(n)
		for range n {
			go func() {
				defer ended.Done()
				b := make([]byte, burstBuffer)
				started.Done()
				<-release
				runtime.KeepAlive(b)
			}()
		}
		started.Wait()
		start := time.Now()
		m.lastTrim = time.Time{}
		m.used(start)
		m.trim(start) // the quiet spell's trim, while they live
		if m.lastTrim != start {
			t.Fatalf("no first trim (heap %d MiB)", (m.objects()+sampleValue(m.samples[4]))>>20)
		}
		cycles := m.cycles
		close(release)
		ended.Wait()
		m.tick(start.Add(trimQuiet / 2))
		if m.lastTrim != start {
			t.Fatal("trimmed again before a quiet spell")
		}
		m.tick(start.Add(trimQuiet + memTick))
		if m.lastTrim == start.Add(trimQuiet+memTick) {
			return
		}
		// A collection of the runtime's own (the race detector allocates)
		// starts the quiet spell over: try again.
		if m.cycles == cycles || attempt == 4 {
			t.Fatalf("%d goroutines ended after the trim (%d now): the guard did not trim again", n, m.goroutines)
		}
	}
}

// Goroutines that come and go while a server works do not make it trim.
func TestGuardIgnoresAFewGoroutinesEnding(t *testing.T) {
	m := &memGuard{goroutines: 4000, peakG: 4000, lastTrim: time.Now()}
	for _, tc := range []struct {
		now  int64
		want bool
	}{{3900, false}, {3000, true}, {2999, true}} {
		m.goroutines = tc.now
		if got := m.burstEnded(); got != tc.want {
			t.Errorf("%d goroutines after %d: burstEnded %v, want %v", tc.now, m.peakG, got, tc.want)
		}
	}
	m.goroutines, m.peakG = 300, 600
	if !m.burstEnded() {
		t.Error("300 of 600 goroutines ended: no trim")
	}
	m.goroutines, m.peakG = 100, 300
	if m.burstEnded() {
		t.Error("200 goroutines ended: a trim")
	}
}
