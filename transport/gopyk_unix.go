//go:build !windows

package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gopyk/gopyk/master"
	"github.com/gopyk/gopyk/openssh"
	"github.com/gopyk/gopyk/sshconf"
	"golang.org/x/crypto/ssh"
)

// gopykMaster carries a connection through the host's gopyk master
// (package master), started now when none runs: it logs in once for every
// kernel and gopyk list of the host. Its failures are a dial's, of the
// same sshconf kinds.
func gopykMaster(ctx context.Context, route sshconf.Route, o Options, log *slog.Logger) (Conn, error) {
	t := route.Target()
	level := slog.LevelInfo
	if log.Enabled(ctx, slog.LevelDebug) {
		level = slog.LevelDebug
	}
	path, err := master.Ensure(ctx, route, master.Options{Alias: t.Alias, Persist: o.MasterPersist, DeadAfter: o.DeadAfter, Interactive: o.Interactive, Log: log, LogLevel: level})
	if errors.Is(err, master.ErrNotGopyk) {
		// The packages used by another program: no master to run.
		log.Debug("no gopyk master from this program; dialing", "host", t.Alias, "why", err)
		return dialNative(ctx, route, o, log)
	}
	if err != nil {
		return nil, asDialError(t.Alias, err)
	}
	// The watch first: it is bound to the connection Connect brings up,
	// and closes when that one is lost.
	m, err := openssh.Connect(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("gopyk's master for %s at %s: %w", t.Alias, path, err)
	}
	if err := master.Connect(ctx, path); err != nil {
		m.Close()
		return nil, asDialError(t.Alias, err)
	}
	log.Debug("through gopyk's master", "host", t.Alias, "socket", path, "pid", m.PID())
	return &gopykConn{m: m, path: path, via: fmt.Sprintf("gopyk master (pid %d)", m.PID())}, nil
}

// asDialError gives a master's failure the form of sshconf.Dial's, so
// that reconnects are paced by its kind.
func asDialError(alias string, err error) error {
	var de *sshconf.DialError
	if errors.As(err, &de) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	for _, k := range []error{sshconf.ErrUnknownHost, sshconf.ErrRefused, sshconf.ErrTimeout, sshconf.ErrAuth, sshconf.ErrCannotAsk,
		sshconf.ErrHostKeyChanged, sshconf.ErrHostKeyUnknown, sshconf.ErrHostKeyRevoked, sshconf.ErrProxyCommand, sshconf.ErrJump, sshconf.ErrHandshakeClosed} {
		if errors.Is(err, k) {
			return &kindedError{err: err, kind: k}
		}
	}
	return err
}

// kindedError is a master's failure that matches an sshconf kind; its
// text is already the dial's own ("ssh host: …; hint").
type kindedError struct {
	err  error
	kind error
}

func (e *kindedError) Error() string        { return e.err.Error() }
func (e *kindedError) Unwrap() error        { return e.err }
func (e *kindedError) Is(target error) bool { return target == e.kind }

// refusedOpen: sshd would not open the stream ("connect failed" when it
// refuses unix forwarding and when nothing listens alike; see native).
func refusedOpen(err error) bool {
	var oce *ssh.OpenChannelError
	return errors.As(err, &oce) && (oce.Reason == ssh.Prohibited || oce.Reason == ssh.ConnectionFailed)
}

// gopykConn is a connection through gopyk's master: sessions with passed
// descriptors, streams as stdio forwards (each its own control connection,
// the server's refusal passed back with its reason).
type gopykConn struct {
	m    *openssh.Master
	path string
	via  string

	mu     sync.Mutex
	closed bool
	err    error // why Done closed, once asked
}

func (c *gopykConn) NewSession() (Session, error) { return &gopykSession{c.m.NewSession()}, nil }

func (c *gopykConn) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	conn, err := c.m.Stream(ctx, path)
	if err == nil {
		return conn, nil
	}
	var re *openssh.ReplyError
	if errors.As(err, &re) {
		// The server's own answer, as a native dial would have it.
		err = master.ParseFailure(re.Reason)
		if refusedOpen(err) {
			return nil, refusedError{err}
		}
		return nil, asDialError("", err)
	}
	return nil, err
}

func (c *gopykConn) Done() <-chan struct{} { return c.m.Done() }

func (c *gopykConn) LastHeard() time.Time {
	if t := c.m.Ended(); !t.IsZero() {
		return t
	}
	return time.Now()
}

func (c *gopykConn) Err() error {
	select {
	case <-c.m.Done():
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return sshconf.ErrClosed
	}
	if c.err == nil {
		// The master knows why (a keepalive unanswered, the server gone);
		// a master that does not answer any more was killed.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		in, err := master.Status(ctx, c.path)
		cancel()
		switch {
		case err != nil:
			c.err = &lostError{msg: "the " + c.via + " is gone"}
		case in.LastError != "":
			c.err = &lostError{msg: c.via + ": " + in.LastError}
		default:
			c.err = &lostError{msg: "the " + c.via + " dropped its connection"}
		}
	}
	return c.err
}

// lostError is a connection through the master that ended: it matches
// sshconf.ErrConnectionLost, and says why in the master's words.
type lostError struct{ msg string }

func (e *lostError) Error() string        { return e.msg }
func (e *lostError) Is(target error) bool { return target == sshconf.ErrConnectionLost }

// Close lets go of the master, which goes on for the host's other kernels.
func (c *gopykConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return c.m.Close()
}

func (c *gopykConn) Via() string { return c.via }

// gopykSession is a session through gopyk's master: a failure to start is
// the master's dial failure, given its kind. (Closing it kills what still
// runs: the master does, when the control connection ends.)
type gopykSession struct{ *openssh.Session }

func (s *gopykSession) Start(cmd string) error {
	err := s.Session.Start(cmd)
	var re *openssh.ReplyError
	if errors.As(err, &re) {
		return asDialError("", master.ParseFailure(re.Reason))
	}
	return err
}
