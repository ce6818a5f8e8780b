//go:build unix

package launcher

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopyk/gopyk/provisioner"
	"github.com/gopyk/gopyk/wire"
)

// The signal and Ctrl+D tests run gopyk-kernel as a real process (this test
// binary re-executed) so that real signals and a real terminal reach it. The
// fake provisioner prints each call on stdout as "call: X".
const (
	helperEnv = "GOPYK_LAUNCHER_HELPER"
	dieEnv    = "GOPYK_LAUNCHER_FAKE_DIE_MS" // the fake kernel dies this long after launch
	realEnv   = "GOPYK_LAUNCHER_REAL"        // the real provisioner instead of the fake
)

func helperMain() int {
	if os.Getenv(realEnv) != "" {
		return Main(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	}
	f := newFake(os.Stdout)
	if ms, err := strconv.Atoi(os.Getenv(dieEnv)); err == nil {
		go func() {
			<-f.started
			time.Sleep(time.Duration(ms) * time.Millisecond)
			f.kernel().die(provisioner.ErrKernelDied)
		}()
	}
	d := productionDeps()
	d.start = f
	d.findSpec = testFindSpec
	return mainWith(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr, d)
}

// child is a gopyk-kernel process with the fake provisioner.
type child struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout syncBuffer
	stderr syncBuffer
	exited chan struct{}
	code   int
	// patience bounds each wait: 10 s with the fake, more for a real
	// launch on a loaded machine.
	patience time.Duration
}

type childOpts struct {
	rt       string
	stdin    *os.File // nil: /dev/null
	stderr   *os.File // nil: captured in child.stderr
	env      []string
	ctty     bool // stdin becomes the controlling terminal of a new session
	patience time.Duration
}

func startChild(t *testing.T, o childOpts, args ...string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Generous: nine children of a race-built test binary start at once,
	// and a loaded machine (nice'd beside make test) took over 10 s.
	c := &child{t: t, exited: make(chan struct{}), patience: 30 * time.Second}
	if o.patience > 0 {
		c.patience = o.patience
	}
	c.cmd = exec.Command(exe, args...)
	// GORACE: a -race binary otherwise sleeps 1 s before it exits.
	c.cmd.Env = append(os.Environ(), helperEnv+"=1", "JUPYTER_RUNTIME_DIR="+o.rt, "GORACE=atexit_sleep_ms=0")
	c.cmd.Env = append(c.cmd.Env, o.env...)
	c.cmd.Stdout = &c.stdout
	c.cmd.Stderr = &c.stderr
	if o.stderr != nil {
		c.cmd.Stderr = o.stderr
	}
	if o.stdin != nil {
		c.cmd.Stdin = o.stdin
	}
	// Its own process group, like a kernel Jupyter starts: signals for the
	// group do not reach the test.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if o.ctty {
		// A session of its own with the terminal on stdin as its
		// controlling terminal, as in an interactive shell.
		c.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := c.cmd.Wait()
		c.code = c.cmd.ProcessState.ExitCode()
		if err != nil && c.code < 0 {
			c.code = -1
		}
		close(c.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-c.exited:
		default:
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	})
	return c
}

func (c *child) signal(sig syscall.Signal) {
	c.t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("send %v: %v", sig, err)
	}
}

func (c *child) wait() int {
	c.t.Helper()
	select {
	case <-c.exited:
		return c.code
	case <-time.After(c.patience):
		c.t.Fatalf("gopyk-kernel did not exit; stdout:\n%s\nstderr:\n%s", c.stdout.String(), c.stderr.String())
	}
	return -1
}

func (c *child) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

func (c *child) waitOut(what string) {
	c.t.Helper()
	waitFor(c.t, what+" on stdout", c.patience, func() bool { return strings.Contains(c.stdout.String(), what) })
}

func (c *child) waitErr(what string) {
	c.t.Helper()
	waitFor(c.t, what+" on stderr", c.patience, func() bool { return strings.Contains(c.stderr.String(), what) })
}

func (c *child) calls() []string {
	var out []string
	for _, l := range strings.Split(c.stdout.String(), "\n") {
		if s, ok := strings.CutPrefix(l, "call: "); ok {
			out = append(out, strings.Fields(s)[0])
		}
	}
	return out
}

// Every signal of the table, sent to a real gopyk-kernel process.
func TestSignals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		sig     syscall.Signal
		calls   string // after launch
		exits   bool
		persist bool // a persistence file remains
	}{
		{"SIGINT interrupts", nil, syscall.SIGINT, "interrupt", false, false},
		{"SIGUSR1 restarts", nil, syscall.SIGUSR1, "restart", false, false},
		{"SIGTERM shuts down", nil, syscall.SIGTERM, "shutdown", true, false},
		{"SIGHUP shuts down", nil, syscall.SIGHUP, "shutdown", true, false},
		{"SIGTERM leaves a persistent kernel", []string{"-p"}, syscall.SIGTERM, "leave", true, true},
		{"SIGHUP leaves a persistent kernel", []string{"--persistent"}, syscall.SIGHUP, "leave", true, true},
		{"SIGUSR2 shuts down a persistent kernel", []string{"-p"}, syscall.SIGUSR2, "shutdown", true, false},
		{"SIGUSR2 shuts down", nil, syscall.SIGUSR2, "shutdown", true, false},
		{"SIGQUIT leaves without interrupting", nil, syscall.SIGQUIT, "leave", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rt := t.TempDir()
			c := startChild(t, childOpts{rt: rt}, append([]string{"--kernel", "remote"}, tc.args...)...)
			c.waitErr("kernel ready")
			c.signal(tc.sig)
			if tc.exits {
				if code := c.wait(); code != 0 {
					t.Errorf("exit %d, want 0; stderr:\n%s", code, c.stderr.String())
				}
			} else {
				c.waitOut("call: " + tc.calls)
				// It keeps going: the same signal works again, then SIGTERM ends it.
				c.signal(tc.sig)
				waitFor(t, "second "+tc.calls, 30*time.Second, func() bool { return strings.Count(c.stdout.String(), "call: "+tc.calls) == 2 })
				if !c.running() {
					t.Fatalf("exited after %v", tc.sig)
				}
				c.signal(syscall.SIGTERM)
				if code := c.wait(); code != 0 {
					t.Errorf("exit %d after SIGTERM", code)
				}
				tc.calls += " " + tc.calls + " shutdown"
			}
			if got := strings.Join(c.calls(), " "); got != "launch "+tc.calls {
				t.Errorf("calls %q, want %q", got, "launch "+tc.calls)
			}
			pfs, _ := globAll(rt, "gopyk-kernel-*.json")
			if (len(pfs) == 1) != tc.persist {
				t.Errorf("persistence files %v, want one: %v", pfs, tc.persist)
			}
			if cfs, _ := globAll(rt, "kernel-*.json"); len(cfs) != 0 {
				t.Errorf("connection file left: %v", cfs)
			}
		})
	}
}

// Jupyter interrupts with SIGINT to the kernel's process group.
func TestSIGINTToProcessGroup(t *testing.T) {
	t.Parallel()
	c := startChild(t, childOpts{rt: t.TempDir()}, "-k", "remote")
	c.waitErr("kernel ready")
	if err := syscall.Kill(-c.cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	c.waitOut("call: interrupt")
	c.signal(syscall.SIGTERM)
	if code := c.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
}

// A kernel that dies on its own ends the launcher with status 1, promptly,
// so Jupyter's restarter starts a new one.
func TestKernelDeathExitStatus(t *testing.T) {
	t.Parallel()
	c := startChild(t, childOpts{rt: t.TempDir(), env: []string{dieEnv + "=100"}}, "-k", "remote")
	c.waitErr("kernel ready")
	t0 := time.Now()
	if code := c.wait(); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("exit took %v", d)
	}
	if !strings.Contains(c.stderr.String(), "gopyk-kernel: error: remote kernel died") {
		t.Errorf("stderr:\n%s", c.stderr.String())
	}
}

// Jupyter restarts a kernel by ending this process and starting a new one
// with the same connection file: the second launcher serves the same ports
// and key, and the file stays Jupyter's.
func TestRestartWithSameConnectionFile(t *testing.T) {
	t.Parallel()
	rt := t.TempDir()
	cf := filepath.Join(rt, "kernel-7a7a.json")
	ci, err := newConnInfo("remote")
	if err != nil {
		t.Fatal(err)
	}
	if err := wire.WriteConnInfo(cf, ci); err != nil { // as Jupyter does before it starts the kernel
		t.Fatal(err)
	}
	first := startChild(t, childOpts{rt: rt, env: []string{dieEnv + "=50"}}, "-k", "remote", "-c", cf)
	first.waitErr("kernel ready")
	if code := first.wait(); code != 1 {
		t.Fatalf("first launcher: exit %d", code)
	}
	port := portLine(first.stdout.String())
	if port != fmt.Sprintf("local shell_port=%d", ci.ShellPort) {
		t.Errorf("first launcher serves %q, the file says %d", port, ci.ShellPort)
	}
	second := startChild(t, childOpts{rt: rt}, "-k", "remote", "-c", cf)
	second.waitErr("kernel ready")
	if p := portLine(second.stdout.String()); p == "" || p != port {
		t.Errorf("second launcher serves %q, first %q", p, port)
	}
	second.signal(syscall.SIGTERM)
	if code := second.wait(); code != 0 {
		t.Errorf("second launcher: exit %d", code)
	}
	if _, err := os.Stat(cf); err != nil {
		t.Errorf("connection file: %v", err)
	}
}

func portLine(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "local shell_port=") {
			return l
		}
	}
	return ""
}

// When the Jupyter that started it (JPY_PARENT_PID) is gone, gopyk-kernel
// shuts the kernel down, as ipykernel exits, instead of holding it forever.
func TestParentGoneShutsDown(t *testing.T) {
	t.Parallel()
	parent := exec.Command("sleep", "60")
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { parent.Wait(); close(waited) }()
	t.Cleanup(func() { parent.Process.Kill(); <-waited })
	c := startChild(t, childOpts{rt: t.TempDir(), env: []string{parentEnv + "=" + strconv.Itoa(parent.Process.Pid)}}, "-k", "remote")
	c.waitErr("kernel ready")
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-waited
	if code := c.wait(); code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	if got := strings.Join(c.calls(), " "); got != "launch shutdown" {
		t.Errorf("calls %q", got)
	}
	if !strings.Contains(c.stderr.String(), parentEnv+") is gone") {
		t.Errorf("stderr:\n%s", c.stderr.String())
	}
}

// stdin that is not a terminal is never read: end of file there is not Ctrl+D.
func TestStdinNotATerminal(t *testing.T) {
	t.Parallel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := startChild(t, childOpts{rt: t.TempDir(), stdin: r}, "-k", "remote")
	c.waitErr("kernel ready")
	w.Write([]byte("y\n"))
	w.Close()
	c.signal(syscall.SIGINT)
	c.waitOut("call: interrupt")
	if got := strings.Join(c.calls(), " "); got != "launch interrupt" {
		t.Errorf("calls %q", got)
	}
	if strings.Contains(c.stderr.String(), "Action?") {
		t.Error("menu shown without a terminal")
	}
	c.signal(syscall.SIGTERM)
	c.wait()
}

func globAll(dir, pat string) ([]string, error) {
	return filepath.Glob(filepath.Join(dir, pat))
}
