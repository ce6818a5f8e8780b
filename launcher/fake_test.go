package launcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/provisioner"
	"github.com/gopyk/gopyk/wire"
)

// fake is a provisioner stand-in that records every call.
type fake struct {
	mu    sync.Mutex
	calls []string
	out   io.Writer // child mode: each call is also printed as "call: X"

	launchErr   error
	blockLaunch bool // Launch waits for its context to end
	shutdownErr error

	cfg      provisioner.Config
	attached provisioner.State
	k        *fakeKernel
	started  chan struct{} // closed when Launch or Attach returned a kernel
	steadied atomic.Int32  // calls of deps.steady
}

func newFake(out io.Writer) *fake { return &fake{out: out, started: make(chan struct{})} }

func (f *fake) record(format string, a ...any) {
	s := fmt.Sprintf(format, a...)
	f.mu.Lock()
	f.calls = append(f.calls, s)
	f.mu.Unlock()
	if f.out != nil {
		fmt.Fprintf(f.out, "call: %s\n", s)
	}
}

func (f *fake) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fake) called(name string) bool {
	for _, c := range f.Calls() {
		if c == name || strings.HasPrefix(c, name+" ") {
			return true
		}
	}
	return false
}

func (f *fake) Launch(ctx context.Context, cfg provisioner.Config) (kernelHandle, error) {
	f.record("launch persistent=%v interactive=%v", cfg.Persistent, cfg.Interactive)
	f.mu.Lock()
	f.cfg = cfg
	f.mu.Unlock()
	if f.blockLaunch {
		<-ctx.Done()
		return nil, fmt.Errorf("launch on fakehost: %w", ctx.Err())
	}
	if f.launchErr != nil {
		return nil, f.launchErr
	}
	if f.out != nil {
		fmt.Fprintf(f.out, "local shell_port=%d\n", cfg.Local.ShellPort)
	}
	st := provisioner.State{
		SpecName: cfg.SpecName, Host: cfg.Gopyk.SSHHostAlias, RunDir: "/tmp/gopyk-run", Control: "/tmp/gopyk-run/control",
		Remote:    wire.ConnInfo{IP: "127.0.0.1", Transport: "tcp", Key: "remote-key", SignatureScheme: "hmac-sha256", ShellPort: 1, IOPubPort: 2, StdinPort: 3, ControlPort: 4, HBPort: 5},
		KernelPID: 100, SupervisorPID: 99, RemoteHost: "fakehost", Persistent: cfg.Persistent,
	}
	return f.newKernel(cfg.Local, st), nil
}

func (f *fake) Attach(ctx context.Context, cfg provisioner.Config, st provisioner.State) (kernelHandle, error) {
	f.record("attach host=%s pid=%d", st.Host, st.KernelPID)
	f.mu.Lock()
	f.cfg, f.attached = cfg, st
	f.mu.Unlock()
	if f.launchErr != nil {
		return nil, f.launchErr
	}
	local := cfg.Local
	local.Key = st.Remote.Key
	return f.newKernel(local, st), nil
}

func (f *fake) newKernel(local wire.ConnInfo, st provisioner.State) *fakeKernel {
	k := &fakeKernel{f: f, local: local, st: st, done: make(chan struct{})}
	f.mu.Lock()
	f.k = k
	f.mu.Unlock()
	close(f.started)
	return k
}

func (f *fake) kernel() *fakeKernel {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.k
}

type fakeKernel struct {
	f     *fake
	mu    sync.Mutex
	local wire.ConnInfo
	st    provisioner.State
	done  chan struct{}
	err   error
	once  sync.Once
}

func (k *fakeKernel) Interrupt(ctx context.Context) error { k.f.record("interrupt"); return nil }
func (k *fakeKernel) Restart(ctx context.Context) error {
	k.f.record("restart")
	k.mu.Lock()
	k.st.KernelPID++
	k.mu.Unlock()
	return nil
}
func (k *fakeKernel) Shutdown(ctx context.Context) error {
	k.f.record("shutdown")
	return k.f.shutdownErr
}
func (k *fakeKernel) Leave() error          { k.f.record("leave"); return nil }
func (k *fakeKernel) Done() <-chan struct{} { return k.done }

// Released: the fake holds nothing, it is let go once done.
func (k *fakeKernel) Released() <-chan struct{} { return k.done }
func (k *fakeKernel) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}
func (k *fakeKernel) State() provisioner.State {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.st
}
func (k *fakeKernel) Local() wire.ConnInfo { return k.local }

// die ends the kernel as the provisioner does when the remote kernel exits.
func (k *fakeKernel) die(err error) {
	k.once.Do(func() {
		k.mu.Lock()
		k.err = err
		k.mu.Unlock()
		close(k.done)
	})
}

// testFindSpec knows "remote" (a gopyk spec) and "plain" (a spec gopyk did not write).
func testFindSpec(name string) (*kernelspec.Spec, error) {
	switch strings.ToLower(name) {
	case "remote":
		return &kernelspec.Spec{Name: "remote", Dir: "/specs/remote", Gopyk: &kernelspec.Gopyk{SSHHostAlias: "fakealias", RemoteKernelName: "python3", LaunchTimeout: 5, ShutdownTimeout: 5}}, nil
	case "plain":
		return &kernelspec.Spec{Name: "plain", Dir: "/specs/plain"}, nil
	}
	return nil, fmt.Errorf("%w: no kernel spec %q", kernelspec.ErrNotFound, name)
}

// syncBuffer is a bytes.Buffer safe for a writer and a poller.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// run is one in-process gopyk-kernel with a fake provisioner and injected signals.
type inproc struct {
	t      *testing.T
	rt     string
	f      *fake
	sigs   chan os.Signal
	stdout syncBuffer
	stderr syncBuffer
	code   chan int
	cancel context.CancelFunc
}

func startRun(t *testing.T, rt string, f *fake, args ...string) *inproc {
	t.Helper()
	return startRunTTY(t, rt, f, nil, args...)
}

// startRunTTY runs with stdin taken for a terminal when it is not nil.
func startRunTTY(t *testing.T, rt string, f *fake, stdin *os.File, args ...string) *inproc {
	t.Helper()
	if f == nil {
		f = newFake(nil)
	}
	r := &inproc{t: t, rt: rt, f: f, sigs: make(chan os.Signal, 4), code: make(chan int, 1)}
	d := deps{
		start:      f,
		findSpec:   testFindSpec,
		runtimeDir: func() string { return rt },
		signals:    func() (<-chan os.Signal, func()) { return r.sigs, func() {} },
		isTTY:      func(*os.File) bool { return stdin != nil },
		steady:     func() { f.steadied.Add(1) },
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.code <- mainWith(ctx, args, stdin, &r.stdout, &r.stderr, d) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.code:
		case <-time.After(10 * time.Second):
			t.Error("gopyk-kernel did not end after its context was cancelled")
		}
	})
	return r
}

// wait returns the exit status.
func (r *inproc) wait() int {
	r.t.Helper()
	select {
	case c := <-r.code:
		r.code <- c // for Cleanup
		return c
	case <-time.After(10 * time.Second):
		r.t.Fatalf("gopyk-kernel did not exit; stderr:\n%s", r.stderr.String())
	}
	return -1
}

// ready waits until the kernel is up and signals act on it.
func (r *inproc) ready() {
	r.t.Helper()
	waitFor(r.t, "kernel ready", 10*time.Second, func() bool { return strings.Contains(r.stderr.String(), "kernel ready") })
}

// runToEnd runs gopyk-kernel expecting it to exit by itself.
func runToEnd(t *testing.T, rt string, f *fake, args ...string) (int, *inproc) {
	t.Helper()
	r := startRun(t, rt, f, args...)
	return r.wait(), r
}

var errFakeLaunch = errors.New("dial fakealias: connection refused; check that sshd runs on the host")
