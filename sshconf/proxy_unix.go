//go:build unix

package sshconf

import (
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// startProxyCommand runs cmdline on one end of a socketpair and returns the
// other end as a net.Conn with working deadlines. The command gets its own
// process group so a ^C meant for us (Jupyter's interrupt) does not kill it.
func startProxyCommand(cmdline string, echo io.Writer) (net.Conn, *proxyCommand, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("ProxyCommand socketpair: %w", err)
	}
	unix.CloseOnExec(fds[0])
	unix.CloseOnExec(fds[1])
	ours := os.NewFile(uintptr(fds[0]), "proxycommand")
	theirs := os.NewFile(uintptr(fds[1]), "proxycommand-child")
	defer theirs.Close()
	defer ours.Close()

	p := &proxyCommand{cmdline: cmdline, tail: &tailBuffer{max: 2048, echo: echo}, exited: make(chan struct{})}
	p.cmd = proxyShell(cmdline)
	p.cmd.Stdin, p.cmd.Stdout, p.cmd.Stderr = theirs, theirs, p.tail
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A grandchild holding stderr open must not block the reaper forever.
	p.cmd.WaitDelay = time.Second
	if err := p.cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start ProxyCommand `%s`: %w", cmdline, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	conn, err := net.FileConn(ours)
	if err != nil {
		p.stop()
		return nil, nil, fmt.Errorf("ProxyCommand conn: %w", err)
	}
	return conn, p, nil
}

// stop ends the whole process group (SIGHUP and SIGTERM, then SIGKILL) and reaps it.
func (p *proxyCommand) stop() {
	p.stopped.Do(func() {
		pgid := p.cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGHUP)
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.exited:
			syscall.Kill(-pgid, syscall.SIGKILL) // leftovers in the group
			return
		case <-time.After(2 * time.Second):
		}
		syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
		}
	})
}
