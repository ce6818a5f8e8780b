//go:build unix

package wire

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// silentListener accepts connections and never says a word, like a peer
// that is wedged, or a forward whose far end swallows the greeting.
func silentListener(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().(*net.TCPAddr).Port
}

func TestDialSilentPeerHonoursDeadline(t *testing.T) {
	ci := newConnInfo(t, "tcp")
	port := silentListener(t)
	ci.SetPorts([]int{port, ci.IOPubPort, ci.StdinPort, ci.ControlPort, ci.HBPort})
	const limit = 700 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	c, err := Dial(ctx, ci)
	took := time.Since(start)
	if err == nil {
		c.Close()
		t.Fatal("Dial to a silent peer succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error does not wrap the deadline: %v", err)
	}
	if took > limit+time.Second {
		t.Errorf("Dial returned %v after a %v deadline", took, limit)
	}
	if msg := err.Error(); !strings.Contains(msg, "no ZMTP greeting") || strings.Contains(msg, "\n") {
		t.Errorf("want one line naming the silent peer, got %q", msg)
	}
}

func TestDialAcceptThenCloseReportsCause(t *testing.T) {
	backend := newConnInfo(t, "tcp") // nothing will ever listen there
	fw := newForwarder(t, backend)
	front := backend
	front.SetPorts(fw.ports)
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	c, err := Dial(ctx, front)
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded with no kernel behind the forwarder")
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "peer closed the connection during the ZMTP handshake") {
		t.Errorf("error %q", err)
	}
}

// forwarder imitates a local port forward (ssh -L, gopyk-kernel) whose
// remote end is not listening yet: it accepts, fails to reach the backend,
// and closes. Each refusal is reported on refused.
type forwarder struct {
	ports   []int
	refused chan int
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
	lns     []net.Listener
}

func newForwarder(t *testing.T, backend ConnInfo) *forwarder {
	t.Helper()
	f := &forwarder{refused: make(chan int, 100)}
	for _, ch := range Channels {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		f.lns = append(f.lns, ln)
		f.ports = append(f.ports, ln.Addr().(*net.TCPAddr).Port)
		target := net.JoinHostPort(backend.IP, strconv.Itoa(backend.Port(ch)))
		f.wg.Go(func() { f.serve(ln, target) })
	}
	t.Cleanup(f.close)
	return f
}

func (f *forwarder) track(c net.Conn) {
	f.mu.Lock()
	f.conns = append(f.conns, c)
	f.mu.Unlock()
}

func (f *forwarder) serve(ln net.Listener, target string) {
	for {
		lc, err := ln.Accept()
		if err != nil {
			return
		}
		rc, err := net.DialTimeout("tcp", target, time.Second)
		if err != nil {
			lc.Close()
			select {
			case f.refused <- ln.Addr().(*net.TCPAddr).Port:
			default:
			}
			continue
		}
		f.track(lc)
		f.track(rc)
		f.wg.Go(func() { io.Copy(rc, lc); rc.Close() })
		f.wg.Go(func() { io.Copy(lc, rc); lc.Close() })
	}
}

func (f *forwarder) close() {
	for _, ln := range f.lns {
		ln.Close()
	}
	f.mu.Lock()
	for _, c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}

func TestDialRetriesUntilKernelAppears(t *testing.T) {
	t.Parallel()
	backend := newConnInfo(t, "tcp")
	fw := newForwarder(t, backend)
	front := backend
	front.SetPorts(fw.ports)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		c   *Client
		err error
	}
	res := make(chan result, 1)
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var dials atomic.Int32
	dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	go func() {
		c, err := Dial(ctx, front, WithLogger(logger), WithDialer(dialer))
		res <- result{c, err}
	}()
	// Start the kernel only after the forwarder has turned Dial away a few
	// times, so the retry path is what succeeds.
	for range 3 {
		select {
		case <-fw.refused:
		case r := <-res:
			t.Fatalf("Dial returned before any kernel existed: %v", r.err)
		case <-ctx.Done():
			t.Fatal("Dial never reached the forwarder")
		}
	}
	startKernel(t, backend)
	r := <-res
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.c.Close()
	if err := r.c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	er, err := r.c.Execute(ctx, "6*7")
	if err != nil {
		t.Fatal(err)
	}
	if er.Result != "42" {
		t.Errorf("6*7 through the forwarder: %+v", er)
	}
	if err := r.c.Heartbeat(ctx); err != nil {
		t.Errorf("heartbeat through the forwarder: %v", err)
	}
	if n := dials.Load(); n < 6 {
		t.Errorf("custom dialer used %d times, want every attempt (≥ 6)", n)
	}
	out := logs.String()
	if !strings.Contains(out, "retrying") {
		t.Errorf("no retry logged at debug level:\n%s", out)
	}
	if strings.Contains(out, backend.Key) {
		t.Error("the HMAC key appeared in a log line")
	}
}

func TestDialRejectsBadConnInfo(t *testing.T) {
	ci := newConnInfo(t, "tcp")
	ci.SignatureScheme = "hmac-sha1"
	if _, err := Dial(context.Background(), ci); err == nil {
		t.Fatal("Dial accepted hmac-sha1")
	}
}

func TestHeartbeatTimeout(t *testing.T) {
	t.Parallel()
	ci := newConnInfo(t, "tcp")
	k := startKernel(t, ci)
	c := dialKernel(t, k.ci)
	// Stop the kernel process (SIGSTOP) so its hb thread can't echo.
	if err := k.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer k.cmd.Process.Signal(syscall.SIGCONT)
	waitStopped(t, k.cmd.Process.Pid)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := c.Heartbeat(ctx); err == nil {
		t.Fatal("heartbeat of a stopped kernel succeeded")
	}
	k.cmd.Process.Signal(syscall.SIGCONT)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if err := c.Heartbeat(ctx2); err != nil {
		t.Errorf("heartbeat after SIGCONT (fresh REQ socket): %v", err)
	}
}
