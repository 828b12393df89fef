package adversarial

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Floods: pings whose pongs are never read, sockets that never CONNECT,
// and events the contract does not name.

// floodPings sends websocket pings and Engine.IO pings of 64 KiB, never
// reading, until the write fails, until passes, or (with most > 0) most
// pairs are sent; it returns the bytes sent.
func floodPings(r *rawWS, until time.Time, most int) int64 {
	eioPing := append([]byte("2"), bytes.Repeat([]byte("x"), 64<<10-1)...)
	wsPing := make([]byte, 125)
	var sent int64
	for n := 0; time.Now().Before(until) && (most == 0 || n < most); n++ {
		_ = r.nc.SetWriteDeadline(until)
		if r.frame(opPing, true, wsPing) != nil || r.frame(opText, true, eioPing) != nil {
			break
		}
		sent += int64(len(wsPing) + len(eioPing))
	}
	_ = r.nc.SetWriteDeadline(time.Time{})
	return sent
}

// pongOrEnd reads what a flooder finally reads: "answered" once a pong of
// either kind comes, else how the connection ended.
func pongOrEnd(r *rawWS, within time.Duration) string {
	_ = r.nc.SetReadDeadline(time.Now().Add(within))
	for {
		op, p, err := r.read()
		switch {
		case err != nil:
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				return "silent"
			}
			return "cut"
		case op == opPong || op == opText && len(p) > 0 && p[0] == '3':
			return "answered"
		case op == opClose:
			return "cut"
		}
	}
}

// 16 connected sockets flood pings (websocket's and Engine.IO's, 64 KiB
// each) for 6 s and never read, from a 4 KiB receive window. Each may
// make the server queue up to SWITCHBOARD_MAX_PENDING_BYTES (32 MiB) of
// pongs, together 512 MiB: the server must stay within its memory budget
// (cutting the sockets holding most, or answering only the latest ping as
// websocket pongs are), and each flooder, when it finally reads, gets a
// pong or finds itself cut; none hangs in silence.
func TestUnreadPongs(t *testing.T) {
	const flooders = 16
	s := startServer(t)
	b := startBystander(t, s)
	s.markBaseline()
	began := time.Now()
	var wg sync.WaitGroup
	var sent atomic.Int64
	var got answers
	until := time.Now().Add(6 * time.Second)
	for range flooders {
		r, err := s.wsDial(70, 4<<10)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if err := r.connect(); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent.Add(floodPings(r, until, 0))
			got.add(pongOrEnd(r, 5*time.Second), 0)
		}()
	}
	time.Sleep(time.Until(until))
	s.checkRSS(t, "during the flood", flooders*32<<20, flooders)
	wg.Wait()
	t.Logf("%d sockets sent %d MB of pings without reading; then: %s", flooders, sent.Load()/1e6, got.String())
	if n := got.count("silent"); n > 0 {
		t.Errorf("%d flooders got neither a pong nor a close: %s", n, got.String())
	}
	hold(began)
	b.finish()
	s.checkRSS(t, "after the flood", flooders*32<<20, flooders)
}

// Sockets that never CONNECT count against their address like any other
// (the issue found one address holding 1,030 of them against a cap of
// 200): from one address, 150 websockets and 100 polling handshakes, none
// of which CONNECTs, get at most SWITCHBOARD_IP_MAX_CONNECTIONS (200)
// through; the rest are answered 429. They flood a few unread pings
// meanwhile, and SWITCHBOARD_CONNECT_TIMEOUT (3 s here; default 45 s)
// closes them, after which the address may connect again. The handshake
// rate is raised so that only the cap is tested.
func TestNeverConnectedSocketsCountAgainstTheAddress(t *testing.T) {
	const wsPeers, pollPeers, capacity = 150, 100, 200
	const connectTimeout = 3 * time.Second
	s := startServer(t, "SWITCHBOARD_IP_HANDSHAKE_RATE=1000", "SWITCHBOARD_IP_HANDSHAKE_BURST=1000", "SWITCHBOARD_CONNECT_TIMEOUT=3s")
	b := startBystander(t, s)
	s.markBaseline()
	began := time.Now()
	statuses := map[int]int{}
	var open []*rawWS
	for range wsPeers {
		r, err := s.wsDial(80, 4<<10)
		var ref *errRefused
		switch {
		case errors.As(err, &ref):
			statuses[ref.status]++
			if ref.status == 429 && !strings.Contains(ref.body, "rate_limited") {
				t.Errorf("429 body %q, want code rate_limited", ref.body)
			}
		case err != nil:
			t.Fatal(err)
		default:
			statuses[101]++
			open = append(open, r)
			defer r.Close()
		}
	}
	hc := s.httpFrom(80)
	for range pollPeers {
		_, err := s.pollOpen(hc, 4)
		var ref *errRefused
		switch {
		case errors.As(err, &ref):
			statuses[ref.status]++
		case err != nil:
			t.Fatal(err)
		default:
			statuses[200]++
		}
	}
	t.Logf("one address, %d websockets and %d polling handshakes that never CONNECT: %v", wsPeers, pollPeers, statuses)
	if admitted := statuses[101] + statuses[200]; admitted > capacity {
		t.Errorf("one address holds %d connections that never CONNECTed, over the cap of %d (%v)", admitted, capacity, statuses)
	}
	if refused := statuses[429]; refused < wsPeers+pollPeers-capacity {
		t.Errorf("%d handshakes answered 429, want at least %d (%v)", refused, wsPeers+pollPeers-capacity, statuses)
	}
	var wg sync.WaitGroup
	var got answers
	var sent atomic.Int64
	for _, r := range open {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sent.Add(floodPings(r, time.Now().Add(time.Second), 4))
			got.add(answer(r, connectTimeout+4*time.Second, true))
		}()
	}
	time.Sleep(connectTimeout / 2)
	s.checkRSS(t, "with the unconnected sockets", sent.Load(), wsPeers+pollPeers)
	wg.Wait()
	t.Logf("their %d MB of unread pings; then: %s (connect timeout %s)", sent.Load()/1e6, got.String(), connectTimeout)
	if n := got.count("still open"); n > 0 {
		t.Errorf("%d sockets without CONNECT still open %s after the connect timeout: %s", n, 4*time.Second, got.String())
	}
	if !waitUntil(5*time.Second, func() bool {
		r, err := s.wsDial(80, 0)
		if err == nil {
			r.Close()
		}
		return err == nil
	}) {
		t.Error("the address is still refused after its sockets were closed")
	}
	hold(began)
	b.finish()
	s.checkRSS(t, "after they were closed", sent.Load(), wsPeers+pollPeers)
}

// Four sockets push 15 MB events the contract does not name, as fast as
// they can for 6 s (the issue measured 3 GB in 10 s at 94 % of the CPU).
// Unknown events count against the socket's message rate like known ones:
// past the burst each is refused with chatError rate_limited, and past
// SWITCHBOARD_ABUSE_LIMIT refusals the socket is disconnected (DISCONNECT,
// then the close). A fifth socket sends small unknown events and must
// meet the same answers.
func TestUnknownEventsFlood(t *testing.T) {
	const flooders, size = 4, 15_000_000
	s := startServer(t)
	b := startBystander(t, s)
	s.markBaseline()
	began := time.Now()
	blob := []byte(`42["x-unknown",{"blob":"` + strings.Repeat("x", size) + `"}]`)
	type result struct {
		sent, limited int
		disconnect    bool
		end           string
	}
	results := make([]result, flooders+1)
	var wg sync.WaitGroup
	until := time.Now().Add(6 * time.Second)
	for i := range results {
		r, err := s.wsDial(90, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if err := r.connect(); err != nil {
			t.Fatal(err)
		}
		event := blob
		if i == flooders {
			event = []byte(`42["x-small",{"n":1}]`)
		}
		var wmu sync.Mutex // the reader answers pings
		done := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			defer close(done)
			res := &results[i]
			_ = r.nc.SetReadDeadline(until.Add(5 * time.Second))
			for {
				op, p, err := r.read()
				if err != nil {
					res.end = "dropped: " + err.Error()
					return
				}
				switch {
				case op == opClose:
					res.end = fmt.Sprintf("close %v", p)
					return
				case op != opText:
				case string(p) == "2":
					wmu.Lock()
					_ = r.text("3")
					wmu.Unlock()
				case bytes.HasPrefix(p, []byte(`42["chatError"`)) && bytes.Contains(p, []byte(`"rate_limited"`)):
					res.limited++
				case string(p) == "41":
					res.disconnect = true
				}
			}
		}()
		go func() {
			defer wg.Done()
			for time.Now().Before(until) {
				select {
				case <-done:
					return
				default:
				}
				wmu.Lock()
				_ = r.nc.SetWriteDeadline(until)
				err := r.frame(opText, true, event)
				wmu.Unlock()
				if err != nil {
					return
				}
				results[i].sent++
			}
		}()
	}
	time.Sleep(time.Until(until) - time.Second)
	s.checkRSS(t, "during the flood", flooders*size, flooders+1)
	wg.Wait()
	var pushed int64
	for i, res := range results {
		what := "15 MB"
		if i == flooders {
			what = "small"
		} else {
			pushed += int64(res.sent) * int64(len(blob))
		}
		t.Logf("%s flooder %d: sent %d events, %d refused rate_limited, DISCONNECT %v, ended %s", what, i, res.sent, res.limited, res.disconnect, res.end)
		// The bucket (burst 20, 10/s) refills while the flood lasts: only
		// events past what it allowed in that time must be refused.
		if allowed := 20 + int(10*6) + 1; res.limited == 0 && res.sent > allowed {
			t.Errorf("%s flooder %d sent %d unknown events in 6 s (the bucket allows %d) and got no chatError rate_limited", what, i, res.sent, allowed)
		}
		// Refusals are what the bucket did not allow; past 100 of them
		// (the abuse limit) the socket is disconnected. A server that drops
		// unknown events fast lets a flooder send more of them in the 6 s.
		if res.sent > 20+10*6+100+20 && !res.disconnect {
			t.Errorf("%s flooder %d sent %d unknown events (burst 20, 10/s, abuse limit 100) and was not disconnected", what, i, res.sent)
		}
	}
	t.Logf("15 MB flooders pushed %.2f GB in 6 s; server CPU %.2f s", float64(pushed)/1e9, s.cpuSince())
	hold(began)
	b.finish()
	s.checkRSS(t, "after the flood", flooders*size, flooders+1)
}
