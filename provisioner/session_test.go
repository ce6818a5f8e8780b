//go:build linux

package provisioner

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/provisioner/remote"
	"github.com/gopyk/gopyk/testbed"
)

// On servers that refuse forwarding, auto falls back to one exec session
// (said once at INFO), the kernel runs, survives killed connections (the
// relay resumes inside the mux), restarts and shuts down with nothing left.
func TestSessionPathOnRefusingServers(t *testing.T) {
	for _, fw := range []string{testbed.NoStreamLocal, testbed.ForwardingDisabled} {
		t.Run(strings.Fields(fw)[0], func(t *testing.T) {
			b := newBedWith(t, testbed.Options{IsolateHome: true, Forwarding: fw})
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			k := b.launch(t)
			if n := b.log.count("refuses forwarding to unix sockets"); n != 1 {
				t.Errorf("%d INFO lines about the refused forward, want 1", n)
			}
			if !strings.Contains(b.log.String(), "streams=session") {
				t.Errorf("the launch does not say it uses the session path")
			}
			if got := execute(t, k, "x = 5; x"); got != "5" {
				t.Fatalf("x = %q", got)
			}
			b.sshd.KillConns()
			waitFor(t, 20*time.Second, "reconnected", func() bool { return b.log.count("msg=reconnected") == 1 })
			if got := execute(t, k, "x + 1"); got != "6" {
				t.Fatalf("after reconnect x + 1 = %q", got)
			}
			if n := b.log.count("refuses forwarding to unix sockets"); n != 1 {
				t.Errorf("%d INFO lines about the refused forward after a reconnect, want 1", n)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := k.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			if got := execute(t, k, "'x' in globals()"); got != "False" {
				t.Fatalf("after restart: %q", got)
			}
			if err := k.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "no remote processes", func() bool { return len(b.sshd.SessionPIDs()) == 0 })
		})
	}
}

// A spec forced to forward on a server that refuses it fails in one line
// naming the setting and the fix, and leaves nothing running remotely.
func TestForcedForwardRefused(t *testing.T) {
	b := newBedWith(t, testbed.Options{IsolateHome: true, Forwarding: testbed.NoStreamLocal})
	b.cfg.Gopyk.Streams = kernelspec.StreamsForward
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, err := Launch(ctx, b.cfg)
	if err == nil {
		t.Fatal("launch succeeded on a server that refuses forwarding")
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.Contains(msg, "AllowStreamLocalForwarding") || !strings.Contains(msg, "--streams auto") {
		t.Errorf("error %q: want one line naming AllowStreamLocalForwarding and --streams auto", msg)
	}
	t.Logf("the error: %s", msg)
	waitFor(t, 3*time.Second, "no remote processes", func() bool { return len(b.sshd.SessionPIDs()) == 0 })
}

// Forced session on a server that forwards: the session path is used
// without trying the forward.
func TestForcedSession(t *testing.T) {
	b := newBed(t)
	b.cfg.Gopyk.Streams = kernelspec.StreamsSession
	k := b.launch(t)
	if got := execute(t, k, "1 + 1"); got != "2" {
		t.Fatalf("1 + 1 = %q", got)
	}
	if !strings.Contains(b.log.String(), "streams=session") || b.log.count("refuses forwarding") != 0 {
		t.Errorf("log: %s", b.log.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := k.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "no remote processes", func() bool { return len(b.sshd.SessionPIDs()) == 0 })
}

// A persistent kernel left on the session path and attached again (what
// gopyk-kernel --existing does) keeps its state, and shuts down cleanly.
func TestSessionLeaveAndAttach(t *testing.T) {
	b := newBedWith(t, testbed.Options{IsolateHome: true, Forwarding: testbed.ForwardingDisabled})
	b.cfg.Persistent = true
	k := b.launch(t)
	if got := execute(t, k, "kept = 'yes'; kept"); got != "'yes'" {
		t.Fatalf("kept = %q", got)
	}
	st := k.State()
	if err := k.Leave(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := b.cfg
	cfg.Local.ShellPort, cfg.Local.IOPubPort, cfg.Local.StdinPort, cfg.Local.ControlPort, cfg.Local.HBPort = 0, 0, 0, 0, 0
	k2, err := Attach(ctx, cfg, st)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	if got := execute(t, k2, "kept"); got != "'yes'" {
		t.Fatalf("after attach: kept = %q", got)
	}
	if n := b.log.count("refuses forwarding to unix sockets"); n != 2 {
		t.Errorf("%d INFO lines about the refused forward, want one per launcher", n)
	}
	if err := k2.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "no remote processes", func() bool { return len(b.sshd.SessionPIDs()) == 0 })
}

// The refusal of a forced forward is not the kernel being gone (which
// sshd's answer would also read as): a reconnect keeps trying.
func TestRefusedIsNotGone(t *testing.T) {
	err := refusedError("h", "s", &goneLike{})
	if errors.Is(err, remote.ErrGone) {
		t.Errorf("%v reads as ErrGone", err)
	}
}

type goneLike struct{}

func (*goneLike) Error() string        { return "gone" }
func (*goneLike) Is(target error) bool { return target == remote.ErrGone }
