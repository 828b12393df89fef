package actors

import (
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The operators' feed across nodes. Every event for operators that a node
// sends to the others (a player's message, a new chat, an end, an
// operator's broadcast) is appended to one stream, P:feed, and published
// with its entry id, in one script. A node remembers the last id it
// applied; when its subscription was down (a Redis blip, a killed
// connection) it reads the stream after that id, so nothing published
// meanwhile is lost, and it holds back what arrives live until that read
// is applied, so nothing comes twice or out of order.

// feedMaxLen bounds the stream (trimmed approximately): far more than a
// blip's worth of events.
const feedMaxLen = 10000

// feedScript: KEYS[1] the stream; ARGV envelope, maxlen, channel.
var feedScript = redis.NewScript(`
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[1])
redis.call('PUBLISH', ARGV[3], 'F|' .. id .. '\n' .. ARGV[1])
return id`)

// goneScript is feedScript for what every node asks and one writes (a
// gone node's player's chatAway or chatEnded): KEYS the stream, the
// once-key, the player's record; ARGV envelope, maxlen, channel, the
// once-key's ttl ms, the dead node. Nothing when the player's session
// went to another node meanwhile.
var goneScript = redis.NewScript(`
local n = redis.call('HGET', KEYS[3], 'node')
if n and n ~= ARGV[5] then return 0 end
if not redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[4]) then return 0 end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'm', ARGV[1])
redis.call('PUBLISH', ARGV[3], 'F|' .. id .. '\n' .. ARGV[1])
return 1`)

// feedPrefix marks a feed message on the channel: "F|<id>\n<envelope>".
const feedPrefix = "F|"

// splitFeed parses a feed message; ok false for any other message.
func splitFeed(raw string) (id, env string, ok bool) {
	if !strings.HasPrefix(raw, feedPrefix) {
		return "", "", false
	}
	id, env, ok = strings.Cut(raw[len(feedPrefix):], "\n")
	return id, env, ok && id != ""
}

// feedEntry is one event of the feed.
type feedEntry struct {
	id  string
	env string
}

// feedCursor is what a node knows of the feed: the last entry applied,
// and, while it reads what it missed, what arrived live meanwhile. It does
// no I/O: the bridge asks the worker for the read and hands the answer
// back (tested without Redis in cluster_feed_test.go).
type feedCursor struct {
	last     string // last id applied; "" before the first read
	catching bool   // a read of the stream after last is wanted or in flight
	held     []feedEntry
}

// feedHeldMax bounds what is held during a read that does not come back.
const feedHeldMax = 4 * feedMaxLen

// live is an entry from the subscription: what to apply now, in order.
func (c *feedCursor) live(e feedEntry) []feedEntry {
	if c.catching {
		if len(c.held) < feedHeldMax {
			c.held = append(c.held, e)
		}
		return nil
	}
	if c.last != "" && compareStreamID(e.id, c.last) <= 0 {
		return nil // read already
	}
	c.last = e.id
	return []feedEntry{e}
}

// resync starts a read after the last entry (the subscription was down);
// it returns the id to read after ("" asks only for the stream's last id).
func (c *feedCursor) resync() string {
	c.catching = true
	return c.last
}

// caught applies the answer of a read: the entries after last, oldest
// first, then what was held meanwhile; last is the stream's last id
// when the read asked for it (after ""). ok false: the read failed and is
// asked again later; nothing is applied.
func (c *feedCursor) caught(entries []feedEntry, last string, ok bool) []feedEntry {
	if !ok || !c.catching {
		return nil
	}
	c.catching = false
	var out []feedEntry
	if c.last == "" && last != "" {
		c.last = last // the first read: the feed starts here
	}
	for _, e := range append(entries, c.held...) {
		if c.last != "" && compareStreamID(e.id, c.last) <= 0 {
			continue
		}
		c.last = e.id
		out = append(out, e)
	}
	c.held = nil
	return out
}

// compareStreamID orders stream ids "<ms>-<seq>" numerically.
func compareStreamID(a, b string) int {
	am, as := splitStreamID(a)
	bm, bs := splitStreamID(b)
	if c := compareUint(am, bm); c != 0 {
		return c
	}
	return compareUint(as, bs)
}

func splitStreamID(id string) (ms, seq uint64) {
	m, s, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(m, 10, 64)
	seq, _ = strconv.ParseUint(s, 10, 64)
	return ms, seq
}
