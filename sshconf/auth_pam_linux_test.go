package sshconf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopyk/gopyk/testbed"
)

// pamPassword is a PAM service that checks the user's Unix password.
const pamPassword = "auth required pam_unix.so\naccount required pam_permit.so\nsession required pam_permit.so\n"

// passwordSSHD is a password-only sshd (PAM, pam_unix) for the password user.
func passwordSSHD(t *testing.T) (*testbed.SSHD, string) {
	pw := testbed.UserPassword(t)
	s := testbed.SSHDForTest(t, testbed.Options{
		User:    testbed.PasswordUser,
		Program: testbed.PAMService(t, pamPassword),
		Override: []string{"UsePAM yes", "PasswordAuthentication yes", "KbdInteractiveAuthentication no",
			"PubkeyAuthentication no"},
	})
	return s, pw
}

// codeSSHD wants a key and then a verification code (the HPC setup).
func codeSSHD(t *testing.T) (*testbed.SSHD, *testbed.TOTP) {
	otp := testbed.NewTOTP(t)
	s := testbed.SSHDForTest(t, testbed.Options{
		User:    testbed.PasswordUser,
		Program: testbed.PAMService(t, otp.PAMLine()+"account required pam_permit.so\nsession required pam_permit.so\n"),
		Override: []string{"UsePAM yes", "PasswordAuthentication no", "KbdInteractiveAuthentication yes",
			"AuthenticationMethods publickey,keyboard-interactive"},
	})
	return s, otp
}

func interactiveSettings(s *testbed.SSHD) *Settings {
	st := tbSettings(s)
	st.BatchMode = false
	st.PasswordAuthentication = true
	st.KbdInteractiveAuthentication = true
	return st
}

func sshdLog(t *testing.T, s *testbed.SSHD) string {
	b, err := os.ReadFile(s.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDialPasswordPrompt(t *testing.T) {
	s, pw := passwordSSHD(t)
	var asked []string
	opts := DialOptions{Interactive: true, answer: func(q string, echo bool) (string, error) {
		asked = append(asked, q)
		if echo {
			t.Errorf("password asked with echo on: %q", q)
		}
		return pw, nil
	}}
	c, err := Dial(testCtx(t), Route{interactiveSettings(s)}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if out := run(t, c, "id -un"); strings.TrimSpace(out) != testbed.PasswordUser {
		t.Fatalf("logged in as %q", out)
	}
	want := testbed.PasswordUser + "@127.0.0.1's password: "
	if len(asked) != 1 || asked[0] != want {
		t.Fatalf("asked %q, want once %q", asked, want)
	}
	if log := sshdLog(t, s); !strings.Contains(log, "Accepted password for "+testbed.PasswordUser) {
		t.Fatalf("no password login in sshd's log:\n%s", log)
	}
}

// Nobody to ask: one line naming what the server wants and the fix, and no
// failed login on the server (no answer was sent).
func TestDialPasswordCannotAsk(t *testing.T) {
	s, _ := passwordSSHD(t)
	_, err := Dial(testCtx(t), Route{interactiveSettings(s)}, DialOptions{})
	if !errors.Is(err, ErrCannotAsk) || errors.Is(err, ErrAuth) {
		t.Fatalf("err = %v, want ErrCannotAsk", err)
	}
	msg := err.Error()
	for _, want := range []string{"asks user " + testbed.PasswordUser + " for a password", "cannot ask for it here (no terminal, no SSH_ASKPASS)",
		"ssh -M -f -N " + s.Alias, "set SSH_ASKPASS"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "public key") || strings.Contains(msg, "\n") {
		t.Errorf("message: %s", msg)
	}
	if log := sshdLog(t, s); strings.Contains(log, "Failed password") {
		t.Fatalf("a failed login was counted:\n%s", log)
	}
}

func TestDialWrongPasswordSaysSo(t *testing.T) {
	s, _ := passwordSSHD(t)
	n := 0
	_, err := Dial(testCtx(t), Route{interactiveSettings(s)}, DialOptions{Interactive: true, answer: func(q string, echo bool) (string, error) {
		n++
		return "not-the-password", nil
	}})
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "the server refused a password for user "+testbed.PasswordUser) ||
		strings.Contains(err.Error(), "public key") {
		t.Fatalf("err = %v", err)
	}
	if n != 3 {
		t.Fatalf("asked %d times, want 3 (as ssh)", n)
	}
}

func TestDialKeyAndVerificationCode(t *testing.T) {
	s, otp := codeSSHD(t)
	var asked []string
	opts := DialOptions{Interactive: true, answer: func(q string, echo bool) (string, error) {
		asked = append(asked, q)
		if echo {
			t.Errorf("code asked with echo on: %q", q)
		}
		return otp.Code(t), nil
	}}
	c, err := Dial(testCtx(t), Route{interactiveSettings(s)}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	run(t, c, "true")
	want := "(" + testbed.PasswordUser + "@127.0.0.1) Verification code: "
	if len(asked) != 1 || asked[0] != want {
		t.Fatalf("asked %q, want once %q", asked, want)
	}
	log := sshdLog(t, s)
	if !strings.Contains(log, "Partial publickey") || !strings.Contains(log, "Accepted keyboard-interactive/pam") {
		t.Fatalf("no key + code login in sshd's log:\n%s", log)
	}
}

// The key was accepted: never "add your public key"; name the code and the fix.
func TestDialKeyAcceptedCodeCannotAsk(t *testing.T) {
	s, _ := codeSSHD(t)
	_, err := Dial(testCtx(t), Route{interactiveSettings(s)}, DialOptions{})
	if !errors.Is(err, ErrCannotAsk) {
		t.Fatalf("err = %v, want ErrCannotAsk", err)
	}
	msg := err.Error()
	for _, want := range []string{"the server accepted " + s.ClientKey, "also asks for a verification code",
		"(no terminal, no SSH_ASKPASS)", "ssh -M -f -N " + s.Alias} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "add your public key") {
		t.Errorf("blames the key: %s", msg)
	}
	log := sshdLog(t, s)
	if strings.Count(log, "Failed keyboard-interactive") > 0 {
		t.Fatalf("a failed login was counted:\n%s", log)
	}
}

// SSH_ASKPASS answers passwords too (forced, with no terminal), once per login.
func TestDialAskpassPassword(t *testing.T) {
	s, pw := passwordSSHD(t)
	dir := t.TempDir()
	// The script reads the answer from a 0600 file: never on a command line.
	secret := filepath.Join(dir, "pw")
	os.WriteFile(secret, []byte(pw+"\n"), 0o600)
	askpass := filepath.Join(dir, "askpass")
	os.WriteFile(askpass, []byte("#!/bin/sh\necho \"$1\" >> \"$0.asked\"\ncat '"+secret+"'\n"), 0o755)
	t.Setenv("SSH_ASKPASS", askpass)
	t.Setenv("SSH_ASKPASS_REQUIRE", "force")
	c, err := Dial(testCtx(t), Route{interactiveSettings(s)}, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	asked, _ := os.ReadFile(askpass + ".asked")
	if string(asked) != testbed.PasswordUser+"@127.0.0.1's password: \n" {
		t.Fatalf("askpass was asked %q", asked)
	}
}
