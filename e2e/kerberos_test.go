//go:build linux

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopyk/gopyk/testbed"
)

// Kerberos, as at CERN and many labs: `kinit`, then `ssh host` logs in by
// GSSAPI, which golang.org/x/crypto cannot do. A spec with --ssh-client
// openssh launches through the user's ssh, and interrupts, restarts and
// reconnects after a drop (a new GSSAPI login with the same ticket). The
// KDC (Debian's krb5-kdc) and sshd are the test's own, on loopback, each
// with its own config files.
func TestKerberosOpenSSHClient(t *testing.T) {
	t.Parallel()
	kdc := testbed.StartKDC(t, "127.0.0.1")
	sshd := testbed.SSHDForTest(t, testbed.Options{IsolateHome: true, Env: kdc.SSHDEnv(),
		Override: []string{"GSSAPIAuthentication yes", "GSSAPIStrictAcceptorCheck no", "PubkeyAuthentication no"}})
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	block := sshd.ConfigBlock() + "  GSSAPIAuthentication yes\n  PreferredAuthentications gssapi-with-mic\n"
	if err := os.WriteFile(cfg, []byte(block), 0o644); err != nil {
		t.Fatal(err)
	}
	e := localEnv(t, sshd, "gpk_krb")
	e.vars = append(e.vars, kdc.Kinit(t, sshd.User)...)
	e.gopyk("add", "--kernel-name", e.spec, "--ssh-host-alias", sshd.Alias, "--ssh-config", cfg,
		"--remote-kernel-name", "python3", "--remote-python", python, "--ssh-client", "openssh")
	logins := func() int { return strings.Count(logText(sshd.LogFile), "Accepted gssapi-with-mic for "+sshd.User) }

	k, cf := e.launch()
	c := e.client(cf)
	if r := execute(t, c, "x = 5"); r.Status != "ok" {
		t.Fatalf("x = 5: %+v", r)
	}
	if n := logins(); n != 1 {
		t.Fatalf("%d GSSAPI logins after the launch, want 1:\n%s", n, logText(sshd.LogFile))
	}
	interruptSleep(t, c, func() { k.signal(syscall.SIGINT) })
	alive(t, k)

	// A drop: the server side of the connection dies, and with it ssh.
	sshd.KillConns()
	waitFor(t, 60*time.Second, "the launcher to reconnect", func() bool {
		return strings.Contains(k.output(), "reconnected")
	})
	if r := execute(t, c, "x + 1"); r.Result != "6" {
		t.Fatalf("after the reconnect: %+v, want 6 (state kept)", r)
	}
	if n := logins(); n != 2 {
		t.Fatalf("%d GSSAPI logins, want 2 (launch, reconnect)", n)
	}

	c.Close()
	k.signal(syscall.SIGUSR1)
	waitFor(t, 60*time.Second, "the launcher to report the restart", func() bool {
		return strings.Contains(k.output(), "remote kernel restarted")
	})
	c2 := e.client(cf)
	if r := execute(t, c2, "'x' in dir()"); r.Result != "False" {
		t.Fatalf("after SIGUSR1 restart: %q, want False (fresh kernel)", r.Result)
	}
	c2.Close()
	out := k.output()
	if !strings.Contains(out, "logged in with OpenSSH's ssh") {
		t.Errorf("log does not say which client logged in:\n%s", out)
	}
	k.signal(syscall.SIGTERM)
	if code := k.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, k.output())
	}
	e.waitNoRemote(15 * time.Second)
}
