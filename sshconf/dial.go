package sshconf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gopyk/gopyk/wsproxy"
)

// DefaultConnectTimeout bounds the TCP connect and, separately, the SSH
// handshake of each hop when the config sets no ConnectTimeout.
const DefaultConnectTimeout = 15 * time.Second

// DialOptions say how Dial may interact with the user.
type DialOptions struct {
	// Interactive lets Dial ask for passphrases, passwords, codes and
	// unknown host keys on a terminal, when there is one: the controlling
	// terminal, else the one on stderr (Jupyter starts kernels in a new
	// session, with the user's terminal on stderr). SSH_ASKPASS is used as
	// OpenSSH would, whatever Interactive says (unless BatchMode).
	Interactive bool
	// Log receives debug lines about each step; nil discards them.
	Log *slog.Logger
	// Stderr, when set, also gets ProxyCommand's stderr as it is written,
	// and the server's login banner when Interactive.
	Stderr io.Writer
	// DeadAfter, when shorter than the config's ServerAliveCountMax ×
	// ServerAliveInterval, bounds how long the server may stay silent
	// before the connection counts as lost; keepalives then go every
	// DeadAfter / ServerAliveCountMax.
	DeadAfter time.Duration

	// answer stands in for the terminal in tests.
	answer func(question string, echo bool) (string, error)
}

// Client is one SSH connection to a route's target, through its jump hosts.
// The embedded *ssh.Client is the target.
type Client struct {
	*ssh.Client
	target string
	hops   []*hop // dial order; the last one is the target
	log    *slog.Logger

	done chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	err    error
	closed bool
}

type hop struct {
	alias  string
	client *ssh.Client
	conn   net.Conn // the transport under client: TCP, socketpair or a channel
	proxy  *proxyCommand
}

// Dial connects to route's target, through every ProxyJump hop before it,
// authenticating and verifying host keys as OpenSSH would. Every step has a
// deadline; ctx cancels the whole dial.
func Dial(ctx context.Context, route Route, opts DialOptions) (*Client, error) {
	if len(route) == 0 {
		return nil, errors.New("sshconf: Dial needs a route of at least one host")
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{target: dialAlias(route.Target()), log: log, done: make(chan struct{})}
	var prev *hop
	for i, s := range route {
		h, err := dialHopRetry(ctx, s, prev, opts, log)
		if err != nil {
			c.closeHops()
			var de *DialError
			if errors.As(err, &de) {
				de.Target = c.target
				if i < len(route)-1 {
					de.Hop = dialAlias(s)
				}
			}
			return nil, err
		}
		c.hops = append(c.hops, h)
		prev = h
	}
	c.Client = prev.client
	a := aliveParams(route.Target(), opts.DeadAfter)
	c.wg.Add(2)
	go c.watch()
	go c.keepalive(a, prev.conn.(*rxConn))
	log.Debug("ssh connected", "target", c.target, "hops", len(route), "keepalive", a.interval, "dead_after", a.deadAfter)
	return c, nil
}

// dialHopRetry retries a hop whose server hung up during the handshake: sshd
// drops unauthenticated connections beyond MaxStartups (10 by default), which
// is what happens when many kernels start at once; a moment later there is
// room again.
func dialHopRetry(ctx context.Context, s *Settings, prev *hop, opts DialOptions, log *slog.Logger) (*hop, error) {
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		h, err := dialHop(ctx, s, prev, opts, log)
		if err == nil || !errors.Is(err, ErrHandshakeClosed) || attempt == 4 {
			return h, err
		}
		wait := delay + time.Duration(rand.Int64N(int64(delay)))
		log.Debug("ssh server hung up during the handshake, retrying", "host", dialAlias(s), "in", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, err
		}
		delay *= 3
	}
}

// Done is closed when the connection is gone: lost (keepalive failure, read
// error, server exit) or closed.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why Done was closed: ErrClosed after Close, otherwise the loss
// (errors.Is ErrConnectionLost or ErrKeepaliveFailed). Nil while connected.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes every hop, target first, stops ProxyCommands and waits for
// the client's goroutines.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	if c.err == nil {
		c.err = ErrClosed
	}
	c.mu.Unlock()
	c.closeHops()
	c.wg.Wait()
	return nil
}

// watch turns the end of the target connection into Done.
func (c *Client) watch() {
	defer c.wg.Done()
	err := c.Client.Wait()
	if err == nil || errors.Is(err, io.EOF) {
		err = errors.New("server closed the connection")
	}
	c.lost(fmt.Errorf("%w: %v", ErrConnectionLost, err))
	close(c.done)
}

// lost records the first reason the connection ended and breaks every
// transport, so every pending read (channels, sessions, Wait) returns.
func (c *Client) lost(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
		c.log.Debug("ssh connection lost", "target", c.target, "err", err)
	}
	c.mu.Unlock()
	for i := len(c.hops) - 1; i >= 0; i-- {
		c.hops[i].conn.Close()
	}
}

func (c *Client) closeHops() {
	for i := len(c.hops) - 1; i >= 0; i-- {
		h := c.hops[i]
		if h.client != nil {
			h.client.Close()
		}
		h.conn.Close()
		if h.proxy != nil {
			h.proxy.stop()
		}
	}
}

func dialAlias(s *Settings) string {
	if s.Alias != "" {
		return s.Alias
	}
	return dialHostName(s)
}

func dialHostName(s *Settings) string {
	if s.HostName != "" {
		return s.HostName
	}
	return s.Alias
}

func dialPort(s *Settings) int {
	if s.Port > 0 {
		return s.Port
	}
	return 22
}

func dialUser(s *Settings) string {
	if s.User != "" {
		return s.User
	}
	if u, err := user.Current(); err == nil {
		return userName(u)
	}
	return ""
}

func connectTimeout(s *Settings) time.Duration {
	if s.ConnectTimeout > 0 {
		return s.ConnectTimeout
	}
	return DefaultConnectTimeout
}

// dialHop opens the transport for s (TCP, through prev, or a ProxyCommand)
// and runs the SSH handshake on it under a deadline.
func dialHop(ctx context.Context, s *Settings, prev *hop, opts DialOptions, log *slog.Logger) (*hop, error) {
	name := dialAlias(s)
	addr := net.JoinHostPort(dialHostName(s), strconv.Itoa(dialPort(s)))
	timeout := connectTimeout(s)
	fail := func(kind, err error, hint string) error {
		return &DialError{Target: name, Kind: kind, Err: err, Hint: hint}
	}
	h := &hop{alias: name}
	var err error
	switch {
	case prev != nil:
		// Pass the name, not an IP: the jump host resolves it, as ssh -W does.
		log.Debug("ssh dial via jump", "host", name, "addr", addr, "jump", prev.alias)
		dctx, cancel := context.WithTimeout(ctx, timeout)
		h.conn, err = prev.client.DialContext(dctx, "tcp", addr)
		cancel()
		if err != nil {
			var oce *ssh.OpenChannelError
			switch {
			case errors.As(err, &oce):
				return nil, fail(ErrJump, fmt.Errorf("jump host %s could not connect to %s: %s", prev.alias, addr, oce.Message),
					"check HostName and Port, and that the jump host may reach it (AllowTcpForwarding)")
			case ctx.Err() != nil:
				return nil, fail(nil, ctx.Err(), "")
			case errors.Is(err, context.DeadlineExceeded):
				return nil, fail(ErrTimeout, fmt.Errorf("jump host %s got no answer from %s within %s", prev.alias, addr, timeout),
					"check the network behind the jump host, or raise ConnectTimeout")
			}
			return nil, fail(ErrJump, fmt.Errorf("jump host %s: connect to %s: %w", prev.alias, addr, err), "")
		}
	case s.ProxyCommand != "":
		// A gopyk ws-proxy ProxyCommand is dialled in-process: no child
		// process, and its errors come back as ours.
		if wo, ok := wsproxy.ParseCommand(s.ProxyCommand); ok {
			log.Debug("ssh dial via WebSocket", "host", name, "url", wsproxy.Redacted(wo.URL))
			wo.Log = log
			if h.conn, err = wsproxy.Dial(ctx, wo); err != nil {
				return nil, fail(ErrProxyCommand, err, "")
			}
			break
		}
		// Only the program: a websocat command line may carry a token.
		log.Debug("ssh dial via ProxyCommand", "host", name, "program", strings.Fields(s.ProxyCommand)[0])
		h.conn, h.proxy, err = startProxyCommand(s.ProxyCommand, opts.Stderr)
		if err != nil {
			return nil, fail(ErrProxyCommand, err, "check ProxyCommand in your ssh config")
		}
	default:
		log.Debug("ssh dial", "host", name, "addr", addr)
		d := net.Dialer{Timeout: timeout}
		h.conn, err = d.DialContext(ctx, "tcp", addr)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fail(nil, ctx.Err(), "")
			}
			kind, msg, hint := classifyNetErr(err, dialHostName(s), addr, timeout.String()+" (ConnectTimeout)")
			return nil, fail(kind, msg, hint)
		}
	}
	h.conn = newRxConn(h.conn)
	cli, err := handshake(ctx, s, h, addr, timeout, opts)
	if err != nil {
		h.conn.Close()
		if h.proxy != nil {
			h.proxy.stop()
		}
		var de *DialError
		if errors.As(err, &de) {
			de.Target = name
		}
		return nil, err
	}
	h.client = cli
	return h, nil
}

// handshake runs key exchange, host key check and auth on h.conn. x/crypto
// has no handshake timeout of its own: a timer closes the conn, paused while
// a prompt waits for the user.
func handshake(ctx context.Context, s *Settings, h *hop, addr string, timeout time.Duration, opts DialOptions) (*ssh.Client, error) {
	fail := func(kind, err error, hint string) error {
		return &DialError{Kind: kind, Err: err, Hint: hint}
	}
	// BatchMode forbids every question, as in ssh.
	interactive := opts.Interactive && !s.BatchMode && (opts.answer != nil || haveTTY())
	p := &prompter{tty: interactive, batch: s.BatchMode, answer: opts.answer}
	if !s.BatchMode && opts.answer == nil {
		p.askpass = askpassProgram(interactive)
	}
	hk, err := newHostKeyChecker(s, interactive, p)
	if err != nil {
		return nil, fail(nil, err, "fix or move that known_hosts file")
	}
	defer hk.close()
	tries := 1
	if opts.Interactive {
		tries = 3
	}
	au := buildAuth(s, interactive, p, tries)
	defer au.close()

	var timedOut atomic.Bool
	timer := time.AfterFunc(timeout, func() {
		timedOut.Store(true)
		h.conn.Close()
	})
	p.pause = func() { timer.Stop() }
	p.resume = func() { timer.Reset(timeout) }
	stopCtx := context.AfterFunc(ctx, func() { h.conn.Close() })

	cfg := &ssh.ClientConfig{
		User:              dialUser(s),
		Auth:              au.methods,
		HostKeyCallback:   hk.check,
		HostKeyAlgorithms: hk.hostKeyAlgorithms(s.HostKeyAlgorithms),
	}
	if opts.Interactive && opts.Stderr != nil {
		cfg.BannerCallback = func(msg string) error {
			_, err := io.WriteString(opts.Stderr, msg)
			return err
		}
	}
	cc, chans, reqs, err := ssh.NewClientConn(h.conn, addr, cfg)
	timer.Stop()
	stopCtx()
	if err == nil && timedOut.Load() {
		cc.Close()
		err = errors.New("handshake timed out")
	}
	if err == nil {
		return ssh.NewClient(cc, chans, reqs), nil
	}

	if kind, herr, hint := hk.failure(); herr != nil {
		return nil, fail(kind, herr, hint)
	}
	if ctx.Err() != nil {
		return nil, fail(nil, ctx.Err(), "")
	}
	if h.proxy != nil && h.proxy.waitExit(500*time.Millisecond) {
		return nil, fail(ErrProxyCommand, h.proxy.exitError(), "run the ProxyCommand by hand to see why it fails")
	}
	if timedOut.Load() {
		return nil, fail(ErrTimeout, fmt.Errorf("SSH handshake with %s did not finish within %s (ConnectTimeout)", addr, timeout),
			"the server or a proxy accepts connections but does not answer; check it, or raise ConnectTimeout")
	}
	msg := err.Error()
	user := dialUser(s)
	switch {
	case errors.Is(err, errCannotAsk) || strings.Contains(msg, errCannotAsk.Error()):
		return nil, fail(ErrCannotAsk, cannotAskError(au, p, user), cannotAskHint(s))
	case strings.Contains(msg, "unable to authenticate"):
		return nil, fail(ErrAuth, authError(au, user), authHint(au, user))
	case strings.Contains(strings.ToLower(msg), "too many authentication failures"):
		return nil, fail(ErrAuth, fmt.Errorf("server hung up after too many keys (%s) for user %s", strings.Join(au.refused(), ", "), user),
			"set IdentitiesOnly yes and the right IdentityFile for this host")
	case errors.Is(err, io.EOF) || strings.Contains(msg, "connection reset"):
		return nil, fail(ErrHandshakeClosed, fmt.Errorf("%s closed the connection during the SSH handshake", addr),
			"it may not be an SSH server, or it refuses this client (see its sshd log, MaxStartups, AllowUsers)")
	}
	return nil, fail(nil, fmt.Errorf("SSH handshake with %s: %w", addr, err), "")
}

// cannotAskError names what the server asked for that nobody could answer.
func cannotAskError(au *authPlan, p *prompter, user string) error {
	var msg string
	if acc := au.accepted(); len(acc) > 0 {
		msg = fmt.Sprintf("the server accepted %s for user %s and also asks for %s", strings.Join(acc, ", "), user, joinAnd(p.unansweredList()))
	} else {
		msg = fmt.Sprintf("the server asks user %s for %s", user, joinAnd(p.unansweredList()))
	}
	why := "no terminal, no SSH_ASKPASS"
	if p.batch {
		why = "BatchMode yes"
	}
	return fmt.Errorf("%s; gopyk cannot ask for %s here (%s)", msg, itOrThem(p.unansweredList()), why)
}

func cannotAskHint(s *Settings) string {
	return fmt.Sprintf("open a master first with ControlMaster/ControlPath in your ssh config and `ssh -M -f -N %s`, or set SSH_ASKPASS, or use a key", dialAlias(s))
}

func joinAnd(items []string) string {
	switch len(items) {
	case 0:
		return "more"
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

func itOrThem(items []string) string {
	if len(items) > 1 {
		return "them"
	}
	return "it"
}

func authError(au *authPlan, user string) error {
	acc, answered := au.accepted(), au.answeredList()
	switch {
	case len(answered) > 0 && len(acc) > 0:
		return fmt.Errorf("the server accepted %s for user %s but refused %s", strings.Join(acc, ", "), user, joinAnd(answered))
	case len(answered) > 0:
		return fmt.Errorf("the server refused %s for user %s", joinAnd(answered), user)
	case len(acc) > 0:
		return fmt.Errorf("the server accepted %s for user %s but wants more, which gopyk could not give (see the server's AuthenticationMethods)", strings.Join(acc, ", "), user)
	}
	refused := au.refused()
	var msg string
	if len(refused) > 0 {
		msg = fmt.Sprintf("server refused keys %s for user %s", strings.Join(refused, ", "), user)
	} else {
		msg = fmt.Sprintf("no usable key to offer for user %s", user)
	}
	if len(au.notes) > 0 {
		msg += " (" + strings.Join(au.notes, "; ") + ")"
	}
	return errors.New(msg)
}

func authHint(au *authPlan, user string) string {
	if len(au.answeredList()) > 0 {
		return "check what you typed; repeated failures may get this address banned (fail2ban)"
	}
	if len(au.accepted()) > 0 {
		return "run `ssh -v` to this host to see the methods it wants"
	}
	if len(au.keys) == 0 {
		return "set IdentityFile for this host, or load a key with ssh-add"
	}
	return "add your public key to ~" + user + "/.ssh/authorized_keys on the host, or load the right key with ssh-add"
}
