package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"time"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/sshconf"
)

// Conn is one connection to a host.
type Conn interface {
	// NewSession prepares a remote command (the login shell runs it).
	NewSession() (Session, error)
	// DialUnix opens a stream to the unix socket at path on the host. When
	// the server refuses to forward there, the error (or the stream's first
	// read, on carriers that learn it only then) matches ErrRefused.
	DialUnix(ctx context.Context, path string) (net.Conn, error)
	// Done is closed when the connection is gone (lost or closed).
	Done() <-chan struct{}
	// Err says why Done was closed (sshconf.ErrConnectionLost or
	// sshconf.ErrClosed, wrapped); nil while it is up.
	Err() error
	// LastHeard is when the host was last heard from (for "lost at"
	// notices); carriers that cannot tell say when they found it lost.
	LastHeard() time.Time
	// Close ends the connection and whatever it set up; it does not block
	// on a stalled network for long.
	Close() error
	// Via names the carrier for logs and `gopyk list`.
	Via() string
}

// Session is a remote command, as golang.org/x/crypto/ssh's Session runs it.
type Session interface {
	StdinPipe() (io.WriteCloser, error)
	StdoutPipe() (io.Reader, error)
	StderrPipe() (io.Reader, error)
	// Start runs cmd; it returns once the command was started.
	Start(cmd string) error
	// Wait returns nil for exit status 0; an error with an ExitStatus() int
	// method for another status.
	Wait() error
	// Close ends the command's session: it kills what still runs where the
	// carrier can signal, and makes Wait return.
	Close() error
}

// ErrRefused: the server refused to forward to a unix socket (sshd_config
// AllowStreamLocalForwarding no, DisableForwarding yes), or nothing listens
// at that path: OpenSSH answers both alike.
var ErrRefused = errors.New("the server refused to forward to the unix socket")

// Options say which carrier Dial may use and how it may ask the user.
type Options struct {
	// Client is the spec's ssh_client: native (the default), openssh, or
	// auto. A live master at the host's ControlPath is used whatever it says.
	Client string
	// ConfigFile is the spec's ssh config (ssh -F), for the ssh binary.
	ConfigFile string
	// Interactive lets the login ask for passwords, codes and passphrases
	// on a terminal when there is one (see sshconf.DialOptions).
	Interactive bool
	// DeadAfter bounds how long the connection may stay silent before it
	// counts as lost (sshconf.DialOptions.DeadAfter; a master of our own
	// gets the matching ServerAliveInterval).
	DeadAfter time.Duration
	// Master: carry the connection through the host's gopyk master
	// (package master), started when none runs (native client, Unix).
	Master bool
	// MasterPersist is how long a master started now stays once unused
	// (master.Persist).
	MasterPersist time.Duration
	Log           *slog.Logger // nil discards
}

// masterProbe bounds the check for a live master: a local socket answers
// at once or not at all.
const masterProbe = 3 * time.Second

// Dial connects to route's target: through the live OpenSSH master at its
// ControlPath when one answers, else with the carrier o.Client names.
func Dial(ctx context.Context, route sshconf.Route, o Options) (Conn, error) {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := route.Target()
	if c := userMaster(ctx, t, log); c != nil {
		return c, nil
	}
	client, why := Choose(o.Client, t)
	if client == kernelspec.SSHClientOpenSSH {
		log.Debug("ssh with OpenSSH's client", "host", t.Alias, "why", why)
		return dialOpenSSH(ctx, route, o, log)
	}
	if o.Master {
		return gopykMaster(ctx, route, o, log)
	}
	return dialNative(ctx, route, o, log)
}

// dialNative dials with gopyk's own client.
func dialNative(ctx context.Context, route sshconf.Route, o Options, log *slog.Logger) (Conn, error) {
	c, err := sshconf.Dial(ctx, route, sshconf.DialOptions{Interactive: o.Interactive, Log: log, DeadAfter: o.DeadAfter})
	if err != nil {
		return nil, err
	}
	return Native(c), nil
}

// Choose says which client a connection to t uses for the spec's setting
// (native, openssh, auto; "" is native), and why, for logs and gopyk list.
// Auto picks OpenSSH where golang.org/x/crypto cannot log in: GSSAPI with a
// Kerberos ticket at hand, or a PKCS#11 provider.
func Choose(setting string, t *sshconf.Settings) (client, why string) {
	switch setting {
	case kernelspec.SSHClientOpenSSH:
		return kernelspec.SSHClientOpenSSH, "ssh_client openssh"
	case kernelspec.SSHClientAuto:
		if p := rawValue(t, "pkcs11provider"); p != "" && !strings.EqualFold(p, "none") {
			return kernelspec.SSHClientOpenSSH, "PKCS11Provider " + p
		}
		if strings.EqualFold(rawValue(t, "gssapiauthentication"), "yes") && haveKerberosTicket() {
			// Debian's /etc/ssh/ssh_config turns GSSAPI on for every host:
			// only a ticket says the user means it.
			return kernelspec.SSHClientOpenSSH, "GSSAPIAuthentication yes and a Kerberos ticket (klist -s)"
		}
		return kernelspec.SSHClientNative, "ssh_client auto: nothing the native client lacks"
	}
	return kernelspec.SSHClientNative, "ssh_client native"
}

func rawValue(t *sshconf.Settings, key string) string {
	if v := t.Raw[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// haveKerberosTicket: klist -s exits 0 when the credential cache holds a
// valid ticket.
func haveKerberosTicket() bool {
	if _, err := exec.LookPath("klist"); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "klist", "-s").Run() == nil
}

// cannotAskHint is the fix when nobody can answer the server's questions,
// as sshconf says it for the native client.
func cannotAskHint(alias string) string {
	return fmt.Sprintf("open a master first with ControlMaster/ControlPath in your ssh config and `ssh -M -f -N %s`, or set SSH_ASKPASS, or use a key", alias)
}
