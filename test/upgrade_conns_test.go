package test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sbclient "github.com/switchboard/switchboard/client"
	"github.com/switchboard/switchboard/config"
)

// trackedConns records the client's HTTP connections and when each ended.
type trackedConns struct {
	mu    sync.Mutex
	conns []*trackedConn
}

type trackedConn struct {
	net.Conn
	closed atomic.Bool
}

func (c *trackedConn) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

func (tc *trackedConns) client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	var d net.Dialer
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		t := &trackedConn{Conn: c}
		tc.mu.Lock()
		tc.conns = append(tc.conns, t)
		tc.mu.Unlock()
		return t, nil
	}
	return &http.Client{Transport: tr}
}

// open counts the connections not closed yet.
func (tc *trackedConns) open() (open, all int) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	for _, c := range tc.conns {
		if !c.closed.Load() {
			open++
		}
	}
	return open, len(tc.conns)
}

// Once a session has upgraded, the server ends the idle HTTP connections
// that carried its polling at once, instead of holding them (a goroutine
// and buffers each) until the idle timeout; a polling-only session beside
// it keeps its keep-alive connection, and both go on chatting.
func TestUpgradeEndsIdlePollingConnections(t *testing.T) {
	s := startServer(t, func(c *config.Config) { c.HTTPIdleTimeout = time.Minute })
	dialWith := func(tr sbclient.Transport, tc *trackedConns, name string) *sbclient.Client {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := sbclient.Dial(ctx, s.URL, sbclient.Options{Transport: tr, HTTPClient: tc.client()})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Cleanup(c.Close)
		return c
	}
	var upgraded, polling trackedConns
	up := dialWith(sbclient.Upgrade, &upgraded, "upgraded")
	poll := dialWith(sbclient.Polling, &polling, "polling")

	deadline := time.Now().Add(2 * time.Second)
	for {
		open, all := upgraded.open()
		if open == 0 && all > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("upgraded session: %d of its %d polling connections still open 2 s after the upgrade (idle timeout 1m)", open, all)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if open, _ := polling.open(); open == 0 {
		t.Fatal("the polling-only session's connections were ended too")
	}
	for i, c := range []*sbclient.Client{up, poll} {
		acked := make(chan struct{})
		join := map[string]any{"role": "client", "name": "n", "username": []string{"up", "poll"}[i], "phone": "1"}
		if err := c.EmitAck("join", join, func(json.RawMessage) { close(acked) }); err != nil {
			t.Fatalf("join: %v", err)
		}
		select {
		case <-acked:
		case <-time.After(5 * time.Second):
			t.Fatalf("join of the %s session not acknowledged", []string{"upgraded", "polling"}[i])
		}
	}
}
