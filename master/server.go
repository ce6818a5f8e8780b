//go:build !windows

package master

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gopyk/gopyk/openssh"
	"github.com/gopyk/gopyk/sshconf"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// server serves the master's socket: PROTOCOL.mux, one goroutine per
// control connection, over the one connection that link holds.
type server struct {
	ln      *net.UnixListener
	path    string
	link    *link
	log     *slog.Logger
	persist time.Duration // how long the master stays once nobody uses it
	info    Info          // static part of the status

	mu            sync.Mutex
	ctls          map[*net.UnixConn]uint64 // live control connections → the generation they are bound to
	fwds          map[string]*forward      // local forwards by listen address
	active        int                      // relayed streams and sessions in flight
	idleSince     time.Time                // when users last dropped to zero
	stopListening bool                     // ssh -O stop: exit once idle
	closed        bool
	stop          chan struct{} // closed to make the master exit
	stopOnce      sync.Once
	wg            sync.WaitGroup
}

func newServer(ln *net.UnixListener, path string, l *link, persist time.Duration, info Info, log *slog.Logger) *server {
	return &server{ln: ln, path: path, link: l, log: log, persist: persist, info: info,
		ctls: map[*net.UnixConn]uint64{}, fwds: map[string]*forward{}, idleSince: time.Now(), stop: make(chan struct{})}
}

// serve accepts control connections until the master stops; then it
// closes everything and waits for its goroutines.
func (s *server) serve() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.reaper()
	}()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			s.mu.Lock()
			stopped := s.stopListening
			s.mu.Unlock()
			if stopped {
				<-s.stop // the reaper says when the last client is done
			}
			break
		}
		if uid, err := peerUID(c); err != nil || uid != os.Getuid() {
			s.log.Warn("refused a connection from another user", "uid", uid, "err", err)
			c.Close()
			continue
		}
		if !s.track(c) {
			c.Close()
			break
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			s.control(c)
		}()
	}
	s.shutdown()
	s.wg.Wait()
}

// minIdle is how long a master stays unused at least.
const minIdle = 3 * time.Second

// reaper ends the master once nobody used it for persist.
func (s *server) reaper() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		idle := len(s.ctls) == 0 && s.active == 0
		since, persist := s.idleSince, s.persist
		s.mu.Unlock()
		// Even with no persist time, the starter has a moment to arrive.
		if idle && persist >= 0 && time.Since(since) >= max(persist, minIdle) {
			s.log.Info("nobody used the master for its persist time: exiting", "persist", persist)
			s.exit()
			return
		}
	}
}

// exit makes serve return: the socket goes first, so nobody new arrives.
func (s *server) exit() {
	s.stopOnce.Do(func() {
		close(s.stop)
		os.Remove(s.path)
		s.ln.Close()
	})
}

// shutdown closes every control connection, forward and the SSH connection.
func (s *server) shutdown() {
	s.mu.Lock()
	s.closed = true
	ctls := s.ctls
	fwds := s.fwds
	s.fwds = map[string]*forward{}
	s.mu.Unlock()
	for c := range ctls {
		c.Close()
	}
	for _, f := range fwds {
		f.close()
	}
	s.link.close()
}

func (s *server) track(c *net.UnixConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	up, _, gen, _, _, _ := s.link.status()
	if !up {
		gen++ // bound to the connection to come
	}
	s.ctls[c] = gen
	return true
}

func (s *server) untrack(c *net.UnixConn) {
	c.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ctls, c)
	s.idleCheck()
}

// use counts a relay in flight; the returned func ends it.
func (s *server) use() func() {
	s.mu.Lock()
	s.active++
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.active--
			s.idleCheck()
			s.mu.Unlock()
		})
	}
}

func (s *server) idleCheck() {
	if len(s.ctls) == 0 && s.active == 0 {
		s.idleSince = time.Now()
	}
}

// lost closes every control connection bound to connection gen or an
// earlier one: their sessions and streams died with it, and a client
// holding one idle (to learn this) reconnects, which the next dial serves.
func (s *server) lost(gen uint64) {
	s.mu.Lock()
	var gone []*net.UnixConn
	for c, g := range s.ctls {
		if g <= gen {
			gone = append(gone, c)
		}
	}
	s.mu.Unlock()
	for _, c := range gone {
		c.Close()
	}
}

// control serves one control connection.
func (s *server) control(c *net.UnixConn) {
	if _, err := c.Write(newPacket(muxHello).u32(muxVersion).frame()); err != nil {
		return
	}
	typ, f, err := readPacket(c)
	if err != nil || typ != muxHello || f.U32() != muxVersion {
		return
	}
	for {
		typ, f, err := readPacket(c)
		if err != nil {
			return
		}
		rid := f.U32()
		if f.Err() != nil {
			return
		}
		var reply []byte
		switch typ {
		case muxAliveCheck:
			reply = newPacket(muxAlive).u32(rid).u32(uint32(os.Getpid())).frame()
		case muxTerminate:
			s.log.Info("terminate requested")
			_, _ = c.Write(newPacket(muxOK).u32(rid).frame())
			s.exit()
			return
		case muxStopListening:
			// ssh -O stop: no new clients; the master goes once the
			// ones it has are done.
			s.log.Info("stop listening requested")
			s.mu.Lock()
			s.persist, s.stopListening = 0, true
			s.mu.Unlock()
			os.Remove(s.path)
			s.ln.Close()
			reply = newPacket(muxOK).u32(rid).frame()
		case muxGopykStatus:
			b, _ := json.Marshal(s.status(c))
			reply = newPacket(muxGopykInfo).u32(rid).str(string(b)).frame()
		case muxGopykConnect:
			ctx, cancel := s.untilClosed(c)
			_, _, why := s.connFor(ctx, c)
			cancel()
			if why != "" {
				reply = failure(rid, why)
			} else {
				reply = newPacket(muxOK).u32(rid).frame()
			}
		case muxOpenFwd, muxCloseFwd:
			reply = s.forwardRequest(typ, rid, f)
		case muxNewSession:
			s.session(c, rid, f)
			return // the connection belongs to the session, and ends with it
		case muxNewStdioFwd:
			s.stdioForward(c, rid, f)
			return
		default:
			reply = failure(rid, "unsupported request")
		}
		if _, err := c.Write(reply); err != nil {
			return
		}
	}
}

// status is the master's Info as the asker on control connection c sees
// it: c itself is not one of the users it counts.
func (s *server) status(c *net.UnixConn) Info {
	in := s.info
	up, since, _, dials, sessions, lastErr := s.link.status()
	in.Connected, in.Since, in.Dials, in.Sessions = up, since, dials, sessions
	if lastErr != nil && !up {
		in.LastError, in.ErrorKind = lastErr.Error(), kindName(lastErr)
	}
	s.mu.Lock()
	in.Users = len(s.ctls) + s.active
	if _, ok := s.ctls[c]; ok {
		in.Users--
	}
	if in.Users == 0 {
		in.IdleFor = time.Since(s.idleSince).Seconds()
	}
	s.mu.Unlock()
	return in
}

// connFor gets the connection for a request on control connection c,
// binding c to its generation; a failed dial becomes the request's
// failure text, its kind in brackets first (see ParseFailure).
func (s *server) connFor(ctx context.Context, c *net.UnixConn) (*sshconf.Client, uint64, string) {
	sc, gen, err := s.link.client(ctx)
	if err != nil {
		return nil, 0, failureText(err)
	}
	s.mu.Lock()
	if _, ok := s.ctls[c]; ok {
		s.ctls[c] = gen
	}
	s.mu.Unlock()
	return sc, gen, ""
}

// untilClosed is a context that ends when the client closes c (or the
// master stops): a request waiting for the dial gives up with its client.
func (s *server) untilClosed(c *net.UnixConn) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-s.stop:
		case <-ctx.Done():
		}
		cancel()
	}()
	return ctx, cancel
}

// session runs a MUX_C_NEW_SESSION: the client's stdin, stdout and stderr
// (passed descriptors) become the session channel's; its exit status goes
// back as MUX_S_EXIT_MESSAGE, and the control connection ends with it. A
// client that closes its control connection early ends the session, and
// what still runs remotely is killed (OpenSSH's master only closes the
// channel, which leaves a command that reads and writes nothing running).
func (s *server) session(c *net.UnixConn, rid uint32, f *openssh.Fields) {
	f.Str() // reserved
	wantTTY, _, _, subsystem := f.U32() != 0, f.U32(), f.U32(), f.U32() != 0
	f.U32() // escape char: no escapes here
	term, cmd := f.Str(), f.Str()
	var env []string
	for f.More() {
		env = append(env, f.Str())
	}
	if f.Err() != nil {
		_, _ = c.Write(failure(rid, "malformed session request"))
		return
	}
	fds, err := receiveFDs(c, 3)
	if err != nil {
		_, _ = c.Write(failure(rid, "did not receive file descriptors: "+err.Error()))
		return
	}
	files := [3]*os.File{}
	for i, fd := range fds {
		_ = unix.SetNonblock(fd, true)
		files[i] = os.NewFile(uintptr(fd), "mux-session-"+strconv.Itoa(i))
	}
	defer func() {
		for _, fl := range files {
			fl.Close()
		}
	}()
	done := s.use()
	defer done()
	ctx, cancel := s.untilClosed(c)
	defer cancel()
	watch := make(chan struct{})
	go func() { // the client going away before the channel opened
		defer close(watch)
		var b [1]byte
		_, _ = c.Read(b[:])
		cancel()
	}()
	sc, gen, why := s.connFor(ctx, c)
	var sess *sessChan
	if why == "" {
		var err error
		if sess, err = s.link.session(ctx, sc, gen); err != nil {
			why = "open a session: " + err.Error()
		}
	}
	if why != "" {
		_, _ = c.Write(failure(rid, why))
		return
	}
	ch := sess.ch
	for _, e := range env {
		if k, v, ok := cutEnv(e); ok {
			_, _ = ch.SendRequest("env", false, ssh.Marshal(struct{ Name, Value string }{k, v}))
		}
	}
	if wantTTY {
		w, h := 80, 24
		if ws, err := unix.IoctlGetWinsize(fds[0], unix.TIOCGWINSZ); err == nil {
			w, h = int(ws.Col), int(ws.Row)
		}
		_, _ = ch.SendRequest("pty-req", false, ssh.Marshal(struct {
			Term          string
			Columns, Rows uint32
			Width, Height uint32
			Modes         string
		}{term, uint32(w), uint32(h), 0, 0, "\x00"}))
	}
	// Like sshconf.Session: no wait for the answer, so the client's first
	// bytes follow in the same round trip (sshd opens the window once the
	// command runs).
	switch {
	case subsystem:
		_, _ = ch.SendRequest("subsystem", false, ssh.Marshal(struct{ Name string }{cmd}))
	case cmd == "":
		_, _ = ch.SendRequest("shell", false, nil)
	default:
		_, _ = ch.SendRequest("exec", false, ssh.Marshal(struct{ Command string }{cmd}))
	}
	sid := uint32(gen)<<16 | rid&0xffff
	if _, err := c.Write(newPacket(muxSessionOpened).u32(rid).u32(sid).frame()); err != nil {
		killChannel(ch)
		return
	}
	outDone := make(chan struct{}, 2)
	go func() { // stdin
		_, _ = io.Copy(ch, files[0])
		_ = ch.CloseWrite()
	}()
	go func() {
		_, _ = io.Copy(files[1], ch)
		files[1].Close()
		outDone <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(files[2], ch.Stderr())
		files[2].Close()
		outDone <- struct{}{}
	}()
	select {
	case <-sess.done:
	case <-watch:
		// The client left: end the command, as a killed ssh would.
		killChannel(ch)
		<-sess.done
		return
	}
	for range 2 {
		select {
		case <-outDone:
		case <-time.After(5 * time.Second): // a client that stopped reading
		}
	}
	if status, _ := sess.exit(); status >= 0 {
		_, _ = c.Write(newPacket(muxExitMessage).u32(sid).u32(uint32(status)).frame())
	}
	ch.Close()
}

// killChannel kills what still runs of a session and closes the channel.
func killChannel(ch ssh.Channel) {
	_, _ = ch.SendRequest("signal", false, ssh.Marshal(struct{ Signal string }{string(ssh.SIGKILL)}))
	ch.Close()
}

func cutEnv(e string) (string, string, bool) {
	for i := 0; i < len(e); i++ {
		if e[i] == '=' {
			return e[:i], e[i+1:], i > 0
		}
	}
	return "", "", false
}

// stdioForward runs a MUX_C_NEW_STDIO_FWD (ssh -W): a stream to host:port,
// or to a unix socket path on the server (port PORT_STREAMLOCAL).
func (s *server) stdioForward(c *net.UnixConn, rid uint32, f *openssh.Fields) {
	f.Str() // reserved
	host, port := f.Str(), f.U32()
	if f.Err() != nil {
		_, _ = c.Write(failure(rid, "malformed stdio forward request"))
		return
	}
	fds, err := receiveFDs(c, 2)
	if err != nil {
		_, _ = c.Write(failure(rid, "did not receive file descriptors: "+err.Error()))
		return
	}
	// Non-blocking before NewFile, so the files use the runtime's poller.
	_ = unix.SetNonblock(fds[0], true)
	_ = unix.SetNonblock(fds[1], true)
	in, out := os.NewFile(uintptr(fds[0]), "mux-stdio-in"), os.NewFile(uintptr(fds[1]), "mux-stdio-out")
	defer in.Close()
	defer out.Close()
	done := s.use()
	defer done()
	ctx, cancel := s.untilClosed(c)
	defer cancel()
	sc, _, why := s.connFor(ctx, c)
	if why != "" {
		_, _ = c.Write(failure(rid, why))
		return
	}
	rc, err := dialRemote(ctx, sc, host, port)
	if err != nil {
		_, _ = c.Write(failure(rid, failureText(err)))
		return
	}
	defer rc.Close()
	if _, err := c.Write(newPacket(muxSessionOpened).u32(rid).u32(rid).frame()); err != nil {
		return
	}
	// The stream ends with its bytes, not with the control connection: a
	// client that closes its socket and exits (or closes the control
	// connection first) still has its last bytes delivered (a relay's
	// end-of-stream frame) before the channel closes.
	relay(rc, in, out)
}

// dialRemote opens a channel to host:port, or to the unix socket host when
// port is PORT_STREAMLOCAL.
func dialRemote(ctx context.Context, sc *sshconf.Client, host string, port uint32) (net.Conn, error) {
	if port == portStreamLocal {
		return sc.DialContext(ctx, "unix", host)
	}
	return sc.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(int(port))))
}

// relay copies both ways between the channel rc and the local in/out (one
// socket, or two pipes) until both directions ended. Once the remote side
// finished, the local one gets halfCloseWait to finish too (a half-closed
// stream), then it is cut.
func relay(rc net.Conn, in io.Reader, out io.Writer) {
	up := make(chan struct{})
	go func() {
		defer close(up)
		_, _ = io.Copy(rc, in)
		if cw, ok := rc.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}()
	_, _ = io.Copy(out, rc)
	halfClose(out)
	select {
	case <-up:
	case <-time.After(halfCloseWait):
		if c, ok := in.(io.Closer); ok {
			c.Close()
		}
		<-up
	}
}

const halfCloseWait = 10 * time.Second

// halfClose tells the local side the remote one finished writing.
func halfClose(w io.Writer) {
	switch v := w.(type) {
	case *net.UnixConn:
		_ = v.CloseWrite()
	case *net.TCPConn:
		_ = v.CloseWrite()
	case *os.File:
		if raw, err := v.SyscallConn(); err == nil {
			var serr error
			_ = raw.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_WR) })
			if serr != nil { // a pipe: closing is the only way
				v.Close()
			}
		}
	}
}

// forward is a local listener whose connections go to a remote address
// (MUX_C_OPEN_FWD: ssh -O forward -L). It outlives the control connection
// that made it, and the SSH connection too: after a loss, the next
// connection a client makes to it is carried by the next dial.
type forward struct {
	key          string
	ln           net.Listener
	host         string
	port         uint32
	listenRemove string // a unix socket path to remove at close
	once         sync.Once
}

func (s *server) forwardRequest(typ, rid uint32, f *openssh.Fields) []byte {
	kind := f.U32()
	lhost, lport := f.Str(), f.U32()
	chost, cport := f.Str(), f.U32()
	if f.Err() != nil {
		return failure(rid, "malformed forward request")
	}
	if kind != muxFwdLocal {
		return failure(rid, "only local forwards (-L) are supported by gopyk's master")
	}
	key := fmt.Sprintf("%s:%d>%s:%d", lhost, lport, chost, cport)
	s.mu.Lock()
	fw, exists := s.fwds[key]
	s.mu.Unlock()
	if typ == muxCloseFwd {
		if !exists {
			return failure(rid, "port not forwarded")
		}
		s.mu.Lock()
		delete(s.fwds, key)
		s.mu.Unlock()
		fw.close()
		return newPacket(muxOK).u32(rid).frame()
	}
	if exists {
		return newPacket(muxOK).u32(rid).frame()
	}
	var ln net.Listener
	var err error
	fw = &forward{key: key, host: chost, port: cport}
	if lport == portStreamLocal {
		old := unix.Umask(0o177)
		ln, err = net.Listen("unix", lhost)
		unix.Umask(old)
		fw.listenRemove = lhost
	} else {
		if lhost == "" || lhost == "localhost" {
			lhost = "127.0.0.1"
		}
		ln, err = net.Listen("tcp", net.JoinHostPort(lhost, strconv.Itoa(int(lport))))
	}
	if err != nil {
		return failure(rid, "Port forwarding failed: "+err.Error())
	}
	fw.ln = ln
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		fw.close()
		return failure(rid, "the master is exiting")
	}
	s.fwds[key] = fw
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.acceptForward(fw)
	}()
	return newPacket(muxOK).u32(rid).frame()
}

func (s *server) acceptForward(fw *forward) {
	for {
		lc, err := fw.ln.Accept()
		if err != nil {
			return
		}
		done := s.use()
		go func() {
			defer done()
			defer lc.Close()
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-s.stop:
					lc.Close()
				case <-ctx.Done():
				}
			}()
			defer cancel()
			sc, _, err := s.link.client(ctx)
			if err != nil {
				s.log.Debug("forward: no connection", "to", fw.host, "err", err)
				return
			}
			rc, err := dialRemote(ctx, sc, fw.host, fw.port)
			if err != nil {
				s.log.Debug("forward: open failed", "to", fw.host, "err", err)
				return // closed before its first byte: how a refused forward looks through a master
			}
			defer rc.Close()
			relay(rc, lc, lc)
		}()
	}
}

func (f *forward) close() {
	f.once.Do(func() {
		f.ln.Close()
		if f.listenRemove != "" {
			os.Remove(f.listenRemove)
		}
	})
}

// failureText is a failed dial as a MUX_S_FAILURE reason: its kind in
// brackets, then its message, so that gopyk's client gets the kind back
// (ParseFailure) and `ssh -S` users read the message.
func failureText(err error) string {
	var oce *ssh.OpenChannelError
	if errors.As(err, &oce) {
		// The server's own refusal, reason code and all: "connect failed"
		// is how sshd says both "nothing listens there" and "no
		// forwarding to unix sockets here" (see provisioner's openLink).
		return fmt.Sprintf("[open:%d] %s", oce.Reason, oce.Message)
	}
	if k := kindName(err); k != "" {
		return "[" + k + "] " + err.Error()
	}
	return err.Error()
}

var errKinds = map[string]error{
	"unknown_host": sshconf.ErrUnknownHost, "refused": sshconf.ErrRefused, "timeout": sshconf.ErrTimeout,
	"auth": sshconf.ErrAuth, "cannot_ask": sshconf.ErrCannotAsk, "host_key_changed": sshconf.ErrHostKeyChanged,
	"host_key_unknown": sshconf.ErrHostKeyUnknown, "host_key_revoked": sshconf.ErrHostKeyRevoked,
	"proxy_command": sshconf.ErrProxyCommand, "jump": sshconf.ErrJump, "connection_lost": sshconf.ErrConnectionLost,
	"handshake_closed": sshconf.ErrHandshakeClosed, "keepalive": sshconf.ErrKeepaliveFailed,
}

func kindName(err error) string {
	for name, k := range errKinds {
		if errors.Is(err, k) {
			return name
		}
	}
	return ""
}

// ParseFailure turns a master's failure reason back into the error it
// was: one that matches its sshconf kind (errors.Is), or the server's
// *ssh.OpenChannelError for a stream it refused; other text as it is.
func ParseFailure(reason string) error {
	tag, msg, ok := strings.Cut(reason, "] ")
	if !ok || !strings.HasPrefix(tag, "[") {
		return errors.New(reason)
	}
	tag = tag[1:]
	if code, ok := strings.CutPrefix(tag, "open:"); ok {
		if n, err := strconv.Atoi(code); err == nil {
			return &ssh.OpenChannelError{Reason: ssh.RejectionReason(n), Message: msg}
		}
	}
	if k, ok := errKinds[tag]; ok {
		return &kindError{kind: k, msg: msg}
	}
	return errors.New(reason)
}

type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }
