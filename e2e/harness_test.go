//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopyk/gopyk/testbed"
	"github.com/gopyk/gopyk/wire"
)

const python = "/usr/bin/python3"

var binDir string

func TestMain(m *testing.M) {
	// A test re-executed inside a network namespace (netns_test.go) reuses
	// its parent's binaries.
	if d := os.Getenv("GOPYK_E2E_BINDIR"); d != "" {
		binDir = d
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "gopyk-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-o", dir+"/", "../cmd/gopyk", "../cmd/gopyk-kernel")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build binaries:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one test's world: an sshd, a Jupyter data dir holding a gopyk spec
// for it, and the environment local Jupyter tools run with.
type env struct {
	t       *testing.T
	sshd    *testbed.SSHD
	home    string
	spec    string
	vars    []string
	runtime string // XDG_RUNTIME_DIR: where the masters of its kernels listen
}

func newEnv(t *testing.T, addArgs ...string) *env {
	t.Helper()
	// Its own remote HOME: what a test finds under ~/.gopyk is its own.
	return newEnvWith(t, testbed.SSHDForTest(t, testbed.Options{IsolateHome: true}), addArgs...)
}

// newEnvWith is newEnv around an sshd the caller started.
func newEnvWith(t *testing.T, sshd *testbed.SSHD, addArgs ...string) *env {
	t.Helper()
	e := localEnv(t, sshd, "gpk_e2e")
	args := append([]string{"add", "--kernel-name", e.spec, "--display-name", "gopyk e2e",
		"--ssh-host-alias", sshd.Alias, "--ssh-config", sshd.ConfigFile,
		"--remote-kernel-name", "python3", "--remote-python", python}, addArgs...)
	e.gopyk(args...)
	return e
}

// localEnv is the local side of a test: its own HOME and Jupyter dirs, and
// the binaries first on PATH; the spec is left to the caller to add.
func localEnv(t *testing.T, sshd *testbed.SSHD, spec string) *env {
	home := t.TempDir()
	e := &env{t: t, sshd: sshd, home: home, spec: spec}
	// Its own runtime dir (short: unix socket paths), so the masters its
	// kernels start are its own, and stopped when it ends.
	rt, err := os.MkdirTemp("", "gpke")
	if err != nil {
		t.Fatal(err)
	}
	e.runtime = rt
	t.Cleanup(func() {
		testbed.StopMasters(rt)
		os.RemoveAll(rt)
	})
	e.vars = append(os.Environ(),
		"HOME="+home,
		"XDG_RUNTIME_DIR="+rt,
		"JUPYTER_DATA_DIR="+filepath.Join(home, "data"),
		"JUPYTER_RUNTIME_DIR="+filepath.Join(home, "runtime"),
		"JUPYTER_CONFIG_DIR="+filepath.Join(home, "config"),
		"IPYTHONDIR="+filepath.Join(home, "ipython"),
		"JUPYTER_PATH=",
		"PYDEVD_DISABLE_FILE_VALIDATION=1",
		"PATH="+binDir+":"+os.Getenv("PATH"),
	)
	return e
}

func (e *env) cmd(ctx context.Context, name string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, name, args...)
	c.Env = e.vars
	c.Dir = e.home
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
	c.WaitDelay = 5 * time.Second
	return c
}

func (e *env) gopyk(args ...string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := e.cmd(ctx, filepath.Join(binDir, "gopyk"), args...).CombinedOutput()
	if err != nil {
		e.t.Fatalf("gopyk %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// gopykCode runs gopyk and returns its combined output and exit status.
func (e *env) gopykCode(args ...string) (string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := e.cmd(ctx, filepath.Join(binDir, "gopyk"), args...)
	out, err := c.CombinedOutput()
	if err != nil && c.ProcessState == nil {
		e.t.Fatalf("gopyk %s: %v", strings.Join(args, " "), err)
	}
	return string(out), c.ProcessState.ExitCode()
}

// proc is a process the test owns; it is killed (whole group) at cleanup.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	lines  chan string
	done   chan struct{}
	err    error
}

func (e *env) start(name string, args ...string) *proc {
	e.t.Helper()
	c := e.cmd(context.Background(), name, args...)
	p := &proc{cmd: c, lines: make(chan string, 1000), done: make(chan struct{})}
	pr, pw := io.Pipe()
	c.Stderr = pw
	c.Stdout = pw
	if err := c.Start(); err != nil {
		e.t.Fatalf("start %s: %v", name, err)
	}
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
	}()
	go func() {
		p.err = c.Wait()
		pw.Close()
		<-scanned // the last lines are in output() once the process is done
		close(p.done)
	}()
	e.t.Cleanup(func() {
		syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		<-p.done
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// waitExit waits for the process to end and returns its exit code.
func (p *proc) waitExit(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("process %v did not exit within %v; output:\n%s", p.cmd.Args, d, p.output())
	}
	return p.cmd.ProcessState.ExitCode()
}

func (p *proc) signal(sig syscall.Signal) { p.cmd.Process.Signal(sig) }

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// launch runs gopyk-kernel standalone on a fresh connection file and waits
// until a Go client sees the kernel ready through it.
func (e *env) launch(args ...string) (*proc, string) {
	e.t.Helper()
	cf := filepath.Join(e.home, fmt.Sprintf("kernel-%d.json", time.Now().UnixNano()))
	p := e.start(filepath.Join(binDir, "gopyk-kernel"), append([]string{"--kernel", e.spec, "--connection-file", cf}, args...)...)
	e.waitReady(p, cf)
	return p, cf
}

func (e *env) waitReady(p *proc, cf string) {
	e.t.Helper()
	waitFor(e.t, 60*time.Second, "connection file "+cf, func() bool {
		select {
		case <-p.done:
			e.t.Fatalf("gopyk-kernel exited early: %v\n%s", p.err, p.output())
		default:
		}
		_, err := os.Stat(cf)
		return err == nil
	})
	c := e.client(cf)
	c.Close()
	// The kernel can answer before gopyk-kernel has logged its launch (the
	// streams open while the launch's last reply is on its way): tests read
	// that log next.
	waitFor(e.t, 30*time.Second, "gopyk-kernel's kernel ready line", func() bool {
		return strings.Contains(p.output(), "] kernel ready")
	})
}

// client connects a Go Jupyter client to a connection file and waits until
// the kernel answers and iopub delivers.
func (e *env) client(cf string) *wire.Client {
	e.t.Helper()
	ci, err := wire.ReadConnInfo(cf)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := wire.Dial(ctx, ci)
	if err != nil {
		e.t.Fatalf("dial kernel: %v", err)
	}
	if err := c.WaitReady(ctx); err != nil {
		c.Close()
		e.t.Fatalf("kernel not ready: %v", err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

func execute(t *testing.T, c *wire.Client, code string) *wire.ExecResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := c.Execute(ctx, code)
	if err != nil {
		t.Fatalf("execute %q: %v", code, err)
	}
	return r
}

// remoteKernelProcs lists the gopyk processes (supervisors and kernels) that
// this test's sshd started: its sessions carry its tag in their environment,
// so other tests' kernels of the same user do not count.
func (e *env) remoteKernelProcs() []string {
	var out []string
	for _, pid := range e.sshd.SessionPIDs() {
		d := strconv.Itoa(pid)
		cl, err := os.ReadFile("/proc/" + d + "/cmdline")
		if err != nil || len(cl) == 0 {
			continue
		}
		if stat, _ := os.ReadFile("/proc/" + d + "/stat"); bytes.Contains(stat, []byte(") Z ")) {
			continue
		}
		s := strings.ReplaceAll(string(bytes.TrimRight(cl, "\x00")), "\x00", " ")
		if strings.Contains(s, "ipykernel") || strings.Contains(s, ".gopyk") || strings.Contains(s, "launcher-") {
			out = append(out, fmt.Sprintf("%d %s", pid, s))
		}
	}
	return out
}

func (e *env) waitNoRemote(d time.Duration) {
	e.t.Helper()
	var last []string
	deadline := time.Now().Add(d)
	for {
		last = e.remoteKernelProcs()
		if len(last) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for i, p := range last {
				if len(p) > 200 {
					last[i] = p[:200] + "…"
				}
			}
			var logs strings.Builder
			ms, _ := filepath.Glob(filepath.Join(e.sshd.Home, ".gopyk", "run", "*", "supervisor.log"))
			for _, m := range ms {
				b, _ := os.ReadFile(m)
				fmt.Fprintf(&logs, "\n%s:\n%s", m, b)
			}
			e.t.Fatalf("remote processes still running after %v:\n%s%s", d, strings.Join(last, "\n"), logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
