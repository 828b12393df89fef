// Package server wires Switchboard's packages into one running node:
// configuration in, a listening Socket.IO and HTTP server out.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/switchboard/switchboard/actors"
	"github.com/switchboard/switchboard/auth"
	"github.com/switchboard/switchboard/config"
	"github.com/switchboard/switchboard/metrics"
	"github.com/switchboard/switchboard/transport"
)

// Node is one running Switchboard.
type Node struct {
	Config  *config.Config
	Actors  *actors.System
	HTTP    *transport.Server
	Metrics *metrics.Metrics
}

// New starts the actors and builds the transport from cfg. extra adjusts
// the actor options (tests inject failures through it).
// holdBeforeJoin events, sent within holdFor before a socket's join, are
// applied after it: a widget's send buffer after a reconnect is a few
// messages and a typing indicator, and its join follows in the same tick.
// A socket that never joins hears not_joined that much later.
const (
	holdBeforeJoin = 32
	holdFor        = time.Second
)

func New(cfg *config.Config, log *slog.Logger, extra ...func(*actors.Options)) (*Node, error) {
	verifier, err := auth.New(auth.Config{
		OperatorSecret:        cfg.JWTSecret,
		OperatorPublicKeyFile: cfg.JWTPublicKeyFile,
		OperatorJWKSFile:      cfg.JWTJWKSFile,
		Issuer:                cfg.JWTIssuer,
		Audience:              cfg.JWTAudience,
		ClientSecret:          cfg.ClientSecret,
		Leeway:                30 * time.Second,
		AllowNoExp:            cfg.JWTAllowNoExp,
	})
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	met := metrics.New()
	met.Node(cfg.NodeID)
	if cfg.RedisURL != "" {
		// Every line names its node: a cluster's logs are read together.
		log = log.With("node", cfg.NodeID)
	}
	opts := actors.Options{
		Cluster: actors.ClusterOptions{RedisURL: cfg.RedisURL, NodeID: cfg.NodeID, Heartbeat: cfg.ClusterHeartbeat, DeadAfter: cfg.ClusterDeadAfter},
		Logger:  log,
		Metrics: met,
		Policy: actors.Policy{
			OperatorAuth:        verifier.OperatorsConfigured(),
			ClientTokenRequired: cfg.ClientTokenRequired,
			Messages:            actors.Rate{PerSecond: cfg.MessageRate, Burst: cfg.MessageBurst},
			Typing:              actors.Rate{PerSecond: cfg.TypingRate, Burst: cfg.TypingBurst},
			AbuseLimit:          cfg.AbuseLimit,
			AbuseWindow:         10 * time.Second,
			Recovery: actors.Recovery{
				Window:    cfg.RecoveryWindow,
				MaxFrames: cfg.RecoveryMaxFrames,
				MaxBytes:  cfg.RecoveryMaxBytes,
			},
		},
		Queue: actors.QueueLimits{
			PerChat:      cfg.QueueMaxPerChat,
			PerChatBytes: cfg.QueueMaxChatBytes,
			Total:        cfg.QueueMaxTotal,
			TotalBytes:   cfg.QueueMaxBytes,
			MaxAge:       cfg.QueueMaxAge,
		},
		Routing: actors.Routing{Mode: routingMode(cfg.Routing), MaxChatsPerOperator: cfg.MaxChatsPerOperator, RedisURL: cfg.RedisURL, NodeID: cfg.NodeID},
		Gate: actors.GateLimits{
			MaxConnections: cfg.IPMaxConnections,
			Handshakes:     actors.Rate{PerSecond: cfg.IPHandshakeRate, Burst: cfg.IPHandshakeBurst},
		},
	}
	if cfg.RecoveryWindow > 0 {
		// A reconnecting client flushes what it sent while offline before
		// its connect handler joins: those events wait for the join.
		opts.Policy.HoldBeforeJoin, opts.Policy.HoldFor = holdBeforeJoin, holdFor
	} else {
		// Continuity off keeps the guide's behaviour exactly: a message to
		// no operator is dropped.
		opts.Queue = actors.QueueLimits{}
	}
	for _, f := range extra {
		f(&opts)
	}
	sys, err := actors.Start(opts)
	if err != nil {
		return nil, err
	}
	if !verifier.OperatorsConfigured() {
		log.Warn("operators are not authenticated: anyone who joins as operator reads every conversation; set SWITCHBOARD_JWT_SECRET")
	}
	return &Node{Config: cfg, Actors: sys, HTTP: transport.New(cfg, sys, log, verifier, met), Metrics: met}, nil
}

// Serve accepts connections on ln until Shutdown. It returns an error, and
// the node must exit, if the router or the cluster bridge stopped for
// failing too often: every event would otherwise be dropped unseen.
func (n *Node) Serve(ln net.Listener) error {
	served := make(chan error, 1)
	go func() { served <- n.HTTP.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-n.Actors.Failed():
		return fmt.Errorf("actors: %w", n.Actors.Failure())
	}
}

// Shutdown closes every socket and stops the actors within ctx.
func (n *Node) Shutdown(ctx context.Context) error {
	err := n.HTTP.Shutdown(ctx)
	left := time.Until(deadline(ctx))
	if stopErr := n.Actors.Stop(max(left, 100*time.Millisecond)); stopErr != nil {
		err = errors.Join(err, stopErr)
	}
	return err
}

func deadline(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(5 * time.Second)
}

// routingMode reads SWITCHBOARD_ROUTING, which config has validated.
func routingMode(s string) actors.RoutingMode {
	m, err := actors.ParseRoutingMode(s)
	if err != nil {
		panic(err)
	}
	return m
}
