//go:build linux

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopyk/gopyk/testbed"
	"github.com/gopyk/gopyk/wire"
)

// A remote home on a full file system, with room in /tmp: the run dir and
// the launcher's cache go to /tmp/gopyk-<uid>, and the kernel runs.
func TestFullHomeLaunchesFromTmp(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("mounting a full tmpfs needs root; CI runs as root")
	}
	e := newEnvWith(t, testbed.SSHDForTest(t, testbed.Options{IsolateHome: true, FullHome: true}))
	cf := filepath.Join(e.home, "kernel-fullhome.json")
	k := e.start(filepath.Join(binDir, "gopyk-kernel"), "--kernel", e.spec, "--connection-file", cf)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("gopyk-kernel:\n%s", k.output())
		}
	})
	e.waitReady(k, cf)
	c := e.client(cf)
	if r := execute(t, c, "import os; print(os.getcwd())"); r.Status != "ok" {
		t.Fatalf("cell: %+v", r)
	}
	out := k.output()
	if !strings.Contains(out, "cannot cache the launcher in "+e.sshd.Home) || !strings.Contains(out, "instead") {
		t.Errorf("the remote's cache warning is not shown:\n%s", out)
	}
	k.signal(syscall.SIGTERM)
	if code := k.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("gopyk-kernel exit %d:\n%s", code, k.output())
	}
}

// Both full: the launch fails with one line that names each full file
// system and what to free, and leaves nothing running.
func TestFullHomeAndTmpSaysWhichIsFull(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("mounting a full tmpfs needs root; CI runs as root")
	}
	e := newEnvWith(t, testbed.SSHDForTest(t, testbed.Options{IsolateHome: true, FullHome: true, FullTmp: true}))
	cf := filepath.Join(e.home, "kernel-full.json")
	p := e.start(filepath.Join(binDir, "gopyk-kernel"), "--kernel", e.spec, "--connection-file", cf)
	if code := p.waitExit(t, 90*time.Second); code == 0 {
		t.Fatalf("gopyk-kernel exit 0 with no room anywhere:\n%s", p.output())
	}
	var last string
	for _, l := range strings.Split(strings.TrimSpace(p.output()), "\n") {
		if strings.Contains(l, "cannot create a run directory") {
			last = l
		}
	}
	uid := e.sshd.User
	if u, err := userID(uid); err == nil {
		uid = u
	}
	for _, want := range []string{e.sshd.Home + "/.gopyk/run: the file system mounted at " + e.sshd.Home + " is full",
		"/tmp/gopyk-" + uid + ": the file system mounted at /tmp is full", "free space there"} {
		if !strings.Contains(last, want) {
			t.Errorf("the error line lacks %q:\n%s\n(all output:\n%s)", want, last, p.output())
		}
	}
	if strings.Contains(p.output(), "crashed") || strings.Contains(p.output(), "Errno") {
		t.Errorf("the error reads as a bug:\n%s", p.output())
	}
	waitNoSessions(t, e)
}

func userID(name string) (string, error) {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Split(l, ":"); len(f) > 2 && f[0] == name {
			return f[2], nil
		}
	}
	return "", os.ErrNotExist
}

// A Jupyter connection file with "key": "" (Jupyter's unsigned mode):
// gopyk-kernel keeps it empty, the remote kernel gets it empty too, and
// jupyter_client talks to it unsigned.
func TestEmptyKeyUnsigned(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ports, err := wire.FreeTCPPorts(5)
	if err != nil {
		t.Fatal(err)
	}
	ci := wire.ConnInfo{IP: "127.0.0.1", Transport: "tcp", SignatureScheme: "hmac-sha256", Key: "", KernelName: e.spec}
	ci.SetPorts(ports)
	cf := filepath.Join(e.home, "kernel-unsigned.json")
	if err := wire.WriteConnInfo(cf, ci); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(cf); !strings.Contains(string(b), `"key": ""`) {
		t.Fatalf("the connection file does not hold an empty key:\n%s", b)
	}
	k := e.start(filepath.Join(binDir, "gopyk-kernel"), "--kernel", e.spec, "--connection-file", cf)
	e.waitReady(k, cf)
	py := startPyClient(t, e, cf)
	if r := py.exec(t, "x = 6 * 7", "x", 60*time.Second); r.Status != "ok" || r.Value != "42" {
		t.Fatalf("jupyter_client over an unsigned kernel: %+v", r)
	}
	// The remote kernel's own connection file is unsigned as well.
	files, _ := filepath.Glob(filepath.Join(e.sshd.Home, ".gopyk", "run", "*", "kernel.json"))
	if len(files) != 1 {
		t.Fatalf("remote connection files: %v", files)
	}
	var remote struct {
		Key *string `json:"key"`
	}
	b, _ := os.ReadFile(files[0])
	if json.Unmarshal(b, &remote) != nil || remote.Key == nil || *remote.Key != "" {
		t.Errorf("the remote kernel's connection file has key %v, want \"\"", remote.Key)
	}
	py.close()
	k.signal(syscall.SIGTERM)
	if code := k.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("gopyk-kernel exit %d:\n%s", code, k.output())
	}
}

// Three supervisors killed with -9 (a reboot, an OOM kill) leave their run
// dirs; the next launch on that host removes them.
func TestStaleRunDirsGoOnLaunch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	run := filepath.Join(e.sshd.Home, ".gopyk", "run")
	var ks []*proc
	for i := 0; i < 3; i++ {
		k, _ := e.launch()
		ks = append(ks, k)
	}
	dirs := runDirs(t, run)
	if len(dirs) != 3 {
		t.Fatalf("run dirs of 3 kernels: %v", dirs)
	}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "state.json"))
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			SupervisorPID int `json:"supervisor_pid"`
		}
		if err := json.Unmarshal(b, &st); err != nil || st.SupervisorPID <= 0 {
			t.Fatalf("state.json of %s: %s", d, b)
		}
		if err := syscall.Kill(st.SupervisorPID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range ks {
		k.waitExit(t, 60*time.Second) // its kernel is gone: gopyk-kernel exits
	}
	if n := len(runDirs(t, run)); n != 3 {
		t.Fatalf("%d run dirs after killing 3 supervisors, want their 3 left behind", n)
	}
	// The clean-up runs at most every 10 s per host (launcher CLEAN_EVERY);
	// the first launch ran one.
	time.Sleep(10 * time.Second)
	k, _ := e.launch()
	waitFor(t, 20*time.Second, "the stale run dirs to go", func() bool { return len(runDirs(t, run)) == 1 })
	k.signal(syscall.SIGTERM)
	k.waitExit(t, 30*time.Second)
	waitFor(t, 20*time.Second, "the last run dir to go", func() bool { return len(runDirs(t, run)) == 0 })
}

func runDirs(t *testing.T, run string) []string {
	t.Helper()
	ents, err := os.ReadDir(run)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		if _, err := strconv.ParseUint(e.Name(), 16, 32); err == nil && len(e.Name()) == 8 {
			out = append(out, filepath.Join(run, e.Name()))
		}
	}
	return out
}
