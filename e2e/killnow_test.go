//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// kmDriver is jupyter_client's KernelManager on a spec: it starts the kernel,
// then on each line of stdin runs that step ("restart-now", "shutdown-now",
// "pid") and prints "<step> <result>".
const kmDriver = `
import sys
from jupyter_client import KernelManager
km = KernelManager(kernel_name=sys.argv[1])
km.start_kernel()
kc = km.client(); kc.start_channels()
def pid():
    kc.wait_for_ready(timeout=60)
    r = kc.execute_interactive("import os", user_expressions={"p": "os.getpid()"}, timeout=60)
    return r["content"]["user_expressions"]["p"]["data"]["text/plain"]
print("started", pid(), flush=True)
for line in sys.stdin:
    step = line.strip()
    if step == "pid":
        print("pid", pid(), flush=True)
    elif step == "restart-now":
        km.restart_kernel(now=True)
        print("restart-now", pid(), flush=True)
    elif step == "shutdown-now":
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        print("shutdown-now done", flush=True)
`

type kmProc struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startKM(t *testing.T, e *env) *kmProc {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	c := e.cmd(ctx, python, "-c", kmDriver, e.spec)
	stdin, err := c.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	c.Stderr = &stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	p := &kmProc{t: t, cmd: c, stdin: stdin, lines: make(chan string, 16)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		stdin.Close()
		c.Wait()
		if t.Failed() {
			t.Logf("KernelManager driver stderr:\n%s", stderr.String())
		}
	})
	return p
}

// step sends a step and returns its result, polling poll meanwhile.
func (p *kmProc) step(step string, poll func()) string {
	p.t.Helper()
	if step != "" {
		if _, err := io.WriteString(p.stdin, step+"\n"); err != nil {
			p.t.Fatal(err)
		}
	}
	want := step
	if want == "" {
		want = "started"
	}
	deadline := time.After(120 * time.Second)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.t.Fatalf("KernelManager driver exited before %q", want)
			}
			if f := strings.Fields(l); len(f) == 2 && f[0] == want {
				return f[1]
			}
		case <-tick.C:
			if poll != nil {
				poll()
			}
		case <-deadline:
			p.t.Fatalf("KernelManager: no %q within 120s", want)
		}
	}
}

// remoteKernels lists this test's remote kernel processes (not supervisors).
func (e *env) remoteKernels() []string {
	var out []string
	for _, p := range e.remoteKernelProcs() {
		if strings.Contains(p, "ipykernel") {
			out = append(out, p)
		}
	}
	return out
}

// overlap watches for two remote kernels at once and remembers the longest stretch.
type overlap struct {
	e         *env
	since     time.Time
	longest   time.Duration
	seenPairs bool
}

func (o *overlap) poll() {
	n := len(o.e.remoteKernels())
	switch {
	case n >= 2 && o.since.IsZero():
		o.since, o.seenPairs = time.Now(), true
	case n >= 2:
	case !o.since.IsZero():
		if d := time.Since(o.since); d > o.longest {
			o.longest = d
		}
		o.since = time.Time{}
	}
	if !o.since.IsZero() {
		if d := time.Since(o.since); d > o.longest {
			o.longest = d
		}
	}
}

// jupyter_client's restart_kernel(now=True) and shutdown_kernel(now=True)
// SIGKILL gopyk-kernel; the supervisor sees its lease close while the pings
// were on time and stops the remote kernel within seconds, not after the
// grace period (600 s here, the default).
func TestKillNowStopsRemoteKernel(t *testing.T) {
	e := newEnv(t)
	km := startKM(t, e)
	pid1 := km.step("", nil)
	if n := len(e.remoteKernels()); n != 1 {
		t.Fatalf("%d remote kernels after start, want 1: %v", n, e.remoteKernels())
	}
	o := &overlap{e: e}
	pid2 := km.step("restart-now", o.poll)
	if pid2 == pid1 {
		t.Fatalf("restart(now=True) kept kernel pid %s", pid1)
	}
	waitFor(t, 30*time.Second, "one remote kernel after restart(now=True)", func() bool {
		o.poll()
		return len(e.remoteKernels()) == 1
	})
	o.poll()
	t.Logf("restart(now=True): two remote kernels for %v (seen: %v)", o.longest.Round(10*time.Millisecond), o.seenPairs)
	if o.longest > 10*time.Second {
		t.Fatalf("restart(now=True) left two remote kernels side by side for %v", o.longest)
	}
	if got := km.step("pid", nil); got != pid2 {
		t.Fatalf("after restart the kernel is %s, want %s", got, pid2)
	}
	km.step("shutdown-now", nil)
	e.waitNoRemote(10 * time.Second)
}

// A persistent kernel outlives a SIGKILLed gopyk-kernel, restart(now=True)
// included: only the launcher is gone.
func TestKillNowKeepsPersistentKernel(t *testing.T) {
	e := newEnv(t)
	setSpecArgv(t, e, "--persistent")
	km := startKM(t, e)
	km.step("", nil)
	km.step("restart-now", nil)
	km.step("shutdown-now", nil)
	// Both supervisors saw their lease close; then nothing may go away for
	// longer than an abandoned lease's window.
	logs := filepath.Join(e.sshd.Home, ".gopyk", "run", "*", "supervisor.log")
	waitFor(t, 30*time.Second, "two supervisors to log their lease closed", func() bool {
		ms, _ := filepath.Glob(logs)
		n := 0
		for _, m := range ms {
			if b, _ := os.ReadFile(m); strings.Contains(string(b), "lease closed") {
				n++
			}
		}
		return n == 2
	})
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		if ks := e.remoteKernels(); len(ks) != 2 {
			t.Fatalf("persistent kernels after kill -9 of their launchers: %v, want 2", ks)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// setSpecArgv appends args to the spec's argv (after --connection-file).
func setSpecArgv(t *testing.T, e *env, args ...string) {
	t.Helper()
	path := filepath.Join(e.home, "data", "kernels", e.spec, "kernel.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	for _, a := range args {
		spec["argv"] = append(spec["argv"].([]any), a)
	}
	b, _ = json.MarshalIndent(spec, "", "  ")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
