//go:build !linux

package transport

import (
	"errors"
	"time"
)

// Without epoll a waiting GET keeps its net/http goroutine.
type parker struct{ back *backListener }

func newParker(time.Duration) (*parker, error) { return nil, errors.New("park: needs Linux (epoll)") }
func (*parker) add(*parkedConn) error          { return errors.New("park: needs Linux (epoll)") }
func (*parker) remove(*parkedConn)             {}
func (*parker) stop()                          {}
