//go:build !windows

package openssh

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// StartOptions say how to run ssh to open a master.
type StartOptions struct {
	SSH        string   // the ssh binary
	ConfigFile string   // ssh -F; "" reads the user's and the system's files
	Alias      string   // the host, as given to ssh
	Args       []string // options before the host (-o ControlPath=…)
	Env        []string // the environment; nil is this process's
	// Setsid runs ssh in a new session, without a controlling terminal: it
	// then asks only through SSH_ASKPASS, and a signal to our process group
	// (Jupyter's SIGINT) does not reach it.
	Setsid bool
}

// StartError is ssh exiting before its master was up: a failed login, an
// unknown host key, a network error. Stderr is the tail of what it printed.
type StartError struct {
	Status int
	Stderr string
}

func (e *StartError) Error() string {
	msg := fmt.Sprintf("ssh exited with status %d", e.Status)
	if t := strings.Join(strings.Fields(e.Stderr), " "); t != "" {
		msg += ": " + t
	}
	return msg
}

// Start runs `ssh -f -N` with o, so that ssh logs in (asking whatever it
// asks, as `ssh host` would), becomes the master at path (o.Args or the
// user's config must say ControlMaster and ControlPath) and goes to the
// background; then it connects to that master. ssh forks only once the
// login succeeded and the control socket listens, so its exit is the
// signal: no polling for the socket.
func Start(ctx context.Context, o StartOptions, path string) (*Master, error) {
	var args []string
	if o.ConfigFile != "" {
		args = append(args, "-F", o.ConfigFile)
	}
	args = append(args, o.Args...)
	args = append(args, "-f", "-N", "--", o.Alias)
	cmd := exec.CommandContext(ctx, o.SSH, args...)
	cmd.Env = o.Env
	stderr := &tailWriter{max: 4 << 10}
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: o.Setsid}
	// SIGTERM, not SIGKILL: ssh puts the terminal's echo back if it was
	// asking for a password.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 3 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("ssh %s: %w", o.Alias, context.Cause(ctx))
		}
		status := -1
		if ee, ok := err.(*exec.ExitError); ok {
			status = ee.ExitCode()
		}
		return nil, &StartError{Status: status, Stderr: stderr.String()}
	}
	return Connect(ctx, path)
}

// tailWriter keeps the last max bytes written to it.
type tailWriter struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailWriter) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
