//go:build linux

package sshconf

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopyk/gopyk/testbed"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

func TestDialEncryptedKeyThroughAgent(t *testing.T) {
	t.Parallel()
	s := testbed.SSHDForTest(t, testbed.Options{})
	dir := t.TempDir()
	key := filepath.Join(dir, "id_enc")
	pub, priv := encryptedKey(t, key)
	authorize(t, s, pub)

	st := tbSettings(s)
	st.IdentityFiles = []string{key}

	// No agent and no terminal: the key is skipped and the error says why.
	de := dialErr(t, Route{st}, ErrAuth)
	if !strings.Contains(de.Error(), "id_enc is encrypted and BatchMode forbids asking") {
		t.Fatalf("message %q", de)
	}

	// The same key decrypted into a real ssh-agent is used from there.
	sock, ag := startAgent(t)
	// Feeding the decrypted key is what ssh-add does after asking for the
	// passphrase (decrypting here again would cost seconds of bcrypt under -race).
	if err := ag.Add(agent.AddedKey{PrivateKey: priv, Comment: "enc"}); err != nil {
		t.Fatal(err)
	}
	st.IdentityAgent = sock
	c := mustDial(t, Route{st})
	if got := run(t, c, "id -un"); got != s.User {
		t.Fatalf("got %q", got)
	}
}

// Many agent keys would exhaust sshd's MaxAuthTries (6) before the right
// key; IdentitiesOnly keeps only the configured one.
func TestDialIdentitiesOnlyWithManyAgentKeys(t *testing.T) {
	t.Parallel()
	s := testbed.SSHDForTest(t, testbed.Options{})
	sock, ag := startAgent(t)
	for range 10 {
		_, priv, _ := ed25519.GenerateKey(rand.Reader)
		if err := ag.Add(agent.AddedKey{PrivateKey: priv}); err != nil {
			t.Fatal(err)
		}
	}
	st := tbSettings(s)
	st.IdentityAgent = sock

	c := mustDial(t, Route{st})
	if got := run(t, c, "id -un"); got != s.User {
		t.Fatalf("got %q", got)
	}
	c.Close()

	// Without IdentitiesOnly the ten agent keys go first, as in OpenSSH, and
	// the server hangs up: the error says so and names the fix.
	st.IdentitiesOnly = false
	de := dialErr(t, Route{st}, ErrAuth)
	if !strings.Contains(de.Error(), "too many keys") || !strings.Contains(de.Error(), "IdentitiesOnly yes") {
		t.Fatalf("message %q", de)
	}
	if !strings.Contains(de.Error(), "agent key ED25519 SHA256:") {
		t.Fatalf("message does not list the agent keys: %q", de)
	}
}

func TestDialCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	newKey(t, ca, "")
	// sshd reads TrustedUserCAKeys as root before dropping privileges; as a
	// normal user it reads it as that user: both can read a 0644 file here.
	os.Chmod(dir, 0o755)
	s := testbed.SSHDForTest(t, testbed.Options{ExtraConfig: []string{"TrustedUserCAKeys " + ca + ".pub"}})

	user := filepath.Join(dir, "id_user")
	newKey(t, user, "") // not in authorized_keys: only the certificate can get in
	out, err := exec.Command("ssh-keygen", "-q", "-s", ca, "-I", "gpk-cert-test", "-n", s.User, "-V", "-5m:+1h", user+".pub").CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -s: %v: %s", err, out)
	}
	st := tbSettings(s)
	st.IdentityFiles = []string{user} // <key>-cert.pub is picked up implicitly
	c := mustDial(t, Route{st})
	run(t, c, "true")
	c.Close()
	log, _ := os.ReadFile(s.LogFile)
	if !strings.Contains(string(log), `ID gpk-cert-test`) {
		t.Fatalf("sshd did not log a certificate login:\n%s", log)
	}

	// An explicit CertificateFile elsewhere works too.
	moved := filepath.Join(dir, "elsewhere-cert.pub")
	if err := os.Rename(user+"-cert.pub", moved); err != nil {
		t.Fatal(err)
	}
	st.CertificateFiles = []string{moved}
	c = mustDial(t, Route{st})
	run(t, c, "true")
	c.Close()

	// Without the certificate the plain key is refused, and the error lists it.
	st.CertificateFiles = nil
	de := dialErr(t, Route{st}, ErrAuth)
	if !strings.Contains(de.Error(), "server refused keys "+user) {
		t.Fatalf("message %q", de)
	}
}

// OpenSSH 8.8+ refuses SHA-1 ssh-rsa signatures: an RSA key only works if
// the signer offers rsa-sha2.
func TestDialRSAKey(t *testing.T) {
	t.Parallel()
	s := testbed.SSHDForTest(t, testbed.Options{})
	key := filepath.Join(t.TempDir(), "id_rsa")
	out, err := exec.Command("ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", key).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pubBytes, _ := os.ReadFile(key + ".pub")
	pub, _, _, _, err := ssh.ParseAuthorizedKey(pubBytes)
	if err != nil {
		t.Fatal(err)
	}
	authorize(t, s, pub)
	st := tbSettings(s)
	st.IdentityFiles = []string{key}
	c := mustDial(t, Route{st})
	run(t, c, "true")
	log, _ := os.ReadFile(s.LogFile)
	if !strings.Contains(string(log), "Accepted publickey for "+s.User) || !strings.Contains(string(log), ": RSA SHA256:") {
		t.Fatalf("no RSA login in sshd log:\n%s", log)
	}
}

// With a terminal, an encrypted key's passphrase is asked for only once the
// server has accepted its public key (OpenSSH's behaviour), and only once.
func TestDialPassphrasePromptIsLazy(t *testing.T) {
	t.Parallel()
	s := testbed.SSHDForTest(t, testbed.Options{})
	enc := filepath.Join(t.TempDir(), "id_enc")
	pub, _ := encryptedKey(t, enc)

	var asked []string
	opts := DialOptions{Interactive: true, answer: func(q string, echo bool) (string, error) {
		asked = append(asked, q)
		if echo {
			t.Errorf("passphrase asked with echo on: %q", q)
		}
		if len(asked) == 1 {
			return "wrong", nil
		}
		return encPassphrase, nil
	}}

	// The encrypted key is not authorized: no prompt, the next key logs in.
	st := tbSettings(s)
	st.BatchMode = false
	st.IdentityFiles = []string{enc, s.ClientKey}
	c, err := Dial(testCtx(t), Route{st}, opts)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if len(asked) != 0 {
		t.Fatalf("asked %q for a key the server refused", asked)
	}

	// Authorized: asked (again after a wrong answer), then in.
	authorize(t, s, pub)
	st.IdentityFiles = []string{enc}
	c, err = Dial(testCtx(t), Route{st}, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if len(asked) != 2 || !strings.Contains(asked[0], "Enter passphrase for key '"+enc+"'") {
		t.Fatalf("prompts %q", asked)
	}
}

// Without a terminal, SSH_ASKPASS (forced) unlocks an encrypted key, as in ssh.
func TestDialAskpass(t *testing.T) {
	s := testbed.SSHDForTest(t, testbed.Options{})
	dir := t.TempDir()
	enc := filepath.Join(dir, "id_enc")
	pub, _ := encryptedKey(t, enc)
	authorize(t, s, pub)
	askpass := filepath.Join(dir, "askpass")
	os.WriteFile(askpass, []byte("#!/bin/sh\necho \"$1\" > \"$0.asked\"\necho '"+encPassphrase+"'\n"), 0o755)
	t.Setenv("SSH_ASKPASS", askpass)
	t.Setenv("SSH_ASKPASS_REQUIRE", "force")
	st := tbSettings(s)
	st.IdentityFiles = []string{enc}
	st.BatchMode = false
	c := mustDial(t, Route{st})
	run(t, c, "true")
	asked, _ := os.ReadFile(askpass + ".asked")
	if !strings.Contains(string(asked), "Enter passphrase for key '"+enc+"'") {
		t.Fatalf("askpass was asked %q", asked)
	}
}
