package test

import (
	"fmt"
	"testing"
	"time"
)

// A widget emits join the moment it is connected. The Socket.IO library
// registers a socket with its connection only after sending CONNECT, and an
// event in that gap used to close the connection ("invalid state"), about
// one in thirty under -race. transport/connectgate.go closes the gap.
func TestJoinRightAfterConnect(t *testing.T) {
	s := startServer(t, nil)
	for i := range 150 {
		c := ws(t, s, fmt.Sprint("c", i), nil, nil)
		c.emit("join", map[string]any{"role": "client", "name": "x"})
		waitFor(t, 2*time.Second, func() error {
			var st struct{ Clients []map[string]any }
			getJSON(t, s.URL+"/stats", &st)
			for _, e := range st.Clients {
				if e["socketId"] == c.id() {
					return nil
				}
			}
			return fmt.Errorf("join %d of %s lost", i, c.id())
		})
		c.conn.Close()
	}
}
