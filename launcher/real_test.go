//go:build linux

package launcher

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/testbed"
	"github.com/gopyk/gopyk/wire"
)

// These tests run gopyk-kernel with the real provisioner against a real
// OpenSSH sshd and Debian's ipykernel: the paths a user takes by hand.

type realBed struct {
	sshd *testbed.SSHD
	data string // JUPYTER_DATA_DIR holding the spec
	rt   string // JUPYTER_RUNTIME_DIR
	env  []string
}

func newRealBed(t *testing.T) *realBed {
	t.Helper()
	sshd := testbed.SSHDForTest(t, testbed.Options{IsolateHome: true})
	b := &realBed{sshd: sshd, data: t.TempDir(), rt: t.TempDir()}
	spec := &kernelspec.Spec{
		Name: "gpk_real", Argv: []string{"gopyk-kernel", "--kernel", "gpk_real", "--connection-file", "{connection_file}"},
		DisplayName: "gopyk real", Language: "python", InterruptMode: "signal",
		Gopyk: &kernelspec.Gopyk{SSHHostAlias: sshd.Alias, SSHConfig: sshd.ConfigFile, RemotePython: "/usr/bin/python3", RemoteKernelName: "python3"},
	}
	if err := spec.Write(filepath.Join(b.data, "kernels", "gpk_real")); err != nil {
		t.Fatal(err)
	}
	b.env = []string{realEnv + "=1", "JUPYTER_DATA_DIR=" + b.data, "JUPYTER_PATH=", "PYDEVD_DISABLE_FILE_VALIDATION=1"}
	return b
}

func (b *realBed) opts() childOpts {
	return childOpts{rt: b.rt, env: b.env, patience: 90 * time.Second}
}

// remoteProcs lists the remote user's gopyk processes of this bed (its
// isolated home is in their command lines).
func (b *realBed) remoteProcs() []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		if stat, _ := os.ReadFile("/proc/" + e.Name() + "/stat"); strings.Contains(string(stat), ") Z ") {
			continue
		}
		s := strings.ReplaceAll(strings.TrimRight(string(cl), "\x00"), "\x00", " ")
		if strings.Contains(s, b.sshd.Home) && (strings.Contains(s, "ipykernel") || strings.Contains(s, ".gopyk")) {
			out = append(out, e.Name()+" "+s)
		}
	}
	return out
}

func (b *realBed) waitNoRemote(t *testing.T) {
	t.Helper()
	waitFor(t, "no remote kernel or supervisor", 30*time.Second, func() bool { return len(b.remoteProcs()) == 0 })
}

func dialKernel(t *testing.T, cf string) *wire.Client {
	t.Helper()
	ci, err := wire.ReadConnInfo(cf)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := wire.Dial(ctx, ci)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx); err != nil {
		c.Close()
		t.Fatal(err)
	}
	return c
}

func run1(t *testing.T, c *wire.Client, code string) *wire.ExecResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := c.Execute(ctx, code)
	if err != nil {
		t.Fatalf("execute %q: %v", code, err)
	}
	return r
}

// pressUntil interrupts until the cell ends, as a user presses again: a
// SIGINT that lands in ipykernel's output flush (between the cell's first
// print and its sleep) is swallowed there.
func pressUntil(t *testing.T, cell <-chan string, interrupt func()) string {
	t.Helper()
	for range 5 {
		interrupt()
		select {
		case s := <-cell:
			return s
		case <-time.After(3 * time.Second):
		}
	}
	return outcome(t, cell, 10*time.Second)
}

// runAfterInterrupt runs code as a user would after interrupting a cell:
// ipykernel aborts requests that reach it while it still winds the
// interrupted one down (stop_on_error), and the user runs the cell again.
func runAfterInterrupt(t *testing.T, c *wire.Client, code string) *wire.ExecResult {
	t.Helper()
	for range 20 {
		if r := run1(t, c, code); r.Status != "aborted" {
			return r
		}
	}
	t.Fatalf("%q was aborted 20 times after the interrupt", code)
	return nil
}

// runAsync starts a cell that prints "started" first; started is closed when
// that output arrives (the cell is then running user code), outcome gets its
// stdout and exception name at the end.
func runAsync(c *wire.Client, code string) (outcome <-chan string, started <-chan struct{}) {
	out := make(chan string, 1)
	st := make(chan struct{})
	var once sync.Once
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		r, err := c.Execute(ctx, "print('started', flush=True)\n"+code, wire.OnIOPub(func(m *wire.Message) {
			if m.Header.MsgType == "stream" && strings.Contains(m.Str("text"), "started") {
				once.Do(func() { close(st) })
			}
		}))
		if err != nil {
			out <- "error: " + err.Error()
			return
		}
		out <- r.Stdout + r.Ename
	}()
	return out, st
}

func waitStarted(t *testing.T, started <-chan struct{}) {
	t.Helper()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the cell never started")
	}
}

func outcome(t *testing.T, ch <-chan string, d time.Duration) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(d):
		t.Fatalf("cell did not finish within %v", d)
	}
	return ""
}

// Leaving (SIGQUIT) keeps the kernel and its running cell (sshpyk B5);
// --existing re-attaches with the state intact, can restart it (B7), SIGTERM
// leaves it again, and SIGUSR2 shuts it down for good.
func TestRealLeaveExistingRestart(t *testing.T) {
	b := newRealBed(t)
	k := startChild(t, b.opts(), "--kernel", "gpk_real", "--persistent")
	k.waitErr("To connect a client")
	cf := globOne(t, filepath.Join(b.rt, "kernel-*.json"))
	pf := globOne(t, filepath.Join(b.rt, "gopyk-kernel-*.json"))
	c := dialKernel(t, cf)
	run1(t, c, "x = 42")
	cell, started := runAsync(c, "import time\ntime.sleep(2)\ncell_done = True")
	waitStarted(t, started)
	k.signal(syscall.SIGQUIT)
	if code := k.wait(); code != 0 {
		t.Fatalf("SIGQUIT: exit %d\n%s", code, k.stderr.String())
	}
	c.Close()
	<-cell // the client went away with the forwards; the kernel keeps running the cell
	if len(b.remoteProcs()) == 0 {
		t.Fatal("leaving stopped the remote kernel")
	}

	k2 := startChild(t, b.opts(), "--existing", filepath.Base(pf))
	k2.waitErr("To connect a client")
	c2 := dialKernel(t, cf)
	if got := strings.TrimSpace(run1(t, c2, "print(x)").Stdout); got != "42" {
		t.Fatalf("x after re-attach = %q, want 42", got)
	}
	// The cell that was running when we left ran to its end (this request
	// queues behind it if it is still sleeping).
	if got := strings.TrimSpace(run1(t, c2, "print(globals().get('cell_done'))").Stdout); got != "True" {
		t.Errorf("the running cell did not complete after leaving (interrupted?): cell_done=%q", got)
	}
	k2.signal(syscall.SIGUSR1)
	k2.waitErr("kernel restarted")
	c2.Close()
	c3 := dialKernel(t, cf)
	if got := strings.TrimSpace(run1(t, c3, "print('x' in dir())").Stdout); got != "False" {
		t.Errorf("state survived a restart: %q", got)
	}
	c3.Close()
	k2.signal(syscall.SIGTERM)
	if code := k2.wait(); code != 0 {
		t.Fatalf("SIGTERM: exit %d\n%s", code, k2.stderr.String())
	}
	if len(b.remoteProcs()) == 0 {
		t.Fatal("SIGTERM shut a re-attached (persistent) kernel down")
	}

	k3 := startChild(t, b.opts(), "-e", pf)
	k3.waitErr("To connect a client")
	k3.signal(syscall.SIGUSR2)
	if code := k3.wait(); code != 0 {
		t.Fatalf("SIGUSR2: exit %d\n%s", code, k3.stderr.String())
	}
	b.waitNoRemote(t)
	if _, err := os.Stat(pf); !os.IsNotExist(err) {
		t.Errorf("persistence file kept after shutdown: %v", err)
	}
}

// SIGINT (to the process group, as Jupyter sends it) interrupts the running
// cell; a remote kernel killed with -9 makes gopyk-kernel exit 1 at once.
func TestRealInterruptAndKernelDeath(t *testing.T) {
	b := newRealBed(t)
	k := startChild(t, b.opts(), "-k", "gpk_real")
	k.waitErr("To connect a client")
	c := dialKernel(t, globOne(t, filepath.Join(b.rt, "kernel-*.json")))
	defer c.Close()
	cell, started := runAsync(c, "import time\ntime.sleep(100)")
	waitStarted(t, started)
	if got := pressUntil(t, cell, func() {
		if err := syscall.Kill(-k.cmd.Process.Pid, syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
	}); !strings.Contains(got, "KeyboardInterrupt") {
		t.Fatalf("after SIGINT the cell gave %q", got)
	}
	if r := runAfterInterrupt(t, c, "print(6*7)"); strings.TrimSpace(r.Stdout) != "42" {
		t.Fatalf("kernel unusable after the interrupt: %+v", r)
	}
	killed := 0
	for _, p := range b.remoteProcs() {
		if strings.Contains(p, "ipykernel") {
			pid, _ := strconv.Atoi(strings.Fields(p)[0])
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				killed++
			}
		}
	}
	if killed != 1 {
		t.Fatalf("killed %d remote kernels: %v", killed, b.remoteProcs())
	}
	t0 := time.Now()
	if code := k.wait(); code != 1 {
		t.Fatalf("exit %d after the remote kernel died, want 1\n%s", code, k.stderr.String())
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("exit took %v after the kernel died", d)
	}
	b.waitNoRemote(t)
}

// The Ctrl+D menu on a real terminal drives a real kernel: i interrupts the
// running cell, the default answer shuts the kernel down.
func TestRealCtrlDMenu(t *testing.T) {
	b := newRealBed(t)
	m, s := openPTY(t)
	o := b.opts()
	o.stdin, o.stderr, o.ctty = s, s, true
	tc := &ttyChild{master: m}
	tc.child = startChild(t, o, "-k", "gpk_real")
	s.Close()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 4096)
		for {
			n, err := m.Read(buf)
			tc.screen.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { m.Close(); <-readDone })
	tc.waitScreen("press Ctrl+D for a menu", 1)
	c := dialKernel(t, globOne(t, filepath.Join(b.rt, "kernel-*.json")))
	defer c.Close()
	cell, started := runAsync(c, "import time\ntime.sleep(100)")
	waitStarted(t, started)
	n := 0
	if got := pressUntil(t, cell, func() { n++; tc.menu(n, "i") }); !strings.Contains(got, "KeyboardInterrupt") {
		t.Fatalf("menu i: the cell gave %q", got)
	}
	tc.menu(n+1, "")
	if code := tc.wait(); code != 0 {
		t.Fatalf("menu default: exit %d\n%s", code, tc.screen.String())
	}
	b.waitNoRemote(t)
}
