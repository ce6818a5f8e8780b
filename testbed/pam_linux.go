package testbed

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// PasswordUser is the login user of password and verification-code tests;
// scripts/setup.sh creates it. Its password is set by UserPassword.
const PasswordUser = "gpk14pw"

var (
	passwordOnce sync.Once
	password     string
	passwordErr  error
)

// passwordFile holds PasswordUser's password for every test process of
// this boot: `go test ./...` runs several packages at once, and each setting
// its own password would refuse the others' logins mid-test. Root only.
const passwordFile = "/run/gopyk-test-gpk14pw.password"

// UserPassword gives PasswordUser a random password (once per boot, shared
// by every test process under a lock; set through chpasswd's stdin, never
// on a command line) and returns it.
func UserPassword(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("testbed: password logins need sshd and chpasswd as root (CI runs as root)")
	}
	passwordOnce.Do(func() { password, passwordErr = sharedPassword() })
	if passwordErr != nil {
		t.Fatal(passwordErr)
	}
	return password
}

func sharedPassword() (string, error) {
	lock, err := os.OpenFile(passwordFile+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", fmt.Errorf("testbed: lock %s: %w", passwordFile, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("testbed: lock %s: %w", passwordFile, err)
	}
	if b, err := os.ReadFile(passwordFile); err == nil && len(b) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	b := make([]byte, 12)
	rand.Read(b)
	pw := "Gpk14-" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "chpasswd")
	cmd.Stdin = strings.NewReader(PasswordUser + ":" + pw + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("testbed: set the password of %s (run make setup to create the user): %v: %s", PasswordUser, err, out)
	}
	if err := os.WriteFile(passwordFile+".tmp", []byte(pw+"\n"), 0o600); err != nil {
		return "", err
	}
	return pw, os.Rename(passwordFile+".tmp", passwordFile)
}

// PAMService writes /etc/pam.d/<name> with body under a name unique to
// this test (gpk14-…) and returns the path of an sshd symlink of that name,
// for Options.Program. t.Cleanup removes both.
func PAMService(t testing.TB, body string) string {
	t.Helper()
	b := make([]byte, 6)
	rand.Read(b)
	name := "gpk14-" + hex.EncodeToString(b)
	pamFile := filepath.Join("/etc/pam.d", name)
	if err := os.WriteFile(pamFile, []byte(body), 0o644); err != nil {
		t.Fatalf("testbed: write PAM service %s: %v", pamFile, err)
	}
	t.Cleanup(func() { os.Remove(pamFile) })
	dir, err := os.MkdirTemp("", "gpk-14-sshd-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	prog := filepath.Join(dir, name)
	if err := os.Symlink(SSHDPath, prog); err != nil {
		t.Fatal(err)
	}
	return prog
}

// TOTP is a google-authenticator secret for pam_google_authenticator.
type TOTP struct {
	File   string // the secret file (root's, 0400), for secret= in the PAM line
	secret string
}

// NewTOTP writes a fresh TOTP secret file that t.Cleanup removes.
func NewTOTP(t testing.TB) *TOTP {
	t.Helper()
	b := make([]byte, 10)
	rand.Read(b)
	secret := base32.StdEncoding.EncodeToString(b)
	dir, err := os.MkdirTemp("", "gpk-14-totp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	file := filepath.Join(dir, "google_authenticator")
	// No DISALLOW_REUSE: several logins in one 30 s window use one code.
	body := secret + "\n\" RATE_LIMIT 100 30\n\" WINDOW_SIZE 17\n\" TOTP_AUTH\n"
	if err := os.WriteFile(file, []byte(body), 0o400); err != nil {
		t.Fatal(err)
	}
	return &TOTP{File: file, secret: secret}
}

// PAMLine is the auth line that asks for this secret's code as root reads it.
func (o *TOTP) PAMLine() string {
	return "auth required pam_google_authenticator.so secret=" + o.File + " user=root\n"
}

// Code is the current verification code, from oathtool (the secret on its stdin).
func (o *TOTP) Code(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "oathtool", "--totp", "-b", "-")
	cmd.Stdin = strings.NewReader(o.secret + "\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("testbed: oathtool (install oathtool; run make setup): %v", err)
	}
	return strings.TrimSpace(string(out))
}

// isSSHD tells this sshd's own processes (listener and per-connection)
// from the sessions' programs: their comm is the program's name, which the
// kernel cuts to 15 bytes.
func (s *SSHD) isSSHD(p proc) bool {
	name := filepath.Base(s.program)
	if len(name) > 15 {
		name = name[:15]
	}
	return p.comm == name
}

// Askpass writes an SSH_ASKPASS program standing in for the user: it
// answers a verification code (from totp, when given) to a prompt that asks
// for one and password to any other, and appends each prompt to the file
// Prompts returns. The secrets sit in 0600 files beside it, never on a
// command line.
func Askpass(t testing.TB, password string, totp *TOTP) *AskpassProgram {
	t.Helper()
	dir, err := os.MkdirTemp("", "gpk-14-askpass-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	a := &AskpassProgram{Path: filepath.Join(dir, "askpass"), log: filepath.Join(dir, "prompts")}
	pw, secret := filepath.Join(dir, "password"), filepath.Join(dir, "secret")
	if err := os.WriteFile(pw, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code := "echo no-code"
	if totp != nil {
		if err := os.WriteFile(secret, []byte(totp.secret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code = "oathtool --totp -b - < " + secret
	}
	script := "#!/bin/sh\nprintf '%s\\n' \"$1\" >> " + a.log + "\ncase \"$1\" in\n*erification*) " + code + " ;;\n*) cat " + pw + " ;;\nesac\n"
	if err := os.WriteFile(a.Path, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	return a
}

// AskpassProgram is the program Askpass wrote.
type AskpassProgram struct {
	Path string
	log  string
}

// Env is SSH_ASKPASS set to this program, forced (no display needed), on
// top of env.
func (a *AskpassProgram) Env(env []string) []string {
	return append(append([]string(nil), env...), "SSH_ASKPASS="+a.Path, "SSH_ASKPASS_REQUIRE=force")
}

// Prompts are the questions asked so far, one per line.
func (a *AskpassProgram) Prompts() []string {
	b, _ := os.ReadFile(a.log)
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}
