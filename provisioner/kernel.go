package provisioner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/master"
	"github.com/gopyk/gopyk/provisioner/remote"
	"github.com/gopyk/gopyk/sshconf"
	"github.com/gopyk/gopyk/transport"
	"github.com/gopyk/gopyk/wire"
)

var (
	giveUpAfter = kernelspec.DefaultReconnectTimeout * time.Second
	redialTime  = 20 * time.Second // one reconnect attempt, dial + re-attach
)

// kernel is the state behind a Kernel.
type kernel struct {
	cfg   Config
	log   *slog.Logger
	route sshconf.Route
	fwd   [5]*forwarder
	notes *notices

	// ctx lives until the kernel is shut down or left; every goroutine the
	// kernel starts ends with it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	conn   transport.Conn // nil while reconnecting
	link   Link           // the path to the supervisor over conn
	up     chan struct{}  // closed while conn is usable
	reply  *remote.Reply  // what the supervisor said last: channels, run dir
	lease  *remote.Lease
	busy   bool // a restart or shutdown we started: kernel exits are expected
	closed bool
	// refused: the server refused forwarding on an earlier connection, so
	// (streams auto) later ones go straight to the session path.
	refused bool
	// cacheSaid: the remote's cache warning was logged (once per kernel:
	// every reconnect runs the launcher again).
	cacheSaid bool

	done     chan struct{}
	doneErr  error
	doneOnce sync.Once

	released    chan struct{} // closed when teardown finished
	releaseOnce sync.Once
}

func (k *kernel) timeout(secs, def int) time.Duration {
	if secs <= 0 {
		secs = def
	}
	return time.Duration(secs) * time.Second
}

func newKernel(ctx context.Context, cfg Config) (*kernel, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	g := cfg.Gopyk
	if g.SSHHostAlias == "" {
		return nil, fmt.Errorf("spec %s has no ssh_host_alias; fix it with gopyk edit --kernel-name %s --ssh-host-alias HOST", cfg.SpecName, cfg.SpecName)
	}
	switch g.Streams {
	case "", kernelspec.StreamsAuto, kernelspec.StreamsForward, kernelspec.StreamsSession:
	default:
		return nil, fmt.Errorf("spec %s has streams %q; fix it with gopyk edit --kernel-name %s --streams auto (or forward, session)", cfg.SpecName, g.Streams, cfg.SpecName)
	}
	route, err := sshconf.Resolve(ctx, g.SSHHostAlias, sshconf.Options{ConfigFile: g.SSHConfig})
	if err != nil {
		return nil, err
	}
	k := &kernel{cfg: cfg, log: log, route: route, up: make(chan struct{}), done: make(chan struct{}), released: make(chan struct{})}
	k.ctx, k.cancel = context.WithCancel(context.Background())
	k.notes = newNotices(g.SSHHostAlias, cfg.Local, g.ConnectionNotices != "off", log)
	ports := []int{cfg.Local.ShellPort, cfg.Local.IOPubPort, cfg.Local.StdinPort, cfg.Local.ControlPort, cfg.Local.HBPort}
	for i, name := range channelNames {
		ln, err := listenLocal(cfg.Local.IP, ports[i])
		if err != nil {
			k.closeForwarders()
			return nil, err
		}
		k.fwd[i] = newForwarder(name, ln, k.openRelay, k.waitUp, k.notes.tap, log)
		k.fwd[i].zmtp = true
	}
	// Ports that were 0 are now chosen: clients must learn them.
	k.cfg.Local.ShellPort, k.cfg.Local.IOPubPort, k.cfg.Local.StdinPort = k.fwd[0].port(), k.fwd[1].port(), k.fwd[2].port()
	k.cfg.Local.ControlPort, k.cfg.Local.HBPort = k.fwd[3].port(), k.fwd[4].port()
	if k.cfg.Local.IP == "" {
		k.cfg.Local.IP = "127.0.0.1"
	}
	k.cfg.Local.Transport = "tcp"
	if k.cfg.Local.SignatureScheme == "" {
		k.cfg.Local.SignatureScheme = "hmac-sha256"
	}
	return k, nil
}

func (k *kernel) params(action string) remote.Params {
	g := k.cfg.Gopyk
	return remote.Params{
		Action:          action,
		KernelName:      g.RemoteKernelName,
		Key:             k.cfg.Local.Key,
		SignatureScheme: k.cfg.Local.SignatureScheme,
		Transport:       g.Transport,
		Persistent:      k.cfg.Persistent,
		Grace:           time.Duration(g.Grace) * time.Second,
		ShutdownTimeout: k.timeout(g.ShutdownTimeout, kernelspec.DefaultShutdownTimeout),
		LaunchTimeout:   k.timeout(g.LaunchTimeout, kernelspec.DefaultLaunchTimeout),
		Tag:             k.cfg.SpecName,
		Python:          g.RemotePython,
		Pre:             g.RemotePre,
		Launcher:        g.Launcher,
		LauncherArgs:    g.LauncherArgs,
		QueueTimeout:    k.timeout(g.QueueTimeout, kernelspec.DefaultQueueTimeout),
		KernelArgs:      k.cfg.KernelArgs,
		IOPubBacklog:    int64(g.IOPubBacklog) << 20,
		Progress:        func(msg string) { k.log.Info(msg, "spec", k.cfg.SpecName) },
	}
}

// linkTimeout is how long the connection may stay silent before it counts
// as lost (sshconf.DialOptions.DeadAfter).
func (k *kernel) linkTimeout() time.Duration {
	return k.timeout(k.cfg.Gopyk.LinkTimeout, kernelspec.DefaultLinkTimeout)
}

// launchWait is how long a launch may take: a Slurm job may first wait in
// the queue for up to its queue timeout.
func (k *kernel) launchWait() time.Duration {
	d := k.timeout(k.cfg.Gopyk.LaunchTimeout, kernelspec.DefaultLaunchTimeout)
	if k.cfg.Gopyk.Launcher == "slurm" {
		d += k.timeout(k.cfg.Gopyk.QueueTimeout, kernelspec.DefaultQueueTimeout)
	}
	return d
}

func launch(ctx context.Context, cfg Config) (*Kernel, error) {
	if cfg.Local.Key == "" && !cfg.Unsigned {
		cfg.Local.Key = wire.NewKey()
	}
	k, err := newKernel(ctx, cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, k.launchWait())
	defer cancel()
	if err := k.start(ctx, k.params(remote.ActionLaunch), ""); err != nil {
		k.abort()
		return nil, k.launchError(ctx, err)
	}
	return &Kernel{impl: k}, nil
}

func attach(ctx context.Context, cfg Config, st State) (*Kernel, error) {
	if st.RunDir == "" {
		return nil, errors.New("attach: the persistence state has no run_dir; launch a new kernel instead")
	}
	cfg.Local.Key = st.Remote.Key
	if st.Remote.SignatureScheme != "" {
		cfg.Local.SignatureScheme = st.Remote.SignatureScheme
	}
	k, err := newKernel(ctx, cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, k.timeout(cfg.Gopyk.LaunchTimeout, kernelspec.DefaultLaunchTimeout))
	defer cancel()
	p := k.params(remote.ActionStatus)
	p.RunDir = st.RunDir
	if err := k.start(ctx, p, st.Control); err != nil {
		k.teardown()
		return nil, k.launchError(ctx, fmt.Errorf("attach to the kernel in %s on %s: %w", st.RunDir, cfg.Gopyk.SSHHostAlias, err))
	}
	return &Kernel{impl: k}, nil
}

func (k *kernel) launchError(ctx context.Context, err error) error {
	if ctx.Err() == context.DeadlineExceeded {
		d := k.timeout(k.cfg.Gopyk.LaunchTimeout, kernelspec.DefaultLaunchTimeout)
		// "context deadline exceeded" means nothing to a user: say which
		// step got no answer in time.
		msg := strings.Replace(err.Error(), context.DeadlineExceeded.Error(), fmt.Sprintf("no answer within the launch timeout (%v)", d), 1)
		if msg == err.Error() {
			msg += fmt.Sprintf(" (launch timeout %v)", d)
		}
		return &launchTimeoutError{msg: fmt.Sprintf("%s; raise it with gopyk edit --kernel-name %s --launch-timeout SECONDS", msg, k.cfg.SpecName), err: err}
	}
	return err
}

// launchTimeoutError is a launch that ran out of time; it unwraps to the
// step's own error (and so to context.DeadlineExceeded).
type launchTimeoutError struct {
	msg string
	err error
}

func (e *launchTimeoutError) Error() string { return e.msg }
func (e *launchTimeoutError) Unwrap() error { return e.err }

// start dials, runs the launcher (launch or attach), takes a lease, starts
// forwarding and waits until the kernel answers through the forwards.
// control is the supervisor's control socket when known (attach), "" for
// a launch. The forwarders serve from the moment a link to the supervisor
// is open, which for a launch is while the kernel is still starting: the
// clients' first requests then wait at the supervisor, not here.
func (k *kernel) start(ctx context.Context, p remote.Params, control string) error {
	for _, f := range k.fwd {
		f := f
		k.wg.Add(1)
		go func() { defer k.wg.Done(); f.serve(k.ctx) }()
	}
	// Our own readiness check goes the way the clients' first requests go,
	// from the start, so that it ends when theirs do.
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	ready := make(chan error, 1)
	go func() { ready <- k.waitReady(rctx) }()
	c, link, reply, lease, err := k.connect(ctx, p, control, k.cfg.Interactive, k.publish)
	if err != nil {
		rcancel()
		<-ready
		return err
	}
	k.mu.Lock()
	k.reply = reply
	k.mu.Unlock()
	k.setUp(c, link, lease)
	k.wg.Add(1)
	go func() { defer k.wg.Done(); k.monitor() }()
	k.log.Info("remote kernel started", "host", k.cfg.Gopyk.SSHHostAlias, "remote_host", reply.Hostname,
		"kernel_pid", reply.KernelPID, "transport", reply.Transport, "streams", link.Kind(), "via", c.Via())
	return <-ready
}

// linkResult is the outcome of openLink.
type linkResult struct {
	link  Link
	lease *remote.Lease
	err   error
}

func (r linkResult) close() {
	if r.lease != nil {
		r.lease.Close()
	}
	if r.link != nil {
		r.link.Close()
	}
}

// connect dials, runs the launcher (p.Action) in an exec session, opens a
// link to the supervisor and takes a lease: all that a working connection
// to the supervisor needs. The link and the lease do not wait for the
// launcher: they start as soon as the control socket is known (control, or
// when a launch says it bound it), each a round trip or two that the
// launcher's run hides. early, when not nil, gets the link as soon as the
// supervisor granted the lease. A launch that fails after the supervisor
// started stops it.
func (k *kernel) connect(ctx context.Context, p remote.Params, control string, interactive bool, early func(transport.Conn, Link, *remote.Reply)) (transport.Conn, Link, *remote.Reply, *remote.Lease, error) {
	g := k.cfg.Gopyk
	c, err := transport.Dial(ctx, k.route, transport.Options{Client: g.SSHClient, ConfigFile: g.SSHConfig, Interactive: interactive, Log: k.log, DeadAfter: k.linkTimeout(),
		Master: master.Enabled(g), MasterPersist: master.Persist(g, k.route.Target())})
	if err != nil {
		return nil, nil, nil, nil, err
	}
	links := make(chan linkResult, 1)
	var once sync.Once
	started := false // open runs in this goroutine (Params.OnControl is called from Exec)
	open := func(control, runDir string) {
		once.Do(func() {
			started = true
			pre := &remote.Reply{Control: control, RunDir: runDir}
			go func() {
				link, lease, err := k.openLink(ctx, c, control)
				if err == nil && early != nil {
					// Only a granted lease proves the path: through an
					// OpenSSH master a refused forward shows only then.
					early(c, link, pre)
				}
				links <- linkResult{link, lease, err}
			}()
		})
	}
	if control != "" {
		open(control, p.RunDir)
	} else {
		p.OnControl = open
	}
	r, err := k.exec(ctx, c, p)
	if err != nil {
		if early != nil {
			k.unpublish(c)
		}
		c.Close() // ends openLink too
		if started {
			lr := <-links
			lr.close()
		}
		return nil, nil, nil, nil, err
	}
	open(r.Control, r.RunDir) // a launcher that never said where (it always does)
	lr := <-links             // openLink ends with ctx or with c
	if lr.err != nil {
		if p.Action == remote.ActionLaunch {
			// Nobody will ever hold a lease on it: stop it now rather than
			// after its grace period.
			k.stopOverExec(c, r)
		}
		if early != nil {
			k.unpublish(c)
		}
		c.Close()
		return nil, nil, nil, nil, lr.err
	}
	return c, lr.link, r, lr.lease, nil
}

// openLink opens the path to the supervisor the spec asks for (streams),
// and takes a lease through it. Auto tries the forward first; when the
// server refuses it, one exec session carries everything instead.
func (k *kernel) openLink(ctx context.Context, c transport.Conn, control string) (Link, *remote.Lease, error) {
	g := k.cfg.Gopyk
	k.mu.Lock()
	refused := k.refused
	k.mu.Unlock()
	fellBack := false
	if g.Streams != kernelspec.StreamsSession && !(refused && g.Streams != kernelspec.StreamsForward) {
		fl := ForwardLink(c)
		l, err := k.takeLease(ctx, fl, control)
		if err == nil {
			return fl, l, nil
		}
		if !forwardRefused(err) || ctx.Err() != nil {
			return nil, nil, err
		}
		if g.Streams == kernelspec.StreamsForward {
			return nil, nil, refusedError(g.SSHHostAlias, k.cfg.SpecName, err)
		}
		// The socket was there a moment ago (the launcher just answered):
		// the server refused. The session path confirms it, or says gone.
		fellBack = true
	}
	sl, err := openSessionLink(ctx, c, remote.Params{Python: g.RemotePython, Pre: g.RemotePre})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", g.SSHHostAlias, err)
	}
	l, err := k.takeLease(ctx, sl, control)
	if err != nil {
		sl.Close()
		return nil, nil, err
	}
	if fellBack {
		k.mu.Lock()
		first := !k.refused
		k.refused = true
		k.mu.Unlock()
		if first {
			k.log.Info("the server refuses forwarding to unix sockets: one exec session carries every stream", "host", g.SSHHostAlias)
		}
	}
	return sl, l, nil
}

// stopOverExec stops the supervisor of r through a control action in a new
// exec session on c: the path that works when no link does.
func (k *kernel) stopOverExec(c transport.Conn, r *remote.Reply) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	g := k.cfg.Gopyk
	p := remote.Params{Action: remote.ActionControl, RunDir: r.RunDir, Python: g.RemotePython, Pre: g.RemotePre,
		Request: map[string]any{"op": "shutdown", "timeout": 0}}
	if _, err := k.exec(ctx, c, p); err != nil && !errors.Is(err, remote.ErrGone) {
		k.log.Warn("could not stop the remote kernel of a failed launch", "run_dir", r.RunDir, "err", err)
		return
	}
	k.log.Debug("stopped the remote kernel of a failed launch", "run_dir", r.RunDir)
}

// exec runs the remote launcher in one exec session. Starting an exec session
// also makes sshd switch the connection to TCP_NODELAY, without which every
// forwarded round trip stalls ~40 ms; so every connection runs one.
func (k *kernel) exec(ctx context.Context, c transport.Conn, p remote.Params) (*remote.Reply, error) {
	s, err := c.NewSession()
	if err != nil {
		return nil, fmt.Errorf("open an exec session on %s: %w", k.cfg.Gopyk.SSHHostAlias, err)
	}
	r, err := remote.Exec(ctx, s, p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", k.cfg.Gopyk.SSHHostAlias, err)
	}
	if r.CacheWarning != "" {
		k.mu.Lock()
		said := k.cacheSaid
		k.cacheSaid = true
		k.mu.Unlock()
		if !said {
			k.log.Warn("the remote "+r.CacheWarning, "host", k.cfg.Gopyk.SSHHostAlias)
		}
	}
	return r, nil
}

// leasePing lets the supervisor notice a lease whose network path died
// without a FIN, so its grace period starts; and tell a lease closed while
// its pings were on time (a killed gopyk-kernel: the kernel stops within
// seconds) from one whose link went silent first (a network drop: grace).
const leasePing = 5 * time.Second

func (k *kernel) takeLease(ctx context.Context, link Link, control string) (*remote.Lease, error) {
	ctl := remote.NewControl(func(ctx context.Context) (net.Conn, error) { return k.dialControl(ctx, link, control) })
	lease, err := ctl.Lease(ctx, leasePing)
	if err != nil {
		return nil, fmt.Errorf("take a lease on the remote kernel: %w", err)
	}
	return lease, nil
}

func (k *kernel) dialControl(ctx context.Context, link Link, control string) (net.Conn, error) {
	conn, err := link.DialStream(ctx, control)
	if err != nil {
		return nil, fmt.Errorf("reach the supervisor's control socket %s on %s (%s): %w", control, k.cfg.Gopyk.SSHHostAlias, link.Kind(), err)
	}
	return conn, nil
}

// publish makes link the live path to the supervisor before the launch
// completed (pre: where the supervisor listens), so that the forwarders
// open their streams while the kernel starts.
func (k *kernel) publish(c transport.Conn, link Link, pre *remote.Reply) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed || k.link != nil {
		return
	}
	k.conn, k.link = c, link
	if k.reply == nil {
		k.reply = pre
	}
	close(k.up)
}

// unpublish takes back what publish did on c, for a launch that failed.
func (k *kernel) unpublish(c transport.Conn) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.conn == c {
		k.conn, k.link = nil, nil
		k.up = make(chan struct{})
	}
}

func (k *kernel) setUp(c transport.Conn, link Link, l *remote.Lease) {
	k.mu.Lock()
	defer k.mu.Unlock()
	// up is closed while a link is published. The one published early
	// may differ from link: through an OpenSSH master a refused forward
	// connects and then closes, so the session path takes over after it.
	published := k.link != nil
	k.conn, k.link, k.lease = c, link, l
	if !published {
		close(k.up)
	}
}

func (k *kernel) setDown() (transport.Conn, Link, *remote.Lease) {
	k.mu.Lock()
	defer k.mu.Unlock()
	c, link, l := k.conn, k.link, k.lease
	if c != nil {
		k.conn, k.link, k.lease = nil, nil, nil
		k.up = make(chan struct{})
	}
	return c, link, l
}

// client returns the live link to the supervisor, waiting while it is being restored.
func (k *kernel) client(ctx context.Context) (Link, *remote.Reply, error) {
	for {
		k.mu.Lock()
		link, r, up := k.link, k.reply, k.up
		k.mu.Unlock()
		if link != nil {
			return link, r, nil
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-k.ctx.Done():
			return nil, nil, errors.New("kernel closed")
		}
	}
}

// waitUp returns once a connection is live, or with ctx's error.
func (k *kernel) waitUp(ctx context.Context) error {
	_, _, err := k.client(ctx)
	return err
}

// openRelay opens a control connection for a relayed stream over the live
// SSH connection, waiting while it is being restored.
func (k *kernel) openRelay(ctx context.Context) (net.Conn, <-chan struct{}, error) {
	link, r, err := k.client(ctx)
	if err != nil {
		return nil, nil, err
	}
	conn, err := k.dialControl(ctx, link, r.Control)
	return conn, link.Done(), err
}

// waitReady is the readiness test Jupyter itself would apply: a
// kernel_info_reply through our forwards, and iopub delivering.
func (k *kernel) waitReady(ctx context.Context) error {
	wc, err := wire.Dial(ctx, k.cfg.Local, wire.WithLogger(k.log))
	if err != nil {
		return fmt.Errorf("connect to the forwarded kernel: %w", err)
	}
	defer wc.Close()
	errc := make(chan error, 1)
	go func() { errc <- wc.WaitReady(ctx) }()
	select {
	case err := <-errc:
		if err != nil {
			return fmt.Errorf("remote kernel did not answer kernel_info through the tunnel: %w", err)
		}
		k.log.Debug("kernel ready", "spec", k.cfg.SpecName)
		return nil
	case <-k.done:
		return k.err()
	}
}

// monitor follows the lease and the connection: a kernel that exits ends us,
// a connection that drops is restored.
func (k *kernel) monitor() {
	for {
		k.mu.Lock()
		c, link, l := k.conn, k.link, k.lease
		k.mu.Unlock()
		if c == nil {
			return
		}
		var why error
		select {
		case <-k.ctx.Done():
			return
		case ev, ok := <-l.Events():
			if ok {
				k.event(ev)
				continue
			}
			// The lease ended: either the connection died or the supervisor did.
			select {
			case <-c.Done():
				why = c.Err()
			case <-time.After(300 * time.Millisecond):
				why = remote.ErrLeaseClosed
				if err := l.Err(); err != nil {
					why = err
				}
				why = fmt.Errorf("the supervisor's lease ended: %w", why)
			case <-k.ctx.Done():
				return
			}
		case <-c.Done():
			why = c.Err()
		case <-link.Done():
			why = fmt.Errorf("the %s link to the supervisor ended", link.Kind())
		}
		if k.ctx.Err() != nil {
			return
		}
		if !k.reconnect(c, why) {
			return
		}
	}
}

// shutdownAskWindow: a kernel that exits cleanly this soon after a client's
// shutdown_request did so because it was asked.
const shutdownAskWindow = time.Minute

func (k *kernel) event(ev remote.Event) {
	switch ev.Type {
	case remote.EventKernelExited:
		k.mu.Lock()
		busy := k.busy
		k.mu.Unlock()
		if busy {
			return // our own shutdown or restart: it logs
		}
		ee := &ExitError{Exit: ev.Exit}
		ask := k.notes.lastShutdownAsk()
		switch {
		case ev.Reason == "shutdown":
			k.log.Info("remote kernel shut down through its supervisor (by gopyk on the remote: another gopyk-kernel attached to it, or its grace period ran out)")
		case ee.Clean() && !ask.at.IsZero() && time.Since(ask.at) < shutdownAskWindow:
			what := "remote kernel shut down at a client's request"
			if ask.restart {
				what = "remote kernel shut down at a client's request, to restart"
			}
			k.log.Info(what, "by", "shutdown_request on "+ask.channel)
		case ee.Clean():
			k.log.Info("remote kernel exited by itself with code 0 (exit() in a cell, or a client that shut it down)")
		default:
			k.log.Warn("remote kernel died", "how", ev.Exit.String(), "reason", ev.Reason, "last_output", lastLine(ev.StderrTail))
		}
		k.finish(ee)
	case remote.EventRestarted:
		if ev.Status != nil {
			k.mu.Lock()
			k.reply = ev.Status
			k.mu.Unlock()
		}
	}
}

// reconnect restores the SSH connection and the lease after a loss (why).
// It returns false when the kernel is finished.
func (k *kernel) reconnect(old transport.Conn, why error) bool {
	k.notes.lost(old.LastHeard())
	_, link, l := k.setDown()
	// The old connection first: closing a channel of a stalled connection
	// writes to it and could block on a full send buffer.
	old.Close()
	if link != nil {
		link.Close()
	}
	if l != nil {
		l.Close()
	}
	// The forwarded connections stay: their streams resume on the next
	// connection (see relayStream).
	t0 := time.Now()
	k.log.Info("connection lost, reconnecting", "host", k.cfg.Gopyk.SSHHostAlias, "why", why)
	pacer := newRetryPacer(t0)
	var pace authPacer
	for {
		if k.ctx.Err() != nil {
			return false
		}
		err := k.redial()
		if err == nil {
			k.log.Info("reconnected", "host", k.cfg.Gopyk.SSHHostAlias, "after", time.Since(t0).Round(time.Millisecond), "attempts", pacer.attempts+1)
			return true
		}
		if errors.Is(err, remote.ErrGone) {
			k.log.Warn("reconnected, but the remote kernel is gone (its grace period ran out, or it was stopped)", "host", k.cfg.Gopyk.SSHHostAlias, "after", time.Since(t0).Round(time.Millisecond), "err", err)
			k.notes.ended(fmt.Sprintf("reconnected to %s, but the remote kernel is gone: %v", k.cfg.Gopyk.SSHHostAlias, err))
			k.finish(fmt.Errorf("%w: %v", ErrKernelDied, err))
			return false
		}
		// A host key that changed while we were away is what an attacker in
		// the middle looks like: never retry past it.
		if errors.Is(err, sshconf.ErrHostKeyChanged) || errors.Is(err, sshconf.ErrHostKeyRevoked) {
			err = fmt.Errorf("reconnect to %s refused: %w", k.cfg.Gopyk.SSHHostAlias, err)
			k.notes.ended("gave up: " + err.Error())
			k.finish(err)
			return false
		}
		if limit := k.giveUpAfter(); time.Since(t0) > limit {
			err = fmt.Errorf("connection to %s lost for %v, giving up (the remote kernel is shut down after its grace period unless persistent): %w",
				k.cfg.Gopyk.SSHHostAlias, limit, err)
			k.notes.ended(err.Error())
			k.finish(err)
			return false
		}
		// A refused login (or one nobody can answer) has its own pace.
		wait, ok := pace.next(err, time.Now(), k.log, k.cfg.Gopyk.SSHHostAlias)
		if !ok {
			var newCause bool
			wait, newCause = pacer.next(err, time.Now())
			// Each new reason once at INFO; the same one again only at debug.
			level := slog.LevelDebug
			if newCause {
				level = slog.LevelInfo
			}
			k.log.Log(k.ctx, level, "reconnect failed, retrying", "in", wait, "err", err)
		}
		if !k.paceWait(wait) {
			return false
		}
	}
}

func (k *kernel) giveUpAfter() time.Duration {
	if k.cfg.GiveUpAfter > 0 {
		return k.cfg.GiveUpAfter
	}
	if s := k.cfg.Gopyk.ReconnectTimeout; s > 0 {
		return time.Duration(s) * time.Second
	}
	return giveUpAfter
}

func (k *kernel) redial() error {
	ctx, cancel := context.WithTimeout(k.ctx, redialTime)
	defer cancel()
	k.mu.Lock()
	p := k.params(remote.ActionStatus)
	p.RunDir = k.reply.RunDir
	control := k.reply.Control
	k.mu.Unlock()
	// Never interactive: a prompt here would fight the Ctrl+D menu for the
	// terminal, and nobody may be watching it.
	c, link, r, l, err := k.connect(ctx, p, control, false, nil)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.reply = r
	k.mu.Unlock()
	// Before the streams can resume: a cell sent from now on is not told
	// of a loss.
	k.notes.up()
	k.setUp(c, link, l)
	return nil
}

// control reaches the supervisor over whatever connection is live.
func (k *kernel) control() *remote.Control {
	return remote.NewControl(func(ctx context.Context) (net.Conn, error) {
		link, r, err := k.client(ctx)
		if err != nil {
			return nil, err
		}
		return k.dialControl(ctx, link, r.Control)
	})
}

func (k *kernel) interrupt(ctx context.Context) error {
	k.mu.Lock()
	mode := k.reply.InterruptMode
	k.mu.Unlock()
	if mode == "message" {
		return k.withWire(ctx, func(wc *wire.Client) error {
			_, err := wc.Interrupt(ctx)
			return err
		})
	}
	k.mu.Lock()
	l := k.lease
	k.mu.Unlock()
	if l != nil && l.Carries("interrupt") {
		// On the lease, always open: one round trip, not a connection's two.
		err := l.Interrupt(ctx)
		var re *remote.ReplyError
		if err == nil || ctx.Err() != nil || errors.As(err, &re) {
			return err
		}
		k.log.Debug("interrupt on the lease failed; on a connection of its own", "err", err)
	}
	return k.control().Interrupt(ctx)
}

func (k *kernel) withWire(ctx context.Context, f func(*wire.Client) error) error {
	wc, err := wire.Dial(ctx, k.cfg.Local, wire.WithLogger(k.log))
	if err != nil {
		return err
	}
	defer wc.Close()
	return f(wc)
}

// askShutdown sends a graceful shutdown_request; the supervisor escalates to
// signals if the kernel ignores it.
func (k *kernel) askShutdown(ctx context.Context, restart bool) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := k.withWire(ctx, func(wc *wire.Client) error {
		_, err := wc.Shutdown(ctx, restart)
		return err
	}); err != nil {
		k.log.Debug("shutdown_request", "err", err)
	}
}

func (k *kernel) restart(ctx context.Context) error {
	k.mu.Lock()
	k.busy = true
	k.mu.Unlock()
	defer func() {
		k.mu.Lock()
		k.busy = false
		k.mu.Unlock()
	}()
	k.askShutdown(ctx, true)
	r, err := k.control().Restart(ctx, -1)
	if err != nil {
		return fmt.Errorf("restart the remote kernel: %w", err)
	}
	k.mu.Lock()
	k.reply = r
	k.mu.Unlock()
	for _, f := range k.fwd {
		f.drop()
	}
	k.log.Info("remote kernel restarted", "kernel_pid", r.KernelPID)
	rctx, cancel := context.WithTimeout(ctx, k.timeout(k.cfg.Gopyk.LaunchTimeout, kernelspec.DefaultLaunchTimeout))
	defer cancel()
	return k.waitReady(rctx)
}

func (k *kernel) shutdown(ctx context.Context) error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	k.busy = true
	k.mu.Unlock()
	k.askShutdown(ctx, false)
	ctx, cancel := context.WithTimeout(ctx, k.timeout(k.cfg.Gopyk.ShutdownTimeout, kernelspec.DefaultShutdownTimeout)+15*time.Second)
	defer cancel()
	_, err := k.control().Shutdown(ctx, -1)
	k.teardown()
	k.finish(nil)
	if err != nil {
		return fmt.Errorf("shut down the remote kernel on %s: %w", k.cfg.Gopyk.SSHHostAlias, err)
	}
	k.log.Info("remote kernel shut down")
	return nil
}

func (k *kernel) leave() error {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return nil
	}
	k.busy = true
	k.mu.Unlock()
	var err error
	if !k.cfg.Persistent {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = k.control().SetPersistent(ctx, true)
	}
	k.teardown()
	k.finish(nil)
	if err != nil {
		return fmt.Errorf("leave the remote kernel running: %w", err)
	}
	k.log.Info("left the remote kernel running", "run_dir", k.state().RunDir)
	return nil
}

func (k *kernel) close(ctx context.Context) error {
	if k.cfg.Persistent {
		return k.leave()
	}
	return k.shutdown(ctx)
}

// abort undoes a launch that failed after the remote kernel started.
func (k *kernel) abort() {
	k.mu.Lock()
	c, r := k.conn, k.reply
	k.mu.Unlock()
	if r != nil && c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if _, err := k.control().Shutdown(ctx, 0); err != nil && !errors.Is(err, remote.ErrGone) {
			k.stopOverExec(c, r)
		}
	}
	k.teardown()
}

// teardown stops every goroutine and closes the connection and the listeners.
func (k *kernel) teardown() {
	k.mu.Lock()
	k.closed = true
	live := k.link != nil
	k.mu.Unlock()
	// Closing the clients' connections first lets every stream tell the
	// relay it ended, so a kernel left running keeps no orphaned connections;
	// a stalled link must not hold us up. (Streams that miss this wait stay
	// detached on the remote until the grace period ends: 2 s was missed on
	// a loaded machine; it takes milliseconds on a live link.) Without a
	// link there is nobody to tell, and streams waiting for one end only
	// with k.ctx: no wait then.
	k.closeForwarders()
	if live {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		for _, f := range k.fwd {
			if f != nil {
				select {
				case <-f.drained():
				case <-ctx.Done():
				}
			}
		}
		cancel()
	}
	k.cancel()
	k.notes.close()
	c, link, l := k.setDown()
	// A session link first, so the streams' last frames go out (it waits
	// for that at most 2 s); then the connection before the lease: see
	// reconnect.
	if link != nil {
		link.Close()
	}
	if c != nil {
		c.Close()
	}
	if l != nil {
		l.Close()
	}
	k.wg.Wait()
	k.releaseOnce.Do(func() { close(k.released) })
}

func (k *kernel) closeForwarders() {
	for _, f := range k.fwd {
		if f != nil {
			f.close()
		}
	}
}

func (k *kernel) finish(err error) {
	k.doneOnce.Do(func() {
		k.mu.Lock()
		k.doneErr = err
		k.mu.Unlock()
		close(k.done)
		if err != nil {
			// The kernel is gone for good: stop forwarding so nothing hangs
			// on a dead tunnel. teardown waits for goroutines, and may run
			// from the monitor itself, so do it asynchronously.
			go k.teardown()
		}
	})
}

func (k *kernel) err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.doneErr
}

func (k *kernel) state() State {
	k.mu.Lock()
	defer k.mu.Unlock()
	st := State{SpecName: k.cfg.SpecName, Host: k.cfg.Gopyk.SSHHostAlias, Persistent: k.cfg.Persistent}
	if r := k.reply; r != nil {
		st.RunDir, st.Control = r.RunDir, r.Control
		st.KernelPID, st.SupervisorPID, st.RemoteHost = r.KernelPID, r.SupervisorPID, r.Hostname
		st.Remote = wire.ConnInfo{Key: k.cfg.Local.Key, SignatureScheme: k.cfg.Local.SignatureScheme, Transport: r.Transport}
	}
	return st
}

func (k *kernel) local() wire.ConnInfo { return k.cfg.Local }

// ExitError says how the remote kernel ended; it wraps ErrKernelDied.
type ExitError struct {
	remote.Exit
}

func (e *ExitError) Error() string {
	msg := "remote kernel died (" + e.Exit.String() + ")"
	if l := lastLine(e.StderrTail); l != "" {
		msg += ": " + l
	}
	return msg
}

func (e *ExitError) Unwrap() error { return ErrKernelDied }

// Clean reports whether the kernel exited on its own with status 0, as it
// does after a shutdown_request from a client.
func (e *ExitError) Clean() bool { return e.ExitCode != nil && *e.ExitCode == 0 }
