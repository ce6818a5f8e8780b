package launcher

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"go.uber.org/goleak"
	"golang.org/x/sys/windows"
)

// These run on Windows, and in `make test` under wine (wine package).

const blockEnv = "GOPYK_LAUNCHER_BLOCK" // child mode: read stdin to its end, exit

func TestMain(m *testing.M) {
	if os.Getenv(blockEnv) != "" {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// startWith runs gopyk-kernel in process like startRun, with the production
// watchers of JPY_INTERRUPT_EVENT and JPY_PARENT_PID.
func startWith(t *testing.T, f *fake, args ...string) *inproc {
	t.Helper()
	rt := t.TempDir()
	r := &inproc{t: t, rt: rt, f: f, sigs: make(chan os.Signal, 4), code: make(chan int, 1)}
	d := deps{
		start:      f,
		findSpec:   testFindSpec,
		runtimeDir: func() string { return rt },
		signals:    func() (<-chan os.Signal, func()) { return r.sigs, func() {} },
		isTTY:      func(*os.File) bool { return false },
		parentGone: productionWatchParent,
		interrupts: productionInterrupts,
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.code <- mainWith(ctx, args, nil, &r.stdout, &r.stderr, d) }()
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

// newJupyterEvent makes the event as jupyter_client's create_interrupt_event
// does: inheritable, auto-reset, not set.
func newJupyterEvent(t *testing.T) windows.Handle {
	t.Helper()
	sa := &windows.SecurityAttributes{InheritHandle: 1}
	sa.Length = uint32(unsafe.Sizeof(*sa))
	h, err := windows.CreateEvent(sa, 0, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { windows.CloseHandle(h) })
	return h
}

func count(f *fake, call string) int {
	n := 0
	for _, c := range f.Calls() {
		if c == call {
			n++
		}
	}
	return n
}

func TestInterruptEventRelayed(t *testing.T) {
	ev := newJupyterEvent(t)
	t.Setenv(interruptEnv, strconv.FormatUint(uint64(ev), 10))
	f := newFake(nil)
	r := startWith(t, f, "--kernel", "remote")
	r.ready()
	const sets = 5
	for i := 1; i <= sets; i++ {
		if err := windows.SetEvent(ev); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "interrupt "+strconv.Itoa(i), 10*time.Second, func() bool { return count(f, "interrupt") == i })
	}
	r.cancel()
	if c := r.wait(); c != 0 {
		t.Fatalf("exit %d; stderr:\n%s", c, r.stderr.String())
	}
	if n := count(f, "interrupt"); n != sets {
		t.Errorf("%d interrupts for %d sets of the event", n, sets)
	}
	if !strings.Contains(r.stderr.String(), "kernel interrupted by="+interruptEnv) {
		t.Errorf("no interrupt logged:\n%s", r.stderr.String())
	}
}

func TestOldInterruptEventName(t *testing.T) {
	ev := newJupyterEvent(t)
	t.Setenv("IPY_INTERRUPT_EVENT", strconv.FormatUint(uint64(ev), 10))
	f := newFake(nil)
	r := startWith(t, f, "--kernel", "remote")
	r.ready()
	windows.SetEvent(ev)
	waitFor(t, "interrupt", 10*time.Second, func() bool { return count(f, "interrupt") == 1 })
}

func TestBadHandleIsIgnoredWithAWarning(t *testing.T) {
	t.Setenv(interruptEnv, "12345678")
	t.Setenv(parentEnv, "x")
	f := newFake(nil)
	r := startWith(t, f, "--kernel", "remote")
	r.ready()
	for _, want := range []string{interruptEnv + "=12345678 is not a handle", parentEnv + "=x is not a handle"} {
		if !strings.Contains(r.stderr.String(), want) {
			t.Errorf("no %q in:\n%s", want, r.stderr.String())
		}
	}
}

// startParent starts a stand-in for Jupyter that lives until its stdin is
// closed, and returns an inheritable handle on it as jupyter_client's
// DuplicateHandle makes one.
func startParent(t *testing.T) (windows.Handle, io.Closer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), blockEnv+"=1")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Wait() })
	h, err := windows.OpenProcess(windows.SYNCHRONIZE|windows.PROCESS_QUERY_LIMITED_INFORMATION, true, uint32(cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { windows.CloseHandle(h) })
	return h, in
}

func TestParentHandleGoneShutsDown(t *testing.T) {
	h, parentStdin := startParent(t)
	t.Setenv(parentEnv, strconv.FormatUint(uint64(h), 10))
	f := newFake(nil)
	r := startWith(t, f, "--kernel", "remote")
	r.ready()
	if f.called("shutdown") {
		t.Fatal("shut down while Jupyter runs")
	}
	parentStdin.Close() // the stand-in exits
	if c := r.wait(); c != 0 {
		t.Fatalf("exit %d; stderr:\n%s", c, r.stderr.String())
	}
	if !f.called("shutdown") || !strings.Contains(r.stderr.String(), parentEnv+") is gone") {
		t.Errorf("calls %v; stderr:\n%s", f.Calls(), r.stderr.String())
	}
}

func TestParentHandleGoneLeavesPersistent(t *testing.T) {
	h, parentStdin := startParent(t)
	t.Setenv(parentEnv, strconv.FormatUint(uint64(h), 10))
	f := newFake(nil)
	r := startWith(t, f, "--kernel", "remote", "--persistent")
	r.ready()
	parentStdin.Close()
	if c := r.wait(); c != 0 {
		t.Fatalf("exit %d; stderr:\n%s", c, r.stderr.String())
	}
	if f.called("shutdown") || !f.called("leave") {
		t.Errorf("calls %v, want leave and no shutdown", f.Calls())
	}
	if ms, _ := filepath.Glob(filepath.Join(r.rt, "gopyk-kernel-*.json")); len(ms) != 1 {
		t.Errorf("persistence files %v, want one", ms)
	}
}

// The console control handler: Ctrl+Break is a leave while the launcher
// listens, and is passed on to the runtime (which ends the process) otherwise.
func TestCtrlBreakIsLeave(t *testing.T) {
	c, stop := notifySignals()
	if r := ctrlHandler(windows.CTRL_BREAK_EVENT); r != 1 {
		t.Fatalf("Ctrl+Break not taken while listening")
	}
	select {
	case s := <-c:
		if r := requestFor(s); r.act != actLeave || r.why != "Ctrl+Break" {
			t.Errorf("Ctrl+Break asks for %v (%s), want leave", r.act, r.why)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no signal for Ctrl+Break")
	}
	if r := ctrlHandler(windows.CTRL_C_EVENT); r != 0 {
		t.Error("Ctrl+C taken from the runtime, which makes it SIGINT")
	}
	stop()
	if r := ctrlHandler(windows.CTRL_BREAK_EVENT); r != 0 {
		t.Error("Ctrl+Break taken after stop")
	}
	if r := requestFor(syscall.SIGINT); r.act != actInterrupt {
		t.Errorf("Ctrl+C asks for %v, want interrupt", r.act)
	}
	if r := requestFor(syscall.SIGTERM); r.act != actShutdown {
		t.Errorf("closing the console asks for %v, want shutdown", r.act)
	}
}

// On a console the log says what to press; there is no Ctrl+D menu.
func TestConsoleHints(t *testing.T) {
	r := startRunTTY(t, t.TempDir(), nil, os.Stdin, "--kernel", "remote")
	r.ready()
	waitFor(t, "hints", 10*time.Second, func() bool { return strings.Contains(r.stderr.String(), "not available on Windows") })
	for _, want := range []string{"press Ctrl+C to interrupt", "press Ctrl+Break to leave"} {
		if !strings.Contains(r.stderr.String(), want) {
			t.Errorf("no %q in:\n%s", want, r.stderr.String())
		}
	}
	r.sigs <- syscall.SIGINT
	waitFor(t, "interrupt", 10*time.Second, func() bool { return r.f.called("interrupt") })
	r.sigs <- sigBreak
	if c := r.wait(); c != 0 || !r.f.called("leave") {
		t.Errorf("Ctrl+Break: exit %d, calls %v", c, r.f.Calls())
	}
}

// The flags, as on Unix.
func TestFlagsOnWindows(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"--version"}, 0, "gopyk-kernel "},
		{nil, 2, "--kernel NAME is required"},
		{[]string{"--kernel", "remote", "stray"}, 2, `unexpected argument "stray"`},
		{[]string{"--kernel", "nope"}, 1, `no kernel spec "nope"`},
		{[]string{"--kernel", "plain"}, 1, "has no metadata.gopyk"},
		{[]string{"--existing", "x", "--persistent-file", "y"}, 2, "drop --persistent-file"},
	} {
		var out, errb syncBuffer
		d := deps{start: newFake(nil), findSpec: testFindSpec, runtimeDir: func() string { return t.TempDir() },
			signals: func() (<-chan os.Signal, func()) { return nil, func() {} }, isTTY: func(*os.File) bool { return false }}
		code := mainWith(context.Background(), tc.args, nil, &out, &errb, d)
		if code != tc.code || !strings.Contains(out.String()+errb.String(), tc.out) {
			t.Errorf("%q: exit %d, output %q; want %d and %q", tc.args, code, out.String()+errb.String(), tc.code, tc.out)
		}
	}
}

func TestLeaveWritesWindowsPaths(t *testing.T) {
	rt := t.TempDir()
	f := newFake(nil)
	code, r := runToEnd(t, rt, f, "--kernel", "remote", "--leave")
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, r.stderr.String())
	}
	pf := globOne(t, filepath.Join(rt, "gopyk-kernel-*.json"))
	p, err := loadPersisted(pf)
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(p.ConnectionFile) || filepath.Dir(p.ConnectionFile) != rt || !strings.Contains(p.ConnectionFile, `\`) {
		t.Errorf("connection file %q, want a Windows path in %s", p.ConnectionFile, rt)
	}
	if !strings.Contains(r.stderr.String(), "--existing "+filepath.Base(pf)) {
		t.Errorf("no re-attach hint in:\n%s", r.stderr.String())
	}
}

func globOne(t *testing.T, pat string) string {
	t.Helper()
	ms, _ := filepath.Glob(pat)
	if len(ms) != 1 {
		t.Fatalf("want one file matching %s, got %v", pat, ms)
	}
	return ms[0]
}
