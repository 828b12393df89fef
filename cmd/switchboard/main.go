// Command switchboard runs the chat router: configuration, logging,
// signals; everything else is in the packages it wires.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/switchboard/switchboard/actors"
	"github.com/switchboard/switchboard/config"
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

	sys, err := actors.Start(actors.Options{Logger: log})
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		fmt.Fprintf(os.Stderr, "switchboard: listen on %s: %v\n", cfg.Addr(), err)
		return 1
	}
	srv := transport.New(cfg, sys, log)
	banner(cfg, ln.Addr())

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err := <-served:
		log.Error("server stopped", "err", err)
		return 1
	case s := <-sig:
		log.Info("shutting down", "signal", s.String(), "deadline", cfg.ShutdownTimeout.String())
	}
	signal.Stop(sig)

	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	code := 0
	if err := srv.Shutdown(ctx); err != nil {
		log.Error("shutdown incomplete", "err", err)
		code = 1
	}
	if err := sys.Stop(max(time.Until(deadline(ctx)), 100*time.Millisecond)); err != nil {
		log.Error("actors did not stop", "err", err)
		code = 1
	}
	log.Info("stopped")
	return code
}

func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
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
  socket     %s%s  (Socket.IO v4; websocket, polling)
  health     %s/health
  stats      %s/stats
  cors       %s
`, transport.Version, cfg.Env, addr, strings.Replace(base, "http", "ws", 1), cfg.Path, base, base, strings.Join(cfg.CORSOrigins, ", "))
}
