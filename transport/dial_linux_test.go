package transport

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/sshconf"
	"github.com/gopyk/gopyk/testbed"
)

const pamTail = "account required pam_permit.so\nsession required pam_permit.so\n"

func count(t *testing.T, s *testbed.SSHD, what string) int {
	t.Helper()
	b, err := os.ReadFile(s.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), what)
}

func resolve(t *testing.T, alias, cfg string) sshconf.Route {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := sshconf.Resolve(ctx, alias, sshconf.Options{ConfigFile: cfg})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func dial(t *testing.T, route sshconf.Route, o Options) Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, route, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// echo runs a command through c and returns its stdout.
func echo(t *testing.T, c Conn, cmd string) string {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := s.StdoutPipe()
	if err := s.Start(cmd); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(out)
	if err := s.Wait(); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return string(b)
}

// unixEcho starts an echo server on a unix socket on the host through c,
// for one connection, and returns its path.
func unixEcho(t *testing.T, c Conn, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "echo-"+randomID()+".sock")
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, _ := s.StdoutPipe()
	if err := s.Start(`exec python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)
print("listening", flush=True)
c, _ = s.accept(); c.sendall(c.recv(100)); c.close()
' ` + path); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if l, err := bufio.NewReader(out).ReadString('\n'); err != nil || l != "listening\n" {
		t.Fatalf("echo server: %q %v", l, err)
	}
	return path
}

func roundTrip(t *testing.T, c Conn, path string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := c.DialUnix(ctx, path)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	conn.Write([]byte("ping"))
	b, err := io.ReadAll(conn)
	if err != nil {
		return err
	}
	if string(b) != "ping" {
		t.Fatalf("echo: %q", b)
	}
	return nil
}

// A master the user opened (ssh -M -f -N) is used whatever the spec's
// client: no new login; closing our side leaves it running.
func TestDialUsesUserMaster(t *testing.T) {
	s := testbed.SSHDForTest(t, testbed.Options{IsolateHome: true})
	cfg := s.MasterConfig(t)
	tm := s.StartMaster(t, cfg, nil)
	route := resolve(t, s.Alias, cfg)
	if route.Target().ControlPath != tm.Path {
		t.Fatalf("resolved ControlPath %q, master at %q", route.Target().ControlPath, tm.Path)
	}
	before := count(t, s, "Accepted publickey")
	for _, client := range []string{"", kernelspec.SSHClientNative, kernelspec.SSHClientOpenSSH} {
		c := dial(t, route, Options{Client: client, ConfigFile: cfg})
		if !strings.Contains(c.Via(), "OpenSSH master "+tm.Path) {
			t.Fatalf("client %q: via %q, want the master", client, c.Via())
		}
		if got := echo(t, c, "echo ok"); got != "ok\n" {
			t.Fatalf("session: %q", got)
		}
		if err := roundTrip(t, c, unixEcho(t, c, s.Home)); err != nil {
			t.Fatal(err)
		}
		var fwds []string
		for _, l := range c.(*masterConn).fwds {
			fwds = append(fwds, l)
		}
		c.Close()
		if c.Err() == nil || !errors.Is(c.Err(), sshconf.ErrClosed) {
			t.Fatalf("Err after Close: %v", c.Err())
		}
		if !tm.Alive() {
			t.Fatal("closing our connection stopped the user's master")
		}
		for _, l := range fwds {
			if _, err := os.Stat(l); err == nil {
				t.Errorf("forward socket %s left behind", l)
			}
		}
	}
	if n := count(t, s, "Accepted publickey") - before; n != 0 {
		t.Fatalf("%d new logins in sshd's log", n)
	}
}

// ssh_client openssh without a master in the config: one ssh logs in and
// becomes a master of our own, which Close ends.
func TestDialOpenSSHPrivateMaster(t *testing.T) {
	s := testbed.SSHDForTest(t, testbed.Options{IsolateHome: true})
	route := resolve(t, s.Alias, s.ConfigFile)
	c := dial(t, route, Options{Client: kernelspec.SSHClientOpenSSH, ConfigFile: s.ConfigFile})
	if !strings.HasPrefix(c.Via(), "ssh (master pid ") {
		t.Fatalf("via %q", c.Via())
	}
	mc := c.(*masterConn)
	pid := mc.m.PID()
	for range 3 {
		if got := echo(t, c, "echo ok"); got != "ok\n" {
			t.Fatalf("session: %q", got)
		}
	}
	if err := roundTrip(t, c, unixEcho(t, c, s.Home)); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "Accepted publickey"); n != 1 {
		t.Fatalf("%d logins, want 1 for the whole connection", n)
	}
	c.Close()
	waitGone(t, pid)
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("master %d still runs", pid)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, bounded
	}
}

// A config that makes `ssh alias` open a persistent shared master
// (ControlMaster auto, ControlPersist): ssh_client openssh opens that very
// master, which outlives us, and the next connection goes through it.
func TestDialOpenSSHSharedMaster(t *testing.T) {
	s := testbed.SSHDForTest(t, testbed.Options{IsolateHome: true})
	cfg := s.MasterConfig(t, "ControlPersist 60")
	route := resolve(t, s.Alias, cfg)
	c := dial(t, route, Options{Client: kernelspec.SSHClientOpenSSH, ConfigFile: cfg})
	pid := c.(*masterConn).m.PID()
	t.Cleanup(func() { killPID(pid) })
	if !strings.Contains(c.Via(), "shared master "+route.Target().ControlPath) {
		t.Fatalf("via %q", c.Via())
	}
	c.Close()
	c = dial(t, route, Options{Client: kernelspec.SSHClientNative, ConfigFile: cfg})
	defer c.Close()
	if !strings.Contains(c.Via(), "OpenSSH master") || c.(*masterConn).m.PID() != pid {
		t.Fatalf("second connection via %q, want the master %d", c.Via(), pid)
	}
	if n := count(t, s, "Accepted publickey"); n != 1 {
		t.Fatalf("%d logins, want 1", n)
	}
}

// passwordSSHD is a password-only sshd (PAM pam_unix) for the password user.
func passwordSSHD(t *testing.T) (*testbed.SSHD, string, string) {
	t.Helper()
	pw := testbed.UserPassword(t)
	s := testbed.SSHDForTest(t, testbed.Options{User: testbed.PasswordUser, IsolateHome: true,
		Program:  testbed.PAMService(t, "auth required pam_unix.so\n"+pamTail),
		Override: []string{"UsePAM yes", "PasswordAuthentication yes", "KbdInteractiveAuthentication no", "PubkeyAuthentication no"}})
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(cfg, []byte(strings.Replace(s.ConfigBlock(), "BatchMode yes", "BatchMode no", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return s, cfg, pw
}

// Nobody can answer the password (no terminal, no SSH_ASKPASS): the error
// says so with the fix, and ssh sent no empty password.
func TestDialOpenSSHCannotAsk(t *testing.T) {
	s, cfg, _ := passwordSSHD(t)
	t.Setenv("SSH_ASKPASS", "")
	// The config's own BatchMode yes forbids asking too.
	batch := filepath.Join(t.TempDir(), "ssh_config")
	if err := os.WriteFile(batch, []byte(s.ConfigBlock()), 0o644); err != nil {
		t.Fatal(err)
	}
	for cfg, why := range map[string]string{cfg: "no terminal, no SSH_ASKPASS", batch: "BatchMode yes"} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := Dial(ctx, resolve(t, s.Alias, cfg), Options{Client: kernelspec.SSHClientOpenSSH, ConfigFile: cfg})
		cancel()
		if !errors.Is(err, sshconf.ErrCannotAsk) {
			t.Fatalf("Dial: %v, want ErrCannotAsk", err)
		}
		for _, want := range []string{"asks user " + testbed.PasswordUser + " for a password", why, "ssh -M -f -N " + s.Alias} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q: %v", want, err)
			}
		}
	}
	if n := count(t, s, "Failed password"); n != 0 {
		t.Fatalf("%d failed logins in sshd's log", n)
	}
}

// SSH_ASKPASS (forced) answers ssh's password prompt, once for the whole
// connection; a wrong answer is a refused login, not a network error.
func TestDialOpenSSHAskpass(t *testing.T) {
	s, cfg, pw := passwordSSHD(t)
	for _, tc := range []struct {
		password string
		want     error
	}{{pw, nil}, {"wrong", sshconf.ErrAuth}} {
		ap := testbed.Askpass(t, tc.password, nil)
		t.Setenv("SSH_ASKPASS", ap.Path)
		t.Setenv("SSH_ASKPASS_REQUIRE", "force")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		c, err := Dial(ctx, resolve(t, s.Alias, cfg), Options{Client: kernelspec.SSHClientOpenSSH, ConfigFile: cfg})
		cancel()
		if tc.want != nil {
			if !errors.Is(err, tc.want) {
				t.Fatalf("wrong password: %v, want ErrAuth", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			echo(t, c, "true")
		}
		c.Close()
		if p := ap.Prompts(); len(p) != 1 || !strings.Contains(p[0], "password") {
			t.Fatalf("askpass asked %q, want one password prompt", p)
		}
	}
}

// Through a master, a server that refuses forwarding shows as a stream
// closed before its first byte: ErrRefused, so the session path takes over.
func TestRefusedForwardThroughMaster(t *testing.T) {
	s := testbed.SSHDForTest(t, testbed.Options{IsolateHome: true, Forwarding: testbed.NoStreamLocal})
	cfg := s.MasterConfig(t)
	s.StartMaster(t, cfg, nil)
	c := dial(t, resolve(t, s.Alias, cfg), Options{ConfigFile: cfg})
	defer c.Close()
	err := roundTrip(t, c, unixEcho(t, c, s.Home))
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("stream through a refusing server: %v, want ErrRefused", err)
	}
}

func TestChoose(t *testing.T) {
	st := func(raw map[string][]string) *sshconf.Settings { return &sshconf.Settings{Alias: "h", Raw: raw} }
	for _, tc := range []struct {
		setting string
		raw     map[string][]string
		want    string
	}{
		{"", nil, kernelspec.SSHClientNative},
		{kernelspec.SSHClientNative, map[string][]string{"pkcs11provider": {"/usr/lib/p11.so"}}, kernelspec.SSHClientNative},
		{kernelspec.SSHClientOpenSSH, nil, kernelspec.SSHClientOpenSSH},
		{kernelspec.SSHClientAuto, map[string][]string{"pkcs11provider": {"/usr/lib/p11.so"}}, kernelspec.SSHClientOpenSSH},
		{kernelspec.SSHClientAuto, map[string][]string{"pkcs11provider": {"none"}}, kernelspec.SSHClientNative},
		// Debian turns GSSAPI on for every host; without a ticket it means nothing.
		{kernelspec.SSHClientAuto, map[string][]string{"gssapiauthentication": {"yes"}}, kernelspec.SSHClientNative},
	} {
		t.Setenv("KRB5CCNAME", "FILE:"+filepath.Join(t.TempDir(), "none"))
		if got, why := Choose(tc.setting, st(tc.raw)); got != tc.want {
			t.Errorf("Choose(%q, %v) = %s (%s), want %s", tc.setting, tc.raw, got, why, tc.want)
		}
	}
}

func killPID(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		p.Kill()
	}
}

// A gopyk killed with -9 leaves its forward in the user's master; the next
// connection through that master takes it out.
func TestStaleForwardRemoved(t *testing.T) {
	s := testbed.SSHDForTest(t, testbed.Options{IsolateHome: true})
	cfg := s.MasterConfig(t)
	s.StartMaster(t, cfg, nil)
	route := resolve(t, s.Alias, cfg)
	c := dial(t, route, Options{ConfigFile: cfg})
	remote := unixEcho(t, c, s.Home)
	mc := c.(*masterConn)
	listen, err := mc.forward(context.Background(), remote)
	if err != nil {
		t.Fatal(err)
	}
	// Make it the forward of a process that is gone.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	rec, _ := json.Marshal(fwdRecord{PID: dead.Process.Pid, Master: route.Target().ControlPath, Remote: remote})
	if err := os.WriteFile(listen+".fwd", rec, 0o600); err != nil {
		t.Fatal(err)
	}
	mc.mu.Lock()
	mc.fwds = map[string]string{} // as if this process had died: nothing to close
	mc.mu.Unlock()
	c.Close()
	if !listening(t, listen) {
		t.Fatal("the master does not listen on the forward's socket")
	}
	c = dial(t, route, Options{ConfigFile: cfg})
	defer c.Close()
	for _, p := range []string{listen, listen + ".fwd"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s left after the next connection through the master", p)
		}
	}
	if listening(t, listen) {
		t.Fatal("the master still listens on the stale forward's socket")
	}
	// The record of a dead gopyk whose master is gone too: its files go.
	gone := filepath.Join(filepath.Dir(listen), "f-"+randomID())
	rec, _ = json.Marshal(fwdRecord{PID: dead.Process.Pid, Master: filepath.Join(t.TempDir(), "no-master"), Remote: remote})
	if err := os.WriteFile(gone+".fwd", rec, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gone, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	dial(t, route, Options{ConfigFile: cfg}).Close()
	for _, p := range []string{gone, gone + ".fwd"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s of a gone master left", p)
		}
	}
}

// listening reports whether a process on this machine listens on the unix
// socket bound at path (/proc/net/unix names it even after an unlink).
func listening(t *testing.T, path string) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 8 && f[7] == path {
			return true
		}
	}
	return false
}
