//go:build !linux

package ws

import (
	"errors"
	"sync/atomic"
)

// Supported tells whether this platform has the epoll server: it has not,
// and the Socket.IO library serves websockets instead.
const Supported = false

// Server is a stand-in on platforms without epoll.
type Server struct {
	opts   Options
	budget *budget
	closed atomic.Bool
}

// NewServer fails: no epoll here.
func NewServer(Options) (*Server, error) {
	return nil, errors.New("websocket server: needs Linux (epoll)")
}

// Len is always 0.
func (s *Server) Len() int { return 0 }

// Each does nothing.
func (s *Server) Each(func(Handler)) {}

// Close does nothing.
func (s *Server) Close() {}

func (s *Server) register(*Conn) error { return errors.New("websocket server: needs Linux (epoll)") }

type poller struct{}

func (*poller) enqueue(*Conn)           {}
func (*poller) watch(*Conn, bool) error { return nil }
func (*poller) remove(*Conn)            {}

// Buffered is always 0.
func (s *Server) Buffered() int64 { return 0 }

func (*poller) track(*Conn)   {}
func (*poller) untrack(*Conn) {}
