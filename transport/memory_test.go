package transport

import (
	"log/slog"
	"runtime"
	"runtime/metrics"
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
