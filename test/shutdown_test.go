package test

import (
	"context"
	"net/http"
	"testing"
	"time"

	sbclient "github.com/switchboard/switchboard/client"
)

// Shutdown closes every socket, polling ones included, and returns well
// within its deadline; the port stops answering.
func TestShutdownClosesEverySocket(t *testing.T) {
	s := startServer(t, nil)
	var conns []*sbclient.Client
	for i, tr := range []sbclient.Transport{sbclient.WebSocket, sbclient.Polling, sbclient.Upgrade, sbclient.WebSocket} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := sbclient.Dial(ctx, s.URL, sbclient.Options{Transport: tr})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		role := "client"
		if i == 0 {
			role = "operator"
		}
		if err := c.Emit("join", map[string]any{"role": role, "name": "x"}); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	waitFor(t, 3*time.Second, func() error {
		if h := health(t, s); h.Connections.Total != 4 {
			return errorf("joined %d of 4", h.Connections.Total)
		}
		return nil
	})

	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("shutdown took %s with idle long-polls open", took)
	}
	for i, c := range conns {
		select {
		case <-c.Done():
		case <-time.After(3 * time.Second):
			t.Fatalf("socket %d still open after shutdown", i)
		}
	}
	if _, err := http.Get(s.URL + "/health"); err == nil {
		t.Fatal("port still answers after shutdown")
	}
}
