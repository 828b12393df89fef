package adversarial

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard/switchboard/test/wsframe"
)

// The budgets every attack is held to. Every server runs with a memory
// budget of memoryLimit (SWITCHBOARD_MEMORY_LIMIT; by default three
// quarters of the RAM, 18 GB on a 24 GB machine, which no test could
// reach) and the default buffer budget for unfinished input
// (SWITCHBOARD_MAX_BUFFERED_BYTES, 256 MiB). The server's RSS may reach,
// at any moment of an attack and after it, the smaller of memoryLimit and
//
//	its baseline (measured with the bystander joined, before the attack)
//	+ 4 × the bytes the attack can have in flight at once
//	+ perConnBytes for each attacker connection
//	+ slackBytes
//
// 4× is the bound on amplification. perConnBytes is ten times
// what an idle socket costs (6.6 KB, docs/PERFORMANCE.md), for a socket's
// session and buffers under attack. slackBytes is the Go runtime's
// headroom: a collection cycle's garbage, goroutine stacks, the
// bystander's traffic.
const (
	memoryLimit    = 512 << 20
	maxBuffered    = 256 << 20
	perConnBytes   = 64 << 10
	slackBytes     = 48 << 20
	memoryLimitEnv = "SWITCHBOARD_MEMORY_LIMIT=512MiB"
	// maxPayload is the largest Engine.IO packet with the default
	// SWITCHBOARD_MAX_IMAGE_BYTES: twice the image limit plus 64 KiB
	// (transport.New), as the open packet announces.
	maxPayload = 2*10_000_000 + 64<<10
	// The bystander's bound on latency (the issue's): with a message each
	// way every 500 ms, its p99 is its slowest message.
	bystanderP99 = 100 * time.Millisecond
)

var binPath string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

// runMain builds the server once, without the race detector, so that its
// memory is what production's would be (-race multiplies it several
// times); SWITCHBOARD_BIN names a binary already built instead.
func runMain(m *testing.M) int {
	if url := os.Getenv(bystanderEnv); url != "" {
		return runBystander(url)
	}
	binPath = os.Getenv("SWITCHBOARD_BIN")
	if binPath == "" {
		dir, err := os.MkdirTemp("", "switchboard-adversarial")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binPath = filepath.Join(dir, "switchboard")
		began := time.Now()
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/switchboard/switchboard/cmd/switchboard").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
			return 1
		}
		fmt.Fprintf(os.Stderr, "adversarial: built the server in %s\n", time.Since(began).Round(100*time.Millisecond))
	}
	return m.Run()
}

// server is one Switchboard process, its memory sampled from /proc.
type server struct {
	URL  string
	host string // 127.0.0.1:port
	pid  int
	cmd  *exec.Cmd
	logf string
	// memLimit is the server's memory budget (memoryLimit unless a test
	// sets SWITCHBOARD_MEMORY_LIMIT itself).
	memLimit int64

	mu       sync.Mutex
	baseline int64 // VmRSS, bytes
	peak     int64 // since the baseline
	last     int64
	cpu0     float64
	stop     chan struct{}
}

// startServer runs the binary on a free loopback port with the defaults,
// address limits applied to loopback (the attackers come from 127.0.0.x,
// the bystander from 127.0.0.1), and env on top.
func startServer(t *testing.T, env ...string) *server {
	t.Helper()
	s := &server{logf: filepath.Join(t.TempDir(), "server.log"), stop: make(chan struct{}), memLimit: memoryLimit}
	logFile, err := os.Create(s.logf)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binPath)
	cmd.Env = append(os.Environ(), "PORT=0", "SWITCHBOARD_HOST=127.0.0.1", "SWITCHBOARD_LOG_LEVEL=warn",
		"SWITCHBOARD_IP_LIMIT_LOOPBACK=true", memoryLimitEnv)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start switchboard: %v", err)
	}
	s.cmd, s.pid = cmd, cmd.Process.Pid
	t.Cleanup(func() {
		close(s.stop)
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(s.logf); err == nil {
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Logf("server log (last lines of %d):\n%s", len(lines), strings.Join(lines[max(0, len(lines)-25):], "\n"))
			}
		}
	})
	addr := make(chan string, 1)
	go func() {
		defer close(addr) // the process ended
		re := regexp.MustCompile(`^\s+listening\s+(\S+:\d+)\s*$`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			t.Fatal("switchboard exited before it listened")
		}
		s.host, s.URL = a, "http://"+a
	case <-time.After(30 * time.Second):
		t.Fatal("switchboard did not print where it listens")
	}
	go s.sample()
	return s
}

// sample reads the server's RSS every 20 ms, keeping the peak.
func (s *server) sample() {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		rss, err := readRSS(s.pid)
		if err != nil {
			continue
		}
		s.mu.Lock()
		s.last = rss
		s.peak = max(s.peak, rss)
		s.mu.Unlock()
	}
}

func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read status: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmRSS %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmRSS")
}

// cpuSeconds is the server's user and system CPU time so far.
func (s *server) cpuSeconds() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / 100 // USER_HZ is 100 on Linux
}

// markBaseline takes the RSS before the attack (the smallest of a few
// samples over 300 ms) and starts the peak and the CPU count afresh.
func (s *server) markBaseline() {
	low := int64(1 << 62)
	for range 6 {
		time.Sleep(50 * time.Millisecond)
		if rss, err := readRSS(s.pid); err == nil {
			low = min(low, rss)
		}
	}
	s.mu.Lock()
	s.baseline, s.peak = low, low
	s.mu.Unlock()
	s.cpu0 = s.cpuSeconds()
}

// cpuSince is the CPU time the server used since the baseline.
func (s *server) cpuSince() float64 { return s.cpuSeconds() - s.cpu0 }

func (s *server) rss() (baseline, peak, last int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baseline, s.peak, s.last
}

// limit is the RSS an attack may bring the server to (see the budgets above).
func (s *server) limit(inFlight int64, conns int) int64 {
	b, _, _ := s.rss()
	return min(s.memLimit, b+4*inFlight+int64(conns)*perConnBytes+slackBytes)
}

// checkRSS asserts the peak so far and the RSS now are within the budget
// for an attack with inFlight bytes in flight over conns connections.
func (s *server) checkRSS(t *testing.T, when string, inFlight int64, conns int) {
	t.Helper()
	time.Sleep(40 * time.Millisecond) // one more sample
	base, peak, last := s.rss()
	lim := s.limit(inFlight, conns)
	t.Logf("RSS %s: baseline %s, peak %s, now %s; budget %s (4 × %s in flight, %d connections); server CPU %.2f s since the baseline",
		when, mb(base), mb(peak), mb(last), mb(lim), mb(inFlight), conns, s.cpuSince())
	if peak > lim {
		t.Errorf("RSS peaked at %s %s, over the budget of %s (baseline %s)", mb(peak), when, mb(lim), mb(base))
	}
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// src is the loopback address 127.0.0.n that an attacker connects from:
// the server counts each as one client address.
func src(n int) *net.TCPAddr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(n))} }

// dialFrom connects to the server from 127.0.0.n; a positive rcvbuf sets
// the socket's receive buffer before connecting, so that a peer that
// never reads makes the server's output pile up within a few KB.
func (s *server) dialFrom(n, rcvbuf int) (net.Conn, error) {
	d := net.Dialer{LocalAddr: src(n), Timeout: 10 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf) })
		}
	}
	nc, err := d.Dial("tcp", s.host)
	if err != nil {
		return nil, fmt.Errorf("dial from %v: %w", src(n), err)
	}
	return nc, nil
}

// httpFrom is an HTTP client whose connections come from 127.0.0.n.
func (s *server) httpFrom(n int) *http.Client {
	d := net.Dialer{LocalAddr: src(n), Timeout: 10 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}, Timeout: 60 * time.Second}
}

// rawWS is an attacker's websocket, written frame by frame (or byte by
// byte) and read without help.
type rawWS struct {
	nc net.Conn
	br *bufio.Reader
}

// errRefused is a handshake answered with an HTTP status instead of 101.
type errRefused struct {
	status int
	body   string
}

func (e *errRefused) Error() string { return fmt.Sprintf("handshake answered %d %s", e.status, e.body) }

// wsDial opens an Engine.IO 4 websocket from 127.0.0.n and reads its open
// packet; a refused handshake is an *errRefused.
func (s *server) wsDial(n, rcvbuf int) (*rawWS, error) {
	nc, err := s.dialFrom(n, rcvbuf)
	if err != nil {
		return nil, err
	}
	_ = nc.SetDeadline(time.Now().Add(15 * time.Second))
	req := "GET /chat/?EIO=4&transport=websocket HTTP/1.1\r\nHost: " + s.host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		nc.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	r := &rawWS{nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}
	res, err := http.ReadResponse(r.br, nil)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("handshake answer: %w", err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		nc.Close()
		return nil, &errRefused{status: res.StatusCode, body: strings.TrimSpace(string(b))}
	}
	op, p, err := r.read()
	if err != nil || op != opText || len(p) == 0 || p[0] != '0' {
		nc.Close()
		return nil, fmt.Errorf("open packet: op %d %q %v", op, p, err)
	}
	_ = nc.SetDeadline(time.Time{})
	return r, nil
}

const (
	opCont   = 0x0
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
)

// frame writes one whole frame.
// connectedWS dials a websocket from 127.0.0.n (see wsDial) and sends
// CONNECT; the connection closes when the test ends.
func (s *server) connectedWS(t *testing.T, n, rcvbuf int) *rawWS {
	t.Helper()
	r, err := s.wsDial(n, rcvbuf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	if err := r.connect(); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rawWS) frame(op byte, fin bool, payload []byte) error {
	bufs := net.Buffers{wsframe.Header(op, fin, len(payload)), payload}
	_, err := bufs.WriteTo(r.nc)
	return err
}

func (r *rawWS) text(s string) error { return r.frame(opText, true, []byte(s)) }

// read returns the server's next frame (server frames are not masked).
func (r *rawWS) read() (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r.br, h[:]); err != nil {
		return 0, nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r.br, b[:]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if n > 64<<20 {
		return 0, nil, fmt.Errorf("server frame of %d bytes", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r.br, p); err != nil {
		return 0, nil, err
	}
	return h[0] & 0x0f, p, nil
}

// connect sends CONNECT and waits for its answer, answering pings.
func (r *rawWS) connect() error {
	if err := r.text("40"); err != nil {
		return err
	}
	_ = r.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer r.nc.SetReadDeadline(time.Time{})
	for {
		op, p, err := r.read()
		if err != nil {
			return fmt.Errorf("CONNECT: %w", err)
		}
		switch {
		case op == opText && string(p) == "2":
			_ = r.text("3")
		case op == opText && bytes.HasPrefix(p, []byte("40")):
			return nil
		default:
			return fmt.Errorf("CONNECT answered op %d %q", op, trunc(p))
		}
	}
}

// closeCode reads until the server's close frame, answering Engine.IO
// pings (unless mid-frame), and returns its code (1005 for none), what
// came before it, and how long it took; an EOF or reset without a close
// frame is an error.
func (r *rawWS) closeCode(within time.Duration, answerPings bool) (code int, before []string, took time.Duration, err error) {
	began := time.Now()
	_ = r.nc.SetReadDeadline(began.Add(within))
	for {
		op, p, err := r.read()
		if err != nil {
			return 0, before, time.Since(began), err
		}
		switch op {
		case opClose:
			code = 1005
			if len(p) >= 2 {
				code = int(binary.BigEndian.Uint16(p))
			}
			return code, before, time.Since(began), nil
		case opText:
			if answerPings && string(p) == "2" {
				_ = r.text("3")
			}
			before = append(before, trunc(p))
		}
	}
}

func (r *rawWS) Close() { _ = r.nc.Close() }

func trunc(p []byte) string {
	if len(p) > 80 {
		return string(p[:80]) + fmt.Sprintf("…(%d bytes)", len(p))
	}
	return string(p)
}

// pollOpen opens a long-polling session with client c and returns its sid.
func (s *server) pollOpen(c *http.Client, eio int) (string, error) {
	res, err := c.Get(fmt.Sprintf("%s/chat/?EIO=%d&transport=polling", s.URL, eio))
	if err != nil {
		return "", fmt.Errorf("polling handshake: %w", err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return "", &errRefused{status: res.StatusCode, body: strings.TrimSpace(string(b))}
	}
	i := bytes.Index(b, []byte(`"sid":"`))
	if i < 0 {
		return "", fmt.Errorf("polling handshake answered %q", trunc(b))
	}
	sid := b[i+7:]
	return string(sid[:bytes.IndexByte(sid, '"')]), nil
}

// healthOK asserts the server still answers /health from 127.0.0.1.
func (s *server) healthOK(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/health", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("/health: %v", err)
		return
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Errorf("/health: %d", res.StatusCode)
	}
}

// waitUntil polls cond until it holds or d passes.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// readStatus reads the status of the HTTP answer on nc (0 if none came).
func readStatus(t *testing.T, nc net.Conn, within time.Duration) int {
	t.Helper()
	_ = nc.SetReadDeadline(time.Now().Add(within))
	res, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil {
		t.Errorf("no HTTP answer within %s: %v", within, err)
		return 0
	}
	return res.StatusCode
}
