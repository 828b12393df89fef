package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Connection-state recovery, client half, as socket.io-client 4.6+ does
// it: the server's CONNECT gives a private id (pid) beside the socket id;
// every non-volatile event carries an offset as its last argument; after
// a transport drop the client reconnects with {auth…, pid, offset}, and
// the server either replays what was missed and answers with the same
// socket id and pid (recovered), or answers with new ones (a fresh
// socket, which must join again). A DISCONNECT from the server is final.

// Drop simulates a network blip: it closes the transport abruptly, with
// no Socket.IO DISCONNECT and no Engine.IO close packet (a websocket's TCP
// connection is cut; a polling session is abandoned, its pending
// long-poll cut, which the server takes as the transport closing). With
// Reconnect, the reconnection follows by itself; without, the client ends.
// A write under way completes first, so nothing is half-sent; later emits
// are buffered until the reconnection.
func (c *Client) Drop() {
	c.sendMu.Lock()
	c.mu.Lock()
	s := c.cur
	if s == nil || c.closed() {
		c.mu.Unlock()
		c.sendMu.Unlock()
		return
	}
	c.connected = false
	if s.droppedAt.IsZero() {
		s.droppedAt = time.Now()
	}
	ws := s.ws
	c.mu.Unlock()
	c.sendMu.Unlock()
	if ws != nil {
		cut(ws)
	}
	s.cancel() // ends the pending long-poll and any pong POST
}

// reconnect runs while c.reconnecting is set: it opens sessions, with
// backoff, until one is established, the client is closed, or it gives up.
func (c *Client) reconnect(since time.Time) {
	for {
		s, err := c.reconnectOnce(since)
		if err != nil {
			c.reconnecting.Store(false)
			c.shutdown(err.Error())
			return
		}
		if s == nil { // closed meanwhile
			c.reconnecting.Store(false)
			return
		}
		c.reconnecting.Store(false)
		// A session lost between its CONNECT and here saw the flag still
		// set and left the reconnection to this loop.
		if !s.ended.Load() || !c.reconnecting.CompareAndSwap(false, true) {
			return
		}
		c.mu.Lock()
		since = s.droppedAt
		c.mu.Unlock()
		if since.IsZero() {
			since = time.Now()
		}
	}
}

// reconnectOnce tries until a session is established: nil, nil once the
// client is closed; an error when the server refuses the CONNECT (a
// refusal is an answer, not a blip) or the attempts ran out.
func (c *Client) reconnectOnce(since time.Time) (*session, error) {
	var last error
	for attempt := 0; c.opts.ReconnectAttempts == 0 || attempt < c.opts.ReconnectAttempts; attempt++ {
		t := time.NewTimer(c.delay(attempt))
		select {
		case <-c.done:
			t.Stop()
			return nil, nil
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(c.ctx, c.opts.ConnectTimeout)
		s, err := c.open(ctx, since, true)
		cancel()
		switch {
		case c.closed():
			return nil, nil
		case err == nil:
			return s, nil
		case errors.Is(err, ErrRefused):
			return nil, fmt.Errorf("reconnect refused: %w", err)
		}
		last = err
	}
	return nil, fmt.Errorf("reconnect failed after %d attempts: %w", c.opts.ReconnectAttempts, last)
}

// delay is the wait before attempt n (from 0): ReconnectDelay doubling up
// to ReconnectDelayMax, ±50 % at random, as socket.io-client's backoff.
func (c *Client) delay(n int) time.Duration {
	d := c.opts.ReconnectDelay << min(n, 16)
	if d <= 0 || d > c.opts.ReconnectDelayMax {
		d = c.opts.ReconnectDelayMax
	}
	return min(time.Duration(float64(d)*(0.5+rand.Float64())), c.opts.ReconnectDelayMax)
}
