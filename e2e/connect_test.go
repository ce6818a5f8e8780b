//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopyk/gopyk/testbed"
	"github.com/gopyk/gopyk/wire"
)

// gopyk connect logs in, says so, shows the master in --status, and
// --stop ends it.
func TestConnectStatusStop(t *testing.T) {
	e := newEnv(t)
	out := e.gopyk("connect", "--kernel-name", e.spec)
	if !strings.Contains(out, "Connected to "+e.sshd.Alias) {
		t.Fatalf("gopyk connect: %s", out)
	}
	if out := e.gopyk("connect", "--kernel-name", e.spec); !strings.Contains(out, "Already connected to "+e.sshd.Alias) {
		t.Fatalf("gopyk connect again: %s", out)
	}
	out = e.gopyk("connect", "--status")
	// No kernel uses it: the asking gopyk is not counted as a user.
	if !strings.Contains(out, e.sshd.Alias+" (") || !strings.Contains(out, "connected since") || !strings.Contains(out, "1 logins") ||
		!strings.Contains(out, "unused for") {
		t.Fatalf("gopyk connect --status: %s", out)
	}
	// ps names it and its host.
	if m := regexp.MustCompile(`pid (\d+)`).FindStringSubmatch(out); m == nil {
		t.Errorf("no pid in: %s", out)
	} else if cl, err := os.ReadFile("/proc/" + m[1] + "/cmdline"); err != nil || !strings.HasSuffix(string(cl), "\x00master\x00"+e.sshd.Alias+"\x00") {
		t.Errorf("the master's command line is %q (%v), want it to end with: master %s", cl, err, e.sshd.Alias)
	}
	out = e.gopyk("connect", "--stop", "--ssh-config", e.sshd.ConfigFile, e.sshd.Alias)
	if !strings.Contains(out, "Stopped the master of "+e.sshd.Alias) || strings.Contains(out, "users") {
		t.Fatalf("gopyk connect --stop: %s", out)
	}
	if out := e.gopyk("connect", "--status"); !strings.Contains(out, "No master runs.") {
		t.Fatalf("status after stop: %s", out)
	}
}

// An outage with five kernels on one gopyk master: all five come back
// with their state, and the master dials once for all of them. make test
// takes the link down for 8 s (the master notices a dead link in ~3 s);
// GOPYK_SHARED_OUTAGE=30s (with -run and -v) is the acceptance's 30 s.
func TestNetnsSharedMasterOutage(t *testing.T) {
	t.Parallel()
	down := 8 * time.Second
	if s := os.Getenv("GOPYK_SHARED_OUTAGE"); s != "" {
		var err error
		if down, err = time.ParseDuration(s); err != nil || down <= 0 {
			t.Fatalf("GOPYK_SHARED_OUTAGE=%q: want a duration such as 30s", s)
		}
	}
	e, ns := newNetEnv(t, 120)
	runChild(t, e, ns, childConfig{Mode: "shared", Kernels: 5, Down: down}, 6*time.Minute)
	if n := strings.Count(logText(e.sshd.LogFile), "Accepted publickey"); n != 2 {
		t.Errorf("%d logins in sshd's log; want 2: the master's first, and one re-dial for the five kernels", n)
	}
	waitNoSessions(t, e)
}

// Twenty kernels launched at once, no master yet: they race to start the
// host's master and end with one, one TCP connection in sshd's log; all
// answer, all exit cleanly on a shutdown_request, and the master exits its
// persist time after the last one left, leaving nothing behind (no socket,
// no remote process).
func TestTwentyKernelsOneConnection(t *testing.T) {
	t.Parallel()
	const n, persist = 20, 5 * time.Second
	e := newEnv(t)
	setSpecMeta(t, e, "master_persist", int(persist/time.Second))
	logStart := len(logText(e.sshd.LogFile))
	// Connection files written first with distinct ports, as Jupyter
	// does: twenty gopyk-kernels each probing five free ports at once
	// would pick the same one now and then.
	ports, err := wire.FreeTCPPorts(5 * n)
	if err != nil {
		t.Fatal(err)
	}
	ks := make([]*proc, n)
	cfs := make([]string, n)
	for i := range ks {
		cfs[i] = filepath.Join(e.home, fmt.Sprintf("kernel-%d.json", i))
		ci := wire.ConnInfo{IP: "127.0.0.1", Transport: "tcp", SignatureScheme: "hmac-sha256", Key: wire.NewKey()}
		ci.SetPorts(ports[5*i : 5*i+5])
		if err := wire.WriteConnInfo(cfs[i], ci); err != nil {
			t.Fatal(err)
		}
		ks[i] = e.start(filepath.Join(binDir, "gopyk-kernel"), "--kernel", e.spec, "--connection-file", cfs[i])
	}
	defer func() {
		if t.Failed() {
			for i, k := range ks {
				t.Logf("kernel %d:\n%s", i, k.output())
			}
		}
	}()
	clients := make([]*wire.Client, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range ks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clients[i], errs[i] = readyClient(ks[i], cfs[i], 3*time.Minute)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("kernel %d: %v", i, err)
		}
	}
	if c := strings.Count(logText(e.sshd.LogFile)[logStart:], "Connection from "); c != 1 {
		t.Errorf("%d TCP connections in sshd's log for %d kernels; want 1", c, n)
	}
	started := 0
	for _, k := range ks {
		started += strings.Count(k.output(), "started a master")
	}
	masters := testbed.Masters(e.runtime)
	if started != 1 || len(masters) != 1 {
		t.Errorf("%d kernels started a master, %v run; want one", started, masters)
	}
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if _, err := clients[i].Shutdown(ctx, false); err != nil {
				errs[i] = fmt.Errorf("shutdown_request: %w", err)
			}
			clients[i].Close()
		}()
	}
	wg.Wait()
	for i, k := range ks {
		if errs[i] != nil {
			t.Errorf("kernel %d: %v", i, errs[i])
		}
		if code := k.waitExit(t, 60*time.Second); code != 0 {
			t.Errorf("kernel %d: exit %d", i, code)
		}
	}
	lastLeft := time.Now()
	if len(testbed.Masters(e.runtime)) != 1 {
		t.Errorf("the master went at once; want it to stay %v", persist)
	}
	waitFor(t, persist+30*time.Second, "the master to exit and remove its socket", func() bool {
		socks, _ := filepath.Glob(filepath.Join(e.runtime, "gopyk-ssh-*", "m-????????????????"))
		return len(testbed.Masters(e.runtime)) == 0 && len(socks) == 0
	})
	t.Logf("the master exited %v after the last kernel (persist %v)", time.Since(lastLeft).Round(time.Millisecond), persist)
	waitNoSessions(t, e)
}

// readyClient waits for a gopyk-kernel to serve the kernel of connection
// file cf, failing at once when it exits.
func readyClient(p *proc, cf string, d time.Duration) (*wire.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	ci, err := wire.ReadConnInfo(cf)
	if err == nil {
		var c *wire.Client
		if c, err = wire.Dial(ctx, ci); err == nil {
			if err = c.WaitReady(ctx); err == nil {
				return c, nil
			}
			c.Close()
		}
	}
	select {
	case <-p.done:
		return nil, fmt.Errorf("gopyk-kernel exited: %v", p.err)
	default:
		return nil, fmt.Errorf("not ready: %w", err)
	}
}

func childSharedOutage(t *testing.T, e *env, cfg childConfig) {
	ks := make([]*proc, cfg.Kernels)
	pys := make([]*pyClient, cfg.Kernels)
	for i := range ks {
		k, cf := e.launch()
		ks[i] = k
		pys[i] = startPyClient(t, e, cf)
		if r := pys[i].exec(t, fmt.Sprintf("x = %d", 100+i), "x", 60*time.Second); r.Value != fmt.Sprint(100+i) {
			t.Fatalf("kernel %d before the outage: %+v", i, r)
		}
	}
	started := 0
	for _, k := range ks {
		started += strings.Count(k.output(), "started a master")
	}
	if started != 1 {
		t.Fatalf("%d kernels started a master; want the first only", started)
	}
	tDown := link(t, cfg.Iface, "down")
	waitFor(t, 20*time.Second, "every kernel to notice the dead link", func() bool {
		for _, k := range ks {
			if !strings.Contains(k.output(), "connection lost") {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Until(tDown.Add(cfg.Down))) // the outage itself, not a synchronisation
	tUp := link(t, cfg.Iface, "up")
	for i, py := range pys {
		if r := py.exec(t, "y = x", "y", 90*time.Second); r.Status != "ok" || r.Value != fmt.Sprint(100+i) {
			t.Fatalf("kernel %d after the outage (state lost?): %+v", i, r)
		}
	}
	t.Logf("five kernels back %v after link-up", time.Since(tUp).Round(time.Millisecond))
	// The streams resume through the master's new connection, possibly
	// before each kernel's own reconnect (status check, lease) is logged.
	waitFor(t, 30*time.Second, "every kernel to log its reconnect", func() bool {
		for _, k := range ks {
			if !strings.Contains(k.output(), "reconnected") {
				return false
			}
		}
		return true
	})
	for i, k := range ks {
		pys[i].close()
		k.signal(syscall.SIGTERM)
	}
	for i, k := range ks {
		if code := k.waitExit(t, 30*time.Second); code != 0 {
			t.Errorf("kernel %d: exit %d:\n%s", i, code, k.output())
		}
	}
}

// The master killed with SIGKILL while a cell runs: the kernel reconnects
// through a new master (started in the dead one's place, one more login),
// and the cell's reply still arrives, its state intact.
func TestMasterKilledDuringCell(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	k, cf := e.launch()
	py := startPyClient(t, e, cf)
	if r := py.exec(t, "x = 5", "x", 60*time.Second); r.Value != "5" {
		t.Fatalf("x = 5: %+v", r)
	}
	old := testbed.Masters(e.runtime)
	if len(old) != 1 {
		t.Fatalf("masters %v; want one", old)
	}
	py.send("print('started', flush=True)\nimport time\ntime.sleep(4)\nz = x + 2", "z", 120*time.Second)
	py.waitOutput(t, "started", 30*time.Second)
	syscall.Kill(old[0], syscall.SIGKILL)
	if r := py.recv(t, 90*time.Second); r.Status != "ok" || r.Value != "7" {
		t.Fatalf("the cell that ran while the master died: %+v\n%s", r, k.output())
	}
	now := testbed.Masters(e.runtime)
	if len(now) != 1 || now[0] == old[0] {
		t.Fatalf("masters after the kill: %v (the killed one was %d)", now, old[0])
	}
	waitFor(t, 30*time.Second, "the kernel to log its reconnect", func() bool { return strings.Contains(k.output(), "reconnected") })
	if n := strings.Count(logText(e.sshd.LogFile), "Accepted publickey"); n != 2 {
		t.Errorf("%d logins in sshd's log; want 2 (the new master's re-dial)", n)
	}
	py.close()
	k.signal(syscall.SIGTERM)
	if code := k.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d:\n%s", code, k.output())
	}
	e.waitNoRemote(20 * time.Second)
}

// A host with a key and a verification code: gopyk connect asks for the
// code once, on its terminal; then five launches by jupyter_client's
// KernelManager, with no terminal, run without being asked anything, all
// through the one login.
func TestConnectOnceThenLaunchesAskNothing(t *testing.T) {
	otp := testbed.NewTOTP(t)
	e := loginEnv(t, "gpk_code_connect", otp.PAMLine()+pamTail,
		"PasswordAuthentication no", "KbdInteractiveAuthentication yes", "AuthenticationMethods publickey,keyboard-interactive")
	m, s := openPTY(t)
	ctx, cancel := context.WithTimeout(context.Background(), 180*time.Second)
	defer cancel()
	c := e.cmd(ctx, filepath.Join(binDir, "gopyk"), "connect", "--kernel-name", e.spec)
	c.Stdin, c.Stdout, c.Stderr = s, s, s
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	scr := readScreen(m)
	defer func() {
		if t.Failed() {
			t.Logf("terminal:\n%s\nsshd log:\n%s", scr.buf.String(), logText(e.sshd.LogFile))
		}
	}()
	scr.waitFor(t, 60*time.Second, "("+testbed.PasswordUser+"@127.0.0.1) Verification code: ")
	fmt.Fprintf(m, "%s\n", otp.Code(t))
	if err := c.Wait(); err != nil {
		t.Fatalf("gopyk connect: %v", err)
	}
	scr.waitFor(t, 10*time.Second, "Connected to "+e.sshd.Alias)

	script := `import sys
from jupyter_client import KernelManager
for i in range(5):
    km = KernelManager(kernel_name=sys.argv[1])
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=90)
    got = []
    kc.execute_interactive("import getpass; print(getpass.getuser())", timeout=60,
                           output_hook=lambda m: got.append(m["content"].get("text", "")))
    kc.stop_channels()
    km.shutdown_kernel(now=False)
    print("launch", i, "ran as", "".join(got).strip(), flush=True)
`
	kctx, kcancel := context.WithTimeout(context.Background(), 300*time.Second)
	defer kcancel()
	km := e.cmd(kctx, python, "-c", script, e.spec)
	km.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // no terminal, as under JupyterLab
	out, err := km.CombinedOutput()
	if err != nil || strings.Count(string(out), "ran as "+testbed.PasswordUser) != 5 {
		t.Fatalf("five launches without a terminal: %v\n%s", err, out)
	}
	if n := strings.Count(logText(e.sshd.LogFile), "Accepted keyboard-interactive/pam"); n != 1 {
		t.Fatalf("%d key + code logins in sshd's log; want gopyk connect's one", n)
	}
	if strings.Count(scr.buf.String(), "Verification code") != 1 {
		t.Fatalf("asked more than once:\n%s", scr.buf.String())
	}
	e.waitNoRemote(20 * time.Second)
}
