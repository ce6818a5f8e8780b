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
