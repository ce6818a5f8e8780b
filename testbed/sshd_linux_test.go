package testbed

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestSSHDRealClient(t *testing.T) {
	t.Parallel()
	s := SSHDForTest(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := s.Exec(ctx, "echo ok; id -un; echo $GOPYK_TESTBED")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || lines[0] != "ok" || lines[1] != s.User || lines[2] != s.Dir {
		t.Fatalf("remote said %q, want ok, %s, %s", out, s.User, s.Dir)
	}
	if os.Geteuid() == 0 && s.User == "root" {
		t.Fatalf("as root the testbed must log in as the unprivileged test user")
	}
}

func TestSSHDStopLeavesNothing(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := StartSSHD(ctx, Options{})
	if err != nil {
		t.Fatal(err)
	}
	pid := s.PID()
	if pid == 0 || !alive(pid) {
		t.Fatalf("sshd pid %d not alive", pid)
	}
	// A daemonised session process must be found by its tag and killed too.
	if _, err := s.Exec(ctx, "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo started"); err != nil {
		t.Fatal(err)
	}
	var sessions []int
	poll(t, "a tagged session process for the detached sleep", func() bool {
		sessions = s.SessionPIDs()
		return len(sessions) > 0
	})
	s.Stop()
	if alive(pid) {
		t.Fatalf("sshd pid %d still alive after Stop", pid)
	}
	for _, p := range sessions {
		if alive(p) {
			t.Fatalf("session pid %d still alive after Stop", p)
		}
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Fatalf("dir %s still there: %v", s.Dir, err)
	}
	s.Stop() // idempotent
}

func TestSSHDKillRestartKeepsPortAndKey(t *testing.T) {
	t.Parallel()
	s := SSHDForTest(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A connection open across the kill lives on, and Stop must end it.
	held := exec.CommandContext(ctx, "ssh", "-F", s.ConfigFile, s.Alias, "sleep 60")
	if err := held.Start(); err != nil {
		t.Fatal(err)
	}
	defer held.Wait()
	poll(t, "the held session", func() bool { return len(s.SessionPIDs()) > 0 })
	conns := s.ConnPIDs()
	old := s.PID()
	s.Kill()
	if alive(old) {
		t.Fatalf("pid %d alive after Kill", old)
	}
	if _, err := s.Exec(ctx, "true"); err == nil {
		t.Fatal("ssh succeeded while sshd was killed")
	}
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if s.PID() == old || s.PID() == 0 {
		t.Fatalf("restart pid %d (old %d)", s.PID(), old)
	}
	// StrictHostKeyChecking yes with the old known_hosts proves the same key and port.
	if out, err := s.Exec(ctx, "echo again"); err != nil || strings.TrimSpace(string(out)) != "again" {
		t.Fatalf("after restart: %q %v", out, err)
	}
	for _, p := range conns {
		if !alive(p) {
			t.Fatalf("connection process %d died with the listener", p)
		}
	}
	s.Stop()
	for _, p := range conns {
		if alive(p) {
			t.Fatalf("connection process %d of the killed listener survived Stop", p)
		}
	}
}

func TestSSHDFreezeThaw(t *testing.T) {
	t.Parallel()
	s := SSHDForTest(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := s.Exec(ctx, "sleep 0.5; echo x")
		done <- err
	}()
	// Once the session runs, the connection is set up: freeze it.
	poll(t, "a session to start", func() bool { return len(s.SessionPIDs()) > 0 })
	if s.Freeze() == 0 {
		t.Fatal("no per-connection sshd to freeze")
	}
	select {
	case err := <-done:
		t.Fatalf("ssh finished while sshd was frozen: %v", err)
	case <-time.After(1500 * time.Millisecond):
	}
	s.Thaw()
	if err := <-done; err != nil {
		t.Fatalf("after thaw: %v", err)
	}
}

func TestSSHDKillConns(t *testing.T) {
	t.Parallel()
	s := SSHDForTest(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := s.Exec(ctx, "sleep 20")
		done <- err
	}()
	poll(t, "a session to start", func() bool { return len(s.SessionPIDs()) > 0 })
	if n := s.KillConns(); n == 0 {
		t.Fatal("no connection to kill")
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("ssh succeeded although its connection was killed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ssh still running after KillConns")
	}
	if out, err := s.Exec(ctx, "echo back"); err != nil || strings.TrimSpace(string(out)) != "back" {
		t.Fatalf("listener gone after KillConns: %q %v", out, err)
	}
}

func TestSSHDIsolateHome(t *testing.T) {
	t.Parallel()
	s := SSHDForTest(t, Options{IsolateHome: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := s.Exec(ctx, "echo $HOME; mkdir -p ~/.gopyk && touch ~/.gopyk/x && echo written")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(out)); len(got) != 2 || got[0] != s.Home || got[1] != "written" || !strings.HasPrefix(s.Home, s.Dir) {
		t.Fatalf("remote said %q, want HOME %s (under %s) writable", out, s.Home, s.Dir)
	}
	if _, err := os.Stat(s.Home + "/.gopyk/x"); err != nil {
		t.Fatal(err)
	}
}

func TestSSHDProxyJump(t *testing.T) {
	t.Parallel()
	jump := SSHDForTest(t, Options{Alias: "gpk-jump"})
	target := SSHDForTest(t, Options{})
	cfg, err := target.ConfigVia(jump)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := target.ExecWith(ctx, cfg, "echo $GOPYK_TESTBED")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(out)) != target.Dir {
		t.Fatalf("landed on %q, want target %s", out, target.Dir)
	}
	log, _ := os.ReadFile(jump.LogFile)
	// Nothing else logs in to the jump host: a login there proves the hop.
	if !strings.Contains(string(log), "Accepted publickey for "+jump.User) {
		t.Fatalf("jump host %d saw no login:\n%s", jump.Port, log)
	}
}

// poll waits for cond, checking every 10ms, for at most 10s.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
