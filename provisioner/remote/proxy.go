package remote

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// ExecConn connects to target on the remote ("unix:/path" or
// "tcp:host:port") through the launcher running in the exec session s, for
// servers that refuse SSH forwarding (AllowStreamLocalForwarding no,
// AllowTcpForwarding no). p supplies Python and Pre. The conn owns s: Close
// ends it. The conn has no deadlines; close it to unblock a Read.
func ExecConn(ctx context.Context, s Session, target string, p Params) (net.Conn, error) {
	p.Action, p.Target = ActionProxy, target
	stdin, err := s.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("proxy to %s: stdin: %w", target, err)
	}
	stdout, err := s.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("proxy to %s: stdout: %w", target, err)
	}
	stderr, err := s.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("proxy to %s: stderr: %w", target, err)
	}
	if err := s.Start(Command(p.Python, p.Pre)); err != nil {
		return nil, fmt.Errorf("proxy to %s: start the remote launcher: %w", target, err)
	}
	tail := &tailBuffer{max: 8 << 10}
	go func() { _, _ = io.Copy(tail, stderr) }() // ends with the session
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	br := bufio.NewReaderSize(stdout, 64<<10)
	_, runErr := run(ctx, stdin, br, p)
	if !stop() {
		endSession(s, time.Second)
		return nil, fmt.Errorf("proxy to %s: %w", target, context.Cause(ctx))
	}
	if runErr != nil {
		status := endSession(s, 5*time.Second)
		return nil, fmt.Errorf("proxy to %s: %w", target, ExplainExit(status, tail.String(), runErr))
	}
	return &execConn{s: s, in: stdin, out: br, target: target}, nil
}

// ExecDialer is a Dialer whose connections are ExecConns to target, each on a
// new session from open.
func ExecDialer(open func(ctx context.Context) (Session, error), target string, p Params) Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		s, err := open(ctx)
		if err != nil {
			return nil, fmt.Errorf("proxy to %s: new session: %w", target, err)
		}
		return ExecConn(ctx, s, target, p)
	}
}

type execConn struct {
	s      Session
	in     io.WriteCloser
	out    *bufio.Reader
	target string
	once   sync.Once
}

func (c *execConn) Read(b []byte) (int, error) {
	n, err := c.out.Read(b)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("proxy to %s: %w", c.target, err)
	}
	return n, err
}

func (c *execConn) Write(b []byte) (int, error) { return c.in.Write(b) }

func (c *execConn) Close() error {
	c.once.Do(func() {
		_ = c.in.Close()
		_ = c.s.Close()
		endSession(c.s, 5*time.Second) // reap; after Close it is quick
	})
	return nil
}

type execAddr string

func (a execAddr) Network() string { return "exec" }
func (a execAddr) String() string  { return string(a) }

func (c *execConn) LocalAddr() net.Addr  { return execAddr("exec") }
func (c *execConn) RemoteAddr() net.Addr { return execAddr(c.target) }

// Deadlines are not supported (like SSH channels): Control closes the conn
// when its ctx ends instead.
func (c *execConn) SetDeadline(time.Time) error      { return os.ErrNoDeadline }
func (c *execConn) SetReadDeadline(time.Time) error  { return os.ErrNoDeadline }
func (c *execConn) SetWriteDeadline(time.Time) error { return os.ErrNoDeadline }
