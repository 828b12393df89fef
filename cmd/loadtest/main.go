// Command loadtest simulates thousands of players and operators against a
// Switchboard, or any server of the same contract, and reports how many it
// held and how fast and how completely messages travelled. Everything is
// in package loadtest; this is wiring and signals only.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/switchboard/switchboard/loadtest"
)

func main() {
	// The generator's live heap is small (buffers and ledgers) and its
	// garbage is per event: collecting a fifth as often saves about a tenth
	// of its CPU at 5,000 msg/s, CPU it takes from the server it measures
	// on shared cores. GOGC in the environment still decides.
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(400)
	}
	// The first Ctrl-C ends the load early and still reports; a second one
	// kills the process as usual.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	os.Exit(loadtest.Main(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
