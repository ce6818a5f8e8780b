//go:build linux

package provisioner

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/sshconf"
	"github.com/gopyk/gopyk/testbed"
	"github.com/gopyk/gopyk/wire"
)

func TestAuthPacerLimitsRefusals(t *testing.T) {
	var p authPacer
	log := slog.New(slog.DiscardHandler)
	refused := &sshconf.DialError{Kind: sshconf.ErrAuth, Err: errors.New("the server refused a password")}
	now := time.Unix(0, 0)
	var at []time.Time // when each refused login happened
	for now.Before(time.Unix(0, 0).Add(30 * time.Minute)) {
		at = append(at, now)
		wait, ok := p.next(refused, now, log, "h")
		if !ok || wait <= 0 {
			t.Fatalf("refusal not paced: %v %v", wait, ok)
		}
		now = now.Add(wait)
	}
	for i := range at {
		n := 0
		for _, t2 := range at[i:] {
			if t2.Sub(at[i]) < authFailWindow {
				n++
			}
		}
		if n > authFailLimit {
			t.Fatalf("%d refused logins within %v from %v: %v", n, authFailWindow, at[i], at)
		}
	}
	if _, ok := p.next(errors.New("no route to host"), now, log, "h"); ok {
		t.Fatal("a network error was paced as a refused login")
	}
}

// A password host re-logs in through SSH_ASKPASS after a drop; while the
// answer is wrong the server sees at most authFailLimit failed logins per
// window, each logged at WARN with the reason; while nobody can answer it
// is said once and costs no failed login; a right answer brings it back.
func TestReloginPacedAfterDrop(t *testing.T) {
	oldWindow, oldFirst, oldEvery := authFailWindow, authFailFirst, cannotAskEvery
	authFailWindow, authFailFirst, cannotAskEvery = 20*time.Second, 500*time.Millisecond, 300*time.Millisecond
	t.Cleanup(func() { authFailWindow, authFailFirst, cannotAskEvery = oldWindow, oldFirst, oldEvery })

	pw := testbed.UserPassword(t)
	sshd := testbed.SSHDForTest(t, testbed.Options{
		User:        testbed.PasswordUser,
		IsolateHome: true,
		Program:     testbed.PAMService(t, "auth required pam_unix.so\naccount required pam_permit.so\nsession required pam_permit.so\n"),
		Override:    []string{"UsePAM yes", "PasswordAuthentication yes", "KbdInteractiveAuthentication no", "PubkeyAuthentication no"},
	})
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "ssh_config")
	block := strings.Replace(sshd.ConfigBlock(), "BatchMode yes", "BatchMode no", 1)
	os.WriteFile(cfgFile, []byte(block), 0o644)
	answer := filepath.Join(dir, "answer")
	setAnswer := func(s string) { os.WriteFile(answer+".tmp", []byte(s+"\n"), 0o600); os.Rename(answer+".tmp", answer) }
	setAnswer(pw)
	askpass := filepath.Join(dir, "askpass")
	os.WriteFile(askpass, []byte("#!/bin/sh\ncat '"+answer+"'\n"), 0o755)
	t.Setenv("SSH_ASKPASS", askpass)
	t.Setenv("SSH_ASKPASS_REQUIRE", "force")

	b := &bed{sshd: sshd, log: &logBuf{}}
	b.cfg = Config{
		SpecName: "gpk_relogin",
		Gopyk: kernelspec.Gopyk{SSHHostAlias: sshd.Alias, SSHConfig: cfgFile, RemoteKernelName: "python3",
			RemotePython: "/usr/bin/python3", Grace: 60},
		Local: wire.ConnInfo{IP: "127.0.0.1", Transport: "tcp", SignatureScheme: "hmac-sha256"},
		Log:   slog.New(slog.NewTextHandler(b.log, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("provisioner log:\n%s", b.log.String())
		}
	})
	count := func(what string) int {
		log, _ := os.ReadFile(sshd.LogFile)
		return strings.Count(string(log), what)
	}
	failed := func() int { return count("Failed password for " + testbed.PasswordUser) }
	k := b.launch(t)
	defer k.Shutdown(t.Context())
	execute(t, k, "z = 7")

	setAnswer("wrong-" + pw[:3])
	// A network drop goes silent before anything closes: freeze the
	// connection until keepalive notices, then end it. (A connection that
	// closes while its lease pings were on time reads, to the supervisor,
	// as a killed gopyk-kernel, and the kernel would stop within seconds.)
	frozen := sshd.ConnPIDs()
	sshd.Freeze()
	waitFor(t, 30*time.Second, "the drop noticed", func() bool { return b.log.count("connection lost, reconnecting") == 1 })
	for _, pid := range frozen { // not the re-login that may already be on its way
		syscall.Kill(pid, syscall.SIGKILL)
	}
	waitFor(t, 30*time.Second, "three refused logins", func() bool { return b.log.count("refused_in_window=3") == 1 })
	if n := failed(); n != 3 {
		t.Fatalf("%d failed logins in sshd's log, want 3 (one per attempt)", n)
	}
	if n := b.log.count("level=WARN msg=\"the server refused the login"); n != 3 {
		t.Fatalf("%d WARN lines for 3 refused logins", n)
	}
	if !strings.Contains(b.log.String(), "the server refused a password for user "+testbed.PasswordUser) {
		t.Fatal("the WARN lines do not say why")
	}

	// Nobody to ask now: said once, no failed login.
	t.Setenv("SSH_ASKPASS", "")
	waitFor(t, 30*time.Second, "cannot-ask warning", func() bool { return b.log.count("cannot log in again") == 1 })
	conns := count("Connection from ")
	waitFor(t, 10*time.Second, "three more unanswerable tries", func() bool { return count("Connection from ") >= conns+3 })
	if n := failed(); n != 3 {
		t.Fatalf("%d failed logins while nobody could answer, want still 3", n)
	}

	setAnswer(pw)
	t.Setenv("SSH_ASKPASS", askpass)
	waitFor(t, 30*time.Second, "reconnected", func() bool { return b.log.count("msg=reconnected") == 1 })
	if got := execute(t, k, "z"); got != "7" {
		t.Fatalf("after re-login z = %q", got)
	}
	if n, w := failed(), b.log.count("cannot log in again"); n != 3 || w != 1 {
		t.Fatalf("%d failed logins (want 3), %d cannot-ask lines (want 1)", n, w)
	}
}
