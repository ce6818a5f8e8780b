//go:build unix

package launcher

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gopyk/gopyk/provisioner"
	"github.com/gopyk/gopyk/provisioner/remote"
	"github.com/gopyk/gopyk/wire"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(helperMain())
	}
	// Every goroutine the launcher starts (dispatcher, menu) has an owner
	// that ends it before Main returns.
	goleak.VerifyTestMain(m)
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func globOne(t *testing.T, pat string) string {
	t.Helper()
	ms, _ := filepath.Glob(pat)
	if len(ms) != 1 {
		t.Fatalf("want one file matching %s, got %v", pat, ms)
	}
	return ms[0]
}

func TestUsageErrors(t *testing.T) {
	rt := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no kernel", nil, "--kernel NAME is required"},
		{"missing value", []string{"-k"}, "flag needs an argument"},
		{"positional", []string{"-k", "remote", "extra"}, `unexpected argument "extra"`},
		{"existing and persistent-file", []string{"-e", "x", "--persistent-file", "y"}, "drop --persistent-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(nil)
			code, r := runToEnd(t, rt, f, tc.args...)
			if code != 2 {
				t.Errorf("exit %d, want 2", code)
			}
			if !strings.Contains(r.stderr.String(), tc.want) || strings.Count(r.stderr.String(), "\n") != 1 {
				t.Errorf("stderr %q: want one line containing %q", r.stderr.String(), tc.want)
			}
			if len(f.Calls()) != 0 {
				t.Errorf("provisioner called: %v", f.Calls())
			}
		})
	}
}

func TestVersionAndHelp(t *testing.T) {
	code, r := runToEnd(t, t.TempDir(), nil, "--version")
	if code != 0 || !strings.HasPrefix(r.stdout.String(), "gopyk-kernel ") {
		t.Errorf("--version: exit %d, stdout %q", code, r.stdout.String())
	}
	code, r = runToEnd(t, t.TempDir(), nil, "--help")
	out := r.stdout.String()
	if code != 0 {
		t.Errorf("--help: exit %d", code)
	}
	for _, flag := range []string{"--kernel", "-k", "--connection-file", "--persistent-file", "--persistent_file", "-f", "--existing", "-e", "--leave", "-l", "--persistent", "-p", "--verbose", "-v", "--version"} {
		if !strings.Contains(out, flag+" ") && !strings.Contains(out, flag+",") {
			t.Errorf("--help does not show %s:\n%s", flag, out)
		}
	}
}

func TestSpecErrors(t *testing.T) {
	rt := t.TempDir()
	code, r := runToEnd(t, rt, nil, "-k", "nosuch")
	if code != 1 || !strings.Contains(r.stderr.String(), `gopyk-kernel: error: kernel spec not found: no kernel spec "nosuch"`) || !strings.Contains(r.stderr.String(), "gopyk list") {
		t.Errorf("unknown spec: exit %d, stderr %q", code, r.stderr.String())
	}
	code, r = runToEnd(t, rt, nil, "--kernel", "plain")
	if code != 1 || !strings.Contains(r.stderr.String(), "no metadata.gopyk") || !strings.Contains(r.stderr.String(), "gopyk add") {
		t.Errorf("non-gopyk spec: exit %d, stderr %q", code, r.stderr.String())
	}
	if ms, _ := filepath.Glob(filepath.Join(rt, "*")); len(ms) != 0 {
		t.Errorf("files left behind: %v", ms)
	}
}

func TestLaunchFailure(t *testing.T) {
	rt := t.TempDir()
	f := newFake(nil)
	f.launchErr = errFakeLaunch
	code, r := runToEnd(t, rt, f, "-k", "remote", "-p")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	last := strings.TrimSpace(r.stderr.String())
	if i := strings.LastIndexByte(last, '\n'); i >= 0 {
		last = last[i+1:]
	}
	if last != "gopyk-kernel: error: "+errFakeLaunch.Error() {
		t.Errorf("last stderr line %q", last)
	}
	if ms, _ := filepath.Glob(filepath.Join(rt, "*")); len(ms) != 0 {
		t.Errorf("files left behind after a failed launch: %v", ms)
	}
}

// Without --connection-file gopyk-kernel writes kernel-<id>.json in the
// runtime dir, prints the --existing hint, and removes the file on shutdown.
func TestNewConnectionFile(t *testing.T) {
	rt := t.TempDir()
	f := newFake(nil)
	r := startRun(t, rt, f, "--kernel", "remote")
	r.ready()
	cf := globOne(t, filepath.Join(rt, "kernel-*.json"))
	if m := mode(t, cf); m != 0o600 {
		t.Errorf("connection file mode %o", m)
	}
	ci, err := wire.ReadConnInfo(cf)
	if err != nil {
		t.Fatal(err)
	}
	if ci != f.cfg.Local || ci.Key == "" || ci.Transport != "tcp" || ci.KernelName != "remote" {
		t.Errorf("file %+v, provisioner got %+v", ci, f.cfg.Local)
	}
	if want := "To connect a client: jupyter console --existing " + filepath.Base(cf); !strings.Contains(r.stderr.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, r.stderr.String())
	}
	if strings.Contains(r.stderr.String(), ci.Key) {
		t.Error("the key appears in the log")
	}
	if f.cfg.Persistent || f.cfg.SpecName != "remote" || f.cfg.Gopyk.SSHHostAlias != "fakealias" {
		t.Errorf("config %+v", f.cfg)
	}
	r.sigs <- syscall.SIGTERM
	if code := r.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
	if _, err := os.Stat(cf); !os.IsNotExist(err) {
		t.Errorf("connection file not removed: %v", err)
	}
}

// A connection file Jupyter wrote gives the ports and key, and stays.
func TestJupyterConnectionFile(t *testing.T) {
	rt := t.TempDir()
	cf := filepath.Join(t.TempDir(), "kernel-0f1e2d3c.json")
	want := wire.ConnInfo{ShellPort: 50001, IOPubPort: 50002, StdinPort: 50003, ControlPort: 50004, HBPort: 50005, IP: "127.0.0.1", Key: "jupyter-key", Transport: "tcp", SignatureScheme: "hmac-sha256", KernelName: "remote"}
	if err := wire.WriteConnInfo(cf, want); err != nil {
		t.Fatal(err)
	}
	f := newFake(nil)
	r := startRun(t, rt, f, "--kernel", "remote", "--connection-file", cf, "--persistent")
	r.ready()
	if f.cfg.Local != want {
		t.Errorf("provisioner got %+v, want %+v", f.cfg.Local, want)
	}
	if strings.Contains(r.stderr.String(), "To connect a client") {
		t.Error("hint printed for Jupyter's own connection file")
	}
	// The persistence file takes Jupyter's kernel id, so a restarted
	// launcher with the same connection file reuses the name.
	pf := filepath.Join(rt, "gopyk-kernel-0f1e2d3c.json")
	if m := mode(t, pf); m != 0o600 {
		t.Errorf("persistence file mode %o", m)
	}
	r.sigs <- syscall.SIGUSR2
	if code := r.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
	if _, err := os.Stat(cf); err != nil {
		t.Errorf("Jupyter's connection file was removed: %v", err)
	}
	if _, err := os.Stat(pf); !os.IsNotExist(err) {
		t.Errorf("persistence file kept after shutdown: %v", err)
	}
}

// A named connection file that does not exist yet is created (0600).
func TestMissingConnectionFileIsCreated(t *testing.T) {
	rt := t.TempDir()
	cf := filepath.Join(t.TempDir(), "sub", "mine.json")
	f := newFake(nil)
	r := startRun(t, rt, f, "-k", "remote", "-c", cf)
	r.ready()
	ci, err := wire.ReadConnInfo(cf)
	if err != nil {
		t.Fatal(err)
	}
	if ci != f.cfg.Local || mode(t, cf) != 0o600 {
		t.Errorf("file %+v (mode %o), provisioner got %+v", ci, mode(t, cf), f.cfg.Local)
	}
	if !strings.Contains(r.stderr.String(), "jupyter console --existing "+cf) {
		t.Errorf("hint should name the full path:\n%s", r.stderr.String())
	}
	r.sigs <- syscall.SIGHUP
	if code := r.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
}

func TestBadConnectionFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, content, want string }{
		{"corrupt", `{"shell_port": 1, `, "not valid JSON"},
		{"wrong type", `{"shell_port": "one"}`, "field shell_port"},
		{"missing ports", `{"ip": "127.0.0.1", "key": "k"}`, "shell_port is missing"},
		{"ipc", `{"ip": "/tmp/k", "transport": "ipc", "key": "k", "shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5}`, `transport "ipc"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cf := filepath.Join(dir, tc.name+".json")
			if err := os.WriteFile(cf, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			f := newFake(nil)
			code, r := runToEnd(t, t.TempDir(), f, "-k", "remote", "-c", cf)
			msg := r.stderr.String()
			if code != 1 || !strings.Contains(msg, cf) || !strings.Contains(msg, tc.want) || strings.Count(msg, "\n") != 1 {
				t.Errorf("exit %d, stderr %q: want one line naming %s and %q", code, msg, cf, tc.want)
			}
			if f.called("launch") {
				t.Error("launched despite a bad connection file")
			}
			if b, _ := os.ReadFile(cf); string(b) != tc.content {
				t.Error("the bad file was changed")
			}
		})
	}
}

// Both spellings of --persistent-file (sshpyk accepted only one: B6) and -f.
func TestPersistentFileSpellings(t *testing.T) {
	for _, flag := range []string{"--persistent-file", "--persistent_file", "-f", "--persistent-file="} {
		t.Run(flag, func(t *testing.T) {
			rt := t.TempDir()
			pf := filepath.Join(t.TempDir(), "state.json")
			args := []string{"-k", "remote", flag, pf}
			if strings.HasSuffix(flag, "=") {
				args = []string{"-k", "remote", flag + pf}
			}
			f := newFake(nil)
			r := startRun(t, rt, f, args...)
			r.ready()
			if !f.cfg.Persistent {
				t.Error("--persistent-file did not make the kernel persistent")
			}
			p, err := loadPersisted(pf)
			if err != nil {
				t.Fatal(err)
			}
			if mode(t, pf) != 0o600 || p.SpecName != "remote" || p.Host != "fakealias" || !p.Persistent || p.KernelPID != 100 || p.ConnectionFile == "" || p.Local != f.cfg.Local {
				t.Errorf("persistence file %+v", p)
			}
			if want := "To re-attach: gopyk-kernel --kernel remote --existing " + pf; !strings.Contains(r.stderr.String(), want) {
				t.Errorf("stderr lacks %q:\n%s", want, r.stderr.String())
			}
			// SIGTERM leaves a persistent kernel running.
			r.sigs <- syscall.SIGTERM
			if code := r.wait(); code != 0 {
				t.Errorf("exit %d", code)
			}
			if !f.called("leave") || f.called("shutdown") {
				t.Errorf("calls %v, want leave and no shutdown", f.Calls())
			}
			if _, err := os.Stat(pf); err != nil {
				t.Errorf("persistence file gone after leave: %v", err)
			}
		})
	}
}

// --persistent writes <runtime>/gopyk-kernel-<id>.json after launch and
// again after every restart.
func TestPersistentRestartRewrites(t *testing.T) {
	rt := t.TempDir()
	f := newFake(nil)
	r := startRun(t, rt, f, "-p", "-k", "remote")
	r.ready()
	pf := globOne(t, filepath.Join(rt, "gopyk-kernel-*.json"))
	r.sigs <- syscall.SIGUSR1
	waitFor(t, "restart logged", 5*time.Second, func() bool { return strings.Contains(r.stderr.String(), "kernel restarted") })
	p, err := loadPersisted(pf)
	if err != nil {
		t.Fatal(err)
	}
	if p.KernelPID != 101 {
		t.Errorf("persistence file not rewritten after restart: kernel_pid %d", p.KernelPID)
	}
	r.sigs <- syscall.SIGUSR2
	if code := r.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
	if _, err := os.Stat(pf); !os.IsNotExist(err) {
		t.Error("persistence file kept after a shutdown")
	}
}

// A persistence file left by an earlier kernel of the same Jupyter id is
// not overwritten: that kernel may still run.
func TestPersistenceFileNotClobbered(t *testing.T) {
	rt := t.TempDir()
	cf := filepath.Join(rt, "kernel-5e5e.json")
	ci, err := newConnInfo("remote")
	if err != nil {
		t.Fatal(err)
	}
	if err := wire.WriteConnInfo(cf, ci); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(rt, "gopyk-kernel-5e5e.json")
	writePersisted(t, old, nil)
	before, _ := os.ReadFile(old)
	f := newFake(nil)
	r := startRun(t, rt, f, "-k", "remote", "-c", cf, "-p")
	r.ready()
	if after, _ := os.ReadFile(old); string(after) != string(before) {
		t.Error("the earlier kernel's persistence file was overwritten")
	}
	if ms, _ := filepath.Glob(filepath.Join(rt, "gopyk-kernel-*.json")); len(ms) != 2 {
		t.Errorf("persistence files %v, want the old one and a new one", ms)
	}
	r.sigs <- syscall.SIGUSR2
	r.wait()
}

// --leave launches persistent, records how to re-attach and exits 0.
func TestLeaveFlag(t *testing.T) {
	for _, flag := range []string{"--leave", "-l"} {
		rt := t.TempDir()
		f := newFake(nil)
		code, r := runToEnd(t, rt, f, "-k", "remote", flag)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", flag, code, r.stderr.String())
		}
		// interactive: ssh may ask on a terminal whenever it finds one.
		if got := strings.Join(f.Calls(), ","); got != "launch persistent=true interactive=true,leave" {
			t.Errorf("%s: calls %s", flag, got)
		}
		pf := globOne(t, filepath.Join(rt, "gopyk-kernel-*.json"))
		if !strings.Contains(r.stderr.String(), "--existing "+filepath.Base(pf)) {
			t.Errorf("%s: no re-attach hint:\n%s", flag, r.stderr.String())
		}
		if ms, _ := filepath.Glob(filepath.Join(rt, "kernel-*.json")); len(ms) != 0 {
			t.Errorf("%s: connection file kept after leaving: %v", flag, ms)
		}
	}
}

func TestKernelDiesExitsNonZero(t *testing.T) {
	rt := t.TempDir()
	f := newFake(nil)
	r := startRun(t, rt, f, "-k", "remote", "--persistent")
	r.ready()
	pf := globOne(t, filepath.Join(rt, "gopyk-kernel-*.json"))
	t0 := time.Now()
	f.kernel().die(provisioner.ErrKernelDied)
	if code := r.wait(); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("took %v to exit after the kernel died", d)
	}
	if !strings.Contains(r.stderr.String(), "gopyk-kernel: error: remote kernel died") {
		t.Errorf("stderr:\n%s", r.stderr.String())
	}
	if _, err := os.Stat(pf); !os.IsNotExist(err) {
		t.Error("persistence file of a dead kernel kept")
	}
	if f.called("shutdown") {
		t.Error("shut down a dead kernel")
	}
}

// A kernel that exits with code 0 was asked to (shutdown_request from a
// client): the launcher ends with status 0 and no error line.
func TestKernelCleanExit(t *testing.T) {
	rt := t.TempDir()
	f := newFake(nil)
	r := startRun(t, rt, f, "-k", "remote", "-p")
	r.ready()
	zero := 0
	f.kernel().die(&provisioner.ExitError{Exit: remote.Exit{ExitCode: &zero}})
	if code := r.wait(); code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	if strings.Contains(r.stderr.String(), "error:") {
		t.Errorf("stderr:\n%s", r.stderr.String())
	}
	if ms, _ := filepath.Glob(filepath.Join(rt, "*.json")); len(ms) != 0 {
		t.Errorf("files left: %v", ms)
	}
	// A non-zero code or a signal is a death.
	one := 1
	for _, e := range []remote.Exit{{ExitCode: &one}, {Signal: 9}} {
		f := newFake(nil)
		r := startRun(t, rt, f, "-k", "remote")
		r.ready()
		f.kernel().die(&provisioner.ExitError{Exit: e})
		if code := r.wait(); code != 1 {
			t.Errorf("%v: exit %d, want 1", e, code)
		}
	}
}

// A lost connection (not a dead kernel) keeps the persistence file of a
// persistent kernel: it may still run and be re-attached.
func TestConnectionLostKeepsPersistenceFile(t *testing.T) {
	rt := t.TempDir()
	f := newFake(nil)
	r := startRun(t, rt, f, "-k", "remote", "-p")
	r.ready()
	pf := globOne(t, filepath.Join(rt, "gopyk-kernel-*.json"))
	f.kernel().die(os.ErrDeadlineExceeded)
	if code := r.wait(); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if _, err := os.Stat(pf); err != nil {
		t.Errorf("persistence file removed: %v", err)
	}
}

func TestShutdownFailure(t *testing.T) {
	f := newFake(nil)
	f.shutdownErr = os.ErrDeadlineExceeded
	r := startRun(t, t.TempDir(), f, "-k", "remote")
	r.ready()
	r.sigs <- syscall.SIGTERM
	if code := r.wait(); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(r.stderr.String(), "gopyk-kernel: error: shut down the remote kernel:") {
		t.Errorf("stderr:\n%s", r.stderr.String())
	}
}

// A shutdown signal during a slow launch cancels it; SIGINT there is ignored.
func TestSignalDuringLaunch(t *testing.T) {
	f := newFake(nil)
	f.blockLaunch = true
	r := startRun(t, t.TempDir(), f, "-k", "remote")
	waitFor(t, "launch started", 5*time.Second, func() bool { return f.called("launch") })
	r.sigs <- syscall.SIGINT
	waitFor(t, "SIGINT ignored", 5*time.Second, func() bool { return strings.Contains(r.stderr.String(), "not ready yet") })
	r.sigs <- syscall.SIGTERM
	if code := r.wait(); code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	if !strings.Contains(r.stderr.String(), "launch aborted by=SIGTERM") || f.called("interrupt") {
		t.Errorf("calls %v, stderr:\n%s", f.Calls(), r.stderr.String())
	}
}

// On a terminal, Ctrl+C during the launch aborts it.
func TestCtrlCDuringLaunchOnTTY(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	f := newFake(nil)
	f.blockLaunch = true
	r := startRunTTY(t, t.TempDir(), f, pr, "-k", "remote")
	waitFor(t, "launch started", 5*time.Second, func() bool { return f.called("launch") })
	r.sigs <- syscall.SIGINT
	if code := r.wait(); code != 0 {
		t.Errorf("exit %d, want 0", code)
	}
	if !strings.Contains(r.stderr.String(), "launch aborted by=SIGINT") {
		t.Errorf("stderr:\n%s", r.stderr.String())
	}
}

func TestContextCancelShutsDown(t *testing.T) {
	f := newFake(nil)
	r := startRun(t, t.TempDir(), f, "-k", "remote")
	r.ready()
	r.cancel()
	if code := r.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
	if !f.called("shutdown") {
		t.Errorf("calls %v", f.Calls())
	}
}

func TestVerbosity(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		debug bool
	}{
		{nil, false},
		{[]string{"-v"}, true},
		{[]string{"-vv"}, true},
		{[]string{"-vvv"}, true},
		{[]string{"--verbose"}, true},
	} {
		f := newFake(nil)
		r := startRun(t, t.TempDir(), f, append([]string{"-k", "remote", "-p"}, tc.args...)...)
		r.ready()
		r.sigs <- syscall.SIGUSR2
		r.wait()
		out := r.stderr.String()
		// Not on a TTY, the signal table is a debug line.
		if got := strings.Contains(out, "DEBUG] send SIGINT to interrupt"); got != tc.debug {
			t.Errorf("%v: debug lines shown=%v, want %v:\n%s", tc.args, got, tc.debug, out)
		}
		if !strings.Contains(out, "INFO] kernel ready") {
			t.Errorf("%v: no lifecycle line:\n%s", tc.args, out)
		}
	}
	if verbosityLevel(3) != LevelTrace || verbosityLevel(2) >= verbosityLevel(1) {
		t.Error("-vv/-vvv do not log more than -v")
	}
}

func writePersisted(t *testing.T, path string, mutate func(*persisted)) {
	t.Helper()
	p := persisted{
		State: provisioner.State{
			SpecName: "remote", Host: "fakealias", RunDir: "/r", Control: "/r/ctl", KernelPID: 42, SupervisorPID: 41, Persistent: true,
			Remote: wire.ConnInfo{Key: "remote-key", IP: "127.0.0.1", Transport: "tcp", ShellPort: 1, IOPubPort: 2, StdinPort: 3, ControlPort: 4, HBPort: 5},
		},
		ConnectionFile: filepath.Join(filepath.Dir(path), "kernel-old.json"),
	}
	if mutate != nil {
		mutate(&p)
	}
	if err := savePersisted(path, p); err != nil {
		t.Fatal(err)
	}
}

// --existing attaches, keeps the kernel persistent (sshpyk shut it down:
// §6), and serves on the remote kernel's key.
func TestExistingAttach(t *testing.T) {
	rt := t.TempDir()
	pf := filepath.Join(rt, "gopyk-kernel-abc.json")
	writePersisted(t, pf, nil)
	f := newFake(nil)
	r := startRun(t, rt, f, "--existing", "abc")
	r.ready()
	if got := f.Calls(); len(got) != 1 || got[0] != "attach host=fakealias pid=42" {
		t.Fatalf("calls %v", got)
	}
	if !f.cfg.Persistent || f.cfg.SpecName != "remote" {
		t.Errorf("config %+v", f.cfg)
	}
	cf := filepath.Join(rt, "kernel-old.json")
	ci, err := wire.ReadConnInfo(cf)
	if err != nil {
		t.Fatalf("connection file not rewritten at its old path: %v", err)
	}
	if ci.Key != "remote-key" {
		t.Errorf("connection file key is not the remote kernel's")
	}
	p, err := loadPersisted(pf)
	if err != nil || p.Local != ci {
		t.Errorf("persistence file not updated: %+v %v", p, err)
	}
	r.sigs <- syscall.SIGTERM
	if code := r.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
	if !f.called("leave") || f.called("shutdown") {
		t.Errorf("SIGTERM after --existing: calls %v, want leave", f.Calls())
	}
	if _, err := os.Stat(pf); err != nil {
		t.Error("persistence file removed after leaving")
	}
}

// A re-attached kernel can be restarted (sshpyk's B7) and shut down.
func TestExistingRestartShutdown(t *testing.T) {
	rt := t.TempDir()
	pf := filepath.Join(rt, "gopyk-kernel-abc.json")
	writePersisted(t, pf, nil)
	f := newFake(nil)
	r := startRun(t, rt, f, "-k", "REMOTE", "-e", pf)
	r.ready()
	r.sigs <- syscall.SIGUSR1
	waitFor(t, "restart", 5*time.Second, func() bool { return strings.Contains(r.stderr.String(), "kernel restarted") })
	if p, _ := loadPersisted(pf); p.KernelPID != 43 {
		t.Errorf("kernel_pid %d after restart", p.KernelPID)
	}
	r.sigs <- syscall.SIGUSR2
	if code := r.wait(); code != 0 {
		t.Errorf("exit %d", code)
	}
	if _, err := os.Stat(pf); !os.IsNotExist(err) {
		t.Error("persistence file kept after shutdown")
	}
}

func TestExistingErrors(t *testing.T) {
	rt := t.TempDir()
	files := map[string]string{
		"corrupt.json":  `{"format": "gopyk-kernel/1", "spec_na`,
		"conn.json":     `{"shell_port": 1, "key": "k"}`,
		"sshpyk.json":   `{"kernel_id": "x", "rem_conn_info": {}}`,
		"other.json":    `{"hello": 1}`,
		"array.json":    `[1, 2]`,
		"badtype.json":  `{"format": "gopyk-kernel/1", "spec_name": "remote", "kernel_pid": "many"}`,
		"future.json":   `{"format": "gopyk-kernel/9"}`,
		"partial.json":  `{"format": "gopyk-kernel/1", "spec_name": "remote"}`,
		"mismatch.json": "",
	}
	for name, content := range files {
		p := filepath.Join(rt, name)
		if content == "" {
			writePersisted(t, p, func(p *persisted) { p.SpecName = "other" })
			continue
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ arg, want string }{
		{"corrupt.json", "is corrupt"},
		{"conn.json", "is a Jupyter connection file"},
		{"sshpyk.json", "is an sshpyk persistence file"},
		{"other.json", "not a gopyk persistence file"},
		{"array.json", "is corrupt"},
		{"badtype.json", "field kernel_pid should be a JSON int"},
		{"future.json", `has format "gopyk-kernel/9"`},
		{"partial.json", "is incomplete (no ssh_host_alias, control_socket)"},
		{"mismatch.json", `belongs to kernel spec "other", not "remote"`},
		{"nomatch", `--existing "nomatch": no persistence file matches`},
		{filepath.Join(rt, "gone.json"), "no persistence file matches"},
	} {
		t.Run(tc.arg, func(t *testing.T) {
			f := newFake(nil)
			code, r := runToEnd(t, rt, f, "-k", "remote", "--existing", tc.arg)
			msg := r.stderr.String()
			if code != 1 || !strings.Contains(msg, tc.want) || strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "gopyk-kernel: error: ") {
				t.Errorf("exit %d, stderr %q: want one error line with %q", code, msg, tc.want)
			}
			if len(f.Calls()) != 0 {
				t.Errorf("provisioner called: %v", f.Calls())
			}
		})
	}
	if err := loadPersistedMissing(rt); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing file: %v", err)
	}
}

func loadPersistedMissing(dir string) error {
	_, err := loadPersisted(filepath.Join(dir, "missing.json"))
	return err
}

func TestResolveExisting(t *testing.T) {
	rt := t.TempDir()
	cwd := t.TempDir()
	t.Chdir(cwd)
	touch := func(path string, age time.Duration) string {
		if err := os.WriteFile(path, []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
		mt := time.Now().Add(-age)
		if err := os.Chtimes(path, mt, mt); err != nil {
			t.Fatal(err)
		}
		return path
	}
	old := touch(filepath.Join(rt, "gopyk-kernel-aaa-111.json"), time.Hour)
	newer := touch(filepath.Join(rt, "gopyk-kernel-aaa-222.json"), time.Minute)
	conn := touch(filepath.Join(rt, "kernel-aaa-333.json"), 0) // newest, but a connection file
	local := touch(filepath.Join(cwd, "gopyk-kernel-bbb.json"), 2*time.Hour)
	odd := touch(filepath.Join(rt, "state-ccc.json"), 0)
	for _, tc := range []struct{ arg, want string }{
		{old, old},                                       // a path
		{"gopyk-kernel-aaa-111.json", old},               // a name in the runtime dir
		{"aaa", newer},                                   // substring: newest gopyk-kernel-* wins, not kernel-aaa-333.json
		{"gopyk-kernel-aaa-*.json", newer},               // glob
		{"*aaa*", conn},                                  // an explicit glob is taken as is
		{"bbb", "gopyk-kernel-bbb.json"},                 // found in .
		{"gopyk-kernel-*", newer},                        // newest across . and the runtime dir
		{"state-ccc.json", odd},                          // any exact name
		{filepath.Join(rt, "gopyk-kernel-aaa-2"), newer}, // a path prefix
	} {
		got, err := resolveExisting(tc.arg, rt)
		if err != nil || got != tc.want {
			t.Errorf("resolveExisting(%q) = %q, %v; want %q", tc.arg, got, err, tc.want)
		}
	}
	_ = local
	for _, arg := range []string{"ccc", "zzz", "[", ""} {
		if got, err := resolveExisting(arg, rt); err == nil {
			t.Errorf("resolveExisting(%q) = %q, want an error", arg, got)
		}
	}
}

func TestPersistedRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.json")
	writePersisted(t, path, nil)
	b, _ := os.ReadFile(path)
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"format", "spec_name", "ssh_host_alias", "control_socket", "remote_connection", "connection_file", "local_connection"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("persistence file lacks %q", k)
		}
	}
	if mode(t, path) != 0o600 {
		t.Errorf("mode %o", mode(t, path))
	}
	if ms, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*")); len(ms) != 0 {
		t.Errorf("temp files left: %v", ms)
	}
}

func FuzzParsePersisted(f *testing.F) {
	for _, s := range []string{
		`{"format":"gopyk-kernel/1","spec_name":"a","ssh_host_alias":"h","control_socket":"/c","kernel_pid":1}`,
		`{"format":"gopyk-kernel/1","spec_name":"a","remote_connection":{"shell_port":"x"}}`,
		`{"shell_port":1}`, `{"rem_conn_info":{}}`, `[]`, `null`, `{"format":1}`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parsePersisted(b)
		if err != nil {
			if strings.ContainsRune(err.Error(), '\n') {
				t.Errorf("multi-line error %q", err)
			}
			return
		}
		if p.Format != persistFormat || p.SpecName == "" || p.Host == "" || p.Control == "" {
			t.Errorf("accepted an incomplete file: %+v", p)
		}
	})
}

// Jupyter's "key": "" (no authentication) reaches the provisioner as an
// unsigned kernel, not as a missing key to make up.
func TestEmptyKeyIsUnsigned(t *testing.T) {
	rt := t.TempDir()
	cf := filepath.Join(t.TempDir(), "kernel-unsigned.json")
	ci := wire.ConnInfo{ShellPort: 50011, IOPubPort: 50012, StdinPort: 50013, ControlPort: 50014, HBPort: 50015, IP: "127.0.0.1", Transport: "tcp", SignatureScheme: "hmac-sha256"}
	if err := wire.WriteConnInfo(cf, ci); err != nil {
		t.Fatal(err)
	}
	f := newFake(nil)
	r := startRun(t, rt, f, "--kernel", "remote", "--connection-file", cf)
	r.ready()
	if !f.cfg.Unsigned || f.cfg.Local.Key != "" {
		t.Errorf("provisioner config: unsigned %v key %q", f.cfg.Unsigned, f.cfg.Local.Key)
	}
	r.sigs <- syscall.SIGTERM
	r.wait()
}

// A persistence file whose kernel is gone: the error says so and how to
// get rid of the file; on a terminal, a yes deletes it.
func TestExistingGoneSaysDelete(t *testing.T) {
	for _, tty := range []bool{false, true} {
		rt := t.TempDir()
		pf := filepath.Join(rt, "gopyk-kernel-abc.json")
		writePersisted(t, pf, nil)
		f := newFake(nil)
		f.launchErr = fmt.Errorf("attach to the kernel in /x on fakealias: %w", provisioner.ErrGone)
		var stdin *os.File
		if tty {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer pr.Close()
			pw.WriteString("y\n")
			pw.Close()
			stdin = pr
		}
		r := startRunTTY(t, rt, f, stdin, "--existing", pf)
		if code := r.wait(); code == 0 {
			t.Fatalf("tty %v: exit 0", tty)
		}
		_, err := os.Stat(pf)
		switch {
		case !tty && (!strings.Contains(r.stderr.String(), "no longer running") || !strings.Contains(r.stderr.String(), "delete it: rm "+pf) || err != nil):
			t.Errorf("no terminal: file kept %v, stderr:\n%s", err == nil, r.stderr.String())
		case tty && (!strings.Contains(r.stderr.String(), "Delete "+pf+"? [y/N]") || !strings.Contains(r.stderr.String(), "deleted it") || !os.IsNotExist(err)):
			t.Errorf("terminal, answered y: file kept %v, stderr:\n%s", err == nil, r.stderr.String())
		}
	}
}
