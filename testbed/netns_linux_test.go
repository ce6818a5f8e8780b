package testbed

import (
	"context"
	"strings"
	"testing"
	"time"

	"os"

	"golang.org/x/crypto/ssh"
)

func loadSigner(t testing.TB, path string) ssh.Signer {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// An sshd in the remote namespace answers from the local one until the link
// goes down, and again once it is back up; the namespaces go away on Close.
func TestNetnsSSHDLinkDownUp(t *testing.T) {
	t.Parallel()
	ns := NetnsForTest(t)
	s := SSHDForTest(t, Options{Netns: ns})
	if s.Host != ns.RemoteIP || !strings.Contains(s.ConfigBlock(), "HostName "+ns.RemoteIP) {
		t.Fatalf("sshd host %s, config:\n%s", s.Host, s.ConfigBlock())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	login := func() error {
		c, err := ns.Dial(ctx, ns.Local, "tcp", s.Addr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		signer := loadSigner(t, s.ClientKey)
		sc, chans, reqs, err := ssh.NewClientConn(c, s.Addr, &ssh.ClientConfig{
			User: s.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
			HostKeyCallback: ssh.FixedHostKey(s.HostKey), Timeout: 5 * time.Second,
		})
		if err != nil {
			return err
		}
		ssh.NewClient(sc, chans, reqs).Close()
		return nil
	}
	if err := login(); err != nil {
		t.Fatalf("login from the local namespace: %v", err)
	}
	if err := ns.LinkDown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := login(); err == nil {
		t.Fatal("login succeeded with the link down")
	}
	if err := ns.LinkUp(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := login()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("login after link up: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.Stop()
	ns.Close()
	for _, n := range []string{ns.Local, ns.Remote} {
		if err := ip(ctx, "netns", "pids", n); err == nil {
			t.Errorf("namespace %s still exists after Close", n)
		}
	}
}
