package loadtest

import (
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// Every message carries its identity in the contract's own fields, so any
// server forwards it unchanged: a player's text starts with
// "lt:<slot>:<seq>:<unixNanos>" (an image carries it in `name`), an
// operator's reply is "lr:<slot>:<seq>:<unixNanos>", where slot is the
// player's index and seq numbers that slot's messages from 0.
const (
	markPlayer = "lt"
	markReply  = "lr"
)

// marker is a parsed message identity.
type marker struct {
	reply bool
	slot  int
	seq   int
	sent  int64 // unix nanos on the sender's clock (this process)
}

func formatMarker(kind string, slot, seq int, sent int64) string {
	b := make([]byte, 0, 48)
	b = append(b, kind...)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(slot), 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, sent, 10)
	return string(b)
}

// parseMarker reads a marker at the start of s; padding after a space is
// ignored.
func parseMarker(s string) (marker, bool) {
	var m marker
	switch {
	case strings.HasPrefix(s, markPlayer+":"):
	case strings.HasPrefix(s, markReply+":"):
		m.reply = true
	default:
		return m, false
	}
	s = s[3:]
	if i := strings.IndexByte(s, ' '); i >= 0 {
		s = s[:i]
	}
	a, rest, ok1 := strings.Cut(s, ":")
	b, c, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 {
		return m, false
	}
	slot, err1 := strconv.Atoi(a)
	seq, err2 := strconv.Atoi(b)
	sent, err3 := strconv.ParseInt(c, 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || slot < 0 || seq < 0 {
		return m, false
	}
	m.slot, m.seq, m.sent = slot, seq, sent
	return m, true
}

// clock gives unix nanos read from the monotonic clock, so a wall-clock
// step during a run does not bend the latencies.
type clock struct {
	mono time.Time
	unix int64
}

func newClock() clock {
	now := time.Now()
	return clock{mono: now, unix: now.UnixNano()}
}

func (c clock) now() int64 { return c.unix + int64(time.Since(c.mono)) }

// since is the time from a marker's send to now.
func (c clock) since(sent int64) time.Duration { return time.Duration(c.now() - sent) }

// payloads are built once and shared read-only by every participant.
type payloads struct {
	pad   string // text padding: a marker plus pad[:n] makes a text of the size asked
	image string // base64 of random bytes, ImageSize long
}

func newPayloads(textSize, imageSize int) payloads {
	raw := make([]byte, imageSize*3/4+3)
	_, _ = rand.Read(raw) // random so that no transport compression flatters the numbers
	img := base64.StdEncoding.EncodeToString(raw)
	img = img[:imageSize/4*4]
	return payloads{pad: strings.Repeat("x", max(textSize, 0)), image: img}
}

// text pads a marker to n bytes (never below the marker itself).
func (p payloads) text(mark string, n int) string {
	if fill := n - len(mark) - 1; fill > 0 {
		return mark + " " + p.pad[:fill]
	}
	return mark
}
