package sshconf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// proxyCommand is a running ProxyCommand: its stdin/stdout are our
// connection, its stderr is kept (the tail) for error messages.
type proxyCommand struct {
	cmdline string
	cmd     *exec.Cmd
	tail    *tailBuffer
	exited  chan struct{}
	stopped sync.Once
}

// proxyShell is how OpenSSH runs a ProxyCommand: "$SHELL -c 'exec …'", so
// the command replaces the shell and signals reach it directly.
func proxyShell(cmdline string) *exec.Cmd {
	shell := os.Getenv("SHELL")
	if shell == "" {
		shell = "/bin/sh"
	}
	return exec.Command(shell, "-c", "exec "+cmdline)
}

// exitError describes how the command ended, or nil while it still runs.
func (p *proxyCommand) exitError() error {
	select {
	case <-p.exited:
	default:
		return nil
	}
	msg := fmt.Sprintf("ProxyCommand `%s` exited", p.cmdline)
	if st := p.cmd.ProcessState; st != nil {
		msg += " with " + strings.TrimPrefix(st.String(), "exit ")
	}
	if t := p.tail.String(); t != "" {
		msg += ": " + t
	}
	return errors.New(msg)
}

// waitExit gives an exiting proxy a moment to finish, so a handshake
// failure caused by it can quote its stderr.
func (p *proxyCommand) waitExit(d time.Duration) bool {
	select {
	case <-p.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// tailBuffer keeps the last bytes written to it and echoes them if asked.
type tailBuffer struct {
	mu   sync.Mutex
	buf  []byte
	max  int
	echo io.Writer
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.echo != nil {
		t.echo.Write(b)
	}
	t.buf = append(t.buf, b...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return dialOneLine(string(t.buf))
}
