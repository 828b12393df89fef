package loadtest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/png"
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
func parseMarker(s string) (marker, bool) { return parseMarkerBytes([]byte(s)) }

// parseMarkerBytes is parseMarker on a payload's bytes, read in place:
// every operator parses every player's marker.
func parseMarkerBytes(s []byte) (marker, bool) {
	var m marker
	if len(s) < 3 || s[2] != ':' {
		return m, false
	}
	switch string(s[:2]) {
	case markPlayer:
	case markReply:
		m.reply = true
	default:
		return m, false
	}
	s = s[3:]
	if i := bytes.IndexByte(s, ' '); i >= 0 {
		s = s[:i]
	}
	a, rest, ok1 := bytes.Cut(s, []byte{':'})
	b, c, ok2 := bytes.Cut(rest, []byte{':'})
	if !ok1 || !ok2 {
		return m, false
	}
	slot, ok1 := decimal(a)
	seq, ok2 := decimal(b)
	sent, ok3 := decimal(c)
	if !ok1 || !ok2 || !ok3 || slot < 0 || seq < 0 {
		return m, false
	}
	m.slot, m.seq, m.sent = int(slot), int(seq), sent
	return m, true
}

// decimal reads a base-10 int64 with an optional sign, as
// strconv.ParseInt(s, 10, 64) does, without its error value.
func decimal(s []byte) (int64, bool) {
	neg := false
	if len(s) > 0 && (s[0] == '+' || s[0] == '-') {
		neg, s = s[0] == '-', s[1:]
	}
	if len(s) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (1<<63)/10 {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
		if n > 1<<63 {
			return 0, false
		}
	}
	if !neg && n == 1<<63 {
		return 0, false
	}
	if neg {
		return -int64(n), true
	}
	return int64(n), true
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
	image string // a real PNG in base64, ImageSize long (or a little over, if tiny)
}

func newPayloads(textSize, imageSize int) payloads {
	return payloads{pad: strings.Repeat("x", max(textSize, 0)), image: base64.StdEncoding.EncodeToString(pngOfSize(imageSize / 4 * 3))}
}

// pngOfSize makes a valid PNG of n bytes: servers check that an image is
// what its mimeType says, so random bytes would be refused. It is an 8×8
// noise image padded with a tEXt chunk of random letters, which no
// transport compression flattens.
func pngOfSize(n int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, 8, 8))
	_, _ = rand.Read(img.Pix)
	var b bytes.Buffer
	_ = png.Encode(&b, img) // cannot fail on a bytes.Buffer
	out := b.Bytes()
	const chunk = 12 // length, type, CRC
	keyword := []byte("Comment\x00")
	fill := n - len(out) - chunk - len(keyword)
	if fill <= 0 {
		return out
	}
	data := make([]byte, len(keyword)+fill)
	copy(data, keyword)
	_, _ = rand.Read(data[len(keyword):])
	for i := len(keyword); i < len(data); i++ {
		data[i] = 'a' + data[i]%26
	}
	iend := out[len(out)-chunk:] // IEND closes the file: the text goes before it
	text := make([]byte, 0, chunk+len(data))
	text = binary.BigEndian.AppendUint32(text, uint32(len(data)))
	text = append(text, "tEXt"...)
	text = append(text, data...)
	text = binary.BigEndian.AppendUint32(text, crc32.ChecksumIEEE(text[4:]))
	res := append(append(append([]byte(nil), out[:len(out)-chunk]...), text...), iend...)
	return res
}

// text pads a marker to n bytes (never below the marker itself).
func (p payloads) text(mark string, n int) string {
	if fill := n - len(mark) - 1; fill > 0 {
		return mark + " " + p.pad[:fill]
	}
	return mark
}
