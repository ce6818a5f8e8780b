package openssh

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopyk/gopyk/testbed"
)

func logins(t *testing.T, s *testbed.SSHD) int {
	t.Helper()
	b, err := os.ReadFile(s.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "Accepted publickey")
}

func userMaster(t *testing.T) (*testbed.SSHD, *testbed.Master, *Master) {
	t.Helper()
	s := testbed.SSHDForTest(t, testbed.Options{IsolateHome: true})
	tm := s.StartMaster(t, s.MasterConfig(t), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := Connect(ctx, tm.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if m.PID() != tm.PID {
		t.Fatalf("the master says pid %d, ssh -O check %d", m.PID(), tm.PID)
	}
	return s, tm, m
}

// Sessions through a master opened with `ssh -M -f -N`: stdin, stdout,
// stderr and the exit status reach us, and no login happens for them.
func TestSessionThroughUserMaster(t *testing.T) {
	s, _, m := userMaster(t)
	before := logins(t, s)
	for _, tc := range []struct {
		cmd    string
		status int
	}{{"cat; echo to-stderr >&2", 0}, {"cat; echo to-stderr >&2; exit 3", 3}} {
		sess := m.NewSession()
		in, _ := sess.StdinPipe()
		out, _ := sess.StdoutPipe()
		errp, _ := sess.StderrPipe()
		if err := sess.Start(tc.cmd); err != nil {
			t.Fatal(err)
		}
		in.Write([]byte("hello"))
		in.Close()
		o, _ := io.ReadAll(out)
		e, _ := io.ReadAll(errp)
		err := sess.Wait()
		if string(o) != "hello" || strings.TrimSpace(string(e)) != "to-stderr" {
			t.Fatalf("%q: stdout %q, stderr %q", tc.cmd, o, e)
		}
		var ee interface{ ExitStatus() int }
		switch {
		case tc.status == 0 && err != nil:
			t.Fatalf("%q: %v", tc.cmd, err)
		case tc.status != 0 && (!errors.As(err, &ee) || ee.ExitStatus() != tc.status):
			t.Fatalf("%q: Wait = %v, want exit status %d", tc.cmd, err, tc.status)
		}
	}
	if n := logins(t, s); n != before {
		t.Fatalf("sshd logged %d new logins for sessions through the master", n-before)
	}
}

// Close ends a session that still runs, and Wait returns.
func TestSessionClose(t *testing.T) {
	_, _, m := userMaster(t)
	sess := m.NewSession()
	out, _ := sess.StdoutPipe()
	if err := sess.Start("echo started; exec sleep 300"); err != nil {
		t.Fatal(err)
	}
	if l, err := bufio.NewReader(out).ReadString('\n'); err != nil || l != "started\n" {
		t.Fatalf("stdout %q: %v", l, err)
	}
	sess.Close()
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Wait after Close reported a clean exit")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after Close")
	}
}

// A forward from a local unix socket to one on the server: what gopyk's
// streams to the supervisor go through. Every OpenSSH since 6.7 has it.
func TestForwardToRemoteUnixSocket(t *testing.T) {
	s, _, m := userMaster(t)
	remote := filepath.Join(s.Home, "echo.sock")
	sess := m.NewSession()
	out, _ := sess.StdoutPipe()
	// An echo server for two connections.
	if err := sess.Start(`exec python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(2)
print("listening", flush=True)
for _ in range(2):
    c, _ = s.accept(); c.sendall(c.recv(100)); c.close()
' ` + remote); err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if l, err := bufio.NewReader(out).ReadString('\n'); err != nil || l != "listening\n" {
		t.Fatalf("echo server: %q %v", l, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := t.TempDir()
	local := filepath.Join(dir, "f")
	if err := m.Forward(ctx, local, remote); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		c, err := net.Dial("unix", local)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		msg := []byte("ping " + string(rune('a'+i)))
		c.Write(msg)
		b, err := io.ReadAll(c)
		c.Close()
		if string(b) != string(msg) {
			t.Fatalf("echo %d: %q, %v", i, b, err)
		}
	}
	// Nothing listens any more: the master closes the stream at once.
	c, err := net.Dial("unix", local)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("a stream to a socket nobody listens on: %d bytes, %v; want EOF", n, err)
	}
	c.Close()
	if err := m.CloseForward(ctx, local, remote); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("unix", local); err == nil {
		c.Close()
		t.Fatal("the forward still listens after CloseForward")
	}
}

func TestNoMaster(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Connect(ctx, filepath.Join(dir, "none")); !errors.Is(err, ErrNoMaster) {
		t.Fatalf("no socket: %v, want ErrNoMaster", err)
	}
	// A master killed with -9 leaves its socket behind.
	stale := filepath.Join(dir, "stale")
	l, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := Connect(ctx, stale); !errors.Is(err, ErrNoMaster) {
		t.Fatalf("stale socket: %v, want ErrNoMaster", err)
	}
}

// Done tells when the master exits.
func TestMasterExitIsDone(t *testing.T) {
	_, tm, m := userMaster(t)
	tm.Stop()
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Done not closed after the master exited")
	}
}

// Start runs ssh once to log in and become a master of our own; Terminate
// ends it.
func TestStartPrivateMaster(t *testing.T) {
	s := testbed.SSHDForTest(t, testbed.Options{IsolateHome: true})
	path := filepath.Join(t.TempDir(), "m")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := Start(ctx, StartOptions{SSH: "ssh", ConfigFile: s.ConfigFile, Alias: s.Alias, Setsid: true,
		Args: []string{"-o", "ControlMaster=yes", "-o", "ControlPath=" + path, "-o", "ControlPersist=10"}}, path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	sess := m.NewSession()
	out, _ := sess.StdoutPipe()
	if err := sess.Start("echo $((6*7))"); err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(out); string(b) != "42\n" {
		t.Fatalf("stdout %q", b)
	}
	if err := sess.Wait(); err != nil {
		t.Fatal(err)
	}
	if err := m.Terminate(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the master did not exit on Terminate")
	}
	if _, err := Alive(ctx, path); !errors.Is(err, ErrNoMaster) {
		t.Fatalf("after Terminate: %v", err)
	}
}

// A login ssh cannot make: what ssh printed comes back.
func TestStartFails(t *testing.T) {
	s := testbed.SSHDForTest(t, testbed.Options{IsolateHome: true})
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	// Another user: sshd's AllowUsers refuses it.
	block := strings.Replace(s.ConfigBlock(), "User "+s.User, "User nobody", 1)
	if err := os.WriteFile(cfg, []byte(block), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "m")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Start(ctx, StartOptions{SSH: "ssh", ConfigFile: cfg, Alias: s.Alias, Setsid: true,
		Args: []string{"-o", "ControlMaster=yes", "-o", "ControlPath=" + path}}, path)
	var se *StartError
	if !errors.As(err, &se) || se.Status != 255 || !strings.Contains(se.Stderr, "Permission denied") {
		t.Fatalf("Start: %v, want ssh's exit 255 with Permission denied", err)
	}
}
