package provisioner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/mux"
	"github.com/gopyk/gopyk/provisioner/remote"
	"github.com/gopyk/gopyk/transport"
)

// Link is one path to the supervisor over one connection to the host: it
// opens connections to unix sockets on the remote (the supervisor's control
// socket; the lease, every control request and every relayed kernel stream is
// one such connection). The connection's forwarding provides it (ForwardLink:
// direct-streamlocal, or a forward held by an OpenSSH master), or one byte
// stream to the remote launcher's mux action in a session of that connection
// (SessionLink). The relay's frames and resume offsets ride inside, so
// reconnects behave the same whichever carries them.
type Link interface {
	// DialStream connects to the unix socket at path on the remote.
	DialStream(ctx context.Context, path string) (net.Conn, error)
	// Done is closed when the link is lost (its connections then fail).
	Done() <-chan struct{}
	// Close ends the link and its connections; it does not block on a stalled carrier.
	Close() error
	// Kind names the path for logs and gopyk list: "forward" or "session".
	Kind() string
}

// ForwardLink reaches the remote's unix sockets by c's forwarding. Closing it
// leaves c open.
func ForwardLink(c transport.Conn) Link { return forwardLink{c} }

type forwardLink struct{ c transport.Conn }

func (l forwardLink) DialStream(ctx context.Context, path string) (net.Conn, error) {
	return l.c.DialUnix(ctx, path)
}
func (l forwardLink) Done() <-chan struct{} { return l.c.Done() }
func (l forwardLink) Close() error          { return nil }
func (l forwardLink) Kind() string          { return kernelspec.StreamsForward }

// SessionLink multiplexes every connection over carrier, a byte stream to
// the remote launcher's mux action (remote.OpenCarrier on an exec session;
// anything else that runs `launcher mux` and joins its stdin/stdout). The
// link owns the carrier.
func SessionLink(carrier io.ReadWriteCloser) Link { return sessionLink{mux.Client(carrier)} }

type sessionLink struct{ s *mux.Session }

func (l sessionLink) DialStream(ctx context.Context, path string) (net.Conn, error) {
	return l.s.Open(ctx, path)
}
func (l sessionLink) Done() <-chan struct{} { return l.s.Done() }
func (l sessionLink) Close() error          { return l.s.Close() }
func (l sessionLink) Kind() string          { return kernelspec.StreamsSession }

// openSessionLink starts the mux action in a new exec session on c.
func openSessionLink(ctx context.Context, c transport.Conn, p remote.Params) (Link, error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, fmt.Errorf("open an exec session for the streams: %w", err)
	}
	car, err := remote.OpenCarrier(ctx, s, p)
	if err != nil {
		return nil, err
	}
	return SessionLink(car), nil
}

// forwardRefused: sshd would not open a forwarded channel. OpenSSH answers
// "connect failed" ("open failed") when AllowStreamLocalForwarding or
// DisableForwarding forbid it, exactly as for a socket that does not exist;
// which of the two it was, the session path tells (see kernel.openLink).
func forwardRefused(err error) bool { return errors.Is(err, transport.ErrRefused) }

// refusedError is a forced forward on a server that refuses it. It does not
// wrap err: sshd's answer also reads as remote.ErrGone, and the kernel is
// not gone.
func refusedError(host, spec string, err error) error {
	return fmt.Errorf("%s refuses to forward to the supervisor's unix socket (sshd_config AllowStreamLocalForwarding no, or DisableForwarding yes): %v; "+
		"fix: gopyk edit --kernel-name %s --streams auto (one exec session carries every stream), or ask for AllowStreamLocalForwarding yes", host, err, spec)
}
