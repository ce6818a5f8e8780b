//go:build linux

package sshconf

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopyk/gopyk/testbed"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// tbSettings reaches a test sshd the way its ssh_config block says, but
// built by hand so these tests don't depend on Resolve.
func tbSettings(s *testbed.SSHD) *Settings {
	return &Settings{
		Alias:                 s.Alias,
		HostName:              s.Host,
		Port:                  s.Port,
		User:                  s.User,
		IdentityFiles:         []string{s.ClientKey},
		IdentitiesOnly:        true,
		IdentityAgent:         "none",
		UserKnownHostsFiles:   []string{s.KnownHosts},
		GlobalKnownHostsFiles: []string{},
		StrictHostKeyChecking: "yes",
		PubkeyAuthentication:  true,
		BatchMode:             true,
		ConnectTimeout:        10 * time.Second,
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustDial(t *testing.T, route Route) *Client {
	t.Helper()
	c, err := Dial(testCtx(t), route, DialOptions{})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func run(t *testing.T, c *Client, cmd string) string {
	t.Helper()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	defer sess.Close()
	out, err := sess.CombinedOutput(cmd)
	if err != nil {
		t.Fatalf("run %q: %v: %s", cmd, err, out)
	}
	return strings.TrimSpace(string(out))
}

func dialErr(t *testing.T, route Route, kind error) *DialError {
	t.Helper()
	c, err := Dial(testCtx(t), route, DialOptions{})
	if err == nil {
		c.Close()
		t.Fatalf("dial succeeded, want %v", kind)
	}
	var de *DialError
	if !errors.As(err, &de) {
		t.Fatalf("error %T %v is not a *DialError", err, err)
	}
	if kind != nil && !errors.Is(err, kind) {
		t.Fatalf("error %q is not %v", err, kind)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("error is not one line: %q", err)
	}
	return de
}

// newKey writes an ed25519 key pair (path, path.pub); with a passphrase the
// private key is encrypted in OpenSSH's format.
func newKey(t *testing.T, path, passphrase string) (ssh.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var blk *pem.Block
	if passphrase == "" {
		blk, err = ssh.MarshalPrivateKey(priv, "test")
	} else {
		blk, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(blk), 0o600); err != nil {
		t.Fatal(err)
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sp), 0o644); err != nil {
		t.Fatal(err)
	}
	return sp, priv
}

const encPassphrase = "correct horse"

var (
	encOnce sync.Once
	encPub  ssh.PublicKey
	encPriv ed25519.PrivateKey
)

// encryptedKey copies one shared passphrase-protected key (encPassphrase)
// to path and path.pub; making it costs seconds of bcrypt under -race.
func encryptedKey(t *testing.T, path string) (ssh.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	src := filepath.Join(sharedDir, "id_enc")
	encOnce.Do(func() { encPub, encPriv = newKey(t, src, encPassphrase) })
	if encPub == nil {
		t.Fatal("shared encrypted key could not be made")
	}
	for _, suffix := range []string{"", ".pub"} {
		b, err := os.ReadFile(src + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return encPub, encPriv
}

func authorize(t *testing.T, s *testbed.SSHD, pub ssh.PublicKey) {
	t.Helper()
	f, err := os.OpenFile(s.AuthorizedKeys, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(ssh.MarshalAuthorizedKey(pub)); err != nil {
		t.Fatal(err)
	}
}

// startAgent runs a real OpenSSH ssh-agent on a socket in dir, owned (and
// killed by PID) by the test.
func startAgent(t *testing.T) (sock string, client agent.ExtendedAgent) {
	t.Helper()
	dir, err := os.MkdirTemp("", "gpk-agent-")
	if err != nil {
		t.Fatal(err)
	}
	sock = filepath.Join(dir, "agent.sock")
	cmd := exec.Command("/usr/bin/ssh-agent", "-D", "-a", sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	var conn net.Conn
	t.Cleanup(func() {
		if conn != nil {
			conn.Close()
		}
		cmd.Process.Kill()
		<-exited
		os.RemoveAll(dir)
	})
	for deadline := time.Now().Add(10 * time.Second); ; {
		if conn, err = net.Dial("unix", sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh-agent socket %s: %v", sock, err)
		}
		select {
		case <-exited:
			t.Fatal("ssh-agent exited")
		case <-time.After(10 * time.Millisecond):
		}
	}
	return sock, agent.NewClient(conn)
}

// pidAlive is false for gone and zombie processes (PID 1 here reaps lazily).
func pidAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, bounded by the deadline
	}
}
