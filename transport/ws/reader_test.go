package ws

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"unicode/utf8"
)

// event is one thing a frameReader handed on.
type event struct {
	op   byte // opText, opBinary or a control opcode
	data string
}

// recorder is a frameSink that keeps copies; like a Conn it stops at a
// close frame.
type recorder struct{ events []event }

func (s *recorder) message(text bool, d []byte) bool {
	op := byte(opBinary)
	if text {
		op = opText
	}
	s.events = append(s.events, event{op, string(d)})
	return true
}

func (s *recorder) screen([]byte) bool { return true }

func (s *recorder) control(op byte, p []byte) bool {
	s.events = append(s.events, event{op, string(p)})
	return op != opClose
}

// maskedFrame is a client frame: b0 (FIN and opcode) and p masked with key.
func maskedFrame(b0 byte, p []byte, key [4]byte) []byte {
	b := append(maskedHeader(b0, uint64(len(p))), key[:]...)
	for i, c := range p {
		b = append(b, c^key[i&3])
	}
	return b
}

// maskedHeader is a client frame's header up to (not with) its mask key,
// announcing n bytes of payload with the shortest length encoding.
func maskedHeader(b0 byte, n uint64) []byte {
	switch {
	case n <= 125:
		return []byte{b0, 0x80 | byte(n)}
	case n <= 0xffff:
		return []byte{b0, 0x80 | 126, byte(n >> 8), byte(n)}
	}
	return binary.BigEndian.AppendUint64([]byte{b0, 0x80 | 127}, n)
}

// chunks cuts data into pieces whose sizes the seed picks (1 byte to a few
// thousand), the way reads of a socket may return it.
func chunks(data []byte, seed uint64) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		seed ^= seed << 13
		seed ^= seed >> 7
		seed ^= seed << 17
		n := 1 + int(seed%7)
		if seed&0x100 != 0 {
			n = 1 + int(seed>>20)%5000
		}
		n = min(n, len(data))
		out = append(out, bytes.Clone(data[:n])) // the reader unmasks in place
		data = data[n:]
	}
	return out
}

// feedAll feeds pieces to r until an error or the end, checking after
// each piece that memory follows what arrived and the budget.
func feedAll(t *testing.T, r *frameReader, pieces [][]byte) ([]event, error) {
	t.Helper()
	s := &recorder{}
	for _, p := range pieces {
		before := len(s.events)
		err := r.feed(p, s)
		checkHeld(t, r)
		if err != nil {
			return s.events, err
		}
		if len(s.events) > before && s.events[len(s.events)-1].op == opClose {
			break
		}
	}
	return s.events, nil
}

// checkHeld: what is held is the buffer's capacity, counted in the budget,
// under the budget, and at most twice what is kept (at least 4 KiB).
func checkHeld(t *testing.T, r *frameReader) {
	t.Helper()
	if r.held != cap(r.msg) {
		t.Fatalf("held %d, buffer capacity %d", r.held, cap(r.msg))
	}
	if r.held > max(minReadBuffer, 2*len(r.msg)) {
		t.Fatalf("held %d for %d bytes kept", r.held, len(r.msg))
	}
	if len(r.msg) > r.maxMessage {
		t.Fatalf("kept %d bytes, max message %d", len(r.msg), r.maxMessage)
	}
	if r.budget != nil {
		if n := r.budget.n.Load(); n != int64(r.held) || n > r.budget.max {
			t.Fatalf("budget counts %d (max %d), reader holds %d", n, r.budget.max, r.held)
		}
	}
}

// FuzzFrameReader feeds anything, cut anyhow: no panic; the same events
// whether it arrives at once or in pieces; memory within what arrived and
// the budgets; and data framed validly (fragmented, a ping between the
// fragments, any chunking) comes back as the one message it was.
func FuzzFrameReader(f *testing.F) {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	f.Add(maskedFrame(finBit|opText, []byte("hello"), key), uint64(1))
	f.Add(append(maskedFrame(opText, []byte("one,"), key), maskedFrame(finBit|opContinuation, []byte("two"), key)...), uint64(2))
	f.Add(bytes.Join([][]byte{maskedFrame(opBinary, []byte{0, 1}, key), maskedFrame(finBit|opPing, []byte("p"), key),
		maskedFrame(finBit|opContinuation, []byte{2}, key)}, nil), uint64(3))
	f.Add(append(maskedHeader(finBit|opBinary, 16<<20), key[:]...), uint64(4))
	f.Add(maskedFrame(finBit|opClose, []byte{0x03, 0xed}, key), uint64(5))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64) {
		const maxMessage = 64 << 10
		// Anything, at once and in pieces, without a server-wide limit.
		whole := &frameReader{maxMessage: maxMessage}
		want, wantErr := feedAll(t, whole, [][]byte{bytes.Clone(data)})
		cut := &frameReader{maxMessage: maxMessage}
		got, err := feedAll(t, cut, chunks(data, seed))
		if fmt.Sprint(got, err) != fmt.Sprint(want, wantErr) {
			t.Fatalf("in pieces: %v %v\nat once: %v %v", got, err, want, wantErr)
		}
		// In pieces with a small server-wide budget: the same, unless
		// the budget ran out.
		limited := &frameReader{maxMessage: maxMessage, budget: newBudget(16 << 10)}
		got, err = feedAll(t, limited, chunks(data, seed))
		if errors.Is(err, errBusy) {
			if len(got) > len(want) || fmt.Sprint(got) != fmt.Sprint(want[:len(got)]) {
				t.Fatalf("before the budget ran out: %v, want a prefix of %v", got, want)
			}
		} else if fmt.Sprint(got, err) != fmt.Sprint(want, wantErr) {
			t.Fatalf("with a budget: %v %v\nwithout: %v %v", got, err, want, wantErr)
		}
		limited.release()
		if n := limited.budget.n.Load(); n != 0 {
			t.Fatalf("%d bytes still counted after release", n)
		}

		// data as the payload of a valid message.
		if len(data) > maxMessage {
			return
		}
		op := byte(opBinary)
		if utf8.Valid(data) {
			op = opText
		}
		framed := frameMessage(op, data, seed, key)
		r := &frameReader{maxMessage: maxMessage, budget: newBudget(1 << 20)}
		got, err = feedAll(t, r, chunks(framed, seed>>3|1))
		if err != nil {
			t.Fatal(err)
		}
		if n := len(got); n == 0 || got[n-1].op != op || got[n-1].data != string(data) {
			t.Fatalf("got %v, want the message %q", got, data)
		}
		if r.pending() || r.budget.n.Load() != 0 {
			t.Fatalf("after a whole message: pending %v, %d bytes counted", r.pending(), r.budget.n.Load())
		}
	})
}

// frameMessage frames p as a message of op, in fragments the seed sizes,
// with a ping after the first fragment.
func frameMessage(op byte, p []byte, seed uint64, key [4]byte) []byte {
	var b []byte
	first := true
	for {
		n := min(len(p), 1+int(seed%300))
		seed = seed*6364136223846793005 + 1442695040888963407
		b0 := byte(opContinuation)
		if first {
			b0 = op
		}
		if n == len(p) {
			b0 |= finBit
		}
		b = append(b, maskedFrame(b0, p[:n], key)...)
		if first && n < len(p) {
			b = append(b, maskedFrame(finBit|opPing, []byte("between"), key)...)
		}
		first = false
		p = p[n:]
		if len(p) == 0 {
			return b
		}
	}
}

// A 16 MB frame announced and barely begun holds what arrived, rounded up
// to 4 KiB, not 16 MB; fragments grow the buffer geometrically.
func TestReaderHoldsWhatArrived(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	b := newBudget(-1)
	r := &frameReader{maxMessage: 32 << 20, budget: b}
	s := &recorder{}
	if err := r.feed(append(maskedHeader(finBit|opBinary, 16<<20), key[:]...), s); err != nil {
		t.Fatal(err)
	}
	if r.held != 0 || !r.pending() {
		t.Fatalf("after the header: %d bytes held, pending %v; want 0, true", r.held, r.pending())
	}
	if err := r.feed(make([]byte, 1000), s); err != nil {
		t.Fatal(err)
	}
	if r.held != minReadBuffer || b.n.Load() != minReadBuffer {
		t.Fatalf("after 1000 bytes: %d held, %d counted; want %d", r.held, b.n.Load(), minReadBuffer)
	}
	for sent := 1000; sent < 3<<20; sent += 64 << 10 {
		if err := r.feed(make([]byte, 64<<10), s); err != nil {
			t.Fatal(err)
		}
		checkHeld(t, r)
	}
	r.release()
	if b.n.Load() != 0 {
		t.Fatalf("%d bytes counted after release", b.n.Load())
	}
}

func BenchmarkFrameReader(b *testing.B) {
	key := [4]byte{1, 2, 3, 4}
	for _, size := range []int{100, 16 << 10, 1 << 20} {
		frame := maskedFrame(finBit|opBinary, make([]byte, size), key)
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			r := &frameReader{maxMessage: 2 << 20, budget: newBudget(-1)}
			s := &countSink{}
			buf := make([]byte, len(frame))
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				copy(buf, frame)
				for p := buf; len(p) > 0; p = p[min(len(p), 64<<10):] { // reads of 64 KiB
					if err := r.feed(p[:min(len(p), 64<<10)], s); err != nil {
						b.Fatal(err)
					}
				}
			}
			if s.n != b.N {
				b.Fatalf("%d messages for %d frames", s.n, b.N)
			}
		})
	}
}

type countSink struct{ n int }

func (s *countSink) message(bool, []byte) bool { s.n++; return true }
func (s *countSink) control(byte, []byte) bool { return true }
func (s *countSink) screen([]byte) bool        { return true }

// screener turns down the text messages that begin with "x", like the
// transport does with events the contract does not name.
type screener struct {
	recorder
	screened []string
}

func (s *screener) screen(head []byte) bool {
	s.screened = append(s.screened, string(head[:min(len(head), 8)]))
	return head[0] != 'x'
}

// A long text message turned down from its first bytes is dropped as it
// arrives: nothing of it is kept or delivered, and the messages around it
// are; one accepted is kept and delivered whole.
func TestReaderDropsScreenedMessages(t *testing.T) {
	key := [4]byte{9, 8, 7, 6}
	long := func(c byte) []byte { return append([]byte{c}, bytes.Repeat([]byte("é-"), 3<<20/3)...) }
	var in []byte
	in = append(in, maskedFrame(finBit|opText, []byte("before"), key)...)
	in = append(in, maskedFrame(finBit|opText, long('x'), key)...)
	// Fragmented inside a character, a ping between the fragments.
	frag := long('x')[:500_001]
	in = append(in, maskedFrame(opText, frag[:200_000], key)...)
	in = append(in, maskedFrame(finBit|opPing, []byte("p"), key)...)
	in = append(in, maskedFrame(finBit|opContinuation, frag[200_000:], key)...)
	in = append(in, maskedFrame(finBit|opText, long('k'), key)...)
	in = append(in, maskedFrame(finBit|opText, []byte("after"), key)...)
	b := newBudget(-1)
	r := &frameReader{maxMessage: 4 << 20, budget: b}
	s := &screener{}
	for p := in; len(p) > 0; p = p[min(len(p), 64<<10):] {
		if err := r.feed(bytes.Clone(p[:min(len(p), 64<<10)]), s); err != nil {
			t.Fatal(err)
		}
		checkHeld(t, r)
		if r.skip && r.held != 0 {
			t.Fatalf("%d bytes held for a message turned down", r.held)
		}
	}
	var got []string
	for _, e := range s.events {
		got = append(got, fmt.Sprintf("%d:%s", e.op, e.data[:min(len(e.data), 6)]))
	}
	want := []string{"1:before", "9:p", "1:ké-é", "1:after"}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(s.events[2].data) != len(long('k')) {
		t.Fatalf("delivered %v; want %v with the accepted message whole", got, want)
	}
	if len(s.screened) != 3 {
		t.Fatalf("screened %d messages (%q); want the 3 long ones", len(s.screened), s.screened)
	}
	if b.n.Load() != 0 {
		t.Fatalf("%d bytes counted once all is read", b.n.Load())
	}
}

// A message turned down is still a text message: invalid UTF-8 anywhere
// in it, or an end inside a character, fails the connection as if it had
// been kept; and its fragments count against the largest message.
func TestReaderChecksDroppedMessages(t *testing.T) {
	key := [4]byte{1, 1, 2, 3}
	body := append([]byte{'x'}, bytes.Repeat([]byte("a"), 100_000)...)
	for _, tc := range []struct {
		name   string
		frames [][]byte
		want   error
	}{
		{"invalid byte late", [][]byte{maskedFrame(finBit|opText, append(bytes.Clone(body), 0xff, 'a'), key)}, errInvalidUTF8},
		{"ends inside a character", [][]byte{maskedFrame(finBit|opText, append(bytes.Clone(body), 0xc3), key)}, errInvalidUTF8},
		{"fragments past the largest message", [][]byte{
			maskedFrame(opText, body, key),
			maskedFrame(opContinuation, body, key),
			maskedFrame(finBit|opContinuation, body, key),
		}, errTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &frameReader{maxMessage: 250_000, budget: newBudget(-1)}
			s := &screener{}
			var err error
			for _, f := range tc.frames {
				for p := f; len(p) > 0 && err == nil; p = p[min(len(p), 4099):] {
					err = r.feed(bytes.Clone(p[:min(len(p), 4099)]), s)
				}
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err %v; want %v", err, tc.want)
			}
			if len(s.events) != 0 {
				t.Fatalf("delivered %d messages", len(s.events))
			}
		})
	}
}

// Whatever the bytes and however they are cut (down to one byte per
// read, characters split across reads and fragments), a text message
// turned down is refused as invalid UTF-8 exactly when utf8.Valid says so.
func TestReaderDroppedMessagesCheckUTF8AsAWhole(t *testing.T) {
	key := [4]byte{7, 7, 1, 0}
	alphabet := [][]byte{[]byte("a"), []byte("é"), []byte("€"), []byte("\U0001F600"),
		{0xF0}, {0x9F}, {0x80}, {0xC0, 0x80}, {0xED, 0xA0, 0x80}, {0xF4, 0x90, 0x80, 0x80}, {0xE2, 0x82}}
	seed := uint64(0x9e3779b97f4a7c15)
	rnd := func(n int) int {
		seed ^= seed << 13
		seed ^= seed >> 7
		seed ^= seed << 17
		return int(seed % uint64(n))
	}
	for i := range 3000 {
		body := append([]byte{'x'}, bytes.Repeat([]byte("-"), screenLen)...)
		for range 1 + rnd(12) {
			body = append(body, alphabet[rnd(len(alphabet))]...)
		}
		var in []byte
		if cut := screenLen + 1 + rnd(len(body)-screenLen); i%2 == 0 && cut < len(body) {
			in = append(maskedFrame(opText, body[:cut], key), maskedFrame(finBit|opContinuation, body[cut:], key)...)
		} else {
			in = maskedFrame(finBit|opText, body, key)
		}
		r := &frameReader{maxMessage: 1 << 20, budget: newBudget(-1)}
		var err error
		for p := in; len(p) > 0 && err == nil; {
			n := min(len(p), 1+rnd(4))
			if rnd(8) == 0 {
				n = len(p)
			}
			err = r.feed(bytes.Clone(p[:n]), &screener{})
			p = p[n:]
		}
		if valid := utf8.Valid(body); valid != (err == nil) || (err != nil && !errors.Is(err, errInvalidUTF8)) {
			t.Fatalf("message % x: utf8.Valid %v, reader %v", body[screenLen+1:], valid, err)
		}
	}
}

// A connection closing while a turned-down message is half read: its rest
// is discarded unread, and its end is no UTF-8 error.
func TestReaderDiscardsAHalfDroppedMessage(t *testing.T) {
	key := [4]byte{3, 1, 4, 1}
	body := append(append([]byte{'x'}, bytes.Repeat([]byte("-"), screenLen)...), "\U0001F600"...)
	f := maskedFrame(finBit|opText, body, key)
	r := &frameReader{maxMessage: 1 << 20, budget: newBudget(-1)}
	s := &screener{}
	split := len(f) - 2 // the character's last two bytes come after the close began
	if err := r.feed(bytes.Clone(f[:split]), s); err != nil || !r.skip || r.ncarry == 0 {
		t.Fatalf("first part: err %v, skipping %v, carrying %d", err, r.skip, r.ncarry)
	}
	r.discard = true
	if err := r.feed(append(bytes.Clone(f[split:]), maskedFrame(finBit|opClose, []byte{3, 232}, key)...), s); err != nil {
		t.Fatalf("closing: %v", err)
	}
	if len(s.events) != 1 || s.events[0].op != opClose {
		t.Fatalf("events %v; want the close frame", s.events)
	}
}
