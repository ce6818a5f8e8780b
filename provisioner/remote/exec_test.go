//go:build linux

package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// countingWriter counts what Run sends on stdin.
type countingWriter struct {
	w io.Writer
	n int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += len(p)
	return c.w.Write(p)
}

// runRaw runs Command through /bin/sh (or another shell) and returns the reply
// and how many bytes went to stdin.
func (b *bed) runRaw(shell string, p Params) (*Reply, int, error) {
	b.t.Helper()
	p = b.params(p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, shell, "-c", Command(p.Python, p.Pre))
	cmd.Env = b.env
	cmd.WaitDelay = time.Second
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		b.t.Fatal(err)
	}
	cw := &countingWriter{w: stdin}
	r, err := Run(ctx, cw, stdout, p)
	stdin.Close()
	werr := cmd.Wait()
	if err != nil {
		err = ExplainExit(exitStatus(werr), stderr.String(), err)
	}
	return r, cw.n, err
}

func TestUploadOnceThenCached(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	cache := filepath.Join(b.home, CachePath())
	tmpCache := filepath.Join(fmt.Sprintf("/tmp/gopyk-%d", os.Getuid()), filepath.Base(CachePath()))
	r, n, err := b.runRaw("/bin/sh", Params{Action: ActionList})
	if err != nil || !r.OK {
		t.Fatalf("first run: %+v %v", r, err)
	}
	// Uploaded, or copied from the /tmp cache another home left (as root,
	// every test shares /tmp/gopyk-0).
	if n < len(Artifact()) && !exists(tmpCache) {
		t.Errorf("first run sent %d bytes, want the launcher (%d)", n, len(Artifact()))
	}
	checkCache(t, cache)
	_, n, err = b.runRaw("/bin/sh", Params{Action: ActionList})
	if err != nil || n > 1024 {
		t.Fatalf("second run sent %d bytes (%v), want no upload", n, err)
	}
	// A damaged module is replaced, not run; so is a missing one.
	for _, damage := range []func(string) error{
		func(f string) error { return os.WriteFile(f, []byte("raise SystemExit('garbage')\n"), 0o600) },
		os.Remove,
	} {
		if err := damage(filepath.Join(cache, "gopyk", "main.py")); err != nil {
			t.Fatal(err)
		}
		if r, _, err = b.runRaw("/bin/sh", Params{Action: ActionList}); err != nil || !r.OK {
			t.Fatalf("damaged cache: %+v, %v", r, err)
		}
		checkCache(t, cache)
	}
	if left, _ := filepath.Glob(cache + ".*"); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	// A home that cannot hold the cache still runs, says why, and caches
	// in /tmp/gopyk-<uid> instead: the next run uploads nothing.
	ro := newBed(t)
	if err := os.Chmod(ro.home, 0o500); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		ro.env = append(ro.env, "HOME=/proc/self/nonexistent") // root ignores modes
	}
	r, _, err = ro.runRaw("/bin/sh", Params{Action: ActionList})
	if err != nil || !r.OK || !strings.Contains(r.CacheWarning, "cannot cache the launcher in ") || !strings.Contains(r.CacheWarning, "cached in "+tmpCache+" instead") {
		t.Errorf("read-only home: %+v %v", r, err)
	}
	checkCache(t, tmpCache)
	if r, n, err = ro.runRaw("/bin/sh", Params{Action: ActionList}); err != nil || !r.OK || n > 1024 {
		t.Errorf("read-only home, second run: sent %d bytes: %+v %v", n, r, err)
	}
}

// Launches that find no cache at the same time (two notebooks opened at
// once) upload and run, none from memory; one copy stays, and no temp dir.
func TestConcurrentUploads(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	errs := make(chan error, 4)
	for range cap(errs) {
		go func() {
			r, _, err := b.runRaw("/bin/sh", Params{Action: ActionList})
			if err == nil && (!r.OK || r.CacheWarning != "") {
				err = fmt.Errorf("reply %+v", r)
			}
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	cache := filepath.Join(b.home, CachePath())
	checkCache(t, cache)
	if left, _ := filepath.Glob(cache + ".*"); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
}

// checkCache: the cache dir holds exactly the modules, private.
func checkCache(t *testing.T, cache string) {
	t.Helper()
	for _, d := range []string{filepath.Dir(cache), cache, filepath.Join(cache, "gopyk")} {
		if m := mode(t, d); m != 0o700 {
			t.Errorf("%s: mode %v", d, m)
		}
	}
	got, _ := filepath.Glob(filepath.Join(cache, "gopyk", "*.py"))
	if len(got) != len(ModuleNames()) {
		t.Errorf("cached modules %v, want %v", got, ModuleNames())
	}
	for _, name := range ModuleNames() {
		f := filepath.Join(cache, "gopyk", name)
		if src, _ := os.ReadFile(f); !bytes.Equal(src, ModuleSource(name)) {
			t.Errorf("%s does not hold the module", f)
		} else if m := mode(t, f); m != 0o600 {
			t.Errorf("%s: mode %v", f, m)
		}
	}
}

// rc-file noise on stdout (with and without newlines) is ignored, and a pre
// command runs in the same shell as the launcher.
func TestNoiseAndPre(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	pre := `echo "Welcome to $(hostname)"; printf 'no newline here'; printf '@@gopyk0@@ {"ok":false}\n'; export GOPYK_TEST_BASE=from-pre`
	r := b.launch(Params{KernelName: "gopyk-test", Pre: pre, Grace: time.Minute})
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", r.KernelPID))
	if err != nil || !bytes.Contains(env, []byte("\x00GOPYK_TEST_ENV=from-spec:from-pre\x00")) {
		t.Errorf("the pre command's environment did not reach the kernel (%v)", err)
	}
	if _, err := ctl(r).Shutdown(tctx(t, 20*time.Second), 0); err != nil {
		t.Fatal(err)
	}
}

// Command works from every login shell users have: sh, bash, dash, and csh,
// zsh, fish where installed; python paths with spaces and quotes; ~/.
func TestCommandShells(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	odd := filepath.Join(b.home, "my py'thon dir", "py 3")
	if err := os.MkdirAll(filepath.Dir(odd), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(testPython, odd); err != nil {
		t.Fatal(err)
	}
	tilde := "~/" + strings.TrimPrefix(odd, b.home+"/")
	cmd := Command(odd, "")
	if strings.Contains(cmd, "k3y") || strings.Count(cmd, "'") < 4 {
		t.Errorf("command: %s", cmd)
	}
	shells := []string{"/bin/sh", "/bin/bash", "/bin/dash", "/bin/csh", "/bin/tcsh", "/bin/zsh", "/usr/bin/fish"}
	ran := 0
	for _, sh := range shells {
		if _, err := os.Stat(sh); err != nil {
			t.Logf("%s not installed: not tested", sh)
			continue
		}
		ran++
		for py, pre := range map[string]string{odd: "", tilde: "echo rc-noise; true"} {
			r, _, err := b.runRaw(sh, Params{Action: ActionList, Python: py, Pre: pre})
			if err != nil || !r.OK {
				t.Errorf("%s, python %q, pre %q: %+v %v", sh, py, pre, r, err)
			}
		}
		// A failing pre is reported, whatever the shell.
		if _, _, err := b.runRaw(sh, Params{Action: ActionList, Python: odd, Pre: "false"}); err == nil || !strings.Contains(err.Error(), "pre-command") {
			t.Errorf("%s: failing pre: %v", sh, err)
		}
	}
	if ran < 3 {
		t.Errorf("only %d shells tested", ran)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	cases := []struct {
		name string
		p    Params
		code string
		want []string
	}{
		{"unknown kernel", Params{KernelName: "nope"}, CodeUnknownKernel,
			[]string{`no kernel spec named 'nope'`, "python3", "gopyk-test", "badimport", "gopyk edit --remote-kernel-name"}},
		{"kernel dies at import", Params{KernelName: "badimport"}, CodeKernelDied,
			[]string{"died while starting (exit code 1)", "No module named no_such_module_gopyk", "install the missing module"}},
		{"missing python", Params{Python: "/nonexistent/python3"}, "",
			[]string{`remote python "/nonexistent/python3" not found (exit status 127)`, "gopyk edit --remote-python"}},
		{"not executable", Params{Python: "/etc/passwd"}, "",
			[]string{"cannot be executed (exit status 126)", "gopyk edit --remote-python"}},
		{"failing pre", Params{Pre: "echo loading >&2; false"}, "",
			[]string{`remote pre-command "echo loading >&2; false" failed (exit status 1): loading`, "gopyk edit --remote-pre"}},
		{"bad transport", Params{Transport: "udp"}, CodeBadParams, []string{"transport must be ipc or tcp"}},
	}
	for _, c := range cases {
		_, err := b.exec(c.p)
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		var re *ReplyError
		if c.code != "" && (!errors.As(err, &re) || re.Code != c.code) {
			t.Errorf("%s: %v is not code %s", c.name, err, c.code)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %q does not say %q", c.name, err, w)
			}
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error is not one line: %q", c.name, err)
		}
	}
	// A launch that fails after making its run dir removes it from a
	// detached clean-up, which may still run when the reply is in.
	var ents []os.DirEntry
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) { // polling a condition, bounded
		if ents, _ = os.ReadDir(filepath.Join(b.home, ".gopyk", "run")); len(ents) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(ents) != 0 {
		t.Errorf("failed launches left run dirs: %v", ents)
	}
}

// The script must stay valid Python 3.6 (the oldest remote we support) and
// run on every newer one.
func TestPythons36To313(t *testing.T) {
	t.Parallel()
	for _, name := range ModuleNames() {
		check := exec.Command(testPython, "-c", "import ast,sys; ast.parse(sys.stdin.read(), feature_version=(3,6))")
		check.Stdin = bytes.NewReader(ModuleSource(name))
		if out, err := check.CombinedOutput(); err != nil {
			t.Errorf("%s is not Python 3.6 syntax: %v\n%s", name, err, out)
		}
	}
	// Every other python 3 found here runs the launcher (and caches its bytecode).
	b := newBed(t)
	others, _ := filepath.Glob(filepath.Join(os.Getenv("HOME"), ".pyenv/versions/3.*/bin/python3.[0-9]"))
	more, _ := filepath.Glob(filepath.Join(os.Getenv("HOME"), ".pyenv/versions/3.*/bin/python3.[0-9][0-9]"))
	others = append(others, more...)
	t.Logf("other pythons: %v", others)
	for _, py := range others {
		if r, _, err := b.runRaw("/bin/sh", Params{Action: ActionList, Python: py}); err != nil || !r.OK {
			t.Errorf("%s: %+v %v", py, r, err)
		}
	}
	// Each imported every module: bytecode for each module and python.
	pycs, _ := filepath.Glob(filepath.Join(b.home, CachePath(), "gopyk", "__pycache__", "*.pyc"))
	if len(others) > 0 && len(pycs) != len(others)*len(ModuleNames()) {
		t.Errorf("cached bytecode of %d modules for %d pythons: %v", len(ModuleNames()), len(others), pycs)
	}
	py36, err := filepath.Glob(filepath.Join(os.Getenv("HOME"), ".pyenv/versions/3.6*/bin/python3.6"))
	if err != nil || len(py36) == 0 {
		t.Skip("no python3.6 interpreter here; the 3.6 grammar check above ran")
	}
	r := b.launch(Params{Python: py36[0], KernelName: "gopyk-test", Grace: time.Minute})
	if !strings.HasPrefix(r.Python, "3.6.") {
		t.Errorf("launcher ran on %s", r.Python)
	}
	if out := b.run(r.ConnFile, "info"); !strings.Contains(out, "STATUS ok") {
		t.Fatalf("kernel_info: %s", out)
	}
	lease, err := ctl(r).Lease(tctx(t, 5*time.Second), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(r.KernelPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if ev := <-lease.Events(); ev.Type != EventKernelExited {
		t.Errorf("event %+v", ev)
	}
	lease.Close()
	waitGone(t, 5*time.Second, r.SupervisorPID)
}

// A Python 2 remote python gets a clear "too old".
func TestPythonTooOld(t *testing.T) {
	t.Parallel()
	py2, _ := filepath.Glob(filepath.Join(os.Getenv("HOME"), ".pyenv/versions/2.7*/bin/python2.7"))
	if len(py2) == 0 {
		t.Skip("no python2.7 interpreter here")
	}
	_, err := newBed(t).exec(Params{Python: py2[0]})
	var re *ReplyError
	if !errors.As(err, &re) || re.Code != CodeTooOld || !strings.Contains(err.Error(), "Python 2.7 is too old") {
		t.Fatalf("python 2: %v", err)
	}
}

// checkSecrets: the key appears nowhere but in the connection file: not on
// any command line, not in the run dir's other files (supervisor.log), and
// every file there is private.
func checkSecrets(t *testing.T, r *Reply, key string) {
	t.Helper()
	for _, k := range []string{key, "k3y-"} {
		if hits := procCmdlinesContaining(k); len(hits) > 0 {
			t.Errorf("key on a command line: %v", hits)
		}
	}
	ents, err := os.ReadDir(r.RunDir)
	if err != nil {
		t.Fatal(err)
	}
	var sawLog bool
	for _, e := range ents {
		if e.Name() == "kernel.json" || e.Type()&os.ModeSocket != 0 {
			continue
		}
		data, _ := os.ReadFile(filepath.Join(r.RunDir, e.Name()))
		if bytes.Contains(data, []byte(key)) {
			t.Errorf("%s holds the key", e.Name())
		}
		if m := mode(t, filepath.Join(r.RunDir, e.Name())); m&0o077 != 0 {
			t.Errorf("%s: mode %v", e.Name(), m)
		}
		sawLog = sawLog || e.Name() == "supervisor.log" && bytes.Contains(data, []byte("restart requested"))
	}
	if !sawLog {
		t.Error("supervisor.log missing or silent about the restart")
	}
}

// What the provisioner passes to Exec and OpenCarrier.
var _ Session = (*ssh.Session)(nil)

// list removes run dirs whose supervisor died on this host, and leaves those
// of other hosts sharing the home alone.
func TestListStaleDirs(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	host, _ := os.Hostname()
	run := filepath.Join(b.home, ".gopyk", "run")
	mk := func(name, state string) string {
		d := filepath.Join(run, name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "state.json"), []byte(state), 0o600); err != nil {
			t.Fatal(err)
		}
		return d
	}
	dead := mk("deadbeef", `{"supervisor_pid": 2147483, "kernel_pid": 0, "hostname": "`+host+`"}`)
	other := mk("0e1ae0e5", `{"supervisor_pid": 2147483, "kernel_pid": 0, "hostname": "login-elsewhere"}`)
	fresh := filepath.Join(run, "c0ffee00") // a launch in progress: no state.json yet
	if err := os.MkdirAll(fresh, 0o700); err != nil {
		t.Fatal(err)
	}
	// Launchers of other gopyk versions: removed when not uploaded for 30
	// days, in the layout of today (a dir) and of gopyk versions of one file
	// (launcher-<hash>.py and its bytecode); and a dead extraction of ours.
	gd := filepath.Join(b.home, ".gopyk")
	oldDir := filepath.Join(gd, "launcher-0123456789abcdef")
	oldFile := filepath.Join(gd, "launcher-1123456789abcdef.py")
	oldPyc := filepath.Join(gd, "__pycache__", "launcher-1123456789abcdef.cpython-311.pyc")
	deadTmp := filepath.Join(b.home, CachePath()+".4242.tmp")
	recentDir := filepath.Join(gd, "launcher-fedcba9876543210")
	recentFile := filepath.Join(gd, "launcher-fedcba9876543211.py")
	liveTmp := filepath.Join(b.home, CachePath()+".4343.tmp")
	for _, d := range []string{oldDir, recentDir, deadTmp, liveTmp} {
		if err := os.MkdirAll(filepath.Join(d, "gopyk", "__pycache__"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{oldFile, oldPyc, recentFile, filepath.Join(oldDir, "gopyk", "main.py")} {
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("pass\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	longAgo := time.Now().Add(-31 * 24 * time.Hour)
	for _, f := range []string{oldDir, oldFile, oldPyc} {
		if err := os.Chtimes(f, longAgo, longAgo); err != nil {
			t.Fatal(err)
		}
	}
	hourAgo := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(deadTmp, hourAgo, hourAgo); err != nil {
		t.Fatal(err)
	}
	r, err := b.exec(Params{Action: ActionList})
	if err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]bool{oldDir: false, oldFile: false, oldPyc: false, deadTmp: false,
		recentDir: true, recentFile: true, liveTmp: true, filepath.Join(b.home, CachePath(), "gopyk", "main.py"): true} {
		if exists(f) != want {
			t.Errorf("after list: %s exists %v, want %v (removed %v)", f, exists(f), want, r.Removed)
		}
	}
	if exists(dead) || !exists(other) || !exists(fresh) {
		t.Errorf("after list: dead %v other %v fresh %v (removed %v)", exists(dead), exists(other), exists(fresh), r.Removed)
	}
	var sawOther bool
	for _, k := range r.Kernels {
		sawOther = sawOther || k.RunDir == other && k.Code == "elsewhere" && k.Hostname == "login-elsewhere"
	}
	if !sawOther {
		t.Errorf("list does not report the other host's kernel: %+v", r.Kernels)
	}
}

// inspect (for gopyk list) reports the python, jupyter_client and the spec.
func TestInspect(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	r, err := b.exec(Params{Action: ActionInspect, KernelName: "GOPYK-test"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.JupyterClient, "7.") || r.KernelName != "GoPyk-Test" || r.InterruptMode != "message" ||
		!strings.HasSuffix(r.SpecDir, "kernels/GoPyk-Test") || len(r.Argv) != 5 || r.Argv[4] != "{connection_file}" || r.KernelError != "" {
		t.Errorf("inspect: %+v", r)
	}
	r, err = b.exec(Params{Action: ActionInspect, KernelName: "nope"})
	if err != nil || !strings.Contains(r.KernelError, "no kernel spec named 'nope'") || !slices.Contains(r.KernelNames, "python3") {
		t.Errorf("inspect of an unknown kernel: %+v %v", r, err)
	}
}
