//go:build linux

package ws

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	gws "github.com/gorilla/websocket"
)

// What a peer can make the server hold or do, each with an honest
// bystander on the same server that must not notice.

var testKey = [4]byte{1, 2, 3, 4}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// expectClose reads the server's next frame, which must be a close with code.
func expectClose(t *testing.T, r *raw, code int) {
	t.Helper()
	op, p := r.read()
	if op != opClose || len(p) < 2 || int(binary.BigEndian.Uint16(p)) != code {
		t.Fatalf("got op %d %q, want close %d", op, p, code)
	}
}

// stillEchoes checks that c gets its answer.
func stillEchoes(t *testing.T, c *gws.Conn) {
	t.Helper()
	if err := c.WriteMessage(gws.TextMessage, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if got := readText(t, c); got != "echo:still here" {
		t.Fatalf("bystander got %q", got)
	}
}

func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// 300 peers each announce a 16 MB frame, send 1000 bytes of it and stall:
// the server holds a 4 KiB buffer each (it held the announced 16 MB, 4.8
// GB in all), and nothing once they leave.
func TestStalledFrameHeadersHoldWhatArrived(t *testing.T) {
	srv, _, url := start(t, Options{MaxMessage: 32 << 20})
	bystander := dialWS(t, url)
	const peers, sent = 300, 1000
	before := heapAlloc()
	attackers := make([]*raw, peers)
	for i := range attackers {
		attackers[i] = rawDial(t, url)
		attackers[i].write(append(append(maskedHeader(finBit|opBinary, 16<<20), testKey[:]...), make([]byte, sent)...))
	}
	waitFor(t, "every stalled frame to be read", func() bool { return srv.Buffered() == peers*minReadBuffer })
	held := heapAlloc()
	t.Logf("heap %.1f MB before, %.1f MB with %d stalled 16 MB frames (%d bytes sent each; both ends of the sockets in this process); server buffers %d bytes",
		float64(before)/1e6, float64(held)/1e6, peers, sent, srv.Buffered())
	if grew := int64(held) - int64(before); grew > 32<<20 {
		t.Fatalf("heap grew %d bytes for %d peers that sent %d bytes each", grew, peers, sent)
	}
	stillEchoes(t, bystander)
	for _, r := range attackers {
		_ = r.nc.Close()
	}
	waitFor(t, "the stalled peers to be released", func() bool { return srv.Len() == 1 && srv.Buffered() == 0 })
	t.Logf("heap %.1f MB after they left", float64(heapAlloc())/1e6)
	stillEchoes(t, bystander)
}

// Past the server-wide budget a connection is told to try again later;
// once others leave there is room again.
func TestServerWideBudgetClosesWith1013(t *testing.T) {
	srv, e, url := start(t, Options{MaxMessage: 1 << 20, MaxBuffered: 64 << 10})
	bystander := dialWS(t, url)
	begin := func() *raw { // 16 KiB of a 1 MB frame: a 16 KiB buffer
		r := rawDial(t, url)
		r.write(append(append(maskedHeader(finBit|opBinary, 1<<20), testKey[:]...), make([]byte, 16<<10)...))
		return r
	}
	var held []*raw
	for i := range 4 {
		held = append(held, begin())
		waitFor(t, "the budget to count it", func() bool { return srv.Buffered() == int64(i+1)*16<<10 })
	}
	over := begin()
	expectClose(t, over, CloseTryAgain)
	if err := e.waitClosed(t); !errors.Is(err, errBusy) {
		t.Fatalf("handler told %v, want the budget", err)
	}
	if n := srv.Buffered(); n != 64<<10 {
		t.Fatalf("%d bytes buffered, want the 64 KiB of the four", n)
	}
	stillEchoes(t, bystander) // whole messages need no buffer
	_ = held[0].nc.Close()
	waitFor(t, "the budget to be given back", func() bool { return srv.Buffered() == 48<<10 })
	begin() // kept open by the test's cleanup
	waitFor(t, "the new one to fit", func() bool { return srv.Buffered() == 64<<10 })
	stillEchoes(t, bystander)
	if srv.Len() != 5 {
		t.Fatalf("%d connections, want the bystander, three held and the new one", srv.Len())
	}
}

// A frame or fragmented message left incomplete ends the connection with
// 1008 after MessageTimeout; idle connections are never timed.
func TestIncompleteMessageTimesOut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	srv, e, url := start(t, Options{MessageTimeout: timeout})
	idle := dialWS(t, url)
	half := maskedFrame(finBit|opText, []byte("half of this frame never comes"), testKey)
	for _, tc := range []struct {
		name string
		send []byte
	}{
		{"a byte of a header", []byte{finBit | opText}},
		{"half a frame", half[:len(half)/2]},
		{"a fragment without the rest", maskedFrame(opText, []byte("one,"), testKey)},
		{"fragments and pings without the end", bytes.Join([][]byte{maskedFrame(opText, []byte("one,"), testKey),
			maskedFrame(finBit|opPing, nil, testKey), maskedFrame(opContinuation, []byte("two,"), testKey)}, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rawDial(t, url)
			began := time.Now()
			r.write(tc.send)
			op, p := r.read()
			if op == opPong {
				op, p = r.read()
			}
			took := time.Since(began)
			if op != opClose || int(binary.BigEndian.Uint16(p)) != ClosePolicy {
				t.Fatalf("got op %d %q, want close 1008", op, p)
			}
			if took < timeout || took > timeout+2*time.Second {
				t.Fatalf("closed after %v, timeout %v", took, timeout)
			}
			if err := e.waitClosed(t); !errors.Is(err, errTimeout) {
				t.Fatalf("handler told %v, want the timeout", err)
			}
			waitFor(t, "nothing to be timed or buffered", func() bool { return srv.Len() == 1 && srv.Buffered() == 0 && untimed(srv) })
			stillEchoes(t, idle)
		})
	}
}

// untimed tells whether no poller times any connection (so none has a
// read deadline pending for one).
func untimed(s *Server) bool {
	for _, p := range s.pollers {
		p.mu.Lock()
		some := p.oldest != nil
		p.mu.Unlock()
		if some {
			return false
		}
	}
	return true
}

// A peer that sends messages without pause, each read ending inside a
// frame, is never timed out while each message takes less than the
// timeout: the clock starts again with each message.
func TestSteadyMessagesAreNotTimedOut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	_, _, url := start(t, Options{MessageTimeout: timeout})
	r := rawDial(t, url)
	var rest []byte
	for i := range 8 {
		f := maskedFrame(finBit|opText, fmt.Appendf(nil, "message %d", i), testKey)
		r.write(append(rest, f[:5]...)) // the end of one, the start of the next
		rest = f[5:]
		time.Sleep(timeout / 3)
	}
	r.write(rest)
	for i := range 8 {
		if op, p := r.read(); op != opText || string(p) != fmt.Sprintf("echo:message %d", i) {
			t.Fatalf("got op %d %q, want echo %d", op, p, i)
		}
	}
}

// Close frames: a valid code is echoed; a 1-byte body or a code not
// allowed on the wire is answered 1002, a reason not in UTF-8 1007.
func TestPeerCloseFrameIsChecked(t *testing.T) {
	body := func(code uint16, reason string) []byte {
		return append(binary.BigEndian.AppendUint16(nil, code), reason...)
	}
	cases := []struct {
		name string
		body []byte
		want int // the code answered; closeNoStatus for an empty body
	}{
		{"no body", nil, closeNoStatus},
		{"1000", body(1000, "bye"), 1000},
		{"1001", body(1001, ""), 1001},
		{"1003", body(1003, ""), 1003},
		{"1007", body(1007, ""), 1007},
		{"1011", body(1011, ""), 1011},
		{"1012 registered", body(1012, ""), 1012},
		{"1014 registered", body(1014, ""), 1014},
		{"3000", body(3000, ""), 3000},
		{"4999", body(4999, "é"), 4999},
		{"1-byte body", []byte{0x03}, CloseProtocol},
		{"0", body(0, ""), CloseProtocol},
		{"999", body(999, ""), CloseProtocol},
		{"1004 reserved", body(1004, ""), CloseProtocol},
		{"1005 never sent", body(1005, ""), CloseProtocol},
		{"1006 never sent", body(1006, ""), CloseProtocol},
		{"1015 never sent", body(1015, ""), CloseProtocol},
		{"1016 unassigned", body(1016, ""), CloseProtocol},
		{"2000 extensions", body(2000, ""), CloseProtocol},
		{"2999 extensions", body(2999, ""), CloseProtocol},
		{"5000", body(5000, ""), CloseProtocol},
		{"65535", body(65535, ""), CloseProtocol},
		{"reason not UTF-8", body(1000, "\xff\xfe"), CloseInvalid},
	}
	srv, e, url := start(t, Options{})
	bystander := dialWS(t, url)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rawDial(t, url)
			r.frame(opClose, true, tc.body)
			op, p := r.read()
			if tc.want == closeNoStatus {
				if op != opClose || len(p) != 0 {
					t.Fatalf("got op %d %q, want an empty close", op, p)
				}
			} else {
				if op != opClose || len(p) != 2 || int(binary.BigEndian.Uint16(p)) != tc.want {
					t.Fatalf("got op %d %v, want close %d", op, p, tc.want)
				}
			}
			echoed := len(tc.body) == 0 || len(tc.body) >= 2 && int(binary.BigEndian.Uint16(tc.body)) == tc.want
			if err := e.waitClosed(t); IsPeerClose(err) != echoed {
				t.Fatalf("handler told %v; want a peer close: %v", err, echoed)
			}
			waitFor(t, "the connection to go", func() bool { return srv.Len() == 1 })
			stillEchoes(t, bystander)
		})
	}
}

// startCapturing is start with each server-side Conn handed to conns,
// after setup.
func startCapturing(t *testing.T, o Options, setup func(*Conn)) (*Server, *echo, string, chan *Conn) {
	t.Helper()
	srv, err := NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{done: make(chan struct{}, 16)}
	conns := make(chan *Conn, 16)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = srv.Upgrade(w, r, func(c *Conn) Handler {
			setup(c)
			conns <- c
			return &echoConn{e: e, c: c}
		})
	}))
	t.Cleanup(func() { srv.Close(); hs.Close() })
	return srv, e, "ws" + strings.TrimPrefix(hs.URL, "http"), conns
}

// smallBuffers makes a socket's kernel buffers small, so that a peer that
// does not read fills them within a few KB.
func smallBuffers(c *Conn) {
	if tc, ok := c.nc.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4 << 10)
	}
}

// rawDialSmall is rawDial with a 4 KB receive buffer, set before connecting.
func rawDialSmall(t *testing.T, url string) *raw {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10) })
	}}
	nc, err := d.Dial("tcp", strings.TrimPrefix(url, "ws://"))
	if err != nil {
		t.Fatal(err)
	}
	return rawHandshake(t, nc, nil)
}

// A peer that pings without reading costs a few KB, not a pong per ping
// (no pending-bytes limit here to stop it): past 4 KiB unsent only the
// latest ping is kept, and answered once the peer reads.
func TestPingFloodWithoutReadingIsBounded(t *testing.T) {
	_, e, url, conns := startCapturing(t, Options{}, smallBuffers)
	r := rawDialSmall(t, url)
	sc := <-conns
	bystander := dialWS(t, url)
	<-conns
	const pings = 20000 // 2.5 MB of pongs if each were queued
	var most int
	payload := func(i int) []byte { return fmt.Appendf(nil, "%0125d", i) }
	for i := range pings {
		r.frame(opPing, true, payload(i))
		if i%500 == 0 {
			most = max(most, sc.Pending())
		}
	}
	r.frame(opText, true, []byte("done"))
	waitFor(t, "every ping to be read", func() bool { e.mu.Lock(); defer e.mu.Unlock(); return e.texts == 1 })
	most = max(most, sc.Pending())
	limit := pongBacklog + 2 + maxControl + 2 + len("echo:done")
	t.Logf("at most %d bytes unsent for %d pings", most, pings)
	if most > limit {
		t.Fatalf("%d bytes unsent, want at most %d", most, limit)
	}
	stillEchoes(t, bystander)
	// Reading now gets the echo and, last, the pong to the latest ping.
	pongs, echoed := 0, false
	for {
		op, p := r.read()
		switch {
		case op == opText && string(p) == "echo:done":
			echoed = true
		case op != opPong:
			t.Fatalf("got op %d %q", op, p)
		case string(p) == string(payload(pings-1)):
			if !echoed {
				t.Fatal("the latest ping was answered before the message after it")
			}
			t.Logf("%d pongs for %d pings", pongs+1, pings)
			if pongs+1 >= pings {
				t.Fatal("every ping was answered")
			}
			return
		default:
			pongs++
		}
	}
}

// With a pending-bytes limit under the pong backlog, a peer that pings and
// never reads is closed as a slow consumer.
func TestPingFloodPastPendingLimitCloses(t *testing.T) {
	srv, e, url, conns := startCapturing(t, Options{MaxPending: 1000}, smallBuffers)
	r := rawDialSmall(t, url)
	<-conns
	bystander := dialWS(t, url)
	<-conns
	// Bounded by time, not by a count of pings: under -race on a busy
	// machine the server may read far behind the writer.
	deadline := time.Now().Add(15 * time.Second)
	for srv.Len() == 2 {
		if time.Now().After(deadline) {
			t.Fatal("never closed")
		}
		_ = r.nc.SetWriteDeadline(deadline)
		if _, err := r.nc.Write(maskedFrame(finBit|opPing, make([]byte, maxControl), testKey)); err != nil {
			break // closed
		}
	}
	if err := e.waitClosed(t); !errors.Is(err, ErrSlow) {
		t.Fatalf("handler told %v, want a slow consumer", err)
	}
	stillEchoes(t, bystander)
}

// One read per turn: a peer that sends without pause does not keep its
// poller from the others.
func TestFastSenderDoesNotStarveItsPoller(t *testing.T) {
	srv, e, url := start(t, Options{MaxMessage: 2 << 20, Pollers: 1})
	bystander := dialWS(t, url)
	flood := dialWS(t, url)
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		big := make([]byte, 1<<20)
		for !stop.Load() {
			if flood.WriteMessage(gws.BinaryMessage, big) != nil {
				return
			}
		}
	}()
	waitFor(t, "the flood to arrive", func() bool { e.mu.Lock(); defer e.mu.Unlock(); return e.binary > 0 })
	var slowest time.Duration
	for range 20 {
		began := time.Now()
		stillEchoes(t, bystander)
		slowest = max(slowest, time.Since(began))
	}
	stop.Store(true)
	<-done
	e.mu.Lock()
	n := e.binary
	e.mu.Unlock()
	t.Logf("slowest echo %v beside a flood of %d MB", slowest, n)
	if slowest > time.Second {
		t.Fatalf("an echo took %v beside the flood", slowest)
	}
	if srv.Len() != 2 {
		t.Fatalf("%d connections, want 2", srv.Len())
	}
}

// A round reads a small message before the bulk of sockets that send
// without pause, and reads only so much of that bulk: a chat message waits
// behind a few of the flood's reads, not one from every flooding socket
// (with 150 of them a round took 20–48 ms in the adversarial suite). Here
// 64 sockets pour in 60 KiB messages on one poller; between a small
// message's send and its handling at most a few of theirs are handled
// (without the light-first round: one per flooding socket and more).
func TestSmallMessageWaitsBehindOneRoundOfBulk(t *testing.T) {
	const flooders, size = 64, 60 << 10
	_, e, url := start(t, Options{MaxMessage: 1 << 20, Pollers: 1})
	bystander := dialWS(t, url)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range flooders {
		c := dialWS(t, url)
		wg.Add(1)
		go func() {
			defer wg.Done()
			big := make([]byte, size)
			for !stop.Load() {
				if c.WriteMessage(gws.BinaryMessage, big) != nil {
					return
				}
			}
		}()
	}
	defer func() { stop.Store(true); wg.Wait() }()
	binary := func() int { e.mu.Lock(); defer e.mu.Unlock(); return e.binary }
	waitFor(t, "the flood to arrive", func() bool { return binary() > 4*flooders })
	most := 0
	for range 20 {
		before := binary()
		stillEchoes(t, bystander)
		e.mu.Lock()
		most = max(most, e.binaryAtText-before)
		e.mu.Unlock()
	}
	t.Logf("at most %d of the flood's %d KiB messages handled while a small one waited (%d flooding sockets, %d handled in all)",
		most, size>>10, flooders, binary())
	if most >= flooders/2 {
		t.Fatalf("%d of the flood's messages were handled while a small message waited: the flooding sockets went first", most)
	}
}

// allowPings answers the first n pings of its connection and no more.
type allowPings struct {
	echoConn
	n int
}

func (h *allowPings) Ping(*Conn) bool { h.n--; return h.n >= 0 }

// A Pinger decides which pings are answered: here the first 3 of 10.
func TestPingerDecidesWhichPingsAreAnswered(t *testing.T) {
	srv, err := NewServer(Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{done: make(chan struct{}, 16)}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = srv.Upgrade(w, r, func(c *Conn) Handler { return &allowPings{echoConn: echoConn{e: e, c: c}, n: 3} })
	}))
	t.Cleanup(func() { srv.Close(); hs.Close() })
	r := rawDial(t, "ws"+strings.TrimPrefix(hs.URL, "http"))
	for i := range 10 {
		r.frame(opPing, true, fmt.Appendf(nil, "p%d", i))
	}
	r.frame(opText, true, []byte("done"))
	var got []string
	for {
		op, p := r.read()
		if op == opText {
			break
		}
		got = append(got, string(p))
	}
	if want := []string{"p0", "p1", "p2"}; !slices.Equal(got, want) {
		t.Fatalf("pongs %q, want %q", got, want)
	}
}

// After the server's close frame a peer that keeps sending instead of
// closing is dropped once it has sent lingerBytes more, without waiting
// out the linger (2 s) while its input is read and thrown away.
func TestSendingOnAfterTheCloseEndsTheLinger(t *testing.T) {
	_, e, url := start(t, Options{})
	r := rawDial(t, url)
	r.frame(opText, true, []byte("close-me"))
	began := time.Now()
	// 16 KiB text frames masked with the zero key, written without reading.
	const size = 16 << 10
	frame := append([]byte{finBit | opText, 0x80 | 126, size >> 8, size & 0xff, 0, 0, 0, 0}, bytes.Repeat([]byte("x"), size)...)
	go func() {
		for range 4 * lingerBytes / size {
			if _, err := r.nc.Write(frame); err != nil {
				return
			}
		}
	}()
	err := e.waitClosed(t)
	if took := time.Since(began); took > lingerTimeout/2 {
		t.Fatalf("released after %s (%v), want well within the linger's %s", took, err, lingerTimeout)
	}
}
