//go:build linux

package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopyk/gopyk/testbed"
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
	if !strings.Contains(out, e.sshd.Alias+" (") || !strings.Contains(out, "connected since") || !strings.Contains(out, "1 logins") {
		t.Fatalf("gopyk connect --status: %s", out)
	}
	out = e.gopyk("connect", "--stop", "--ssh-config", e.sshd.ConfigFile, e.sshd.Alias)
	if !strings.Contains(out, "Stopped the master of "+e.sshd.Alias) {
		t.Fatalf("gopyk connect --stop: %s", out)
	}
	if out := e.gopyk("connect", "--status"); !strings.Contains(out, "No master runs.") {
		t.Fatalf("status after stop: %s", out)
	}
}

// A 30 s outage with five kernels on one gopyk master: all five come back
// with their state, and the master dials once for all of them.
func TestNetnsSharedMasterOutage30s(t *testing.T) {
	t.Parallel()
	e, ns := newNetEnv(t, 120)
	runChild(t, e, ns, childConfig{Mode: "shared", Kernels: 5, Down: 30 * time.Second}, 6*time.Minute)
	if n := strings.Count(logText(e.sshd.LogFile), "Accepted publickey"); n != 2 {
		t.Errorf("%d logins in sshd's log; want 2: the master's first, and one re-dial for the five kernels", n)
	}
	waitNoSessions(t, e)
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
	for i, k := range ks {
		if !strings.Contains(k.output(), "reconnected") {
			t.Errorf("kernel %d did not log its reconnect:\n%s", i, k.output())
		}
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
	if !strings.Contains(k.output(), "reconnected") {
		t.Errorf("no reconnect in the kernel's log:\n%s", k.output())
	}
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
