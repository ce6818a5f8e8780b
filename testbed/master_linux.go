package testbed

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// MasterConfig writes a client config (in a fresh short directory, which
// also holds the control sockets) whose Host block shares connections the
// way users set it up for OpenSSH: ControlMaster auto, ControlPath
// <dir>/cm-%C, and extra lines (e.g. "ControlPersist 10m", "BatchMode
// no"), which come first and so win over the block's own (ssh keeps the
// first value). It returns the config's path.
func (s *SSHD) MasterConfig(t testing.TB, extra ...string) string {
	t.Helper()
	// Short: unix socket paths have ~104 bytes, and ssh appends 17 to it.
	dir, err := os.MkdirTemp("", "gpkcm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var b strings.Builder
	fmt.Fprintf(&b, "Host %s\n", s.Alias)
	for _, l := range extra {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	block := s.ConfigBlock()
	block = strings.Replace(block, "  ControlMaster no\n", "  ControlMaster auto\n", 1)
	block = strings.Replace(block, "  ControlPath none\n", "  ControlPath "+filepath.Join(dir, "cm-%C")+"\n", 1)
	_, rest, _ := strings.Cut(block, "\n") // the block's own Host line
	b.WriteString(rest)
	path := filepath.Join(dir, "ssh_config")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Master is an OpenSSH ControlMaster opened as a user does, `ssh -M -f -N`.
type Master struct {
	Path string // the control socket
	PID  int
	cfg  string
	host string
}

var masterPID = regexp.MustCompile(`Master running \(pid=(\d+)\)`)

// StartMaster opens a master to s with configFile (see MasterConfig) the
// way a user does, `ssh -M -f -N alias`, with env (nil: this process's;
// SSH_ASKPASS there answers a password or a code). It fails t unless the
// master runs; t.Cleanup stops it by its pid.
func (s *SSHD) StartMaster(t testing.TB, configFile string, env []string) *Master {
	t.Helper()
	m, err := OpenMaster(configFile, s.Alias, env)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m
}

// OpenMaster is StartMaster for callers that stop the master themselves,
// or have only the config and the alias (a test re-executed in a network
// namespace).
func OpenMaster(configFile, alias string, env []string) (*Master, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	g, err := exec.CommandContext(ctx, "ssh", "-F", configFile, "-G", alias).Output()
	if err != nil {
		return nil, fmt.Errorf("testbed: ssh -G: %w", err)
	}
	m := &Master{cfg: configFile, host: alias}
	for _, l := range strings.Split(string(g), "\n") {
		if p, ok := strings.CutPrefix(l, "controlpath "); ok {
			m.Path = p
		}
	}
	if m.Path == "" {
		return nil, fmt.Errorf("testbed: %s sets no ControlPath for %s", configFile, alias)
	}
	c := exec.CommandContext(ctx, "ssh", "-F", configFile, "-M", "-f", "-N", alias)
	c.Env = env
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // no terminal: it asks through SSH_ASKPASS
	c.WaitDelay = 3 * time.Second
	if out, err := c.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("testbed: ssh -M -f -N %s: %v: %s", alias, err, out)
	}
	out, err := exec.CommandContext(ctx, "ssh", "-F", configFile, "-O", "check", alias).CombinedOutput()
	sm := masterPID.FindSubmatch(out)
	if err != nil || sm == nil {
		return nil, fmt.Errorf("testbed: ssh -O check %s: %v: %s", alias, err, out)
	}
	m.PID, _ = strconv.Atoi(string(sm[1]))
	return m, nil
}

// Stop ends the master (ssh -O exit, then SIGKILL by pid) and waits until
// it is gone. Safe to call twice.
func (m *Master) Stop() {
	if m.PID == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = exec.CommandContext(ctx, "ssh", "-F", m.cfg, "-O", "exit", m.host).Run()
	deadline := time.Now().Add(5 * time.Second)
	for alive(m.PID) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling a condition, bounded by deadline
	}
	if alive(m.PID) {
		syscall.Kill(m.PID, syscall.SIGKILL)
	}
	m.PID = 0
}

// Alive reports whether the master process still runs.
func (m *Master) Alive() bool { return m.PID != 0 && alive(m.PID) }
