//go:build !windows

package openssh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Message types and constants of PROTOCOL.mux (version 4).
const (
	muxHello         = 0x00000001
	muxNewSession    = 0x10000002
	muxAliveCheck    = 0x10000004
	muxTerminate     = 0x10000005
	muxOpenFwd       = 0x10000006
	muxCloseFwd      = 0x10000007
	muxOK            = 0x80000001
	muxDenied        = 0x80000002
	muxFailure       = 0x80000003
	muxExitMessage   = 0x80000004
	muxAlive         = 0x80000005
	muxSessionOpened = 0x80000006
	muxTTYAllocFail  = 0x80000008

	muxVersion      = 4
	muxFwdLocal     = 1
	portStreamLocal = 0xfffffffe // (u_int)-2: the host is a unix socket path
	noEscapeChar    = 0xffffffff
	maxPacket       = 256 << 10 // replies are small; a bigger length is not a master
)

// ErrNoMaster: nothing listens at the ControlPath (no socket, or a stale
// one whose master is gone).
var ErrNoMaster = errors.New("no OpenSSH master is running")

// ReplyError is a master's refusal of a request.
type ReplyError struct {
	Denied bool // MUX_S_PERMISSION_DENIED: ControlMaster ask/autoask, and the user said no
	Reason string
}

func (e *ReplyError) Error() string {
	if e.Denied {
		return "the OpenSSH master refused: " + e.Reason + " (ControlMaster ask/autoask confirms each session)"
	}
	return "the OpenSSH master failed: " + e.Reason
}

// ExitError is a remote command that exited with a non-zero status.
type ExitError struct{ Status int }

func (e *ExitError) Error() string {
	return fmt.Sprintf("remote command exited with status %d", e.Status)
}
func (e *ExitError) ExitStatus() int { return e.Status }

// errNoExit: the session ended without an exit status (the command died of
// a signal, or the master or its connection went away).
var errNoExit = errors.New("the session ended without an exit status (a signal, or the OpenSSH master went away)")

// ctl is one connection to the master's control socket. The master serves
// one session or forward per connection, and ends it when the connection
// closes.
type ctl struct {
	c   *net.UnixConn
	rid uint32
}

// dial connects to the master at path and exchanges hellos.
func dial(ctx context.Context, path string) (*ctl, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w at %s", ErrNoMaster, path)
		}
		return nil, fmt.Errorf("connect to the OpenSSH master at %s: %w", path, err)
	}
	c := &ctl{c: nc.(*net.UnixConn)}
	stop := c.within(ctx)
	defer stop()
	if err := c.send(newMsg(muxHello).u32(muxVersion)); err != nil {
		c.close()
		return nil, fmt.Errorf("OpenSSH master at %s: hello: %w", path, err)
	}
	typ, r, err := c.recv()
	if err == nil && typ != muxHello {
		err = fmt.Errorf("sent message %#x before its hello", typ)
	}
	if err == nil {
		if v := r.U32(); r.Err() != nil || v != muxVersion {
			err = fmt.Errorf("speaks mux protocol version %d, gopyk version %d", v, muxVersion)
		}
	}
	if err != nil {
		c.close()
		return nil, fmt.Errorf("OpenSSH master at %s: %w", path, err)
	}
	return c, nil
}

// within bounds the connection's I/O by ctx until the returned func is called.
func (c *ctl) within(ctx context.Context) (stop func()) {
	if d, ok := ctx.Deadline(); ok {
		_ = c.c.SetDeadline(d)
	}
	cancel := context.AfterFunc(ctx, func() { _ = c.c.SetDeadline(time.Unix(1, 0)) })
	return func() {
		cancel()
		_ = c.c.SetDeadline(time.Time{})
	}
}

func (c *ctl) close() { _ = c.c.Close() }

// next returns a fresh request id.
func (c *ctl) next() uint32 { c.rid++; return c.rid }

func (c *ctl) send(m msg) error {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(m)), uint32(len(m)))
	_, err := c.c.Write(append(b, m...))
	return err
}

// sendFD passes one file descriptor, the way OpenSSH's mm_send_fd does: one
// byte of data carrying it.
func (c *ctl) sendFD(fd int) error {
	_, _, err := c.c.WriteMsgUnix([]byte{0}, unix.UnixRights(fd), nil)
	return err
}

func (c *ctl) recv() (uint32, *Fields, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c.c, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n < 4 || n > maxPacket {
		return 0, nil, fmt.Errorf("a packet of %d bytes: not an OpenSSH master", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.c, b); err != nil {
		return 0, nil, err
	}
	r := NewFields(b)
	return r.U32(), r, nil
}

// reply reads the answer to request rid: want's body, or the master's refusal.
func (c *ctl) reply(rid uint32, want uint32) (*Fields, error) {
	typ, r, err := c.recv()
	if err != nil {
		return nil, err
	}
	if got := r.U32(); r.Err() != nil || got != rid {
		return nil, fmt.Errorf("reply %#x to request %d, expected request %d", typ, got, rid)
	}
	switch typ {
	case want:
		return r, nil
	case muxFailure, muxDenied:
		return nil, &ReplyError{Denied: typ == muxDenied, Reason: r.Str()}
	}
	return nil, fmt.Errorf("unexpected reply %#x", typ)
}

type msg []byte

func newMsg(typ uint32) msg        { return binary.BigEndian.AppendUint32(nil, typ) }
func (m msg) u32(v uint32) msg     { return binary.BigEndian.AppendUint32(m, v) }
func (m msg) str(s string) msg     { return append(m.u32(uint32(len(s))), s...) }
func (m msg) flag(b bool) msg      { return m.u32(map[bool]uint32{false: 0, true: 1}[b]) }
func (m msg) request(c *ctl) msg   { return m.u32(c.next()) }
func (c *ctl) lastRequest() uint32 { return c.rid }

// Fields reads a PROTOCOL.mux message, field by field; the first short
// field sets Err and makes the rest zero. gopyk's own master reads with it
// too.
type Fields struct {
	b   []byte
	err error
}

// NewFields reads b, a message without its length.
func NewFields(b []byte) *Fields { return &Fields{b: b} }

// Err is io.ErrUnexpectedEOF once a field ran past the end.
func (r *Fields) Err() error { return r.err }

// More reports whether unread bytes remain (and none was missing).
func (r *Fields) More() bool { return r.err == nil && len(r.b) > 0 }

func (r *Fields) U32() uint32 {
	if len(r.b) < 4 {
		r.err = io.ErrUnexpectedEOF
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *Fields) Str() string {
	n := r.U32()
	if r.err != nil || uint32(len(r.b)) < n {
		r.err = io.ErrUnexpectedEOF
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// Alive asks the master at path whether it runs, and returns its pid.
func Alive(ctx context.Context, path string) (int, error) {
	c, err := dial(ctx, path)
	if err != nil {
		return 0, err
	}
	defer c.close()
	return c.alive(ctx)
}

func (c *ctl) alive(ctx context.Context) (int, error) {
	stop := c.within(ctx)
	defer stop()
	if err := c.send(newMsg(muxAliveCheck).request(c)); err != nil {
		return 0, fmt.Errorf("OpenSSH master: alive check: %w", err)
	}
	r, err := c.reply(c.lastRequest(), muxAlive)
	if err != nil {
		return 0, fmt.Errorf("OpenSSH master: alive check: %w", err)
	}
	pid := r.U32()
	return int(pid), r.Err()
}

// Master is a connection to a live ControlMaster. It holds one idle control
// connection, so that Done tells when the master is gone, and so that a
// master with ControlPersist stays while we use it.
type Master struct {
	path  string
	pid   int
	watch *ctl
	done  chan struct{}
	ended atomic.Int64 // UnixNano when the watch saw the master go
	once  sync.Once
}

// Connect reaches the master at path. The error is ErrNoMaster (wrapped)
// when none runs there.
func Connect(ctx context.Context, path string) (*Master, error) {
	c, err := dial(ctx, path)
	if err != nil {
		return nil, err
	}
	pid, err := c.alive(ctx)
	if err != nil {
		c.close()
		return nil, err
	}
	m := &Master{path: path, pid: pid, watch: c, done: make(chan struct{})}
	go m.watchMaster()
	return m, nil
}

func (m *Master) watchMaster() {
	// The master sends nothing on an idle control connection: the read
	// ends when the master exits (or Close closes it).
	_, _ = io.Copy(io.Discard, m.watch.c)
	m.ended.Store(time.Now().UnixNano())
	close(m.done)
}

// Ended is when the master was found gone (zero while it runs).
func (m *Master) Ended() time.Time {
	if n := m.ended.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Path is the ControlPath the master listens on.
func (m *Master) Path() string { return m.path }

// PID is the master's process id, as it reported it.
func (m *Master) PID() int { return m.pid }

// Done is closed when the master exited (or Close was called).
func (m *Master) Done() <-chan struct{} { return m.done }

// Close ends our use of the master; the master itself goes on. Sessions and
// streams opened through it end with their own Close.
func (m *Master) Close() error {
	m.once.Do(m.watch.close)
	<-m.done
	return nil
}

// Terminate asks the master to exit at once (ssh -O exit), ending every
// session and forward through it.
func (m *Master) Terminate(ctx context.Context) error {
	c, err := dial(ctx, m.path)
	if err != nil {
		if errors.Is(err, ErrNoMaster) {
			return nil
		}
		return err
	}
	defer c.close()
	stop := c.within(ctx)
	defer stop()
	if err := c.send(newMsg(muxTerminate).request(c)); err != nil {
		return fmt.Errorf("OpenSSH master: terminate: %w", err)
	}
	// OpenSSH may exit before its reply leaves: EOF is success too.
	if _, err := c.reply(c.lastRequest(), muxOK); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("OpenSSH master: terminate: %w", err)
	}
	return nil
}

// Forward asks the master to listen on the local unix socket listen and
// forward every connection to the unix socket remote on the server (ssh -O
// forward -L listen:remote): streamlocal forwarding, which every OpenSSH
// since 6.7 has (stdio forwards to unix sockets came only in 9.4). The
// master refuses when listen exists. The forward lasts until CloseForward
// or the master's exit.
func (m *Master) Forward(ctx context.Context, listen, remote string) error {
	return m.forward(ctx, muxOpenFwd, listen, remote)
}

// CloseForward removes a forward made by Forward (ssh -O cancel).
func (m *Master) CloseForward(ctx context.Context, listen, remote string) error {
	return m.forward(ctx, muxCloseFwd, listen, remote)
}

func (m *Master) forward(ctx context.Context, op uint32, listen, remote string) error {
	c, err := dial(ctx, m.path)
	if err != nil {
		return err
	}
	defer c.close()
	stop := c.within(ctx)
	defer stop()
	err = c.send(newMsg(op).request(c).u32(muxFwdLocal).str(listen).u32(portStreamLocal).str(remote).u32(portStreamLocal))
	if err == nil {
		_, err = c.reply(c.lastRequest(), muxOK)
	}
	if err != nil {
		what := "forward"
		if op == muxCloseFwd {
			what = "cancel the forward"
		}
		return fmt.Errorf("OpenSSH master at %s: %s %s to %s: %w", m.path, what, listen, remote, err)
	}
	return nil
}

// Session is a remote command run through the master, with the file
// descriptors of its stdin, stdout and stderr passed to it. Its methods
// mirror golang.org/x/crypto/ssh's Session. There is no signal: OpenSSH's
// mux protocol has none; Close ends the channel.
type Session struct {
	m *Master

	mu      sync.Mutex
	ours    [3]*os.File // our ends of the pipes: stdin, stdout, stderr
	theirs  [3]int      // the master's ends, -1 until a pipe is asked for
	c       *ctl
	started bool
	exited  chan struct{}
	status  *int
	err     error
	once    sync.Once
}

// NewSession prepares a remote command; Start runs it.
func (m *Master) NewSession() *Session {
	return &Session{m: m, theirs: [3]int{-1, -1, -1}, exited: make(chan struct{})}
}

func (s *Session) pipe(i int) (*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return nil, errors.New("openssh: pipe requested after Start")
	}
	if s.theirs[i] >= 0 {
		return nil, fmt.Errorf("openssh: pipe %d requested twice", i)
	}
	p, err := pipe()
	if err != nil {
		return nil, fmt.Errorf("pipe: %w", err)
	}
	our, their := p[0], p[1] // stdout, stderr: we read
	if i == 0 {
		our, their = p[1], p[0] // stdin: we write
	}
	// Non-blocking, so os.File uses the runtime poller (deadlines, Close
	// unblocking a Read).
	_ = unix.SetNonblock(our, true)
	f := os.NewFile(uintptr(our), fmt.Sprintf("mux-session-%d", i))
	s.ours[i] = f
	s.theirs[i] = their
	return f, nil
}

func (s *Session) StdinPipe() (io.WriteCloser, error) { return s.pipe(0) }
func (s *Session) StdoutPipe() (io.Reader, error)     { return s.reader(1) }
func (s *Session) StderrPipe() (io.Reader, error)     { return s.reader(2) }

func (s *Session) reader(i int) (io.Reader, error) {
	f, err := s.pipe(i)
	if err != nil {
		return nil, err
	}
	return eofCloser{f}, nil
}

// pipe makes a pipe whose ends are closed on exec (macOS has no pipe2).
func pipe() ([2]int, error) {
	var p [2]int
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	if err := unix.Pipe(p[:]); err != nil {
		return p, err
	}
	unix.CloseOnExec(p[0])
	unix.CloseOnExec(p[1])
	return p, nil
}

// eofCloser closes our end of a pipe once the master closed its end and
// everything was read, as an SSH channel's reader frees itself.
type eofCloser struct{ f *os.File }

func (r eofCloser) Read(b []byte) (int, error) {
	n, err := r.f.Read(b)
	if err == io.EOF {
		_ = r.f.Close()
	} else if errors.Is(err, os.ErrClosed) {
		err = io.EOF // closed by Session.Close: the stream ended
	}
	return n, err
}

// Start runs cmd through the master (the user's login shell runs it, as
// with ssh host cmd). It returns once the server opened the session.
func (s *Session) Start(cmd string) error {
	return s.StartContext(context.Background(), cmd)
}

// startTimeout bounds Start when no context is given: a master whose
// server does not answer must not hang us.
const startTimeout = 60 * time.Second

// StartContext is Start, bounded by ctx.
func (s *Session) StartContext(ctx context.Context, cmd string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, startTimeout)
		defer cancel()
	}
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("openssh: session already started")
	}
	s.started = true
	theirs := s.theirs
	s.mu.Unlock()
	defer func() {
		for _, fd := range theirs {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
	}()
	// What the caller did not ask for is /dev/null, as in ssh -n.
	for i, fd := range theirs {
		if fd < 0 {
			null, err := unix.Open(os.DevNull, unix.O_RDWR|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			theirs[i] = null
		}
	}
	c, err := dial(ctx, s.m.path)
	if err != nil {
		return err
	}
	stop := c.within(ctx)
	err = c.send(newMsg(muxNewSession).request(c).str("").
		flag(false).flag(false).flag(false).flag(false). // tty, X11, agent, subsystem
		u32(noEscapeChar).str("").str(cmd))
	for _, fd := range theirs {
		if err == nil {
			err = c.sendFD(fd)
		}
	}
	if err == nil {
		_, err = c.reply(c.lastRequest(), muxSessionOpened)
	}
	stop()
	if err != nil {
		c.close()
		var re *ReplyError
		if !errors.As(err, &re) && ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return fmt.Errorf("OpenSSH master at %s: start a session: %w", s.m.path, err)
	}
	s.mu.Lock()
	s.c = c
	s.mu.Unlock()
	go s.waitExit(c)
	return nil
}

// waitExit reads the master's messages about the session until its exit
// status, or until the control connection ends.
func (s *Session) waitExit(c *ctl) {
	defer close(s.exited)
	defer func() {
		s.mu.Lock()
		if in := s.ours[0]; in != nil {
			_ = in.Close() // the command is gone: nothing reads its stdin
		}
		s.mu.Unlock()
	}()
	for {
		typ, r, err := c.recv()
		if err != nil {
			s.mu.Lock()
			if s.status == nil && s.err == nil {
				s.err = errNoExit
			}
			s.mu.Unlock()
			return
		}
		if typ == muxExitMessage {
			_ = r.U32() // session id
			st := int(r.U32())
			s.mu.Lock()
			s.status = &st
			s.mu.Unlock()
			// The master closes the connection once the channel is gone.
		}
	}
}

// Wait waits for the command to exit: nil for status 0, *ExitError for
// another status, an error when it ended without one.
func (s *Session) Wait() error {
	s.mu.Lock()
	started := s.c != nil
	s.mu.Unlock()
	if !started {
		return errors.New("openssh: session not started")
	}
	<-s.exited
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.status == nil:
		return s.err
	case *s.status != 0:
		return &ExitError{Status: *s.status}
	}
	return nil
}

// Close ends the session: the master closes the channel (the remote
// command sees EOF on stdin and a closed stdout), and Wait returns.
func (s *Session) Close() error {
	s.once.Do(func() {
		s.mu.Lock()
		c, ours, theirs, started := s.c, s.ours, s.theirs, s.started
		s.started = true // a Start after Close fails
		s.mu.Unlock()
		if c != nil {
			c.close()
		}
		if !started { // else Start closes them
			for _, fd := range theirs {
				if fd >= 0 {
					unix.Close(fd)
				}
			}
		}
		for _, f := range ours {
			if f != nil {
				_ = f.Close()
			}
		}
	})
	return nil
}

// muxNewStdioFwd asks for a stdio forward (ssh -W).
const muxNewStdioFwd = 0x10000008

// Stream opens a stream to the unix socket remote on the server through
// the master (MUX_C_NEW_STDIO_FWD, as `ssh -W path`: OpenSSH 9.4 and
// gopyk's own master): one control connection per stream, its bytes
// through a socketpair whose other end the master holds. It returns once
// the server opened the channel; a refusal is the master's *ReplyError.
func (m *Master) Stream(ctx context.Context, remote string) (net.Conn, error) {
	var fds [2]int
	syscall.ForkLock.RLock()
	err := unixSocketpair(&fds)
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "mux-stream")
	theirs := fds[1]
	c, err := dial(ctx, m.path)
	if err != nil {
		ours.Close()
		unix.Close(theirs)
		return nil, err
	}
	stop := c.within(ctx)
	err = c.send(newMsg(muxNewStdioFwd).request(c).str("").str(remote).u32(portStreamLocal))
	for range 2 { // its stdin and its stdout: one socket
		if err == nil {
			err = c.sendFD(theirs)
		}
	}
	unix.Close(theirs)
	if err == nil {
		_, err = c.reply(c.lastRequest(), muxSessionOpened)
	}
	stop()
	if err != nil {
		c.close()
		ours.Close()
		var re *ReplyError
		if !errors.As(err, &re) && ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		return nil, fmt.Errorf("master at %s: stream to %s: %w", m.path, remote, err)
	}
	_ = unix.SetNonblock(int(ours.Fd()), true)
	nc, err := net.FileConn(ours)
	ours.Close() // FileConn dup'ed it
	if err != nil {
		c.close()
		return nil, err
	}
	return &stream{Conn: nc, ctl: c}, nil
}

// stream is a Stream's socket and its control connection.
type stream struct {
	net.Conn
	ctl  *ctl
	once sync.Once
}

// Close closes the socket: the master passes the end on, after what it
// still holds of ours, and closes the control connection once the
// channel is done. Closing that first would abort the channel and lose
// the last bytes (a relay's end-of-stream frame); it is closed here only
// when the master has not after streamCloseWait.
func (s *stream) Close() error {
	err := s.Conn.Close()
	s.once.Do(func() {
		go func() {
			_ = s.ctl.c.SetReadDeadline(time.Now().Add(streamCloseWait))
			_, _ = io.Copy(io.Discard, s.ctl.c)
			s.ctl.close()
		}()
	})
	return err
}

const streamCloseWait = 30 * time.Second

// CloseWrite sends EOF on the stream; the master passes it on.
func (s *stream) CloseWrite() error {
	if cw, ok := s.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
