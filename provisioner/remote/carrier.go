package remote

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// Carrier is an exec session running the launcher's mux action: after its
// reply, stdin and stdout are a byte stream that mux.Client multiplexes, for
// servers that refuse SSH forwarding. Close ends the session.
type Carrier struct {
	s    Session
	in   io.WriteCloser
	out  *bufio.Reader
	tail *tailBuffer
	once sync.Once
}

// OpenCarrier starts the mux action in s (p supplies Python and Pre) and
// returns once it replied. The carrier owns s.
func OpenCarrier(ctx context.Context, s Session, p Params) (*Carrier, error) {
	p.Action = ActionMux
	stdin, err := s.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("mux session: stdin: %w", err)
	}
	stdout, err := s.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("mux session: stdout: %w", err)
	}
	stderr, err := s.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("mux session: stderr: %w", err)
	}
	if err := s.Start(Command(p.Python, p.Pre)); err != nil {
		return nil, fmt.Errorf("mux session: start the remote launcher: %w", err)
	}
	tail := &tailBuffer{max: 8 << 10}
	go func() { _, _ = io.Copy(tail, stderr) }() // ends with the session
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	br := bufio.NewReaderSize(stdout, 64<<10)
	_, runErr := run(ctx, stdin, br, p)
	if !stop() {
		endSession(s, time.Second)
		return nil, fmt.Errorf("mux session: %w", context.Cause(ctx))
	}
	if runErr != nil {
		status := endSession(s, 5*time.Second)
		return nil, fmt.Errorf("mux session: %w", ExplainExit(status, tail.String(), runErr))
	}
	return &Carrier{s: s, in: stdin, out: br, tail: tail}, nil
}

func (c *Carrier) Read(b []byte) (int, error) {
	n, err := c.out.Read(b)
	if err == io.EOF {
		if t := oneLine(c.tail.String(), 300); t != "" {
			err = fmt.Errorf("mux session ended: %s: %w", t, io.EOF)
		}
	}
	return n, err
}

func (c *Carrier) Write(b []byte) (int, error) { return c.in.Write(b) }

// Close ends the session; the remote mux exits on its stdin's EOF.
func (c *Carrier) Close() error {
	c.once.Do(func() {
		_ = c.in.Close()
		_ = c.s.Close()
		go endSession(c.s, 5*time.Second) // reap; never block a teardown on a stalled link
	})
	return nil
}

// ProbeForward asks the remote for a unix socket (ActionForwardProbe in s)
// and reaches it with dial (SSH's streamlocal forwarding): true when the
// server forwards to unix sockets, false when it refuses; an error when the
// probe could not run. s is ended before it returns.
func ProbeForward(ctx context.Context, s Session, p Params, dial func(ctx context.Context, path string) (net.Conn, error)) (bool, error) {
	p.Action = ActionForwardProbe
	stdin, err := s.StdinPipe()
	if err != nil {
		return false, err
	}
	stdout, err := s.StdoutPipe()
	if err != nil {
		return false, err
	}
	if err := s.Start(Command(p.Python, p.Pre)); err != nil {
		return false, fmt.Errorf("start the remote launcher: %w", err)
	}
	defer endSession(s, 2*time.Second)
	defer stdin.Close()
	stop := context.AfterFunc(ctx, func() { _ = s.Close() })
	defer stop()
	r, err := run(ctx, stdin, bufio.NewReaderSize(stdout, 64<<10), p)
	if err != nil {
		return false, err
	}
	conn, err := dial(ctx, r.Control)
	if err != nil {
		return false, nil
	}
	defer conn.Close()
	context.AfterFunc(ctx, func() { _ = conn.Close() })
	var b [3]byte
	n, err := io.ReadFull(conn, b[:])
	if n == 0 && err != nil && ctx.Err() == nil {
		// Through an OpenSSH master a refused forward is a stream closed
		// at once: the probe socket always answers.
		return false, nil
	}
	if err != nil || string(b[:]) != "ok\n" {
		return false, fmt.Errorf("the probe socket answered %q: %v", b[:n], err)
	}
	return true, nil
}
