package ws

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// frameSink gets what a frameReader parses. Either method returns false
// once the connection has ended, which stops the reader.
type frameSink interface {
	// message is one whole data message; data is valid only during the call.
	message(text bool, data []byte) bool
	// control is one whole control frame (close, ping or pong).
	control(op byte, payload []byte) bool
	// screen is shown the first screenLen bytes of a text message that
	// is still arriving; false: the sink has dealt with the message, and
	// the rest of it is dropped as it comes instead of being kept.
	screen(head []byte) bool
}

// screenLen is how much of a long text message its sink sees before the
// rest is kept: enough for an Engine.IO and Socket.IO header and an event
// name.
const screenLen = 128

// frameReader parses a client's frames out of the bytes as they arrive,
// in chunks of any size, and needs no socket: a Conn feeds it each read,
// the fuzzer feeds it anything.
//
// Memory grows with bytes received, never with the length a header
// announces: a frame whose payload is whole in the chunk is handed on in
// place, without a copy; only the bytes of an unfinished frame or
// fragmented message are kept, in a buffer at most twice their size (at
// least 4 KiB, pooled up to 64 KiB). Its capacity is taken from the
// server-wide budget while held and given back as soon as the message is
// whole or the reader is released.
type frameReader struct {
	maxMessage int     // largest message, in bytes
	budget     *budget // the server's; nil for no server-wide limit

	hdr  [maxHeader]byte // a header split across chunks
	nhdr int

	inFrame   bool // a header was read and its payload is being read
	fin       bool
	op        byte
	key       [4]byte
	got       int // payload bytes of this frame read so far
	remaining int // payload bytes of this frame still to come

	msgOp byte   // opText or opBinary while a fragmented message is under way
	msg   []byte // the data message's payload so far
	ctl   []byte // the payload of a control frame split across chunks
	held  int    // bytes taken from the budget: cap(msg)
	// holding is held for other goroutines (the server's memory guard).
	holding atomic.Int64

	// discard drops data payloads instead of keeping them: the
	// connection is closing and only a close frame still matters.
	discard bool
	// screening: the text message under way has not been screened yet;
	// skip: its sink turned it down, and its bytes are dropped as they
	// come, only checked for UTF-8 (carry holds a character split across
	// chunks) and counted against MaxMessage (skipped).
	screening, skip bool
	carry           [utf8.UTFMax]byte
	ncarry          int
	skipped         int
	// boundaries counts the frames after which nothing was under way; a
	// change tells the timeout that what is pending now began afresh.
	boundaries uint64
}

// Frame header sizes: two bytes, up to eight of length, four of mask key.
const (
	maxHeader     = 14
	minReadBuffer = 4 << 10  // smallest buffer kept for an unfinished message
	maxPooledRead = 64 << 10 // larger ones go back to the garbage collector
)

// pending tells whether a frame or message is incomplete.
func (r *frameReader) pending() bool { return r.nhdr > 0 || r.inFrame || r.msgOp != 0 }

// feed parses data, handing whole messages and control frames to s and
// keeping an incomplete frame for the next call. An error is a protocol
// violation (errProtocol, errTooBig, errInvalidUTF8) or a full budget
// (errBusy); the reader must not be fed again after one.
func (r *frameReader) feed(data []byte, s frameSink) error {
	if r.discard && r.msg != nil {
		r.dropMessage()
	}
	for {
		if !r.inFrame {
			if len(data) == 0 {
				return nil
			}
			n, err := r.readHeader(data)
			if err != nil {
				return err
			}
			data = data[n:]
			if !r.inFrame {
				return nil // the header is still incomplete: data is used up
			}
		}
		k := min(r.remaining, len(data))
		p := data[:k]
		data = data[k:]
		unmaskAt(p, r.key, r.got)
		whole := r.got == 0 && k == r.remaining
		r.got += k
		r.remaining -= k
		if !whole || !r.alone() {
			if err := r.keep(p, s); err != nil {
				return err
			}
			if r.remaining > 0 {
				return nil // data is used up
			}
			switch {
			case r.op >= opClose:
				p = r.ctl
			default:
				p = r.msg
			}
		}
		more, err := r.frameDone(p, s)
		if err != nil || !more {
			return err
		}
	}
}

// alone tells whether the current frame needs no earlier bytes: a control
// frame or a message in a single frame.
func (r *frameReader) alone() bool {
	return r.op >= opClose || (r.fin && r.op != opContinuation)
}

// readHeader takes header bytes from data, completing one begun in an
// earlier chunk, and returns how many it took; once the header is whole
// the frame begins.
func (r *frameReader) readHeader(data []byte) (int, error) {
	if r.nhdr == 0 && len(data) >= 2 {
		if err := r.checkStart(data[0], data[1]); err != nil {
			return 0, err
		}
		if n := headerLen(data[1]); len(data) >= n {
			return n, r.begin(data[:n])
		}
	}
	took := 0
	for took < len(data) {
		r.hdr[r.nhdr] = data[took]
		r.nhdr++
		took++
		if r.nhdr == 2 {
			if err := r.checkStart(r.hdr[0], r.hdr[1]); err != nil {
				return took, err
			}
		}
		if r.nhdr >= 2 && r.nhdr == headerLen(r.hdr[1]) {
			n := r.nhdr
			r.nhdr = 0
			return took, r.begin(r.hdr[:n])
		}
	}
	return took, nil
}

// headerLen is the size of a client frame's header from its second byte.
func headerLen(b1 byte) int {
	switch b1 & 0x7f {
	case 126:
		return 2 + 2 + 4
	case 127:
		return 2 + 8 + 4
	}
	return 2 + 4
}

// checkStart checks what a header's first two bytes tell, so that a bad
// frame fails before the rest of its header arrives.
func (r *frameReader) checkStart(b0, b1 byte) error {
	fin, op := b0&finBit != 0, b0&0x0f
	switch {
	case b1&0x80 == 0:
		return fmt.Errorf("%w: unmasked client frame", errProtocol)
	case b0&0x70 != 0:
		return fmt.Errorf("%w: reserved bits set (no extension was agreed)", errProtocol)
	case op >= opClose && (!fin || b1&0x7f > maxControl):
		return fmt.Errorf("%w: bad control frame", errProtocol)
	case op > opPong || (op > opBinary && op < opClose):
		return fmt.Errorf("%w: unknown opcode %d", errProtocol, op)
	case op == opContinuation && r.msgOp == 0:
		return fmt.Errorf("%w: continuation without a message", errProtocol)
	case (op == opText || op == opBinary) && r.msgOp != 0:
		return fmt.Errorf("%w: new message inside a fragmented one", errProtocol)
	}
	return nil
}

// begin starts the frame whose whole header is h (checked by checkStart).
func (r *frameReader) begin(h []byte) error {
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		n = uint64(binary.BigEndian.Uint16(h[2:]))
	case 127:
		n = binary.BigEndian.Uint64(h[2:])
	}
	r.fin, r.op = h[0]&finBit != 0, h[0]&0x0f
	if r.op < opClose && n > uint64(r.maxMessage-len(r.msg)-r.skipped) {
		return errTooBig
	}
	if r.op == opText {
		r.screening = true
	}
	copy(r.key[:], h[len(h)-4:])
	r.inFrame, r.got, r.remaining = true, 0, int(n)
	if !r.fin && r.op != opContinuation {
		r.msgOp = r.op
	}
	return nil
}

// keep saves p, part of the current frame's payload; a text message is
// shown to s once screenLen of it is here.
func (r *frameReader) keep(p []byte, s frameSink) error {
	if r.op >= opClose {
		if r.ctl == nil {
			r.ctl = make([]byte, 0, maxControl) // 125 bytes at most, once per split control frame
		}
		r.ctl = append(r.ctl, p...)
		return nil
	}
	if r.discard {
		return nil
	}
	if r.skip {
		return r.skipText(p)
	}
	if need := len(r.msg) + len(p); need > cap(r.msg) {
		if err := r.grow(need); err != nil {
			return err
		}
	}
	r.msg = append(r.msg, p...)
	if r.screening && len(r.msg) >= screenLen {
		r.screening = false
		if !s.screen(r.msg[:screenLen]) {
			r.skip = true
			err := r.skipText(r.msg)
			r.skipped = len(r.msg)
			r.dropMessage()
			return err
		}
	}
	return nil
}

// skipText checks that p, the next bytes of a dropped text message, is
// UTF-8 as RFC 6455 requires of every text message, keeping a character
// split at its end for the next bytes.
func (r *frameReader) skipText(p []byte) error {
	r.skipped += len(p)
	for r.ncarry > 0 && len(p) > 0 {
		r.carry[r.ncarry] = p[0]
		r.ncarry++
		p = p[1:]
		if utf8.FullRune(r.carry[:r.ncarry]) {
			if !utf8.Valid(r.carry[:r.ncarry]) {
				return errInvalidUTF8
			}
			r.ncarry = 0
		}
	}
	if len(p) == 0 {
		return nil // a character may still be carried
	}
	cut := len(p)
	for k := 1; k <= utf8.UTFMax-1 && k <= len(p); k++ {
		if utf8.RuneStart(p[len(p)-k]) {
			if !utf8.FullRune(p[len(p)-k:]) {
				cut = len(p) - k
			}
			break
		}
	}
	if !utf8.Valid(p[:cut]) {
		return errInvalidUTF8
	}
	r.ncarry = copy(r.carry[:], p[cut:])
	return nil
}

// grow makes room for need bytes, taken from the budget first: twice the
// capacity held (so under twice what arrived), never past MaxMessage, nor
// past the end of the message's last frame when it is known.
func (r *frameReader) grow(need int) error {
	limit := r.maxMessage
	if r.fin {
		limit = need + r.remaining
	}
	size := readBufferSize(max(need, min(2*cap(r.msg), limit)))
	if !r.budget.take(size - r.held) {
		return fmt.Errorf("%w: %d bytes of unfinished messages on the server", errBusy, r.budget.max)
	}
	b := getReadBuffer(size)[:len(r.msg)]
	copy(b, r.msg)
	putReadBuffer(r.msg)
	r.msg, r.held = b, size
	r.holding.Store(int64(size))
	return nil
}

// frameDone handles a whole frame whose payload is p; false once s has
// ended the connection.
func (r *frameReader) frameDone(p []byte, s frameSink) (bool, error) {
	r.inFrame = false
	if r.op >= opClose {
		r.ctl = nil
		if r.msgOp == 0 {
			r.boundaries++
		}
		return s.control(r.op, p), nil
	}
	if !r.fin {
		return true, nil // a fragment: its payload is in r.msg
	}
	op := r.op
	if op == opContinuation {
		op = r.msgOp
	}
	r.msgOp = 0
	r.boundaries++
	r.screening = false
	if r.skip {
		carried := r.ncarry > 0
		r.skip, r.skipped, r.ncarry = false, 0, 0
		if carried && !r.discard { // closing: what was dropped no longer matters
			return false, errInvalidUTF8 // ends inside a character
		}
		return true, nil
	}
	if r.discard {
		return true, nil
	}
	if op == opText && !utf8.Valid(p) {
		return false, errInvalidUTF8
	}
	more := s.message(op == opText, p)
	r.dropMessage() // after the call: p may be r.msg
	return more, nil
}

// dropMessage gives the message buffer back.
func (r *frameReader) dropMessage() {
	if r.msg == nil {
		return
	}
	putReadBuffer(r.msg)
	r.budget.give(r.held)
	r.msg, r.held = nil, 0
	r.holding.Store(0)
}

// release forgets everything incomplete and gives its memory back; the
// reader can start over.
func (r *frameReader) release() {
	r.dropMessage()
	r.ctl = nil
	r.nhdr, r.inFrame, r.msgOp = 0, false, 0
	r.screening, r.skip, r.ncarry, r.skipped = false, false, 0, 0
}

// unmaskAt unmasks p, which starts at offset pos of a payload masked with key.
func unmaskAt(p []byte, key [4]byte, pos int) {
	if len(p) == 0 {
		return
	}
	k := [4]byte{key[pos&3], key[(pos+1)&3], key[(pos+2)&3], key[(pos+3)&3]}
	unmask(p, k[:])
}

// budget counts the bytes that every connection of a server holds for
// unfinished frames and messages.
type budget struct {
	n   atomic.Int64
	max int64
}

func newBudget(max int) *budget {
	b := &budget{max: int64(max)}
	if max < 0 {
		b.max = math.MaxInt64
	}
	return b
}

// take reserves n bytes, or none when that would pass the limit.
func (b *budget) take(n int) bool {
	if b == nil || n <= 0 {
		return true
	}
	if b.n.Add(int64(n)) > b.max {
		b.n.Add(-int64(n))
		return false
	}
	return true
}

func (b *budget) give(n int) {
	if b != nil && n > 0 {
		b.n.Add(-int64(n))
	}
}

// Read buffers of 4, 8, 16, 32 and 64 KiB are pooled, each size apart, so
// a buffer's capacity is exactly what the budget counted.
var readPools [5]sync.Pool

// readBufferSize is the capacity a buffer for n bytes gets.
func readBufferSize(n int) int {
	if n > maxPooledRead {
		return n
	}
	return minReadBuffer << readClass(n)
}

func readClass(n int) int {
	if n <= minReadBuffer {
		return 0
	}
	return bits.Len(uint(n-1)) - bits.Len(uint(minReadBuffer-1))
}

func getReadBuffer(size int) []byte {
	if size > maxPooledRead {
		return make([]byte, 0, size)
	}
	if b, ok := readPools[readClass(size)].Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, size)
}

func putReadBuffer(b []byte) {
	c := cap(b)
	if c < minReadBuffer || c > maxPooledRead || c&(c-1) != 0 {
		return
	}
	b = b[:0]
	readPools[readClass(c)].Put(&b)
}
