package actors

import "time"

// Policy is what a session enforces on its socket before an event reaches
// the router. The zero value enforces nothing.
type Policy struct {
	// OperatorAuth requires a verified operator token to join as operator.
	OperatorAuth bool
	// ClientTokenRequired requires a verified client token to join as client.
	ClientTokenRequired bool
	// Messages bounds join, chat messages and endChat; Typing bounds typing
	// indicators. A zero Rate disables the bucket.
	Messages Rate
	Typing   Rate
	// AbuseLimit is how many refused events within AbuseWindow disconnect a
	// socket. Zero disables it.
	AbuseLimit  int
	AbuseWindow time.Duration
	// Recovery is connection-state recovery; a zero Window turns it off.
	Recovery Recovery
	// HoldBeforeJoin is how many events a socket may send before its join
	// and have applied after it (a reconnecting client flushes its send
	// buffer before its connect handler joins); HoldFor is how long they
	// wait for the join before the router refuses them. 0: none held.
	HoldBeforeJoin int
	HoldFor        time.Duration
}

// Recovery bounds connection-state recovery.
type Recovery struct {
	// Window is how long a participant whose transport dropped without a
	// goodbye stays joined (away) and recoverable.
	Window time.Duration
	// MaxFrames and MaxBytes bound each session's log of frames that its
	// client may not have read; past them the oldest go, and a client whose
	// offset is older starts a fresh session.
	MaxFrames int
	MaxBytes  int
}

// Rate is a token bucket's sustained rate (events per second) and burst.
type Rate struct {
	PerSecond float64
	Burst     int
}

// bucket is a token bucket owned by one session: no locking.
type bucket struct {
	rate   Rate
	tokens float64
	last   time.Time
}

func newBucket(r Rate, now time.Time) bucket {
	return bucket{rate: r, tokens: float64(r.Burst), last: now}
}

// take spends one token if there is one.
func (b *bucket) take(now time.Time) bool {
	if b.rate.PerSecond <= 0 {
		return true
	}
	b.tokens += now.Sub(b.last).Seconds() * b.rate.PerSecond
	if max := float64(b.rate.Burst); b.tokens > max {
		b.tokens = max
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// strikes counts refusals in a sliding window, to find sustained abuse.
type strikes struct {
	times []time.Time
	limit int
	win   time.Duration
}

// add records a refusal and reports whether the limit is now passed.
func (s *strikes) add(now time.Time) bool {
	if s.limit <= 0 {
		return false
	}
	cut := 0
	for cut < len(s.times) && now.Sub(s.times[cut]) > s.win {
		cut++
	}
	s.times = append(s.times[cut:], now)
	return len(s.times) >= s.limit
}
