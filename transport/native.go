package transport

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/gopyk/gopyk/sshconf"
	"golang.org/x/crypto/ssh"
)

// Native carries a connection of the native client; Close closes c.
func Native(c *sshconf.Client) Conn { return native{c} }

type native struct{ c *sshconf.Client }

// NewSession: sshconf's Session sends its exec without waiting for the
// answer (one round trip less), and kills what still runs on Close.
func (n native) NewSession() (Session, error) {
	s, err := n.c.OpenSession()
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (n native) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	conn, err := n.c.DialContext(ctx, "unix", path)
	var oce *ssh.OpenChannelError
	if errors.As(err, &oce) && (oce.Reason == ssh.Prohibited || oce.Reason == ssh.ConnectionFailed) {
		return nil, refusedError{err}
	}
	return conn, err
}

func (n native) Done() <-chan struct{} { return n.c.Done() }
func (n native) Err() error            { return n.c.Err() }
func (n native) LastHeard() time.Time  { return n.c.LastHeard() }
func (n native) Close() error          { return n.c.Close() }
func (n native) Via() string           { return "native" }

// refusedError is a refused forward: it matches ErrRefused and still
// unwraps to the carrier's own error (sshd's "connect failed" also reads as
// a supervisor that is gone).
type refusedError struct{ err error }

func (e refusedError) Error() string   { return e.err.Error() }
func (e refusedError) Unwrap() []error { return []error{e.err, ErrRefused} }
