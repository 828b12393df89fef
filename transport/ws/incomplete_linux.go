//go:build linux

package ws

import "time"

// The poller times connections with an incomplete frame or message
// (Options.MessageTimeout) with one list and the read deadline of its
// epoll descriptor: no timer and no goroutine per connection, and nothing
// at all while every connection is idle or whole.

// monoStart is the origin of mono.
var monoStart = time.Now()

// mono is a monotonic clock, in nanoseconds.
func mono() int64 { return int64(time.Since(monoStart)) }

// track puts c at the end of the list, timed from now: something of c's
// began being incomplete.
func (p *poller) track(c *Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.unlink(c)
	c.since, c.listed = mono(), true
	c.prev, c.next = p.newest, nil
	if p.newest != nil {
		p.newest.next = c
	} else {
		p.oldest = c
		p.setDeadline()
	}
	p.newest = c
}

// untrack takes c off the list: it is whole again. The deadline stays;
// if it was c's, the sweep finds nothing and sets the next.
func (p *poller) untrack(c *Conn) {
	p.mu.Lock()
	p.unlink(c)
	p.mu.Unlock()
}

// unlink takes c off the list; p.mu is held.
func (p *poller) unlink(c *Conn) {
	if !c.listed {
		return
	}
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		p.oldest = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		p.newest = c.prev
	}
	c.prev, c.next, c.listed = nil, nil, false
}

// setDeadline wakes the loop when the oldest connection expires, a little
// after so that one sweep takes those that expire close together (within
// an eighth of the timeout); with none, it never wakes for this. p.mu is
// held.
func (p *poller) setDeadline() {
	if p.stopped {
		return
	}
	if p.oldest == nil {
		_ = p.ep.SetReadDeadline(time.Time{})
		return
	}
	wait := time.Duration(p.oldest.since-mono()) + p.timeout + p.timeout/8
	_ = p.ep.SetReadDeadline(time.Now().Add(max(wait, 0)))
}

// sweep ends the connections whose incomplete part is older than the
// timeout; it runs on the loop's goroutine when the deadline passes.
func (p *poller) sweep() {
	now := mono()
	p.mu.Lock()
	for c := p.oldest; c != nil && time.Duration(now-c.since) >= p.timeout; c = p.oldest {
		p.unlink(c)
		p.expired = append(p.expired, c)
	}
	p.setDeadline()
	p.mu.Unlock()
	for i, c := range p.expired {
		c.expire()
		p.expired[i] = nil
	}
	p.expired = p.expired[:0]
}
