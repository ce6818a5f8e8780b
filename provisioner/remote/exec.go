package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Session is an exec session; *ssh.Session from golang.org/x/crypto/ssh
// satisfies it, and so does LocalSession.
type Session interface {
	StdinPipe() (io.WriteCloser, error)
	StdoutPipe() (io.Reader, error)
	StderrPipe() (io.Reader, error)
	Start(cmd string) error
	Wait() error
	Close() error
}

// Exec runs the launcher in s for p (p.Python, p.Pre select the command) and
// returns its reply. Errors are explained (ExplainExit): missing python, a
// failing pre-command, an unknown kernel name, a kernel that died while
// starting, each with its fix. When ctx ends, s is closed, which makes the
// remote give up a launch in progress. Exec always ends s before returning.
func Exec(ctx context.Context, s Session, p Params) (*Reply, error) {
	stdin, err := s.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("remote launcher: stdin: %w", err)
	}
	stdout, err := s.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("remote launcher: stdout: %w", err)
	}
	stderr, err := s.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("remote launcher: stderr: %w", err)
	}
	if err := s.Start(Command(p.Python, p.Pre)); err != nil {
		return nil, fmt.Errorf("start the remote launcher: %w", err)
	}
	tail := &tailBuffer{max: 8 << 10}
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		_, _ = io.Copy(tail, stderr)
	}()
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()

	reply, runErr := Run(ctx, stdin, stdout, p)
	if runErr == nil {
		_ = stdin.Close()
		endSession(s, 2*time.Second)
		return reply, nil
	}
	if ctx.Err() != nil {
		_ = s.Close()
		return nil, runErr
	}
	status := endSession(s, 5*time.Second)
	select {
	case <-stderrDone:
	case <-time.After(time.Second):
	}
	return nil, ExplainExit(status, tail.String(), runErr)
}

// endSession waits up to d for s to end, closing it after that, and returns
// its exit status (-1 if unknown).
func endSession(s Session, d time.Duration) int {
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		return exitStatus(err)
	case <-time.After(d):
		_ = s.Close()
		<-done // Close makes Wait return
		return -1
	}
}

func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	var ssh interface{ ExitStatus() int } // *ssh.ExitError
	if errors.As(err, &ssh) {
		return ssh.ExitStatus()
	}
	var local interface{ ExitCode() int } // *exec.ExitError
	if errors.As(err, &local) {
		return local.ExitCode()
	}
	return -1
}

// ExplainExit turns what an exec session left (its exit status, -1 if
// unknown; the tail of its stderr; Run's error) into one clear error that
// names the fix. Run's reply errors pass through with a fix added.
func ExplainExit(exitStatus int, stderrTail string, err error) error {
	tail := oneLine(stderrTail, 600)
	withTail := func(msg string) string {
		if tail == "" {
			return msg
		}
		return msg + ": " + tail
	}
	var re *ReplyError
	if errors.As(err, &re) {
		switch re.Code {
		case CodeUnknownKernel:
			return fmt.Errorf("%w; fix: gopyk edit --remote-kernel-name NAME with one of: %s", err, strings.Join(re.KernelNames, ", "))
		case CodeKernelDied:
			if strings.Contains(re.StderrTail, "No module named") {
				return fmt.Errorf("%w; fix: install the missing module for the remote kernel, or pick another python or kernel with gopyk edit --remote-python / --remote-kernel-name", err)
			}
			return fmt.Errorf("%w; fix: run the remote kernel by hand to see why (%s), or pick another with gopyk edit --remote-kernel-name", err, strings.Join(re.Argv, " "))
		case CodeTimeout:
			return fmt.Errorf("%w; fix: raise the spec's launch_timeout (gopyk edit --launch-timeout)", err)
		case CodeTooOld:
			return fmt.Errorf("%w; fix: gopyk edit --remote-python /path/to/python3 (3.6 or newer)", err)
		case CodeBadSpec:
			return fmt.Errorf("%w; fix: repair that kernel.json on the remote, or pick another with gopyk edit --remote-kernel-name", err)
		case CodeRunDir:
			return fmt.Errorf("%w; fix: make the remote home (or /tmp) writable", err)
		}
		return err
	}
	var nr *NoReplyError
	if errors.As(err, &nr) {
		python := nr.Python
		if python == "" {
			python = "python3"
		}
		switch {
		case !nr.PreOK:
			return fmt.Errorf("%s; fix: gopyk edit --remote-pre", withTail(fmt.Sprintf("remote pre-command %q failed (exit status %d)", nr.Pre, exitStatus)))
		case exitStatus == 127:
			return fmt.Errorf("%s; fix: gopyk edit --remote-python /absolute/path/to/python3", withTail(fmt.Sprintf("remote python %q not found (exit status 127)", python)))
		case exitStatus == 126:
			return fmt.Errorf("%s; fix: gopyk edit --remote-python /absolute/path/to/python3", withTail(fmt.Sprintf("remote python %q cannot be executed (exit status 126)", python)))
		default:
			return fmt.Errorf("%s; fix: check the remote python with gopyk edit --remote-python", withTail(fmt.Sprintf("remote launcher (%s) exited with status %d without a reply", python, exitStatus)))
		}
	}
	if err == nil {
		if exitStatus == 0 {
			return nil
		}
		return errors.New(withTail(fmt.Sprintf("remote launcher exited with status %d", exitStatus)))
	}
	if tail != "" {
		return fmt.Errorf("%w (remote stderr: %s)", err, tail)
	}
	return err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// LocalSession runs the command with /bin/sh -c on this machine, as sshd
// would on the remote: for tests and for kernels on localhost.
type LocalSession struct {
	Env []string // the environment (nil = this process's)
	Dir string   // working directory ("" = current)

	cmd *exec.Cmd
	mu  sync.Mutex
}

func (l *LocalSession) command() *exec.Cmd {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cmd == nil {
		l.cmd = exec.Command("/bin/sh")
		l.cmd.Env, l.cmd.Dir = l.Env, l.Dir
	}
	return l.cmd
}

func (l *LocalSession) StdinPipe() (io.WriteCloser, error) { return l.command().StdinPipe() }
func (l *LocalSession) StdoutPipe() (io.Reader, error)     { return l.command().StdoutPipe() }
func (l *LocalSession) StderrPipe() (io.Reader, error)     { return l.command().StderrPipe() }

func (l *LocalSession) Start(cmd string) error {
	c := l.command()
	c.Args = []string{"/bin/sh", "-c", cmd}
	return c.Start()
}

func (l *LocalSession) Wait() error { return l.command().Wait() }

// Close kills the shell (or the launcher it became); a detached supervisor
// lives on, as it does when an SSH session closes.
func (l *LocalSession) Close() error {
	c := l.command()
	if c.Process == nil {
		return nil
	}
	err := c.Process.Kill()
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}
