//go:build linux

package e2e

import (
	"strings"
	"testing"
)

// gopyk connect logs in, says so, shows the master in --status, and
// --stop ends it.
func TestConnectStatusStop(t *testing.T) {
	e := newEnv(t)
	out := e.gopyk("connect", "--kernel-name", e.spec)
	if !strings.Contains(out, "Connected to "+e.sshd.Alias) {
		t.Fatalf("gopyk connect: %s", out)
	}
	if out := e.gopyk("connect", "--kernel-name", e.spec); !strings.Contains(out, "Already connected to "+e.sshd.Alias) {
		t.Fatalf("gopyk connect again: %s", out)
	}
	out = e.gopyk("connect", "--status")
	if !strings.Contains(out, e.sshd.Alias+" (") || !strings.Contains(out, "connected since") || !strings.Contains(out, "1 logins") {
		t.Fatalf("gopyk connect --status: %s", out)
	}
	out = e.gopyk("connect", "--stop", "--ssh-config", e.sshd.ConfigFile, e.sshd.Alias)
	if !strings.Contains(out, "Stopped the master of "+e.sshd.Alias) {
		t.Fatalf("gopyk connect --stop: %s", out)
	}
	if out := e.gopyk("connect", "--status"); !strings.Contains(out, "No master runs.") {
		t.Fatalf("status after stop: %s", out)
	}
}
