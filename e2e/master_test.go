//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopyk/gopyk/testbed"
)

// passwordSSHD is a password-only sshd (PAM pam_unix) for the password user.
func passwordSSHD(t *testing.T, opts testbed.Options) *testbed.SSHD {
	t.Helper()
	testbed.UserPassword(t)
	opts.User, opts.IsolateHome = testbed.PasswordUser, true
	opts.Program = testbed.PAMService(t, "auth required pam_unix.so\n"+pamTail)
	opts.Override = append([]string{"UsePAM yes", "PasswordAuthentication yes", "KbdInteractiveAuthentication no", "PubkeyAuthentication no"}, opts.Override...)
	return testbed.SSHDForTest(t, opts)
}

// kmCell is what Jupyter does with a kernel: KernelManager starts it (no
// terminal: a new session, stdin a pipe), one cell runs, it is shut down.
const kmCell = `
import sys
from jupyter_client import KernelManager
km = KernelManager(kernel_name=sys.argv[1])
km.start_kernel()
kc = km.client(); kc.start_channels()
try:
    kc.wait_for_ready(timeout=60)
    out = []
    r = kc.execute_interactive("import getpass; print('USER=' + getpass.getuser())",
        timeout=60, output_hook=lambda m: out.append(m["content"].get("text", "")))
    print("".join(out), "STATUS=" + r["content"]["status"], flush=True)
finally:
    kc.stop_channels()
    km.shutdown_kernel()
`

// runKM runs kmCell for e's spec with env, without a terminal, and checks
// that the cell ran as the remote user.
func (e *env) runKM(env []string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	c := e.cmd(ctx, python, "-c", kmCell, e.spec)
	c.Env = env
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	out, err := c.CombinedOutput()
	if err != nil {
		e.t.Fatalf("KernelManager: %v\n%s", err, out)
	}
	for _, want := range []string{"USER=" + e.sshd.User, "STATUS=ok"} {
		if !strings.Contains(string(out), want) {
			e.t.Fatalf("KernelManager's output lacks %q:\n%s", want, out)
		}
	}
	return string(out)
}

// without returns env without the variables named.
func without(env []string, names ...string) []string {
	var out []string
	for _, kv := range env {
		keep := true
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				keep = false
			}
		}
		if keep {
			out = append(out, kv)
		}
	}
	return out
}

// A password-only host and a master the user opened by hand (`ssh -M -f
// -N`, the password typed once): Jupyter's launch goes through it with no
// terminal and nobody to ask, sshd sees no new login, and gopyk list is all
// (v), saying it uses the master.
func TestKernelManagerThroughUserMaster(t *testing.T) {
	t.Parallel()
	sshd := passwordSSHD(t, testbed.Options{})
	cfg := sshd.MasterConfig(t, "BatchMode no")
	ap := testbed.Askpass(t, testbed.UserPassword(t), nil)
	tm := sshd.StartMaster(t, cfg, ap.Env(os.Environ()))
	e := localEnv(t, sshd, "gpk_master")
	e.gopyk("add", "--kernel-name", e.spec, "--ssh-host-alias", sshd.Alias, "--ssh-config", cfg,
		"--remote-kernel-name", "python3", "--remote-python", python)
	logins := func() int { return strings.Count(logText(sshd.LogFile), "Accepted password") }
	if n := logins(); n != 1 {
		t.Fatalf("%d logins before the launch, want the master's one", n)
	}
	env := without(e.vars, "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", "DISPLAY", "WAYLAND_DISPLAY")
	e.runKM(env)
	if f := masterForwards(t, tm.PID); len(f) > 0 {
		t.Fatalf("gopyk-kernel left forwards in the user's master: %v", f)
	}
	out, code := e.gopykCode("list", "-r")
	t.Logf("gopyk list:\n%s", out)
	if code != 0 || strings.Contains(out, "(x)") {
		t.Fatalf("gopyk list exit %d:\n%s", code, out)
	}
	for _, want := range []string{"(v) controlpath: " + tm.Path + ": an OpenSSH master answers",
		"via OpenSSH master " + tm.Path, "Forwarding:", "(v) unix sockets"} {
		if !strings.Contains(out, want) {
			t.Errorf("gopyk list lacks %q:\n%s", want, out)
		}
	}
	if n := logins(); n != 1 {
		t.Fatalf("%d logins in sshd's log, want only the master's:\n%s", n, logText(sshd.LogFile))
	}
	if n := strings.Count(logText(sshd.LogFile), "Failed password"); n != 0 {
		t.Fatalf("%d failed logins", n)
	}
	if len(ap.Prompts()) != 1 {
		t.Fatalf("askpass asked %q; only the master should have asked", ap.Prompts())
	}
	if !tm.Alive() {
		t.Fatal("the user's master is gone after the launch")
	}
	e.waitNoRemote(20 * time.Second)
}

// masterForwards lists the unix sockets an ssh master listens on besides
// its control socket: forwards (ssh -O forward -L) still in place.
func masterForwards(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		// Num RefCount Protocol Flags Type St Inode Path; 00010000 = listening
		if f := strings.Fields(l); len(f) == 8 && inodes[f[6]] && f[3] == "00010000" && strings.Contains(filepath.Base(f[7]), "f-") {
			out = append(out, f[7])
		}
	}
	return out
}

// SSH_ASKPASS with SSH_ASKPASS_REQUIRE=force answers the password, once per
// connection, with either client.
func TestAskpassOncePerConnection(t *testing.T) {
	t.Parallel()
	sshd := passwordSSHD(t, testbed.Options{})
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(cfg, []byte(strings.Replace(sshd.ConfigBlock(), "BatchMode yes", "BatchMode no", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, client := range []string{"native", "openssh"} {
		t.Run(client, func(t *testing.T) {
			ap := testbed.Askpass(t, testbed.UserPassword(t), nil)
			e := localEnv(t, sshd, "gpk_askpass_"+client)
			e.gopyk("add", "--kernel-name", e.spec, "--ssh-host-alias", sshd.Alias, "--ssh-config", cfg,
				"--remote-kernel-name", "python3", "--remote-python", python, "--ssh-client", client)
			e.runKM(ap.Env(without(e.vars, "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE")))
			p := ap.Prompts()
			if len(p) != 1 || !strings.Contains(strings.ToLower(p[0]), "password") {
				t.Fatalf("askpass asked %q, want one password prompt for the one connection", p)
			}
			e.waitNoRemote(20 * time.Second)
		})
	}
}

// The HPC case, key + verification code: a master opened once (the code
// answered then), and `jupyter console --kernel X` from a pipe, with no
// terminal at all, goes through it.
func TestConsoleFromPipeThroughMasterKeyAndCode(t *testing.T) {
	t.Parallel()
	otp := testbed.NewTOTP(t)
	sshd := testbed.SSHDForTest(t, testbed.Options{User: testbed.PasswordUser, IsolateHome: true,
		Program:  testbed.PAMService(t, otp.PAMLine()+pamTail),
		Override: []string{"UsePAM yes", "PasswordAuthentication no", "KbdInteractiveAuthentication yes", "AuthenticationMethods publickey,keyboard-interactive"}})
	cfg := sshd.MasterConfig(t, "BatchMode no")
	ap := testbed.Askpass(t, "not-asked", otp)
	sshd.StartMaster(t, cfg, ap.Env(os.Environ()))
	if p := ap.Prompts(); len(p) != 1 || !strings.Contains(p[0], "("+testbed.PasswordUser+"@127.0.0.1) Verification code") {
		t.Fatalf("opening the master asked %q", p)
	}
	e := localEnv(t, sshd, "gpk_code_master")
	e.gopyk("add", "--kernel-name", e.spec, "--ssh-host-alias", sshd.Alias, "--ssh-config", cfg,
		"--remote-kernel-name", "python3", "--remote-python", python)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c := e.cmd(ctx, python, "-m", "jupyter_console", "--kernel", e.spec, "--simple-prompt", "--ZMQTerminalInteractiveShell.kernel_timeout=60")
	c.Env = without(e.vars, "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE")
	c.Stdin = strings.NewReader("import getpass\nprint('remote user:', getpass.getuser())\n")
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	out, err := c.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "remote user: "+testbed.PasswordUser) {
		t.Fatalf("jupyter console: %v\n%s", err, out)
	}
	if n := strings.Count(logText(sshd.LogFile), "Accepted keyboard-interactive/pam"); n != 1 {
		t.Fatalf("%d key + code logins in sshd's log, want the master's one", n)
	}
	if len(ap.Prompts()) != 1 {
		t.Fatalf("asked again: %q", ap.Prompts())
	}
	e.waitNoRemote(20 * time.Second)
}

// A master to a server that refuses forwarding: the streams go over one
// session through the master instead, and say so once.
func TestUserMasterServerRefusesForwarding(t *testing.T) {
	t.Parallel()
	sshd := testbed.SSHDForTest(t, testbed.Options{IsolateHome: true, Forwarding: testbed.NoStreamLocal})
	cfg := sshd.MasterConfig(t)
	sshd.StartMaster(t, cfg, nil)
	e := localEnv(t, sshd, "gpk_master_session")
	e.gopyk("add", "--kernel-name", e.spec, "--ssh-host-alias", sshd.Alias, "--ssh-config", cfg,
		"--remote-kernel-name", "python3", "--remote-python", python)
	k, cf := e.launch()
	c := e.client(cf)
	if r := execute(t, c, "6*7"); r.Result != "42" {
		t.Fatalf("6*7: %+v", r)
	}
	out := k.output()
	for _, want := range []string{"using the OpenSSH master", "one exec session carries every stream", "streams=session"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(logText(sshd.LogFile), "Accepted publickey"); n != 1 {
		t.Fatalf("%d logins, want the master's one", n)
	}
	c.Close()
	k.signal(syscall.SIGTERM)
	if code := k.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, k.output())
	}
	e.waitNoRemote(15 * time.Second)
}

// A 30 s network drop on a password host, the kernel launched through the
// user's master (no terminal, nobody to ask): the master dies with the
// link; while none is back nobody can answer the password, so gopyk says
// so once, keeps the kernel and sends no password (at most 3 failed logins
// in 2 minutes, none here); the user reopens the master and the kernel
// resumes through it with its state.
func TestNetnsMasterDropPasswordHost(t *testing.T) {
	t.Parallel()
	ns := testbed.NetnsForTest(t)
	sshd := passwordSSHD(t, testbed.Options{Netns: ns})
	cfg := sshd.MasterConfig(t, "BatchMode no", "ServerAliveInterval 1", "ServerAliveCountMax 3", "ConnectTimeout 5")
	ap := testbed.Askpass(t, testbed.UserPassword(t), nil)
	e := localEnv(t, sshd, "gpk_master_drop")
	e.gopyk("add", "--kernel-name", e.spec, "--ssh-host-alias", sshd.Alias, "--ssh-config", cfg,
		"--remote-kernel-name", "python3", "--remote-python", python, "--grace", "600")
	runChild(t, e, ns, childConfig{Mode: "master", Master: cfg, Askpass: ap.Path, Down: 30 * time.Second, NoMaster: 2 * time.Minute}, 5*time.Minute)
	if p := ap.Prompts(); len(p) != 2 {
		t.Errorf("askpass asked %d times, want 2 (the user opened the master twice): %q", len(p), p)
	}
	waitNoSessions(t, e)
}

func childMasterDrop(t *testing.T, e *env, cfg childConfig) {
	alias := readGopyk(t, e).SSHHostAlias
	user := append(without(os.Environ(), "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE"), "SSH_ASKPASS="+cfg.Askpass, "SSH_ASKPASS_REQUIRE=force")
	m, err := testbed.OpenMaster(cfg.Master, alias, user)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	e.vars = without(e.vars, "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE") // under Jupyter: nobody to ask
	sshdLog := filepath.Join(cfg.TestbedDir, "sshd.log")
	failed := func() int { return strings.Count(logText(sshdLog), "Failed password") }
	k, cf := e.launch()
	py := startPyClient(t, e, cf)
	if r := py.exec(t, "x = 41", "x", 30*time.Second); r.Value != "41" {
		t.Fatalf("before the drop: %+v", r)
	}
	tDown := link(t, cfg.Iface, "down")
	waitFor(t, 30*time.Second, "the master to die with the link", func() bool { return !m.Alive() })
	waitFor(t, 30*time.Second, "the launcher to notice", func() bool { return strings.Contains(k.output(), "connection lost") })
	time.Sleep(time.Until(tDown.Add(cfg.Down))) // the outage itself, not a synchronisation
	link(t, cfg.Iface, "up")
	time.Sleep(cfg.NoMaster) // the user is away: the window being measured, not a synchronisation
	alive(t, k)
	if n := failed(); n > 3 {
		t.Fatalf("%d failed logins in %v without a master, want at most 3", n, cfg.NoMaster)
	}
	if n := strings.Count(k.output(), "cannot log in again"); n != 1 {
		t.Fatalf("the launcher said it cannot log in %d times, want once:\n%s", n, k.output())
	}
	m2, err := testbed.OpenMaster(cfg.Master, alias, user)
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Stop()
	tBack := time.Now()
	if r := py.exec(t, "x + 1", "x + 1", 60*time.Second); r.Status != "ok" || r.Value != "42" {
		t.Fatalf("after the master is back: %+v (state lost?)", r)
	}
	t.Logf("failed logins while no master: %d; cell done %v after the master was back", failed(), time.Since(tBack).Round(time.Millisecond))
	if n := strings.Count(k.output(), "reconnected"); n != 1 {
		t.Errorf("reconnected %d times, want once:\n%s", n, k.output())
	}
	py.close()
	k.signal(syscall.SIGTERM)
	if code := k.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, k.output())
	}
}

// `gopyk list` on a terminal asks for the password there (the native
// client), and every check passes.
func TestListAsksOnTerminal(t *testing.T) {
	t.Parallel()
	sshd := passwordSSHD(t, testbed.Options{})
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(cfg, []byte(strings.Replace(sshd.ConfigBlock(), "BatchMode yes", "BatchMode no", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	e := localEnv(t, sshd, "gpk_list_tty")
	e.gopyk("add", "--kernel-name", e.spec, "--ssh-host-alias", sshd.Alias, "--ssh-config", cfg,
		"--remote-kernel-name", "python3", "--remote-python", python)
	m, s := openPTY(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := e.cmd(ctx, filepath.Join(binDir, "gopyk"), "list", "-r")
	c.Env = append(without(e.vars, "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE"), "NO_COLOR=1")
	c.Stdin, c.Stdout, c.Stderr = s, s, s
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	scr := readScreen(m)
	scr.waitFor(t, 60*time.Second, testbed.PasswordUser+"@127.0.0.1's password: ")
	pw := testbed.UserPassword(t)
	fmt.Fprintf(m, "%s\n", pw)
	if err := c.Wait(); err != nil {
		t.Fatalf("gopyk list: %v\n%s", err, scr.buf.String())
	}
	<-scr.done
	out := scr.buf.String()
	if strings.Contains(out, "(x)") || !strings.Contains(out, "Remote Kernel Module:  (v)") {
		t.Fatalf("gopyk list:\n%s", out)
	}
	if strings.Contains(out, pw) {
		t.Fatal("the password was echoed")
	}
}

// --ssh-client openssh under `jupyter console --kernel X` in a terminal:
// KernelManager starts gopyk-kernel in a new session, so ssh has no
// terminal of its own; gopyk, as ssh's askpass, asks on the user's terminal
// with ssh's own prompt, without echo, and the cell runs.
func TestConsoleAsksForOpenSSHPassword(t *testing.T) {
	t.Parallel()
	sshd := passwordSSHD(t, testbed.Options{})
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(cfg, []byte(strings.Replace(sshd.ConfigBlock(), "BatchMode yes", "BatchMode no", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	e := localEnv(t, sshd, "gpk_openssh_tty")
	e.gopyk("add", "--kernel-name", e.spec, "--ssh-host-alias", sshd.Alias, "--ssh-config", cfg,
		"--remote-kernel-name", "python3", "--remote-python", python, "--ssh-client", "openssh")
	m, s := openPTY(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c := e.cmd(ctx, python, "-m", "jupyter_console", "--kernel", e.spec, "--simple-prompt",
		"--ZMQTerminalInteractiveShell.kernel_timeout=60")
	c.Env = without(e.vars, "SSH_ASKPASS", "SSH_ASKPASS_REQUIRE")
	c.Stdin, c.Stdout, c.Stderr = s, s, s
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	scr := readScreen(m)
	defer func() {
		if t.Failed() {
			t.Logf("terminal:\n%s\nsshd log:\n%s", scr.buf.String(), logText(sshd.LogFile))
		}
	}()
	scr.waitFor(t, 60*time.Second, testbed.PasswordUser+"@127.0.0.1's password: ")
	pw := testbed.UserPassword(t)
	fmt.Fprintf(m, "%s\n", pw)
	scr.waitFor(t, 60*time.Second, "In [1]: ")
	fmt.Fprint(m, "import getpass; getpass.getuser()\n")
	scr.waitFor(t, 30*time.Second, "Out[1]: '"+testbed.PasswordUser+"'")
	fmt.Fprint(m, "exit\n")
	if err := c.Wait(); err != nil {
		t.Fatalf("jupyter console: %v", err)
	}
	if strings.Contains(scr.buf.String(), pw) {
		t.Fatal("the password was echoed on the terminal")
	}
	if n := strings.Count(logText(sshd.LogFile), "Accepted password for "+testbed.PasswordUser); n != 1 {
		t.Fatalf("%d password logins, want 1", n)
	}
	e.waitNoRemote(15 * time.Second)
}
