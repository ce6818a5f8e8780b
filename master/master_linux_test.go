package master

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopyk/gopyk/openssh"
	"github.com/gopyk/gopyk/sshconf"
	"github.com/gopyk/gopyk/testbed"
	"golang.org/x/crypto/ssh"
)

// gopykBin is a gopyk built for these tests: the program a master runs
// as. Never this test binary: started again it would run the tests again,
// each starting masters of its own (masterExe refuses it).
var gopykBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gopyk-master-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	build := exec.Command("go", "build", "-o", dir+"/", "../cmd/gopyk")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build gopyk:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	gopykBin = filepath.Join(dir, "gopyk")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testExe is the gopyk a test's masters run as.
func testExe(*testing.T) string { return gopykBin }

// bed is a test sshd and a master for it, with XDG_RUNTIME_DIR private to
// the test so that its sockets are its own.
type bed struct {
	sshd  *testbed.SSHD
	route sshconf.Route
	sock  string
}

func newBed(t *testing.T, opts testbed.Options) *bed {
	t.Helper()
	rt, err := os.MkdirTemp("", "gpkm-") // short: unix socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rt) })
	t.Setenv("XDG_RUNTIME_DIR", rt)
	s := testbed.SSHDForTest(t, opts)
	route, err := sshconf.Resolve(ctx(t, 30*time.Second), s.Alias, sshconf.Options{ConfigFile: s.ConfigFile})
	if err != nil {
		t.Fatal(err)
	}
	return &bed{sshd: s, route: route}
}

func ctx(t *testing.T, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return c
}

// ensure starts (or finds) the master and stops it when the test ends.
func (b *bed) ensure(t *testing.T, o Options) string {
	t.Helper()
	if o.Alias == "" {
		o.Alias = b.sshd.Alias
	}
	o.Exe = testExe(t)
	path, err := Ensure(ctx(t, 60*time.Second), b.route, o)
	if err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	b.sock = path
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := Stop(sctx, path); err != nil && !errors.Is(err, ErrNoMaster) {
			t.Errorf("stop the master: %v", err)
		}
	})
	return path
}

// ssh runs OpenSSH's client through the master at sock (ssh -S).
func runSSH(t *testing.T, sock string, args ...string) (string, error) {
	t.Helper()
	c := exec.CommandContext(ctx(t, 30*time.Second), "ssh", append([]string{"-F", "/dev/null", "-S", sock, "-o", "BatchMode=yes"}, args...)...)
	out, err := c.CombinedOutput()
	return string(out), err
}

// OpenSSH's own client uses gopyk's master as it uses an OpenSSH one:
// check, commands with their exit status and stdin, a stdio forward, a
// local forward to a unix socket on the server, stop.
func TestOpenSSHClientThroughMaster(t *testing.T) {
	b := newBed(t, testbed.Options{IsolateHome: true})
	sock := b.ensure(t, Options{Persist: time.Minute})
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&0o077 != 0 {
		t.Fatalf("socket %s: %v, mode %v; want 0600", sock, err, fi.Mode())
	}
	if out, err := runSSH(t, sock, "-O", "check", "x"); err != nil || !strings.Contains(out, "Master running") {
		t.Fatalf("ssh -O check: %v: %s", err, out)
	}
	out, err := runSSH(t, sock, "x", "echo hello $USER; echo oops >&2; exit 7")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 || !strings.Contains(out, "hello "+b.sshd.User) || !strings.Contains(out, "oops") {
		t.Fatalf("ssh through the master: %v: %q; want exit 7, hello, oops", err, out)
	}
	c := exec.CommandContext(ctx(t, 30*time.Second), "ssh", "-F", "/dev/null", "-S", sock, "x", "tr a-z A-Z")
	c.Stdin = strings.NewReader("piped through\n")
	if out, err := c.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "PIPED THROUGH" {
		t.Fatalf("stdin through the master: %v: %q", err, out)
	}

	// A unix socket on the server that echoes one line.
	remote := filepath.Join(b.sshd.Home, "echo.sock")
	srv := exec.Command("ssh", "-F", "/dev/null", "-S", sock, "x",
		"exec python3 -c 'import socket,os,sys\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen(5)\nprint(\"up\",flush=True)\nwhile True:\n c,_=s.accept()\n c.sendall(c.recv(100).upper())\n c.close()' "+remote)
	stdout, _ := srv.StdoutPipe()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	line := make([]byte, 3)
	if _, err := io.ReadFull(stdout, line); err != nil || string(line) != "up\n" {
		t.Fatalf("remote echo server: %q %v", line, err)
	}
	local := filepath.Join(filepath.Dir(sock), "fwd.sock")
	if out, err := runSSH(t, sock, "-O", "forward", "-L", local+":"+remote, "x"); err != nil {
		t.Fatalf("ssh -O forward: %v: %s", err, out)
	}
	lc, err := net.Dial("unix", local)
	if err != nil {
		t.Fatal(err)
	}
	lc.Write([]byte("via forward"))
	got, _ := io.ReadAll(lc)
	lc.Close()
	if string(got) != "VIA FORWARD" {
		t.Fatalf("through the forward: %q", got)
	}
	if out, err := runSSH(t, sock, "-O", "cancel", "-L", local+":"+remote, "x"); err != nil {
		t.Fatalf("ssh -O cancel: %v: %s", err, out)
	}
	if _, err := net.Dial("unix", local); err == nil {
		t.Fatal("the forward's socket still answers after cancel")
	}

	// The master's own state.
	in, err := Status(ctx(t, 5*time.Second), sock)
	if err != nil || !in.Connected || in.Dials != 1 || in.Alias != b.sshd.Alias {
		t.Fatalf("status: %+v, %v", in, err)
	}

	// ssh -O stop: no new clients, and gone once the last one is done.
	if out, err := runSSH(t, sock, "-O", "stop", "x"); err != nil {
		t.Fatalf("ssh -O stop: %v: %s", err, out)
	}
	if _, err := runSSH(t, sock, "x", "true"); err == nil {
		t.Error("a new session after stop went through")
	}
	time.Sleep(minIdle + time.Second) // the echo server's session holds it
	if syscall.Kill(in.PID, 0) != nil {
		t.Fatal("the master exited while a session still ran")
	}
	srv.Process.Kill()
	waitFor(t, "the master to exit after stop", 10*time.Second, func() bool { return syscall.Kill(in.PID, 0) != nil })
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket still there after stop: %v", err)
	}
	if n := strings.Count(readFile(t, b.sshd.LogFile), "Accepted publickey"); n != 1 {
		t.Errorf("%d logins in sshd's log; want 1 for everything above", n)
	}
}

func readFile(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Launches racing to start the master end with one master and one login;
// a second Ensure finds it.
func TestEnsureRaceOneMaster(t *testing.T) {
	b := newBed(t, testbed.Options{IsolateHome: true})
	const n = 6
	paths := make(chan string, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			p, err := Ensure(ctx(t, 60*time.Second), b.route, Options{Alias: b.sshd.Alias, Persist: time.Minute, Exe: testExe(t)})
			paths <- p
			errs <- err
		}()
	}
	var first string
	for range n {
		p, err := <-paths, <-errs
		if err != nil {
			t.Fatal(err)
		}
		if first == "" {
			first = p
		} else if p != first {
			t.Fatalf("two sockets: %s and %s", first, p)
		}
	}
	b.sock = first
	t.Cleanup(func() { Stop(context.Background(), first) })
	in, err := Status(ctx(t, 5*time.Second), first)
	if err != nil || !in.Connected || in.Dials != 1 {
		t.Fatalf("status %+v, %v", in, err)
	}
	if pids := masterPIDs(t); len(pids) != 1 || pids[0] != in.PID {
		t.Fatalf("master processes %v; want just %d", pids, in.PID)
	}
	if n := strings.Count(readFile(t, b.sshd.LogFile), "Accepted publickey"); n != 1 {
		t.Errorf("%d logins; want 1", n)
	}
}

// masterPIDs lists the masters this test started (its runtime dir's).
func masterPIDs(t *testing.T) []int { return testbed.Masters(os.Getenv("XDG_RUNTIME_DIR")) }

// A master killed with SIGKILL leaves its socket: the next Ensure finds
// nothing answers there, takes its place, and logs in again.
func TestKilledMasterReplaced(t *testing.T) {
	b := newBed(t, testbed.Options{IsolateHome: true})
	sock := b.ensure(t, Options{Persist: time.Minute})
	in, err := Status(ctx(t, 5*time.Second), sock)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Kill(in.PID, syscall.SIGKILL)
	waitFor(t, "the master to die", 10*time.Second, func() bool { return len(masterPIDs(t)) == 0 })
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("the killed master's socket is gone (%v); the test wants it stale", err)
	}
	sock2 := b.ensure(t, Options{Persist: time.Minute})
	in2, err := Status(ctx(t, 5*time.Second), sock2)
	if err != nil || sock2 != sock || in2.PID == in.PID || !in2.Connected {
		t.Fatalf("after the kill: %s %+v %v", sock2, in2, err)
	}
	if out, err := runSSH(t, sock2, "x", "echo again"); err != nil || strings.TrimSpace(out) != "again" {
		t.Fatalf("through the new master: %v %q", err, out)
	}
}

// The master exits once nobody used it for its persist time, with its
// socket and nothing else left.
func TestPersistThenExit(t *testing.T) {
	b := newBed(t, testbed.Options{IsolateHome: true})
	sock := b.ensure(t, Options{Persist: 0})
	if out, err := runSSH(t, sock, "x", "echo used"); err != nil || strings.TrimSpace(out) != "used" {
		t.Fatalf("%v %q", err, out)
	}
	waitFor(t, "the master to exit when unused", minIdle+10*time.Second, func() bool { return len(masterPIDs(t)) == 0 })
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left: %v", err)
	}
	waitFor(t, "the connection's sshd to go", 10*time.Second, func() bool { return len(b.sshd.ConnPIDs()) == 0 })
}

// More sessions at once than sshd's MaxSessions: the master keeps under
// it, the others wait their turn, all succeed on one connection.
func TestSessionsBeyondMaxSessions(t *testing.T) {
	b := newBed(t, testbed.Options{IsolateHome: true, ExtraConfig: []string{"MaxSessions 3"}})
	sock := b.ensure(t, Options{Persist: time.Minute})
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() {
			out, err := runSSH(t, sock, "x", fmt.Sprintf("sleep 0.5; echo s%d", i))
			if err != nil || strings.TrimSpace(out) != fmt.Sprintf("s%d", i) {
				err = fmt.Errorf("session %d: %v: %q", i, err, out)
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n := strings.Count(readFile(t, b.sshd.LogFile), "Accepted publickey"); n != 1 {
		t.Errorf("%d logins; want 1", n)
	}
}

// After the connection drops, the next client's request re-dials (once,
// for all the clients that ask at the same time), and the clients that
// held a control connection are told (it closes).
func TestRedialAfterDrop(t *testing.T) {
	b := newBed(t, testbed.Options{IsolateHome: true})
	sock := b.ensure(t, Options{Persist: time.Minute})
	watcher, err := dialControl(ctx(t, 5*time.Second), sock)
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	if _, err := watcher.alive(); err != nil {
		t.Fatal(err)
	}
	if _, err := runSSH(t, sock, "x", "true"); err != nil {
		t.Fatal(err)
	}
	watcher.SetDeadline(time.Now().Add(30 * time.Second))
	b.sshd.KillConns()
	var one [1]byte
	if _, err := watcher.Read(one[:]); err == nil {
		t.Fatal("the watching control connection got data instead of its end")
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			_, err := runSSH(t, sock, "x", "true")
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	in, err := Status(ctx(t, 5*time.Second), sock)
	if err != nil || in.Dials != 2 {
		t.Fatalf("status %+v %v; want 2 dials", in, err)
	}
	if n := strings.Count(readFile(t, b.sshd.LogFile), "Accepted publickey"); n != 2 {
		t.Errorf("%d logins; want 2", n)
	}
}

// A first login that fails is Ensure's error, of its kind; no master
// stays behind.
func TestFirstDialFailure(t *testing.T) {
	b := newBed(t, testbed.Options{IsolateHome: true})
	os.WriteFile(b.sshd.AuthorizedKeys, nil, 0o600) // no key works now
	_, err := Ensure(ctx(t, 60*time.Second), b.route, Options{Alias: b.sshd.Alias, Persist: time.Minute, Exe: testExe(t)})
	if !errors.Is(err, sshconf.ErrAuth) || !strings.Contains(err.Error(), b.sshd.Alias) {
		t.Fatalf("Ensure with no usable key: %v; want ErrAuth naming the host", err)
	}
	waitFor(t, "no master left", 10*time.Second, func() bool { return len(masterPIDs(t)) == 0 })
	path, _ := SocketPath(b.route)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket left after a failed start: %v", err)
	}
}

// A stream to a unix socket on the server through the master, as gopyk's
// client opens them (MUX_C_NEW_STDIO_FWD with a socketpair), and the
// server's refusal of one passed back with its reason.
func TestStreamThroughMaster(t *testing.T) {
	b := newBed(t, testbed.Options{IsolateHome: true})
	sock := b.ensure(t, Options{Persist: time.Minute})
	remote := filepath.Join(b.sshd.Home, "echo2.sock")
	srv := exec.Command("ssh", "-F", "/dev/null", "-S", sock, "x",
		"exec python3 -c 'import socket,os,sys\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen(5)\nprint(\"up\",flush=True)\nwhile True:\n c,_=s.accept()\n c.sendall(c.recv(100).upper())\n c.close()' "+remote)
	stdout, _ := srv.StdoutPipe()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	line := make([]byte, 3)
	if _, err := io.ReadFull(stdout, line); err != nil {
		t.Fatal(err)
	}
	m, err := openssh.Connect(ctx(t, 5*time.Second), sock)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for i := range 3 {
		c, err := m.Stream(ctx(t, 10*time.Second), remote)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		c.Write([]byte("stream"))
		got, err := io.ReadAll(c)
		c.Close()
		if string(got) != "STREAM" {
			t.Fatalf("stream %d: %q, %v", i, got, err)
		}
	}
	_, err = m.Stream(ctx(t, 10*time.Second), filepath.Join(b.sshd.Home, "nothing.sock"))
	var re *openssh.ReplyError
	var oce *ssh.OpenChannelError
	if !errors.As(err, &re) || !errors.As(ParseFailure(re.Reason), &oce) || oce.Reason != ssh.ConnectionFailed {
		t.Fatalf("stream to nothing: %v; want the server's connect failed", err)
	}
}
