//go:build linux

package e2e

import (
	"bufio"
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

const pamTail = "account required pam_permit.so\nsession required pam_permit.so\n"

// loginEnv is an env whose sshd logs in the password user with PAM, and
// whose ssh config lets gopyk ask (BatchMode no).
func loginEnv(t *testing.T, spec string, pam string, override ...string) *env {
	t.Helper()
	sshd := testbed.SSHDForTest(t, testbed.Options{User: testbed.PasswordUser, IsolateHome: true,
		Program: testbed.PAMService(t, pam), Override: append([]string{"UsePAM yes"}, override...)})
	e := localEnv(t, sshd, spec)
	cfg := filepath.Join(e.home, "ssh_config")
	block := strings.Replace(sshd.ConfigBlock(), "BatchMode yes", "BatchMode no", 1)
	if err := os.WriteFile(cfg, []byte(block), 0o644); err != nil {
		t.Fatal(err)
	}
	e.gopyk("add", "--kernel-name", spec, "--display-name", "gopyk login", "--ssh-host-alias", sshd.Alias,
		"--ssh-config", cfg, "--remote-kernel-name", "python3", "--remote-python", python)
	return e
}

// screen reads a pty master in the background and lets a test wait for text.
type screen struct {
	buf  syncBuf
	done chan struct{}
}

func readScreen(m *os.File) *screen {
	s := &screen{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		r := bufio.NewReader(m)
		b := make([]byte, 4096)
		for {
			n, err := r.Read(b)
			s.buf.Write(b[:n])
			if err != nil {
				return
			}
		}
	}()
	return s
}

func (s *screen) waitFor(t *testing.T, d time.Duration, text string) {
	t.Helper()
	waitFor(t, d, fmt.Sprintf("%q on the terminal (screen: %q)", text, tail(s.buf.String())), func() bool {
		return strings.Contains(s.buf.String(), text)
	})
}

func tail(s string) string {
	if len(s) > 600 {
		return s[len(s)-600:]
	}
	return s
}

// `jupyter console --kernel X` in a terminal: KernelManager starts
// gopyk-kernel with a pipe on stdin in a new session, yet the server's
// "Verification code" is asked on the user's terminal, prefixed with
// (user@host), without echo, and the cell runs.
func TestConsoleAsksForVerificationCode(t *testing.T) {
	otp := testbed.NewTOTP(t)
	e := loginEnv(t, "gpk_code", otp.PAMLine()+pamTail,
		"PasswordAuthentication no", "KbdInteractiveAuthentication yes", "AuthenticationMethods publickey,keyboard-interactive")
	m, s := openPTY(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c := e.cmd(ctx, python, "-m", "jupyter_console", "--kernel", e.spec, "--simple-prompt",
		"--ZMQTerminalInteractiveShell.kernel_timeout=60")
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
	code := otp.Code(t)
	fmt.Fprintf(m, "%s\n", code)
	scr.waitFor(t, 60*time.Second, "In [1]: ")
	fmt.Fprint(m, "import getpass; getpass.getuser()\n")
	scr.waitFor(t, 30*time.Second, "Out[1]: '"+testbed.PasswordUser+"'")
	fmt.Fprint(m, "exit\n")
	if err := c.Wait(); err != nil {
		t.Fatalf("jupyter console: %v", err)
	}
	if strings.Contains(scr.buf.String(), code) {
		t.Fatal("the verification code was echoed on the terminal")
	}
	if log := logText(e.sshd.LogFile); !strings.Contains(log, "Accepted keyboard-interactive/pam for "+testbed.PasswordUser) {
		t.Fatalf("no key + code login in sshd's log:\n%s", log)
	}
	e.waitNoRemote(15 * time.Second)
}

// Nobody to ask (no terminal, no SSH_ASKPASS): gopyk-kernel fails at once
// with one line naming what the server wants and the fix, and sshd counts
// no failed login.
func TestNoWayToAskSaysSo(t *testing.T) {
	testbed.UserPassword(t)
	e := loginEnv(t, "gpk_pw", "auth required pam_unix.so\n"+pamTail,
		"PasswordAuthentication yes", "KbdInteractiveAuthentication no", "PubkeyAuthentication no")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := e.cmd(ctx, filepath.Join(binDir, "gopyk-kernel"), "--kernel", e.spec, "--connection-file", filepath.Join(e.home, "k.json"))
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // no controlling terminal, as under Jupyter
	t0 := time.Now()
	out, err := c.CombinedOutput()
	if err == nil {
		t.Fatalf("launch without anyone to ask succeeded:\n%s", out)
	}
	if took := time.Since(t0); took > 15*time.Second {
		t.Fatalf("took %v, beyond the connect timeout", took)
	}
	msg := string(out)
	for _, want := range []string{"asks user " + testbed.PasswordUser + " for a password", "no terminal, no SSH_ASKPASS",
		"ssh -M -f -N " + e.sshd.Alias, "set SSH_ASKPASS"} {
		if !strings.Contains(msg, want) {
			t.Errorf("output lacks %q:\n%s", want, msg)
		}
	}
	if n := strings.Count(msg, "ssh -M -f -N"); n != 1 {
		t.Errorf("the fix is said %d times, want once:\n%s", n, msg)
	}
	if n := strings.Count(logText(e.sshd.LogFile), "Failed password"); n > 1 {
		t.Fatalf("%d failed logins in sshd's log", n)
	}
}

func logText(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
