package remote

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// Dialer connects to a supervisor's control socket: over SSH with
// client.Dial("unix", reply.Control) (direct-streamlocal@openssh.com), or
// UnixDialer on the same machine.
type Dialer func(ctx context.Context) (net.Conn, error)

// UnixDialer dials a local unix socket.
func UnixDialer(path string) Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
}

// Control talks to one supervisor. Every call uses a fresh connection, so a
// Control survives reconnects as long as its Dialer does. Calls are bounded
// by ctx (a default applies when ctx has no deadline); when ctx ends the
// connection is closed, which also works for SSH channels that ignore
// deadlines.
type Control struct {
	dial Dialer
}

// NewControl returns a client for the supervisor dial reaches.
func NewControl(dial Dialer) *Control { return &Control{dial: dial} }

// DefaultCallTimeout bounds a control call whose ctx has no deadline (plus
// the wait of Shutdown and Restart).
const DefaultCallTimeout = 30 * time.Second

// killAfter mirrors KILL_AFTER in gopyk/supervisor.py: SIGTERM → SIGKILL.
const killAfter = 5 * time.Second

// Exit is how a kernel ended.
type Exit struct {
	ExitCode   *int   `json:"exit_code"` // nil when killed by a signal
	Signal     int    `json:"signal"`
	StderrTail string `json:"stderr_tail"` // last lines of the kernel's output
	KernelPID  int    `json:"kernel_pid"`
}

func (e Exit) String() string {
	switch {
	case e.ExitCode != nil:
		return fmt.Sprintf("exit code %d", *e.ExitCode)
	case e.Signal != 0:
		return fmt.Sprintf("signal %d", e.Signal)
	}
	return "unknown exit"
}

type request struct {
	Op          string   `json:"op"`
	Timeout     *float64 `json:"timeout,omitempty"`
	Persistent  *bool    `json:"persistent,omitempty"`
	PingTimeout float64  `json:"ping_timeout,omitempty"`
}

// ErrGone means nothing listens on the supervisor's control socket any more:
// the kernel exited or was shut down and its run dir is gone. Control errors
// and a CodeGone ReplyError match it with errors.Is.
var ErrGone = errors.New("the remote kernel's supervisor is gone")

// goneError marks a dial error as ErrGone while keeping its text.
type goneError struct{ err error }

func (e *goneError) Error() string         { return e.err.Error() }
func (e *goneError) Unwrap() []error       { return []error{e.err, ErrGone} }
func (e *ReplyError) Is(target error) bool { return target == ErrGone && e.Code == CodeGone }

// isGone: a unix socket that no longer exists or refuses, locally or as
// reported by sshd for direct-streamlocal ("connect failed", not
// "administratively prohibited", which is a server setting).
func isGone(err error) bool {
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var oce *ssh.OpenChannelError
	return errors.As(err, &oce) && oce.Reason == ssh.ConnectionFailed
}

// open dials and sends req; the caller closes the conn and calls the stop func.
func (c *Control) open(ctx context.Context, req request) (net.Conn, *bufio.Reader, func() bool, error) {
	conn, err := c.dial(ctx)
	if err != nil {
		if isGone(err) {
			err = &goneError{err}
		}
		return nil, nil, nil, fmt.Errorf("connect to the supervisor: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl) // unsupported on SSH channels; the AfterFunc covers them
	}
	b, _ := json.Marshal(req)
	if _, err := conn.Write(append(b, '\n')); err != nil {
		stop()
		_ = conn.Close()
		return nil, nil, nil, c.ioErr(ctx, req.Op, err)
	}
	return conn, bufio.NewReaderSize(conn, 64<<10), stop, nil
}

func (c *Control) ioErr(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("supervisor %s: %w", op, context.Cause(ctx))
	}
	return fmt.Errorf("supervisor %s: %w", op, err)
}

// readJSON reads one response line into out; an ok:false line is a *ReplyError.
func readJSON(br *bufio.Reader, out any) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return errors.New("response line too long")
		}
		return err
	}
	var head struct {
		OK    *bool `json:"ok"`
		Reply       // for the error fields
	}
	if err := json.Unmarshal(line, &head); err != nil {
		return &ProtocolError{Line: shorten(string(line), 200), Err: err}
	}
	if head.OK != nil && !*head.OK {
		head.Reply.OK = false
		if head.Reply.Error == "" {
			head.Reply.Error = "unspecified error (code " + head.Reply.Code + ")"
		}
		return head.Reply.err()
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(line, out); err != nil {
		return &ProtocolError{Line: shorten(string(line), 200), Err: err}
	}
	return nil
}

func (c *Control) call(ctx context.Context, req request, limit time.Duration, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	conn, br, stop, err := c.open(ctx, req)
	if err != nil {
		return err
	}
	defer stop()
	defer conn.Close()
	if err := readJSON(br, out); err != nil {
		var re *ReplyError
		var pe *ProtocolError
		if errors.As(err, &re) || errors.As(err, &pe) {
			return fmt.Errorf("supervisor %s: %w", req.Op, err)
		}
		return c.ioErr(ctx, req.Op, err)
	}
	return nil
}

// Status returns the supervisor's state in the same form as a launch reply.
func (c *Control) Status(ctx context.Context) (*Reply, error) {
	var r Reply
	if err := c.call(ctx, request{Op: "status"}, DefaultCallTimeout, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Interrupt sends SIGINT to the kernel's process group.
func (c *Control) Interrupt(ctx context.Context) error {
	return c.call(ctx, request{Op: "interrupt"}, DefaultCallTimeout, nil)
}

// SetPersistent makes the kernel outlive its leases (true) or restores the
// grace period (false).
func (c *Control) SetPersistent(ctx context.Context, persistent bool) error {
	return c.call(ctx, request{Op: "persist", Persistent: &persistent}, DefaultCallTimeout, nil)
}

func waitReq(op string, wait time.Duration) request {
	r := request{Op: op}
	if wait >= 0 {
		s := wait.Seconds()
		r.Timeout = &s
	}
	return r
}

// Shutdown lets the kernel exit within wait (the caller may have sent a
// shutdown_request), then SIGTERMs and, 5 s later, SIGKILLs its process
// group. It returns once the kernel is gone; the supervisor then removes the
// run dir and exits. wait < 0 uses the launch's ShutdownTimeout. ctx must
// allow wait + 5 s + a round trip.
func (c *Control) Shutdown(ctx context.Context, wait time.Duration) (*Exit, error) {
	var e Exit
	if err := c.call(ctx, waitReq("shutdown", wait), max(wait, 10*time.Second)+killAfter+DefaultCallTimeout, &e); err != nil {
		return nil, err
	}
	return &e, nil
}

// Restart stops the kernel as Shutdown does and starts it again with the same
// key and the same sockets (tcp: the same ports when they are still free).
// It returns the new state (new KernelPID; check Ports) once the sockets accept.
func (c *Control) Restart(ctx context.Context, wait time.Duration) (*Reply, error) {
	var r Reply
	if err := c.call(ctx, waitReq("restart", wait), max(wait, 10*time.Second)+killAfter+2*DefaultCallTimeout+time.Minute, &r); err != nil {
		return nil, err
	}
	return &r, nil
}

// Event types pushed on a lease.
const (
	EventKernelExited = "kernel_exited" // Exit says how (see Event)
	EventRestarted    = "restarted"     // Status is the new state
)

// Event is one line the supervisor pushes on a lease.
//
// After a kernel_exited with Reason "died" (the kernel exited on its own: a
// crash, kill -9, or the shutdown_request the local side sent) the supervisor
// lingers while a lease is held, up to 10 s, so that a Restart or Shutdown
// that follows still works; it exits as soon as the last lease is closed.
// After Reason "shutdown" or "restart_failed" it exits and the lease ends.
type Event struct {
	Type   string `json:"event"`
	Reason string `json:"reason"` // kernel_exited: died, shutdown, restart_failed
	Exit
	Status *Reply `json:"status"` // restarted
}

// ErrLeaseClosed is Lease.Err after the supervisor closed the lease: it
// exited (after a kernel_exited event) or it was killed.
var ErrLeaseClosed = errors.New("the supervisor closed the lease")

// Lease holds the kernel: while at least one lease is open the supervisor
// keeps it; after the last one closes it waits the grace period, then shuts
// the kernel down (unless persistent).
type Lease struct {
	conn   net.Conn
	status *Reply
	events chan Event
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	wmu    sync.Mutex // one writer at a time: pings and calls
	mu     sync.Mutex
	err    error
	seq    int
	calls  map[int]chan []byte // in-band requests waiting for their reply line
}

// Lease opens a lease. ctx bounds the handshake only. With ping > 0 the lease
// sends a ping every ping and the supervisor drops it after 3 silent pings,
// so a lease whose network path died without a FIN still ends (the grace
// period then starts).
func (c *Control) Lease(ctx context.Context, ping time.Duration) (*Lease, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
		defer cancel()
	}
	req := request{Op: "lease"}
	if ping > 0 {
		req.PingTimeout = 3 * ping.Seconds()
	}
	conn, br, stop, err := c.open(ctx, req)
	if err != nil {
		return nil, err
	}
	var st Reply
	err = readJSON(br, &st)
	if !stop() || err != nil {
		_ = conn.Close()
		if err == nil {
			err = context.Cause(ctx)
		}
		return nil, fmt.Errorf("supervisor lease: %w", err)
	}
	_ = conn.SetDeadline(time.Time{})
	l := &Lease{conn: conn, status: &st, events: make(chan Event, 16), closed: make(chan struct{}), calls: map[int]chan []byte{}}
	l.wg.Add(1)
	go l.read(br)
	if ping > 0 {
		l.wg.Add(1)
		go l.ping(ping)
	}
	return l, nil
}

// Status is the supervisor's state when the lease was granted.
func (l *Lease) Status() *Reply { return l.status }

// Events delivers pushed events; it is closed when the lease ends (Err says why).
func (l *Lease) Events() <-chan Event { return l.events }

// Err is nil while the lease is open or after Close; ErrLeaseClosed (wrapped)
// when the supervisor ended it; the read error otherwise.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Close releases the lease and waits for its goroutines.
func (l *Lease) Close() error {
	l.once.Do(func() { close(l.closed) })
	err := l.conn.Close()
	l.wg.Wait()
	return err
}

func (l *Lease) read(br *bufio.Reader) {
	defer l.wg.Done()
	defer close(l.events)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			select {
			case <-l.closed:
			default:
				l.mu.Lock()
				if errors.Is(err, io.EOF) {
					l.err = ErrLeaseClosed
				} else {
					l.err = fmt.Errorf("supervisor lease: %w", err)
				}
				l.mu.Unlock()
			}
			l.once.Do(func() { close(l.closed) })
			return
		}
		var ev Event
		if json.Unmarshal(line, &ev) != nil || ev.Type == "" {
			continue // tolerate what a newer supervisor might add
		}
		if ev.Type == eventReply {
			l.answer(line)
			continue
		}
		select {
		case l.events <- ev:
		case <-l.closed:
			return
		}
	}
}

// eventReply is the line answering a Call, with its id.
const eventReply = "reply"

// ErrNotInBand: the supervisor does not take this request on a lease
// (it predates LeaseOps); send it on a connection of its own.
var ErrNotInBand = errors.New("the supervisor takes no such request on a lease")

// Carries reports whether the supervisor takes op on the lease.
func (l *Lease) Carries(op string) bool {
	for _, o := range l.status.LeaseOps {
		if o == op {
			return true
		}
	}
	return false
}

// Interrupt sends SIGINT to the kernel's process group through the lease:
// one round trip on a connection that is already open.
func (l *Lease) Interrupt(ctx context.Context) error {
	return l.Call(ctx, request{Op: "interrupt"}, nil)
}

// Call sends req on the lease and reads its answer into out (nil: only
// check it), as Control's calls do on a connection of their own. It is
// ErrNotInBand when the supervisor does not take req.Op on a lease.
func (l *Lease) Call(ctx context.Context, req request, out any) error {
	if !l.Carries(req.Op) {
		return ErrNotInBand
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultCallTimeout)
		defer cancel()
	}
	ch := make(chan []byte, 1)
	l.mu.Lock()
	l.seq++
	id := l.seq
	l.calls[id] = ch
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.calls, id)
		l.mu.Unlock()
	}()
	b, _ := json.Marshal(struct {
		request
		ID int `json:"id"`
	}{req, id})
	if err := l.write(append(b, '\n')); err != nil {
		return fmt.Errorf("supervisor %s on the lease: %w", req.Op, err)
	}
	select {
	case line := <-ch:
		if err := readJSON(bufio.NewReader(bytes.NewReader(line)), out); err != nil {
			return fmt.Errorf("supervisor %s: %w", req.Op, err)
		}
		return nil
	case <-l.closed:
		err := l.Err()
		if err == nil {
			err = ErrLeaseClosed
		}
		return fmt.Errorf("supervisor %s on the lease: %w", req.Op, err)
	case <-ctx.Done():
		return fmt.Errorf("supervisor %s on the lease: %w", req.Op, context.Cause(ctx))
	}
}

// answer hands a reply line to the Call waiting for its id.
func (l *Lease) answer(line []byte) {
	var head struct {
		ID int `json:"id"`
	}
	if json.Unmarshal(line, &head) != nil {
		return
	}
	l.mu.Lock()
	ch := l.calls[head.ID]
	l.mu.Unlock()
	if ch != nil {
		select {
		case ch <- bytes.Clone(line): // line aliases the reader's buffer
		default:
		}
	}
}

func (l *Lease) write(b []byte) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	_, err := l.conn.Write(b)
	return err
}

func (l *Lease) ping(every time.Duration) {
	defer l.wg.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	msg := []byte(`{"op":"ping"}` + "\n")
	for {
		select {
		case <-l.closed:
			return
		case <-t.C:
			if err := l.write(msg); err != nil {
				return // the reader sees the same failure
			}
		}
	}
}
