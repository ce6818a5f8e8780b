//go:build unix

package launcher

import (
	"syscall"
	"testing"
)

// The Unix signal table (DESIGN.md), on Linux and macOS alike: run here,
// compiled for darwin by `make cross`.
func TestUnixSignalTable(t *testing.T) {
	for _, tc := range []struct {
		sig syscall.Signal
		act action
	}{
		{syscall.SIGINT, actInterrupt},
		{syscall.SIGUSR1, actRestart},
		{syscall.SIGTERM, actShutdown},
		{syscall.SIGHUP, actShutdown},
		{syscall.SIGUSR2, actForceShutdown},
		{syscall.SIGQUIT, actLeave},
		{syscall.SIGWINCH, actNothing},
	} {
		if r := requestFor(tc.sig); r.act != tc.act {
			t.Errorf("%v asks for %v, want %v", tc.sig, r.act, tc.act)
		}
	}
	if got := len(handledSignals()); got != 6 {
		t.Errorf("%d signals handled, want 6", got)
	}
	if !menuAvailable {
		t.Error("no Ctrl+D menu on a Unix terminal")
	}
	if got := signalHint("SIGQUIT", "leave"); got != "send SIGQUIT to leave" {
		t.Errorf("hint %q", got)
	}
}
