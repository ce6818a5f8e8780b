//go:build linux

package provisioner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/testbed"
	"github.com/gopyk/gopyk/wire"
)

// These tests run the provisioner in process against the real sshd and
// Debian's ipykernel (the e2e package covers the binary and link drops in
// network namespaces).

type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuf) count(s string) int { return strings.Count(l.String(), s) }

type bed struct {
	sshd *testbed.SSHD
	log  *logBuf
	cfg  Config
}

func newBed(t *testing.T) *bed { t.Helper(); return newBedWith(t, testbed.Options{IsolateHome: true}) }

func newBedWith(t *testing.T, opts testbed.Options) *bed {
	t.Helper()
	sshd := testbed.SSHDForTest(t, opts)
	f, err := os.OpenFile(sshd.ConfigFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(f, "  ServerAliveInterval 1\n  ServerAliveCountMax 2\n  ConnectTimeout 5\n")
	f.Close()
	b := &bed{sshd: sshd, log: &logBuf{}}
	b.cfg = Config{
		SpecName: "gpk_prov",
		Gopyk: kernelspec.Gopyk{SSHHostAlias: sshd.Alias, SSHConfig: sshd.ConfigFile, RemoteKernelName: "python3",
			RemotePython: "/usr/bin/python3", Grace: 5},
		Local: wire.ConnInfo{IP: "127.0.0.1", Transport: "tcp", SignatureScheme: "hmac-sha256"},
		Log:   slog.New(slog.NewTextHandler(b.log, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("provisioner log:\n%s", b.log.String())
		}
	})
	return b
}

func (b *bed) launch(t *testing.T) *Kernel {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	k, err := Launch(ctx, b.cfg)
	if err != nil {
		t.Fatalf("launch: %v", err)
	}
	return k
}

// execute runs code on a fresh client (the Go client does not reconnect by
// itself; Jupyter's clients do) and returns the text result.
func execute(t *testing.T, k *Kernel, code string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := wire.Dial(ctx, k.Local())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitReady(ctx); err != nil {
		t.Fatalf("kernel not ready: %v", err)
	}
	r, err := c.Execute(ctx, code)
	if err != nil {
		t.Fatalf("execute %q: %v", code, err)
	}
	return r.Result
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A server that goes silent (its connection processes stopped, TCP up) is
// noticed by keepalive; a fresh connection takes over, the kernel keeps its
// state, and nothing leaks once the kernel is shut down.
func TestReconnectAfterSilentServer(t *testing.T) {
	b := newBed(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	k := b.launch(t)
	if got := execute(t, k, "x = 5; x"); got != "5" {
		t.Fatalf("x = %q", got)
	}
	if b.sshd.Freeze() == 0 {
		t.Fatal("no sshd connection process to freeze")
	}
	t0 := time.Now()
	waitFor(t, 20*time.Second, "reconnected", func() bool { return b.log.count("msg=reconnected") == 1 })
	t.Logf("silent server: reconnected %v after the freeze (keepalive 1s × 2)", time.Since(t0).Round(time.Millisecond))
	b.sshd.Thaw()
	if got := execute(t, k, "x + 1"); got != "6" {
		t.Fatalf("after reconnect x + 1 = %q", got)
	}
	if n := b.log.count(`msg="connection lost`); n != 1 {
		t.Errorf("%d 'connection lost' lines, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := k.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "no remote processes", func() bool { return len(b.sshd.SessionPIDs()) == 0 })
}

// Connections killed (server crash) while the listener lives: reconnect at
// once, and the local ports stay the same.
func TestReconnectAfterKilledConnections(t *testing.T) {
	b := newBed(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	k := b.launch(t)
	local := k.Local()
	execute(t, k, "y = 'kept'")
	for i := 1; i <= 3; i++ {
		b.sshd.KillConns()
		waitFor(t, 20*time.Second, "reconnected", func() bool { return b.log.count("msg=reconnected") == i })
		if got := execute(t, k, "y"); got != "'kept'" {
			t.Fatalf("after reconnect %d: y = %q", i, got)
		}
	}
	if k.Local() != local {
		t.Fatalf("local connection info changed across reconnects: %+v → %+v", local, k.Local())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := k.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "no remote processes", func() bool { return len(b.sshd.SessionPIDs()) == 0 })
}

// Shutdown while the server is unreachable returns by its deadline with an
// error, ends every goroutine, and Done is closed: no hang.
func TestShutdownWhileDisconnected(t *testing.T) {
	b := newBed(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	k := b.launch(t)
	// The listener first, so that the connections' death can't be answered
	// by a reconnect before the listener is gone.
	conns := b.sshd.ConnPIDs()
	b.sshd.Kill()
	for _, pid := range conns {
		killPID(pid)
	}
	waitFor(t, 10*time.Second, "connection lost", func() bool { return b.log.count(`msg="connection lost`) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	t0 := time.Now()
	err := k.Shutdown(ctx)
	if err == nil {
		t.Fatal("shutdown without a server reported success")
	}
	if el := time.Since(t0); el > 6*time.Second {
		t.Fatalf("shutdown took %v with a 2s deadline", el)
	}
	select {
	case <-k.Done():
	default:
		t.Fatal("Done not closed after Shutdown")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Logf("shutdown error: %v", err)
	}
}

// The supervisor dying (here: the whole remote side killed) while the
// connection lives ends the kernel with ErrKernelDied.
func TestSupervisorGoneEndsKernel(t *testing.T) {
	b := newBed(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	k := b.launch(t)
	st := k.State()
	if st.SupervisorPID == 0 {
		t.Fatalf("no supervisor pid in %+v", st)
	}
	if err := killPID(st.SupervisorPID); err != nil {
		t.Fatal(err)
	}
	select {
	case <-k.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("kernel not done 5s after its supervisor died")
	}
	if !errors.Is(k.Err(), ErrKernelDied) {
		t.Fatalf("Err = %v, want ErrKernelDied", k.Err())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	k.Shutdown(ctx)
	waitFor(t, 15*time.Second, "no remote processes", func() bool { return len(b.sshd.SessionPIDs()) == 0 })
}

func killPID(pid int) error { return syscall.Kill(pid, syscall.SIGKILL) }

// A connection that can't be restored is given up after Config.GiveUpAfter:
// Done closes with the dial error.
func TestGiveUpAfter(t *testing.T) {
	b := newBed(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	b.cfg.GiveUpAfter = 2 * time.Second
	k := b.launch(t)
	conns := b.sshd.ConnPIDs()
	b.sshd.Kill()
	for _, pid := range conns {
		killPID(pid)
	}
	t0 := time.Now()
	select {
	case <-k.Done():
	case <-time.After(15 * time.Second):
		t.Fatal("still retrying 15s after the server went away with GiveUpAfter 2s")
	}
	t.Logf("gave up after %v: %v", time.Since(t0).Round(time.Millisecond), k.Err())
	if k.Err() == nil || !strings.Contains(k.Err().Error(), "giving up") || !strings.Contains(k.Err().Error(), "refused") {
		t.Fatalf("Err = %v, want giving up with the dial error", k.Err())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	k.Shutdown(ctx)
}
