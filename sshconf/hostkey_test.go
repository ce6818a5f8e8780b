//go:build linux

package sshconf

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gopyk/gopyk/testbed"
	"golang.org/x/crypto/ssh"
)

func otherKeyLine(t *testing.T) string {
	t.Helper()
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	k, _ := ssh.NewPublicKey(pub)
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func TestDialAcceptNew(t *testing.T) {
	t.Parallel()
	s := testbed.SSHDForTest(t, testbed.Options{})
	for _, hashed := range []bool{false, true} {
		t.Run(fmt.Sprintf("hashed=%v", hashed), func(t *testing.T) {
			// A known_hosts in a directory that does not exist yet, like a fresh ~/.ssh.
			kh := filepath.Join(t.TempDir(), "ssh", "known_hosts")
			st := tbSettings(s)
			st.UserKnownHostsFiles = []string{kh}
			st.StrictHostKeyChecking = "accept-new"
			st.HashKnownHosts = hashed
			c := mustDial(t, Route{st})
			c.Close()

			b, err := os.ReadFile(kh)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(lines) != 1 {
				t.Fatalf("known_hosts has %d lines:\n%s", len(lines), b)
			}
			want := fmt.Sprintf("[127.0.0.1]:%d %s", s.Port, s.HostKeyPub)
			if !hashed && !strings.HasPrefix(lines[0], want) {
				t.Fatalf("line %q, want %q", lines[0], want)
			}
			if hashed {
				if !strings.HasPrefix(lines[0], "|1|") || strings.Contains(lines[0], "127.0.0.1") {
					t.Fatalf("line %q is not hashed", lines[0])
				}
			}
			// OpenSSH itself finds the entry it would look up.
			out, err := exec.Command("ssh-keygen", "-F", fmt.Sprintf("[127.0.0.1]:%d", s.Port), "-f", kh).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "ssh-ed25519") {
				t.Fatalf("ssh-keygen -F does not find the entry: %v: %s", err, out)
			}
			if fi, _ := os.Stat(kh); fi.Mode().Perm() != 0o600 {
				t.Fatalf("known_hosts mode %v, want 0600", fi.Mode().Perm())
			}

			// Now known: a strict dial succeeds and adds nothing.
			st.StrictHostKeyChecking = "yes"
			mustDial(t, Route{st}).Close()
			if b2, _ := os.ReadFile(kh); string(b2) != string(b) {
				t.Fatalf("known_hosts changed on a known host:\n%s", b2)
			}
		})
	}
}

func TestDialUnknownHostStrict(t *testing.T) {
	t.Parallel()
	s := testbed.SSHDForTest(t, testbed.Options{})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, []byte("# nothing yet\n"), 0o600)
	for _, strict := range []string{"yes", "ask"} { // ask without a terminal acts as yes
		st := tbSettings(s)
		st.UserKnownHostsFiles = []string{kh}
		st.StrictHostKeyChecking = strict
		de := dialErr(t, Route{st}, ErrHostKeyUnknown)
		msg := de.Error()
		if !strings.Contains(msg, "is not in known_hosts") || !strings.Contains(msg, "ssh gpk-test` to check and accept it") ||
			!strings.Contains(msg, ssh.FingerprintSHA256(s.HostKey)) {
			t.Fatalf("message %q", msg)
		}
	}
	if b, _ := os.ReadFile(kh); string(b) != "# nothing yet\n" {
		t.Fatalf("known_hosts written under yes:\n%s", b)
	}
}

func TestDialChangedHostKey(t *testing.T) {
	t.Parallel()
	s := testbed.SSHDForTest(t, testbed.Options{})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	body := fmt.Sprintf("other.example %s\n[127.0.0.1]:%d %s\n", otherKeyLine(t), s.Port, otherKeyLine(t))
	os.WriteFile(kh, []byte(body), 0o600)
	for _, strict := range []string{"yes", "accept-new", "no"} { // always fatal
		st := tbSettings(s)
		st.UserKnownHostsFiles = []string{kh}
		st.StrictHostKeyChecking = strict
		de := dialErr(t, Route{st}, ErrHostKeyChanged)
		msg := de.Error()
		for _, want := range []string{"HOST KEY CHANGED", ssh.FingerprintSHA256(s.HostKey), kh + ":2", "ssh-keygen -R"} {
			if !strings.Contains(msg, want) {
				t.Fatalf("StrictHostKeyChecking %s: message %q lacks %q", strict, msg, want)
			}
		}
	}
	if b, _ := os.ReadFile(kh); string(b) != body {
		t.Fatalf("known_hosts modified:\n%s", b)
	}
}

// One line x/crypto can't parse (OpenSSH skips it) must not hide the rest of
// the file, and line numbers in messages still point into the real file.
func TestDialKnownHostsWithUnparsableLine(t *testing.T) {
	t.Parallel()
	s := testbed.SSHDForTest(t, testbed.Options{})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	body := "legacy.example ssh-xmss@openssh.com AAAAFHNzaC14bXNzQG9wZW5zc2guY29t\n" +
		"|1|bad|hash ssh-ed25519 AAAA\n" +
		fmt.Sprintf("[127.0.0.1]:%d %s\n", s.Port, s.HostKeyPub)
	os.WriteFile(kh, []byte(body), 0o600)
	st := tbSettings(s)
	st.UserKnownHostsFiles = []string{kh}
	mustDial(t, Route{st}).Close()

	bad := fmt.Sprintf("[127.0.0.1]:%d %s\n", s.Port, otherKeyLine(t))
	os.WriteFile(kh, []byte("legacy.example ssh-xmss@openssh.com AAAA\n"+bad), 0o600)
	de := dialErr(t, Route{st}, ErrHostKeyChanged)
	if !strings.Contains(de.Error(), kh+":2") {
		t.Fatalf("message %q does not point at the original file's line 2", de)
	}
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), "gopyk-known_hosts-*"))
	for _, m := range matches {
		if b, _ := os.ReadFile(m); strings.Contains(string(b), otherKeyLine(t)[:20]) {
			t.Fatalf("temporary known_hosts copy %s left behind", m)
		}
	}
}

func TestDialHostKeyAlias(t *testing.T) {
	t.Parallel()
	s := testbed.SSHDForTest(t, testbed.Options{})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, []byte("kernelbox "+s.HostKeyPub+"\n"), 0o600)
	st := tbSettings(s)
	st.UserKnownHostsFiles = []string{kh}
	st.HostKeyAlias = "kernelbox"
	mustDial(t, Route{st}).Close()

	st.HostKeyAlias = "otherbox"
	de := dialErr(t, Route{st}, ErrHostKeyUnknown)
	if !strings.Contains(de.Error(), "of otherbox is not in known_hosts") {
		t.Fatalf("message %q", de)
	}
}

// The server has ed25519 and ECDSA host keys; known_hosts holds only the
// ECDSA one. OpenSSH's default preference (ed25519 first) alone would pick
// ed25519 and report a changed key; ordering by known_hosts picks ECDSA.
func TestDialHostKeyAlgorithmOrder(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	ecdsaKey := filepath.Join(dir, "ssh_host_ecdsa_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", ecdsaKey).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	s := testbed.SSHDForTest(t, testbed.Options{ExtraConfig: []string{"HostKey " + ecdsaKey}})
	pub, _ := os.ReadFile(ecdsaKey + ".pub")
	kh := filepath.Join(dir, "known_hosts")
	os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%d %s", s.Port, pub)), 0o600)
	st := tbSettings(s)
	st.UserKnownHostsFiles = []string{kh}
	mustDial(t, Route{st}).Close()
}

func TestDialAskOnTerminal(t *testing.T) {
	t.Parallel()
	s := testbed.SSHDForTest(t, testbed.Options{})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	st := tbSettings(s)
	st.UserKnownHostsFiles = []string{kh}
	st.StrictHostKeyChecking = "ask"
	st.BatchMode = false
	var asked string
	c, err := Dial(testCtx(t), Route{st}, DialOptions{Interactive: true, answer: func(q string, echo bool) (string, error) {
		asked = q
		return "yes", nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if !strings.Contains(asked, ssh.FingerprintSHA256(s.HostKey)) || !strings.Contains(asked, "(yes/no)") {
		t.Fatalf("question %q", asked)
	}
	if b, _ := os.ReadFile(kh); !strings.Contains(string(b), s.HostKeyPub[:30]) {
		t.Fatalf("accepted key not recorded:\n%s", b)
	}
}

// A host certificate signed by a CA that known_hosts trusts with
// @cert-authority is accepted without any line for the host itself; a
// certificate from another CA is not.
func TestDialHostCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := filepath.Join(dir, "host_ca")
	caPub, _ := newKey(t, ca, "")
	s := testbed.SSHDForTest(t, testbed.Options{HostCA: ca})
	kh := filepath.Join(dir, "known_hosts")
	st := tbSettings(s)
	st.UserKnownHostsFiles = []string{kh}
	for _, pattern := range []string{"*", fmt.Sprintf("[127.0.0.1]:%d", s.Port)} {
		os.WriteFile(kh, []byte("@cert-authority "+pattern+" "+string(ssh.MarshalAuthorizedKey(caPub))), 0o600)
		mustDial(t, Route{st}).Close()
	}

	other, _ := newKey(t, filepath.Join(dir, "other_ca"), "")
	os.WriteFile(kh, []byte("@cert-authority * "+string(ssh.MarshalAuthorizedKey(other))), 0o600)
	de := dialErr(t, Route{st}, ErrHostKeyUnknown)
	if !strings.Contains(de.Error(), "host certificate ED25519-CERT") {
		t.Fatalf("message %q", de)
	}
}

func TestDialRevokedHostKey(t *testing.T) {
	t.Parallel()
	s := testbed.SSHDForTest(t, testbed.Options{})
	kh := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(kh, []byte(fmt.Sprintf("[127.0.0.1]:%d %s\n@revoked * %s\n", s.Port, s.HostKeyPub, s.HostKeyPub)), 0o600)
	st := tbSettings(s)
	st.UserKnownHostsFiles = []string{kh}
	st.StrictHostKeyChecking = "no"
	de := dialErr(t, Route{st}, ErrHostKeyRevoked)
	if !strings.Contains(de.Error(), kh+":2") {
		t.Fatalf("message %q", de)
	}
}

// `HostKeyAlias [host]:port` is used verbatim, as OpenSSH does: OpenSSH's
// ssh and gopyk, reading the same config, accept the same known_hosts
// entries (plain and hashed) and record the same name with accept-new.
func TestHostKeyAliasWithPortAgreesWithSSH(t *testing.T) {
	t.Parallel()
	s := testbed.SSHDForTest(t, testbed.Options{})
	const alias = "[127.0.0.1]:2222"
	for _, tc := range []struct {
		name   string
		known  string // known_hosts before; "" = empty
		hash   bool   // ssh-keygen -H the file first
		strict string
	}{
		{"known", alias + " " + s.HostKeyPub, false, "yes"},
		{"known hashed", alias + " " + s.HostKeyPub, true, "yes"},
		{"accept-new", "", false, "accept-new"},
		{"accept-new hashed", "", true, "accept-new"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			kh := filepath.Join(dir, "known_hosts")
			if err := os.WriteFile(kh, []byte(tc.known+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if tc.hash && tc.known != "" {
				if out, err := exec.Command("ssh-keygen", "-H", "-f", kh).CombinedOutput(); err != nil {
					t.Fatalf("ssh-keygen -H: %v %s", err, out)
				}
			}
			cfg := filepath.Join(dir, "config")
			hashKH := "no"
			if tc.hash {
				hashKH = "yes"
			}
			os.WriteFile(cfg, []byte(fmt.Sprintf(`Host hka
  HostName 127.0.0.1
  Port %d
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  HostKeyAlias %s
  StrictHostKeyChecking %s
  HashKnownHosts %s
  UpdateHostKeys no
  BatchMode yes
`, s.Port, s.User, s.ClientKey, kh, alias, tc.strict, hashKH)), 0o600)

			route, err := Resolve(testCtx(t), "hka", Options{ConfigFile: cfg})
			if err != nil {
				t.Fatal(err)
			}
			c, err := Dial(testCtx(t), route, DialOptions{})
			if err != nil {
				t.Fatalf("gopyk with HostKeyAlias %s: %v", alias, err)
			}
			c.Close()
			// The entry gopyk recorded (or found) is the one ssh looks up.
			if out, err := exec.Command("ssh-keygen", "-F", alias, "-f", kh).CombinedOutput(); err != nil || !strings.Contains(string(out), "ssh-ed25519") {
				t.Fatalf("ssh-keygen -F %s finds nothing: %v %s", alias, err, out)
			}
			if b, _ := os.ReadFile(kh); tc.hash != strings.Contains(string(b), "|1|") {
				t.Fatalf("known_hosts hashed=%v, want %v:\n%s", !tc.hash, tc.hash, b)
			}
			out, err := exec.Command("ssh", "-F", cfg, "-o", "StrictHostKeyChecking=yes", "hka", "echo", "agreed").CombinedOutput()
			if err != nil || !strings.Contains(string(out), "agreed") {
				t.Fatalf("ssh on the same config and known_hosts: %v %s", err, out)
			}
		})
	}
}
