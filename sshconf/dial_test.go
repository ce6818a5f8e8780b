//go:build linux

package sshconf

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopyk/gopyk/testbed"
)

func TestDialKeyFile(t *testing.T) {
	t.Parallel()
	s := testbed.SSHDForTest(t, testbed.Options{})
	c := mustDial(t, Route{tbSettings(s)})
	if got := run(t, c, "id -un"); got != s.User {
		t.Fatalf("logged in as %q, want %q", got, s.User)
	}
	if err := c.Err(); err != nil {
		t.Fatalf("Err on a live client: %v", err)
	}
	c.Close()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after Close")
	}
	if !errors.Is(c.Err(), ErrClosed) {
		t.Fatalf("Err after Close = %v, want ErrClosed", c.Err())
	}
}

func TestDialRefused(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	st := &Settings{Alias: "gone", HostName: "127.0.0.1", Port: port, IdentityAgent: "none", StrictHostKeyChecking: "yes"}
	de := dialErr(t, Route{st}, ErrRefused)
	if !strings.Contains(de.Error(), "ssh gone: connection refused by 127.0.0.1:"+strconv.Itoa(port)) {
		t.Fatalf("message %q", de)
	}
}

func TestDialUnknownHostName(t *testing.T) {
	t.Parallel()
	st := &Settings{Alias: "typo", HostName: "gpk-no-such-host.invalid", IdentityAgent: "none"}
	de := dialErr(t, Route{st}, ErrUnknownHost)
	if !strings.Contains(de.Error(), `unknown host name "gpk-no-such-host.invalid"`) {
		t.Fatalf("message %q", de)
	}
}

// A peer that accepts TCP and then says nothing must not hang the dial:
// x/crypto has no handshake timeout of its own.
func TestDialHandshakeTimeout(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	defer func() {
		for c := range accepted {
			c.Close()
		}
	}()
	st := &Settings{Alias: "silent", HostName: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port,
		IdentityAgent: "none", ConnectTimeout: 300 * time.Millisecond}
	start := time.Now()
	de := dialErr(t, Route{st}, ErrTimeout)
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("timeout took %s", el)
	}
	if !strings.Contains(de.Error(), "did not finish within 300ms") {
		t.Fatalf("message %q", de)
	}
}

func TestDialProxyJump(t *testing.T) {
	t.Parallel()
	jump := testbed.SSHDForTest(t, testbed.Options{Alias: "gpk-jump"})
	target := testbed.SSHDForTest(t, testbed.Options{})
	c := mustDial(t, Route{tbSettings(jump), tbSettings(target)})
	if got := run(t, c, "echo $GOPYK_TESTBED"); got != target.Dir {
		t.Fatalf("landed on %q, want the target %s", got, target.Dir)
	}
	log, _ := os.ReadFile(jump.LogFile)
	if !strings.Contains(string(log), "Accepted publickey for "+jump.User) {
		t.Fatalf("no login on the jump host:\n%s", log)
	}
	c.Close()
	// Closing the target closes the jump connection too.
	waitFor(t, "jump host session gone", 10*time.Second, func() bool { return len(jump.SessionPIDs()) == 0 && len(jump.ConnPIDs()) == 0 })
}

func TestDialProxyJumpErrorsNameTheHop(t *testing.T) {
	t.Parallel()
	jump := testbed.SSHDForTest(t, testbed.Options{Alias: "gpk-jump"})
	target := testbed.SSHDForTest(t, testbed.Options{})

	// The jump host refuses our key: the error names the jump host.
	bad := tbSettings(jump)
	bad.IdentityFiles = []string{target.ClientKey}
	de := dialErr(t, Route{bad, tbSettings(target)}, ErrAuth)
	if de.Hop != "gpk-jump" || !strings.Contains(de.Error(), "ssh gpk-test (jump host gpk-jump): server refused keys") {
		t.Fatalf("hop %q, message %q", de.Hop, de)
	}

	// The jump host cannot reach the target.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	gone := tbSettings(target)
	gone.Port = port
	de = dialErr(t, Route{tbSettings(jump), gone}, ErrJump)
	if !strings.Contains(de.Error(), "jump host gpk-jump could not connect to 127.0.0.1:"+strconv.Itoa(port)) {
		t.Fatalf("message %q", de)
	}
}

func TestDialProxyCommandNC(t *testing.T) {
	t.Parallel()
	s := testbed.SSHDForTest(t, testbed.Options{})
	st := tbSettings(s)
	st.ProxyCommand = "nc 127.0.0.1 " + strconv.Itoa(s.Port)
	c := mustDial(t, Route{st})
	if got := run(t, c, "id -un"); got != s.User {
		t.Fatalf("got %q", got)
	}
	pid := c.hops[0].proxy.cmd.Process.Pid
	if !pidAlive(pid) {
		t.Fatalf("ProxyCommand pid %d not running while connected", pid)
	}
	c.Close()
	if pidAlive(pid) {
		t.Fatalf("ProxyCommand pid %d still alive after Close", pid)
	}
}

func TestDialProxyCommandSSHW(t *testing.T) {
	t.Parallel()
	jump := testbed.SSHDForTest(t, testbed.Options{Alias: "gpk-jump"})
	target := testbed.SSHDForTest(t, testbed.Options{})
	st := tbSettings(target)
	st.ProxyCommand = "ssh -F " + jump.ConfigFile + " -W 127.0.0.1:" + strconv.Itoa(target.Port) + " gpk-jump"
	c := mustDial(t, Route{st})
	if got := run(t, c, "echo $GOPYK_TESTBED"); got != target.Dir {
		t.Fatalf("landed on %q, want %s", got, target.Dir)
	}
}

func TestDialProxyCommandExits(t *testing.T) {
	t.Parallel()
	st := &Settings{Alias: "viaproxy", HostName: "h", IdentityAgent: "none",
		ProxyCommand: `sh -c "echo 'websocat: 401 Unauthorized' >&2; exit 3"`}
	de := dialErr(t, Route{st}, ErrProxyCommand)
	msg := de.Error()
	if !strings.Contains(msg, "exited with status 3") || !strings.Contains(msg, "401 Unauthorized") {
		t.Fatalf("message %q", msg)
	}
}

func TestDialKeepaliveNoticesFrozenPeer(t *testing.T) {
	t.Parallel()
	s := testbed.SSHDForTest(t, testbed.Options{})
	st := tbSettings(s)
	st.ServerAliveInterval, st.ServerAliveCountMax = time.Second, 2
	c := mustDial(t, Route{st})
	run(t, c, "true")
	// A session that stays open, as the kernel launcher's does.
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Start("sleep 60"); err != nil {
		t.Fatal(err)
	}
	waitDone := make(chan error, 1)
	go func() { waitDone <- sess.Wait() }()
	if n := s.Freeze(); n == 0 {
		t.Fatal("nothing to freeze")
	}
	t.Cleanup(s.Thaw)
	start := time.Now()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("frozen peer not noticed within 10s")
	}
	el := time.Since(start)
	// Interval × CountMax, plus one interval of tick phase and a margin.
	if el > 2*time.Second+time.Second+1500*time.Millisecond {
		t.Fatalf("noticed after %s, want about 2-3s", el)
	}
	if !errors.Is(c.Err(), ErrKeepaliveFailed) {
		t.Fatalf("Err = %v", c.Err())
	}
	select {
	case <-waitDone: // the session's Wait returns too
	case <-time.After(5 * time.Second):
		t.Fatal("session Wait still blocked after the connection was declared dead")
	}
	t.Logf("frozen peer noticed after %s: %v", el, c.Err())
}

// ServerAliveInterval 300, as ssh -G reports for every host under
// BatchMode yes: the caller's DeadAfter still bounds how long a dead peer
// goes unnoticed.
func TestDialDeadAfterOverridesLongAliveInterval(t *testing.T) {
	t.Parallel()
	s := testbed.SSHDForTest(t, testbed.Options{})
	st := tbSettings(s)
	st.ServerAliveInterval, st.ServerAliveCountMax = 300*time.Second, 3
	c, err := Dial(testCtx(t), Route{st}, DialOptions{DeadAfter: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	run(t, c, "true")
	// Idle but alive: the probes keep it up well past DeadAfter.
	select {
	case <-c.Done():
		t.Fatalf("an idle live connection was declared dead: %v", c.Err())
	case <-time.After(5 * time.Second):
	}
	if s.Freeze() == 0 {
		t.Fatal("nothing to freeze")
	}
	t.Cleanup(s.Thaw)
	start := time.Now()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("frozen peer not noticed within 10s")
	}
	el := time.Since(start)
	if el > 2*time.Second+1500*time.Millisecond {
		t.Fatalf("noticed after %s, want about 2 s", el)
	}
	if !errors.Is(c.Err(), ErrKeepaliveFailed) || !strings.Contains(c.Err().Error(), "link timeout 2s") {
		t.Fatalf("Err = %v", c.Err())
	}
	t.Logf("frozen peer noticed after %s: %v", el, c.Err())
}

// The whole path a user takes: an ssh_config with ProxyJump, resolved by
// either backend, dialled.
func TestDialResolvedRoute(t *testing.T) {
	t.Parallel()
	jump := testbed.SSHDForTest(t, testbed.Options{Alias: "gpk-jump"})
	target := testbed.SSHDForTest(t, testbed.Options{})
	cfg, err := target.ConfigVia(jump)
	if err != nil {
		t.Fatal(err)
	}
	for _, backend := range []string{"openssh", "builtin"} {
		route, err := Resolve(testCtx(t), target.Alias, Options{ConfigFile: cfg, Backend: backend})
		if err != nil {
			t.Fatalf("%s: resolve: %v", backend, err)
		}
		if len(route) != 2 {
			t.Fatalf("%s: route of %d hops, want jump + target", backend, len(route))
		}
		c := mustDial(t, route)
		if got := run(t, c, "echo $GOPYK_TESTBED"); got != target.Dir {
			t.Fatalf("%s: landed on %q, want %s", backend, got, target.Dir)
		}
		c.Close()
	}
}

// A frozen jump host starves the target connection riding on it: the
// target's keepalive notices and every hop is torn down.
func TestDialKeepaliveThroughFrozenJump(t *testing.T) {
	t.Parallel()
	jump := testbed.SSHDForTest(t, testbed.Options{Alias: "gpk-jump"})
	target := testbed.SSHDForTest(t, testbed.Options{})
	tst := tbSettings(target)
	tst.ServerAliveInterval, tst.ServerAliveCountMax = time.Second, 2
	c := mustDial(t, Route{tbSettings(jump), tst})
	run(t, c, "true")
	if jump.Freeze() == 0 {
		t.Fatal("nothing to freeze on the jump host")
	}
	t.Cleanup(jump.Thaw)
	select {
	case <-c.Done():
	case <-time.After(6 * time.Second):
		t.Fatal("frozen jump host not noticed within 6s")
	}
	if !errors.Is(c.Err(), ErrKeepaliveFailed) {
		t.Fatalf("Err = %v", c.Err())
	}
}
