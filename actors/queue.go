package actors

import (
	"time"

	"github.com/switchboard/switchboard/messages"
)

// QueueLimits bound the offline queue: player messages sent while no
// operator is online, kept for the operators who come next. Zero Total
// turns the queue off (messages to no operator are then dropped, as the
// guide's server drops them).
type QueueLimits struct {
	// PerChat and PerChatBytes bound one player's waiting messages.
	PerChat      int
	PerChatBytes int
	// Total and TotalBytes bound every player's together.
	Total      int
	TotalBytes int
	// MaxAge is how long a message may wait; older ones are dropped (and
	// counted) when the queue is next touched.
	MaxAge time.Duration
}

// offlineQueue keeps waiting messages in arrival order. The router owns
// it; like presence it outlives a router restart.
type offlineQueue struct {
	lim     QueueLimits
	entries []queuedMessage
	bytes   int
	perChat map[string]*chatLoad
}

type queuedMessage struct {
	client string
	frame  *messages.Frame
	at     time.Time
}

type chatLoad struct{ count, bytes int }

func newOfflineQueue(lim QueueLimits) *offlineQueue {
	return &offlineQueue{lim: lim, perChat: map[string]*chatLoad{}}
}

// enabled, len and drop accept a nil queue: a router built without one.
func (q *offlineQueue) enabled() bool { return q != nil && q.lim.Total > 0 }

func (q *offlineQueue) len() int {
	if q == nil {
		return 0
	}
	return len(q.entries)
}

// add keeps a frame for client, or reports which bound refuses it.
func (q *offlineQueue) add(client string, f *messages.Frame, now time.Time) (refusal string) {
	n := len(f.Packet)
	load := q.perChat[client]
	if load == nil {
		load = &chatLoad{}
	}
	switch {
	case load.count+1 > q.lim.PerChat || load.bytes+n > q.lim.PerChatBytes:
		return "this conversation already has the most messages waiting for an operator"
	case len(q.entries)+1 > q.lim.Total || q.bytes+n > q.lim.TotalBytes:
		return "too many messages are waiting for an operator"
	}
	q.perChat[client] = load
	load.count++
	load.bytes += n
	q.bytes += n
	q.entries = append(q.entries, queuedMessage{client: client, frame: f, at: now})
	return ""
}

// expire drops messages older than MaxAge and returns how many.
func (q *offlineQueue) expire(now time.Time) int {
	if q.lim.MaxAge <= 0 {
		return 0
	}
	n := 0
	for n < len(q.entries) && now.Sub(q.entries[n].at) > q.lim.MaxAge {
		q.forget(q.entries[n])
		n++
	}
	q.entries = q.entries[n:]
	return n
}

// take empties the queue, returning its frames in arrival order.
func (q *offlineQueue) take() []*messages.Frame {
	out := make([]*messages.Frame, len(q.entries))
	for i, e := range q.entries {
		out[i] = e.frame
	}
	q.entries, q.bytes = nil, 0
	clear(q.perChat)
	return out
}

// takeClient removes one player's waiting messages and returns their
// frames in arrival order: under auto routing, for the operator its chat
// was just assigned to.
func (q *offlineQueue) takeClient(client string) []*messages.Frame {
	if q == nil || q.perChat[client] == nil {
		return nil
	}
	var out []*messages.Frame
	kept := q.entries[:0]
	for _, e := range q.entries {
		if e.client == client {
			q.forget(e)
			out = append(out, e.frame)
			continue
		}
		kept = append(kept, e)
	}
	clear(q.entries[len(kept):])
	q.entries = kept
	return out
}

// drop forgets one player's messages (it left) and returns how many.
func (q *offlineQueue) drop(client string) int {
	if q == nil || q.perChat[client] == nil {
		return 0
	}
	kept, n := q.entries[:0], 0
	for _, e := range q.entries {
		if e.client == client {
			q.forget(e)
			n++
			continue
		}
		kept = append(kept, e)
	}
	clear(q.entries[len(kept):])
	q.entries = kept
	return n
}

func (q *offlineQueue) forget(e queuedMessage) {
	q.bytes -= len(e.frame.Packet)
	if load := q.perChat[e.client]; load != nil {
		load.count--
		load.bytes -= len(e.frame.Packet)
		if load.count == 0 {
			delete(q.perChat, e.client)
		}
	}
}
