// Command switchboard runs the chat router: configuration, logging,
// signals; everything else is in the packages it wires.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/switchboard/switchboard/config"
	"github.com/switchboard/switchboard/server"
	"github.com/switchboard/switchboard/transport"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	cfg, err := config.Load(args, nil)
	if errors.Is(err, config.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchboard: config: %v\n", err)
		return 2
	}
	log := newLogger(cfg)
	slog.SetDefault(log)
	memoryBudget(cfg, log, os.Getenv("GOMEMLIMIT"))
	// Before anything can be seen to run: a SIGTERM right after the banner
	// must still shut down gracefully.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)

	node, err := server.New(cfg, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchboard: %v\n", err)
		return 2
	}
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchboard: listen on %s: %v\n", cfg.Addr(), err)
		return 1
	}
	banner(cfg, ln.Addr())

	served := make(chan error, 1)
	go func() { served <- node.Serve(ln) }()

	select {
	case err := <-served:
		log.Error("server stopped", "err", err)
		return 1
	case s := <-sig:
		log.Info("shutting down", "signal", s.String(), "deadline", cfg.ShutdownTimeout.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	code := 0
	if err := node.Shutdown(ctx); err != nil {
		log.Error("shutdown incomplete", "err", err)
		code = 1
	}
	log.Info("stopped")
	return code
}

// memoryBudget sets GOMEMLIMIT from the memory budget, so that the
// collector works harder as the process nears it rather than let the heap
// double past it; a GOMEMLIMIT in the environment (env) wins.
func memoryBudget(cfg *config.Config, log *slog.Logger, env string) {
	switch {
	case cfg.MemoryLimit <= 0:
		log.Info("no memory budget", "gomemlimit", cmp.Or(env, "off"))
	case env != "":
		log.Info("memory budget", "bytes", cfg.MemoryLimit, "gomemlimit", env+" (from the environment)")
	default:
		// Nine tenths: the rest of the process (its code, what the C side
		// and the kernel charge it) lives outside Go's count, and a Go heap
		// kept at its limit is a resident set at it.
		limit := cfg.MemoryLimit / 10 * 9
		debug.SetMemoryLimit(limit)
		log.Info("memory budget", "bytes", cfg.MemoryLimit, "gomemlimit", limit)
	}
}

func newLogger(cfg *config.Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// banner is the one short block a person starting the server reads.
func banner(cfg *config.Config, addr net.Addr) {
	host := cfg.Host
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	base := fmt.Sprintf("http://%s:%d", host, addr.(*net.TCPAddr).Port)
	fmt.Fprintf(os.Stdout, `switchboard %s (%s)
  listening  %s
%s  socket     %s%s  (Socket.IO v4; websocket, polling)
  health     %s/health
  stats      %s/stats
  metrics    %s/metrics
  cors       %s
  operators  %s
%s`, transport.Version, cfg.Env, addr, pages(cfg, base), strings.Replace(base, "http", "ws", 1), cfg.Path, base, base, base, strings.Join(cfg.CORSOrigins, ", "), operatorMode(cfg), clusterMode(cfg))
}

// pages names the browser pages' addresses: the first a newcomer opens.
func pages(cfg *config.Config, base string) string {
	var b strings.Builder
	if cfg.Pages {
		fmt.Fprintf(&b, "  open       %s/  (player widget, operator console, dashboard)\n", base)
	}
	if cfg.Dashboard {
		fmt.Fprintf(&b, "  dashboard  %s/dashboard\n", base)
	}
	return b.String()
}

func clusterMode(cfg *config.Config) string {
	if cfg.RedisURL == "" {
		return ""
	}
	u := cfg.RedisURL
	if i := strings.LastIndex(u, "@"); i >= 0 {
		u = u[:strings.Index(u, "://")+3] + "***" + u[i:]
	}
	return "  node       " + cfg.NodeID + "\n  cluster    " + u + " (long-polling needs sticky sessions: docs/SCALING.md)\n"
}

func operatorMode(cfg *config.Config) string {
	if cfg.OperatorAuth() {
		return "authenticated (JWT)"
	}
	return "NOT authenticated (anyone may join as operator)"
}
