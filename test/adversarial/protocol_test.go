package adversarial

import (
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard/switchboard/test/wsframe"
)

// Attacks on the protocol's edges: close frames, oversized messages and
// refused events. Each is answered at once, to the attacker alone.

// bystanderWindow is the least time a bystander chats beside an attack,
// so that its figures mean something (8 messages each way).
const bystanderWindow = 4 * time.Second

// hold waits until at least bystanderWindow has passed since began.
func hold(began time.Time) { time.Sleep(time.Until(began.Add(bystanderWindow))) }

// A close frame whose code may not be sent on the wire (999, 1006, 5000)
// is answered with 1002 (RFC 6455 7.4), never echoed; one whose reason is
// not UTF-8 fails the connection too: 1007, which RFC 6455 8.1 and
// Autobahn 7.5.1 accept as well as 1002. A valid code is echoed.
func TestCloseFramesWithInvalidCodes(t *testing.T) {
	s := startServer(t)
	b := startBystander(t, s)
	s.markBaseline()
	began := time.Now()
	body := func(code uint16, reason string) []byte {
		return append(binary.BigEndian.AppendUint16(nil, code), reason...)
	}
	cases := []struct {
		name    string
		body    []byte
		want    []int
		connect bool
	}{
		{"999", body(999, ""), []int{1002}, false},
		{"1006", body(1006, "abnormal"), []int{1002}, true},
		{"5000", body(5000, ""), []int{1002}, false},
		{"65535", body(65535, ""), []int{1002}, true},
		{"reason not UTF-8", body(1000, "\xff\xfe\xfd"), []int{1002, 1007}, true},
		{"one-byte body", []byte{0x03}, []int{1002}, false},
		{"1000 is echoed", body(1000, "bye"), []int{1000}, true},
	}
	for i, tc := range cases {
		r, err := s.wsDial(20+i, 0)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if tc.connect {
			if err := r.connect(); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
		}
		if err := r.frame(opClose, true, tc.body); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		code, _, took, err := r.closeCode(5*time.Second, false)
		r.Close()
		switch {
		case err != nil:
			t.Errorf("close %s: no close frame back: %v", tc.name, err)
		case !contains(tc.want, code):
			t.Errorf("close %s: answered %d, want %v", tc.name, code, tc.want)
		default:
			t.Logf("close %s: answered %d in %s", tc.name, code, took.Round(time.Millisecond))
		}
	}
	hold(began)
	b.finish()
	s.checkRSS(t, "after the close frames", 0, len(cases))
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// Oversized input is refused with the answer its layer has: a websocket
// frame announcing more than maxPayload is closed with 1009 before any of
// it is read; a polling body over maxPayload is 413 (by its
// Content-Length, unread); a text or image over the contract's limits is
// a chatError too_large to its sender, whose socket stays open.
func TestOversizedMessages(t *testing.T) {
	s := startServer(t)
	b := startBystander(t, s)
	s.markBaseline()
	began := time.Now()

	// A frame announcing one byte more than maxPayload: 1009 at once.
	r := s.connectedWS(t, 30, 0)
	if _, err := r.nc.Write(wsframe.Header(opText, true, maxPayload+1)); err != nil {
		t.Fatal(err)
	}
	code, _, took, err := r.closeCode(5*time.Second, false)
	if err != nil || code != 1009 {
		t.Errorf("frame of maxPayload+1 bytes: close %d, %v; want 1009", code, err)
	} else {
		t.Logf("frame of maxPayload+1 (%d) bytes announced: close 1009 in %s", maxPayload+1, took.Round(time.Millisecond))
	}

	// A polling body whose Content-Length passes maxPayload: 413, unread.
	hc := s.httpFrom(31)
	sid, err := s.pollOpen(hc, 4)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := s.dialFrom(31, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, "POST /chat/?EIO=4&transport=polling&sid=%s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: %d\r\n\r\n",
		sid, s.host, 50<<20)
	if status := readStatus(t, nc, 5*time.Second); status != 413 {
		t.Errorf("POST announcing 50 MiB: %d, want 413", status)
	} else {
		t.Logf("POST with Content-Length 50 MiB: 413 without a byte of the body")
	}

	// Contract limits: a text of 5,001 characters and an image one byte
	// over SWITCHBOARD_MAX_IMAGE_BYTES, from a joined player.
	p := s.connectedWS(t, 32, 0)
	if err := p.text(`420["join",{"role":"client","name":"Mallory"}]`); err != nil {
		t.Fatal(err)
	}
	expectText(t, p, "430[", "join ack")
	if err := p.text(`421["clientMessage",{"type":"text","message":"` + strings.Repeat("x", 5001) + `"}]`); err != nil {
		t.Fatal(err)
	}
	if got := expectText(t, p, "431[", "ack of the long text"); !strings.Contains(got, `"too_large"`) {
		t.Errorf("text of 5,001 characters answered %s, want too_large", got)
	}
	img := strings.Repeat("A", 10_000_001)
	if err := p.text(`42["clientMessage",{"type":"image","mimeType":"image/png","image":"data:image/png;base64,` + img + `"}]`); err != nil {
		t.Fatal(err)
	}
	if got := expectText(t, p, `42["chatError"`, "chatError for the large image"); !strings.Contains(got, `"code":"too_large"`) {
		t.Errorf("image over the limit answered %s, want chatError too_large", got)
	} else {
		t.Logf("text of 5,001 characters and image of 10,000,001: too_large to the sender; %s", got)
	}
	if err := p.text(`422["clientMessage",{"type":"text","message":"still here"}]`); err != nil {
		t.Fatal(err)
	}
	expectText(t, p, "432[", "the player's next message")

	hold(began)
	b.finish()
	s.checkRSS(t, "after the oversized messages", 2*10_000_000, 3)
}

// Events of 10 million numbers, 19 MB each from 4 sockets: decoded, each
// made 380 MB of live heap (864 MB allocated); an event has at most 1,024
// JSON values, and past them the socket is closed with 1009 having cost
// what it sent.
func TestManyValuedEvents(t *testing.T) {
	const peers = 4
	s := startServer(t)
	b := startBystander(t, s)
	s.markBaseline()
	began := time.Now()
	event := []byte(`42["clientMessage",[` + strings.Repeat("1,", 9_500_000) + `1]]`)
	var wg sync.WaitGroup
	var got answers
	for i := range peers {
		r := s.connectedWS(t, 33+i, 0)
		defer r.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.frame(opText, true, event); err != nil {
				got.add("write failed", 0)
				return
			}
			got.add(answer(r, 10*time.Second, true))
		}()
	}
	wg.Wait()
	t.Logf("%d sockets × one event of %.1f MB of numbers: %s", peers, float64(len(event))/1e6, got.String())
	if got.count("close 1009") != peers {
		t.Errorf("events of 9,500,001 values: %s; want each socket closed with 1009", got.String())
	}
	s.checkRSS(t, "with the events decoded", int64(peers*len(event)), peers)
	hold(began)
	b.finish()
}

// expectText reads frames until a text frame starting with prefix,
// answering pings; anything else of note fails the test.
func expectText(t *testing.T, r *rawWS, prefix, what string) string {
	t.Helper()
	_ = r.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer r.nc.SetReadDeadline(time.Time{})
	for {
		op, p, err := r.read()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		switch {
		case op == opText && string(p) == "2":
			_ = r.text("3")
		case op == opText && strings.HasPrefix(string(p), prefix):
			return trunc(p)
		case op == opClose:
			t.Fatalf("%s: closed with %v", what, p)
		}
	}
}
