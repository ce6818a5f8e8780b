//go:build !windows

package transport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gopyk/gopyk/openssh"
	"github.com/gopyk/gopyk/sshconf"
)

// privatePersist is how long a master of our own outlives a gopyk that
// died without closing it (kill -9): it exits once nobody used it for that
// long. While we run, our idle control connection keeps it.
const privatePersist = "10"

// userMaster is the live OpenSSH master at t's ControlPath, or nil.
func userMaster(ctx context.Context, t *sshconf.Settings, log *slog.Logger) Conn {
	if t.ControlPath == "" {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, masterProbe)
	m, err := openssh.Connect(pctx, t.ControlPath)
	cancel()
	if err != nil {
		if !errors.Is(err, openssh.ErrNoMaster) {
			log.Warn("the OpenSSH master at ControlPath does not answer; connecting without it", "host", t.Alias, "control_path", t.ControlPath, "err", err)
		} else {
			log.Debug("no OpenSSH master at ControlPath", "host", t.Alias, "control_path", t.ControlPath)
		}
		return nil
	}
	log.Info("using the OpenSSH master", "host", t.Alias, "control_path", t.ControlPath, "pid", m.PID())
	gcForwards(ctx, log)
	return newMasterConn(m, false, fmt.Sprintf("OpenSSH master %s (pid %d)", t.ControlPath, m.PID()))
}

// MasterAlive reports whether an OpenSSH master answers at t's ControlPath:
// cheap (a local socket), for waiting until the user opens one.
func MasterAlive(ctx context.Context, t *sshconf.Settings) bool {
	if t.ControlPath == "" {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, masterProbe)
	defer cancel()
	_, err := openssh.Alive(ctx, t.ControlPath)
	return err == nil
}

// sharedMaster: t's config makes `ssh alias` open a master that outlives
// it (ControlMaster auto or yes, a ControlPath, ControlPersist). With
// ssh_client openssh gopyk then opens that very master, as ssh would, and
// leaves it for later connections.
func sharedMaster(t *sshconf.Settings) bool {
	if t.ControlPath == "" {
		return false
	}
	switch strings.ToLower(rawValue(t, "controlmaster")) {
	case "auto", "yes", "true":
	default:
		return false
	}
	switch strings.ToLower(rawValue(t, "controlpersist")) {
	case "", "no", "false", "0":
		return false
	}
	return true
}

// dialOpenSSH runs the user's ssh once to log in and open a master, then
// carries everything through that master.
func dialOpenSSH(ctx context.Context, route sshconf.Route, o Options, log *slog.Logger) (Conn, error) {
	t := route.Target()
	fail := func(kind, err error, hint string) error {
		return &sshconf.DialError{Target: t.Alias, Kind: kind, Err: err, Hint: hint}
	}
	bin, err := exec.LookPath("ssh")
	if err != nil {
		return nil, fail(nil, errors.New("ssh_client openssh needs OpenSSH's ssh on the PATH"), "install OpenSSH's client, or use gopyk edit --ssh-client native")
	}
	dir, err := privateDir()
	if err != nil {
		return nil, fail(nil, err, "")
	}
	ask := askSetup(o.Interactive)
	var args []string
	path, owned := t.ControlPath, false
	if !sharedMaster(t) {
		path, owned = filepath.Join(dir, "m-"+randomID()), true
		iv, n := aliveParams(t, o.DeadAfter)
		args = []string{"-o", "ControlMaster=yes", "-o", "ControlPath=" + path, "-o", "ControlPersist=" + privatePersist,
			// The alias's LocalForward lines belong to the user's own
			// sessions: a second copy would fight them for the ports.
			"-o", "ClearAllForwardings=yes",
			"-o", "ServerAliveInterval=" + strconv.Itoa(iv), "-o", "ServerAliveCountMax=" + strconv.Itoa(n)}
	}
	if ask.batch {
		// Nobody can answer: without BatchMode ssh would send empty
		// passwords, each a failed login in the server's log.
		args = append(args, "-o", "BatchMode=yes")
	}
	log.Debug("ssh: open a master", "host", t.Alias, "control_path", path, "shared", !owned, "asks", ask.how)
	m, err := openssh.Start(ctx, openssh.StartOptions{SSH: bin, ConfigFile: o.ConfigFile, Alias: t.Alias, Args: args, Env: ask.env, Setsid: ask.setsid}, path)
	if err != nil {
		return nil, classify(err, t, ask)
	}
	via := fmt.Sprintf("ssh (master pid %d)", m.PID())
	if !owned {
		via = fmt.Sprintf("ssh (shared master %s, pid %d)", path, m.PID())
	}
	log.Info("logged in with OpenSSH's ssh", "host", t.Alias, "master_pid", m.PID(), "control_path", path, "shared", !owned)
	gcForwards(ctx, log)
	return newMasterConn(m, owned, via), nil
}

// aliveParams is the ServerAliveInterval (whole seconds, as ssh takes it)
// and ServerAliveCountMax of a master of our own: the config's, or the
// native client's defaults, shortened to deadAfter as the native client
// does (ssh -G says 300 s under BatchMode yes).
func aliveParams(t *sshconf.Settings, deadAfter time.Duration) (int, int) {
	iv, n := t.ServerAliveInterval, t.ServerAliveCountMax
	if iv <= 0 {
		iv = sshconf.DefaultAliveInterval
	}
	if n <= 0 {
		n = sshconf.DefaultAliveCountMax
	}
	if deadAfter > 0 && deadAfter < time.Duration(n)*iv {
		iv = deadAfter / time.Duration(n)
	}
	return max(int(iv.Round(time.Second)/time.Second), 1), n
}

// askPlan is how ssh may ask the user, the way OpenSSH itself decides.
type askPlan struct {
	env    []string // nil: this process's environment
	setsid bool     // no controlling terminal for ssh
	batch  bool     // nobody can answer
	how    string
}

// askpassEnv names the terminal gopyk's own askpass helper asks on.
const askpassEnv = "GOPYK_ASKPASS_TTY"

func askSetup(interactive bool) askPlan {
	switch {
	case interactive && sshconf.ControllingTTY():
		return askPlan{how: "ssh asks on the terminal"}
	case sshconf.Askpass(false) != "":
		return askPlan{setsid: true, how: "SSH_ASKPASS"}
	}
	if tty := sshconf.TerminalPath(); interactive && tty != "" {
		// Jupyter starts kernels with setsid: no controlling terminal, but
		// the user's terminal is on stderr. ssh cannot open it; gopyk,
		// as ssh's askpass program, asks there.
		if exe, err := os.Executable(); err == nil {
			env := append(os.Environ(), "SSH_ASKPASS="+exe, "SSH_ASKPASS_REQUIRE=force", askpassEnv+"="+tty)
			return askPlan{env: env, setsid: true, how: "gopyk asks on " + tty}
		}
	}
	return askPlan{setsid: true, batch: true, how: "nobody (BatchMode)"}
}

// AskpassMain serves ssh as its SSH_ASKPASS program when gopyk started ssh
// so (see askSetup): the question goes to the user's terminal, echo off,
// and the answer to ssh on stdout. ok is false in any other run.
func AskpassMain(args []string, stdout, stderr io.Writer) (code int, ok bool) {
	tty := os.Getenv(askpassEnv)
	// ssh passes one argument, the prompt; the variable is also inherited
	// by what ssh runs itself (a `gopyk ws-proxy` ProxyCommand), which is
	// not asked anything.
	if tty == "" || len(args) != 1 || !isSelf(os.Getenv("SSH_ASKPASS")) {
		return 0, false
	}
	prompt := args[0]
	switch os.Getenv("SSH_ASKPASS_PROMPT") {
	case "confirm":
		a, err := sshconf.AskTerminal(tty, prompt+" (yes/no) ", true)
		if err == nil && strings.EqualFold(strings.TrimSpace(a), "yes") {
			return 0, true
		}
		return 1, true
	case "none": // a notice (touch your security key): show it, ssh ends us
		if f, err := os.OpenFile(tty, os.O_WRONLY, 0); err == nil {
			fmt.Fprintln(f, prompt)
			f.Close()
		}
		return 0, true
	}
	a, err := sshconf.AskTerminal(tty, prompt, false)
	if err != nil {
		fmt.Fprintf(stderr, "gopyk askpass: %v\n", err)
		return 1, true
	}
	fmt.Fprintln(stdout, a)
	return 0, true
}

func isSelf(path string) bool {
	exe, err := os.Executable()
	if err != nil || path == "" {
		return false
	}
	a, errA := os.Stat(exe)
	b, errB := os.Stat(path)
	return errA == nil && errB == nil && os.SameFile(a, b)
}

// classify turns ssh's failure into a DialError of the native client's
// kinds, so that re-logins are paced the same way.
func classify(err error, t *sshconf.Settings, ask askPlan) error {
	var se *openssh.StartError
	if !errors.As(err, &se) {
		return &sshconf.DialError{Target: t.Alias, Err: err}
	}
	text := lastLines(se.Stderr, 3)
	low := strings.ToLower(se.Stderr)
	var kind error
	hint := ""
	switch {
	case strings.Contains(low, "permission denied"):
		methods := deniedMethods(se.Stderr)
		asks := askedFor(methods)
		switch {
		case (ask.batch || t.BatchMode) && asks != "":
			why := "no terminal, no SSH_ASKPASS"
			if t.BatchMode {
				why = "BatchMode yes"
			}
			return &sshconf.DialError{Target: t.Alias, Kind: sshconf.ErrCannotAsk,
				Err:  fmt.Errorf("the server asks user %s for %s (it offers %s); gopyk cannot ask for it here (%s)", t.User, asks, strings.Join(methods, ", "), why),
				Hint: cannotAskHint(t.Alias)}
		case contains(methods, "gssapi-with-mic") && !haveKerberosTicket():
			kind, hint = sshconf.ErrAuth, "get a Kerberos ticket with kinit (klist shows what you hold)"
		default:
			kind, hint = sshconf.ErrAuth, fmt.Sprintf("run `ssh -v %s` to see why", t.Alias)
		}
	case strings.Contains(low, "remote host identification has changed"):
		kind, hint = sshconf.ErrHostKeyChanged, "if the server's key really changed, remove the old one with ssh-keygen -R"
	case strings.Contains(low, "host key verification failed"):
		kind, hint = sshconf.ErrHostKeyUnknown, fmt.Sprintf("connect once with `ssh %s` and check the key", t.Alias)
	case strings.Contains(low, "could not resolve hostname"):
		kind, hint = sshconf.ErrUnknownHost, "check HostName for this alias in your ssh config"
	case strings.Contains(low, "connection refused"):
		kind, hint = sshconf.ErrRefused, "is sshd running there, and is Port right?"
	case strings.Contains(low, "timed out"), strings.Contains(low, "no route to host"), strings.Contains(low, "network is unreachable"):
		kind, hint = sshconf.ErrTimeout, "check the network or VPN"
	case strings.Contains(low, "connection closed by"), strings.Contains(low, "connection reset"), strings.Contains(low, "kex_exchange_identification"):
		kind = sshconf.ErrHandshakeClosed
	}
	if text == "" {
		text = se.Error()
	}
	return &sshconf.DialError{Target: t.Alias, Kind: kind, Err: errors.New("OpenSSH's ssh: " + text), Hint: hint}
}

// deniedMethods parses "Permission denied (publickey,password)."
func deniedMethods(stderr string) []string {
	i := strings.LastIndex(stderr, "Permission denied (")
	if i < 0 {
		return nil
	}
	rest := stderr[i+len("Permission denied ("):]
	rest, _, _ = strings.Cut(rest, ")")
	return strings.Split(rest, ",")
}

// askedFor names what a person would have to type for methods.
func askedFor(methods []string) string {
	pw, kbd := contains(methods, "password"), contains(methods, "keyboard-interactive")
	switch {
	case pw && kbd:
		return "a password or keyboard-interactive answers (a password, a verification code)"
	case pw:
		return "a password"
	case kbd:
		return "keyboard-interactive answers (a password, a verification code)"
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// lastLines is the last n non-empty lines of s, on one line; the lines of
// a connection ssh prints once it got through (Warnings, banners) stay out
// of the way.
func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// masterConn carries a connection through an OpenSSH master.
type masterConn struct {
	m     *openssh.Master
	owned bool // our own master: terminated on Close
	via   string

	mu     sync.Mutex
	dir    string            // where the forwards' local sockets go
	fwds   map[string]string // remote path → local socket the master forwards from
	closed bool
}

func newMasterConn(m *openssh.Master, owned bool, via string) *masterConn {
	return &masterConn{m: m, owned: owned, via: via, fwds: map[string]string{}}
}

func (c *masterConn) NewSession() (Session, error) { return c.m.NewSession(), nil }

// DialUnix connects through a forward the master holds from a private
// local socket to path, made on first use (OpenSSH's stdio forwards reach
// unix sockets only from 9.4 on; streamlocal forwards from 6.7). A refused
// forward shows only as the master closing the stream before any byte.
func (c *masterConn) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	listen, err := c.forward(ctx, path)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", listen)
	if err != nil {
		// %v: the master's socket is missing, not the remote one.
		return nil, fmt.Errorf("%s: forward to %s: %v", c.via, path, err)
	}
	return &firstRead{Conn: conn, path: path}, nil
}

func (c *masterConn) forward(ctx context.Context, path string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return "", fmt.Errorf("%s: %w", c.via, sshconf.ErrClosed)
	}
	if l, ok := c.fwds[path]; ok {
		return l, nil
	}
	if c.dir == "" {
		dir, err := privateDir()
		if err != nil {
			return "", err
		}
		c.dir = dir
	}
	listen := filepath.Join(c.dir, "f-"+randomID())
	if err := c.m.Forward(ctx, listen, path); err != nil {
		return "", err
	}
	c.fwds[path] = listen
	// Say whose it is: if we die first (kill -9), the next gopyk to use a
	// master takes it out of a master that outlives us, and removes its
	// socket file either way.
	rec, _ := json.Marshal(fwdRecord{PID: os.Getpid(), Master: c.m.Path(), Remote: path})
	_ = os.WriteFile(listen+".fwd", rec, 0o600)
	return listen, nil
}

// fwdRecord says which process made a forward in a shared master.
type fwdRecord struct {
	PID    int    `json:"pid"`
	Master string `json:"master"` // its ControlPath
	Remote string `json:"remote"`
}

// gcForwards removes the forwards of gopyk processes that died without
// closing them (kill -9): out of their master when it still runs (a
// long-lived master would otherwise collect one listener per such launch),
// and their files from our directory.
func gcForwards(ctx context.Context, log *slog.Logger) {
	dir, err := privateDir()
	if err != nil {
		return
	}
	recs, _ := filepath.Glob(filepath.Join(dir, "f-*.fwd"))
	for _, rf := range recs {
		var r fwdRecord
		if b, err := os.ReadFile(rf); err != nil || json.Unmarshal(b, &r) != nil || processAlive(r.PID) {
			continue
		}
		listen := strings.TrimSuffix(rf, ".fwd")
		if m, err := openssh.Connect(ctx, r.Master); err == nil {
			err = m.CloseForward(ctx, listen, r.Remote)
			m.Close()
			log.Debug("removed the forward of a gopyk that is gone from its OpenSSH master", "listen", listen, "remote", r.Remote, "pid", r.PID, "err", err)
		} else if !errors.Is(err, openssh.ErrNoMaster) {
			continue // a master that does not answer now: next time
		}
		os.Remove(listen)
		os.Remove(rf)
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func (c *masterConn) Done() <-chan struct{} { return c.m.Done() }

// LastHeard: a master does not say when it last heard from the server;
// when it ended is the closest we know.
func (c *masterConn) LastHeard() time.Time {
	if t := c.m.Ended(); !t.IsZero() {
		return t
	}
	return time.Now()
}

func (c *masterConn) Err() error {
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
	return fmt.Errorf("%w: the %s exited", sshconf.ErrConnectionLost, c.via)
}

// Close ends our master, or takes our forwards out of a master that is
// not ours (which goes on).
func (c *masterConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	fwds := c.fwds
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	select {
	case <-c.m.Done():
	default:
		if c.owned {
			_ = c.m.Terminate(ctx)
		} else {
			for remote, listen := range fwds {
				_ = c.m.CloseForward(ctx, listen, remote)
			}
		}
	}
	for _, listen := range fwds {
		_ = os.Remove(listen)
		_ = os.Remove(listen + ".fwd")
	}
	return c.m.Close()
}

func (c *masterConn) Via() string { return c.via }

// firstRead turns a stream the master closed before its first byte into
// ErrRefused: that is how a refused forward looks through a master.
type firstRead struct {
	net.Conn
	path string
	seen atomic.Bool
}

func (c *firstRead) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if c.seen.Swap(true) || n > 0 || !closedByPeer(err) {
		return n, err
	}
	return 0, &streamRefused{path: c.path}
}

// Write: the master may have closed the stream before a first write too.
func (c *firstRead) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil && !c.seen.Load() && closedByPeer(err) {
		return n, &streamRefused{path: c.path}
	}
	return n, err
}

// closedByPeer: EOF, or a reset when what we wrote was still unread.
func closedByPeer(err error) bool {
	return err == io.EOF || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

type streamRefused struct{ path string }

func (e *streamRefused) Error() string {
	return "the stream to " + e.path + " ended before its first byte: the server refuses to forward to unix sockets (AllowStreamLocalForwarding no, or DisableForwarding yes), or nothing listens there"
}
func (e *streamRefused) Unwrap() error { return ErrRefused }

// privateDir is the user's 0700 directory for gopyk's sockets (masters,
// forwards): <runtime dir>/gopyk-ssh-<uid>, short enough for unix socket
// paths. (The remote launcher's run dirs may be /tmp/gopyk-<uid>, on this
// very machine for a kernel on localhost: a name of its own.)
func privateDir() (string, error) {
	base := os.Getenv("XDG_RUNTIME_DIR")
	if base == "" || len(base) > 40 {
		base = os.TempDir()
	}
	if len(base) > 40 {
		base = "/tmp"
	}
	dir := filepath.Join(base, "gopyk-ssh-"+strconv.Itoa(os.Getuid()))
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("make gopyk's socket directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", fmt.Errorf("gopyk's socket directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Getuid() || fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is not a directory that only you can use (mode 0700, yours); remove it and retry", dir)
	}
	return dir, nil
}

func randomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
