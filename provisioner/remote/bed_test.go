//go:build linux

package remote

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopyk/gopyk/mux"
)

// A bed runs the launcher the way sshd does: /bin/sh -c <Command> with pipes,
// for a fake remote user whose HOME is a temp dir.
type bed struct {
	t    *testing.T
	home string
	env  []string
}

const testPython = "/usr/bin/python3"

func newBed(t *testing.T) *bed {
	t.Helper()
	return newBedAt(t, t.TempDir())
}

func newBedAt(t *testing.T, home string) *bed {
	t.Helper()
	td, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	env := []string{
		"HOME=" + home,
		"PATH=/usr/bin:/bin",
		"LANG=C.UTF-8",
		"PYDEVD_DISABLE_FILE_VALIDATION=1",
		"JUPYTER_PATH=" + td,
		"JUPYTER_RUNTIME_DIR=" + filepath.Join(home, "runtime"),
		"JUPYTER_CONFIG_DIR=" + filepath.Join(home, "config"),
		"GOPYK_TEST_BASE=base",
	}
	// Whatever a test leaves running with this HOME (a supervisor, a kernel
	// of a launch that never replied) is killed by PID at the end.
	t.Cleanup(func() {
		for _, pid := range pidsWithEnv("HOME=" + home) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return &bed{t: t, home: home, env: env}
}

// pidsWithEnv lists the live processes whose environment holds entry.
func pidsWithEnv(entry string) []int {
	var pids []int
	files, _ := filepath.Glob("/proc/[0-9]*/environ")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil || !bytes.Contains(append([]byte{0}, data...), []byte("\x00"+entry+"\x00")) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if err == nil && pid != os.Getpid() && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (b *bed) params(p Params) Params {
	if p.Python == "" {
		p.Python = testPython
	}
	if p.Action == "" {
		p.Action = ActionLaunch
	}
	if p.Action == ActionLaunch {
		if p.KernelName == "" {
			p.KernelName = "python3"
		}
		if p.Key == "" {
			p.Key = "k3y-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		}
		if p.LaunchTimeout == 0 {
			p.LaunchTimeout = 30 * time.Second
		}
	}
	return p
}

// exec runs one exec session and registers every process of its reply for cleanup.
func (b *bed) exec(p Params) (*Reply, error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	r, err := Exec(ctx, &LocalSession{Env: b.env}, b.params(p))
	if r != nil {
		b.own(r)
	}
	return r, err
}

func (b *bed) own(r *Reply) {
	sup, kern := r.SupervisorPID, r.KernelPID
	b.t.Cleanup(func() {
		for _, pid := range []int{sup, kern} {
			if alive(pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
}

func (b *bed) launch(p Params) *Reply {
	b.t.Helper()
	r, err := b.exec(p)
	if err != nil {
		b.t.Fatalf("launch: %v", err)
	}
	if !r.OK || r.SupervisorPID == 0 || r.KernelPID == 0 {
		b.t.Fatalf("launch reply: %+v", r)
	}
	return r
}

// client runs testdata/client.py against a connection file.
func (b *bed) client(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, testPython, append([]string{"testdata/client.py"}, args...)...)
	cmd.Env = b.env
	cmd.WaitDelay = time.Second
	return cmd
}

func (b *bed) run(args ...string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	out, err := b.client(ctx, args...).CombinedOutput()
	if err != nil {
		b.t.Fatalf("client %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// alive: the process exists and is not a zombie.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && len(stat) > i+2 && stat[i+2] != 'Z'
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitGone(t *testing.T, d time.Duration, pids ...int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("pids %v to exit", pids), d, func() bool {
		for _, p := range pids {
			if alive(p) {
				return false
			}
		}
		return true
	})
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func ctl(r *Reply) *Control { return NewControl(UnixDialer(r.Control)) }

func tctx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// procCmdlinesContaining lists the processes whose argv contains s.
func procCmdlinesContaining(s string) []string {
	var hits []string
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err == nil && strings.Contains(string(b), s) {
			hits = append(hits, f+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return hits
}

// muxControl reaches r's supervisor through one mux session (the launcher's
// mux action in a LocalSession), as the provisioner does on servers that
// refuse forwarding. The session ends with the test, or with close.
func (b *bed) muxControl(t *testing.T, r *Reply) (_ *Control, close func()) {
	t.Helper()
	car, err := OpenCarrier(tctx(t, 10*time.Second), &LocalSession{Env: b.env}, b.params(Params{}))
	if err != nil {
		t.Fatal(err)
	}
	s := mux.Client(car)
	t.Cleanup(func() { s.Close() })
	return NewControl(func(ctx context.Context) (net.Conn, error) { return s.Open(ctx, r.Control) }), func() { s.Close() }
}
