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
