package main

import (
	"io"
	"log/slog"
	"runtime/debug"
	"testing"

	"github.com/switchboard/switchboard/config"
)

// GOMEMLIMIT follows the memory budget, unless the environment sets it.
func TestMemoryBudgetSetsGOMEMLIMIT(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	memoryBudget(&config.Config{MemoryLimit: 3 << 30}, log, "")
	if got := debug.SetMemoryLimit(-1); got != 3<<30/10*9 {
		t.Fatalf("GOMEMLIMIT %d, want the budget %d", got, 3<<30)
	}
	debug.SetMemoryLimit(before)
	memoryBudget(&config.Config{MemoryLimit: 3 << 30}, log, "1GiB")
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("GOMEMLIMIT %d with GOMEMLIMIT in the environment, want it left at %d", got, before)
	}
	memoryBudget(&config.Config{}, log, "")
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Fatalf("GOMEMLIMIT %d without a budget, want it left at %d", got, before)
	}
}
