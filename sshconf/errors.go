package sshconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Kinds of dial failure; test with errors.Is(err, sshconf.ErrHostKeyChanged).
var (
	ErrUnknownHost = errors.New("unknown host name")
	ErrRefused     = errors.New("connection refused")
	ErrTimeout     = errors.New("timed out")
	ErrAuth        = errors.New("authentication failed")
	// ErrCannotAsk: the server wants a password or a code and nobody can
	// be asked (no terminal, no SSH_ASKPASS). No answer was sent, so it is
	// not a failed login.
	ErrCannotAsk       = errors.New("nobody to answer the login")
	ErrHostKeyChanged  = errors.New("host key changed")
	ErrHostKeyUnknown  = errors.New("host key unknown")
	ErrHostKeyRevoked  = errors.New("host key revoked")
	ErrProxyCommand    = errors.New("ProxyCommand failed")
	ErrJump            = errors.New("jump host could not reach the next host")
	ErrConnectionLost  = errors.New("connection lost")
	ErrHandshakeClosed = errors.New("server closed the connection during the handshake")
	ErrClosed          = errors.New("connection closed")
	ErrKeepaliveFailed = errors.New("keepalive unanswered")
)

// DialError is a failed Dial, one line: "ssh <target> (jump host <hop>): <what>; <hint>".
type DialError struct {
	Target string // the alias the caller dialled
	Hop    string // the hop that failed, when it is a jump host
	Kind   error  // one of the Err* kinds above, or nil
	Err    error  // what went wrong
	Hint   string // what the user can do about it
}

func (e *DialError) Error() string {
	var b strings.Builder
	b.WriteString("ssh ")
	b.WriteString(e.Target)
	if e.Hop != "" && e.Hop != e.Target {
		b.WriteString(" (jump host ")
		b.WriteString(e.Hop)
		b.WriteString(")")
	}
	b.WriteString(": ")
	b.WriteString(dialOneLine(e.Err.Error()))
	if e.Hint != "" {
		b.WriteString("; ")
		b.WriteString(dialOneLine(e.Hint))
	}
	return b.String()
}

func (e *DialError) Unwrap() error { return e.Err }

// Is matches the error's kind, so callers need not know the wording.
func (e *DialError) Is(target error) bool { return e.Kind != nil && target == e.Kind }

// dialOneLine folds multi-line text (stderr tails, server messages) into one line.
func dialOneLine(s string) string {
	s = strings.TrimSpace(s)
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	var parts []string
	for _, l := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }) {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, " | ")
}

// dialTilde shortens paths under $HOME to ~/… for messages.
func dialTilde(p string) string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" || home == "/" {
		return p
	}
	if rel, err := filepath.Rel(home, p); err == nil && !strings.HasPrefix(rel, "..") && rel != "." {
		return "~/" + rel
	}
	return p
}

// classifyNetErr turns a TCP dial error into a kind, a message and a hint.
func classifyNetErr(err error, host, addr string, timeoutDesc string) (kind error, msg error, hint string) {
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &dnsErr) && (dnsErr.IsNotFound || !dnsErr.IsTimeout && !dnsErr.IsTemporary):
		return ErrUnknownHost, fmt.Errorf("unknown host name %q", host),
			"check HostName for this alias in your ssh config (`ssh -G <alias>` shows it)"
	case errors.Is(err, syscall.ECONNREFUSED):
		return ErrRefused, fmt.Errorf("connection refused by %s", addr),
			"is sshd running there, and is Port right?"
	case errors.Is(err, context.DeadlineExceeded) || isNetTimeout(err):
		return ErrTimeout, fmt.Errorf("no answer from %s within %s", addr, timeoutDesc),
			"check the network or VPN, or raise ConnectTimeout"
	case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return ErrTimeout, fmt.Errorf("%s is unreachable: %v", addr, err),
			"check the network or VPN"
	}
	return nil, fmt.Errorf("connect to %s: %w", addr, err), ""
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
