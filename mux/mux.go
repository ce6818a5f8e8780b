package mux

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Frame types; the remote launcher (provisioner/remote/gopyk/mux.py, class Mux) has the same.
const (
	frameOpen   = 'O'
	frameAccept = 'A'
	frameError  = 'E'
	frameData   = 'D'
	frameWindow = 'W'
	frameClose  = 'C'

	headerLen = 9
	// MaxPayload is the longest frame payload either side sends or accepts.
	MaxPayload = 64 << 10
	// Window is each stream's credit in each direction. Small enough that a
	// stream nobody drains cannot hold a reply back long, large enough for
	// full speed over a link of a few milliseconds.
	Window = 256 << 10
)

// ErrClosed is what streams of a session that ended return.
var ErrClosed = errors.New("mux session closed")

// OpenError is the far side's refusal to connect a stream. It unwraps to
// the errno (syscall.ENOENT when nothing listens at the path).
type OpenError struct {
	Path  string
	Errno syscall.Errno
	Msg   string
}

func (e *OpenError) Error() string { return fmt.Sprintf("connect to %s: %s", e.Path, e.Msg) }
func (e *OpenError) Unwrap() error { return e.Errno }

// Session is one end of a multiplexed carrier.
type Session struct {
	rwc    io.ReadWriteCloser
	accept func(path string) (net.Conn, error) // server side; nil: opens are refused

	mu      sync.Mutex
	streams map[uint32]*stream
	next    uint32
	queue   [][]byte      // frames for the writer, in order
	wake    chan struct{} // the writer has frames (cap 1)
	err     error         // why the session ended; nil while it runs
	closing bool          // Close waits for the queue to drain
	flushed chan struct{} // closed when the queue drained after Close began
	done    chan struct{}
	wg      sync.WaitGroup
}

// Client starts a session over rwc whose streams the caller opens with Open.
// The session owns rwc: Close (or the carrier failing) closes it.
func Client(rwc io.ReadWriteCloser) *Session { return start(rwc, nil) }

// Serve starts the far side of a session over rwc: each stream the client
// opens is connected with dial and joined to it. For tests and local carriers.
func Serve(rwc io.ReadWriteCloser, dial func(path string) (net.Conn, error)) *Session {
	return start(rwc, dial)
}

func start(rwc io.ReadWriteCloser, accept func(string) (net.Conn, error)) *Session {
	s := &Session{rwc: rwc, accept: accept, streams: map[uint32]*stream{}, wake: make(chan struct{}, 1), flushed: make(chan struct{}), done: make(chan struct{})}
	s.wg.Add(2)
	go func() { defer s.wg.Done(); s.fail(s.read()) }()
	go func() { defer s.wg.Done(); s.fail(s.write()) }()
	return s
}

// Done is closed when the session has ended; Err then says why.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is nil while the session runs.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the session and every stream, and closes the carrier. Frames
// already queued (the last data and closes of streams) go out first, unless
// the carrier takes longer than two seconds for them.
func (s *Session) Close() error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.kick()
	select {
	case <-s.flushed:
	case <-s.done:
	case <-time.After(2 * time.Second):
	}
	s.fail(ErrClosed)
	s.wg.Wait()
	return nil
}

func (s *Session) fail(err error) {
	if err == nil || errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: the far side ended it", ErrClosed)
	}
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = err
	streams := s.streams
	s.streams = map[uint32]*stream{}
	close(s.done)
	s.mu.Unlock()
	_ = s.rwc.Close()
	for _, st := range streams {
		st.end(err, false)
	}
}

// send queues one frame; it never blocks on the carrier.
func (s *Session) send(kind byte, id uint32, p []byte) {
	f := make([]byte, headerLen+len(p))
	f[0] = kind
	binary.BigEndian.PutUint32(f[1:5], id)
	binary.BigEndian.PutUint32(f[5:9], uint32(len(p)))
	copy(f[headerLen:], p)
	s.mu.Lock()
	if s.err == nil {
		s.queue = append(s.queue, f)
	}
	s.mu.Unlock()
	s.kick()
}

func (s *Session) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// write is the one writer of the carrier: it sends queued frames in order,
// as many as are queued in one write.
func (s *Session) write() error {
	var batch []byte
	for {
		select {
		case <-s.wake:
		case <-s.done:
			return nil
		}
		for {
			s.mu.Lock()
			q := s.queue
			s.queue = nil
			if len(q) == 0 {
				if s.closing {
					select {
					case <-s.flushed:
					default:
						close(s.flushed)
					}
				}
				s.mu.Unlock()
				break
			}
			s.mu.Unlock()
			batch = batch[:0]
			for _, f := range q {
				batch = append(batch, f...)
			}
			if _, err := s.rwc.Write(batch); err != nil {
				return fmt.Errorf("mux: write: %w", err)
			}
			if cap(batch) > 4<<20 {
				batch = nil
			}
		}
	}
}

func (s *Session) read() error {
	br := bufio.NewReaderSize(s.rwc, 128<<10)
	var h [headerLen]byte
	buf := make([]byte, MaxPayload)
	for {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return err
		}
		kind, id, n := h[0], binary.BigEndian.Uint32(h[1:5]), binary.BigEndian.Uint32(h[5:9])
		if n > MaxPayload {
			return fmt.Errorf("mux: frame of %d bytes (at most %d)", n, MaxPayload)
		}
		p := buf[:n]
		if _, err := io.ReadFull(br, p); err != nil {
			return fmt.Errorf("mux: short frame: %w", err)
		}
		if err := s.frame(kind, id, p); err != nil {
			return err
		}
	}
}

func (s *Session) frame(kind byte, id uint32, p []byte) error {
	s.mu.Lock()
	st := s.streams[id]
	s.mu.Unlock()
	switch kind {
	case frameData:
		if st != nil {
			return st.data(p)
		}
	case frameWindow:
		if len(p) != 4 {
			return fmt.Errorf("mux: window frame of %d bytes", len(p))
		}
		if st != nil {
			st.credit(int(binary.BigEndian.Uint32(p)))
		}
	case frameClose:
		if st != nil {
			s.forget(id)
			st.end(io.EOF, false)
		}
	case frameAccept, frameError:
		if st != nil {
			st.opened(kind, string(p))
		}
	case frameOpen:
		if st != nil || s.accept == nil {
			s.send(frameError, id, []byte(fmt.Sprintf("%d opening streams is not allowed here", syscall.EPERM)))
			return nil
		}
		st = s.add(id, string(p))
		s.wg.Add(1)
		go func() { defer s.wg.Done(); s.serve(st) }()
	default:
		return fmt.Errorf("mux: unknown frame type %#x", kind)
	}
	return nil
}

// serve connects a stream the client opened and joins it to the connection.
func (s *Session) serve(st *stream) {
	c, err := s.accept(st.path)
	if err != nil {
		errno := syscall.EIO
		errors.As(err, &errno)
		s.forget(st.id)
		s.send(frameError, st.id, []byte(fmt.Sprintf("%d %s", errno, err)))
		return
	}
	s.send(frameAccept, st.id, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(c, st)
		_ = c.Close()
	}()
	_, _ = io.Copy(st, c)
	_ = st.Close()
	_ = c.Close()
	<-done
}

func (s *Session) add(id uint32, path string) *stream {
	st := &stream{s: s, id: id, path: path, sendCredit: Window, accepted: make(chan struct{})}
	st.cond = sync.NewCond(&st.mu)
	s.mu.Lock()
	if s.err == nil {
		s.streams[id] = st
	} else {
		st.err = s.err
	}
	s.mu.Unlock()
	return st
}

func (s *Session) forget(id uint32) {
	s.mu.Lock()
	delete(s.streams, id)
	s.mu.Unlock()
}

// Open connects a new stream to the unix socket path on the far side.
func (s *Session) Open(ctx context.Context, path string) (net.Conn, error) {
	if len(path) > MaxPayload {
		return nil, fmt.Errorf("mux: path too long")
	}
	s.mu.Lock()
	s.next++
	id := s.next
	s.mu.Unlock()
	st := s.add(id, path)
	if err := st.failed(); err != nil {
		return nil, err
	}
	s.send(frameOpen, id, []byte(path))
	select {
	case <-st.accepted:
	case <-ctx.Done():
		st.Close()
		return nil, fmt.Errorf("mux: open %s: %w", path, context.Cause(ctx))
	}
	if err := st.openErr; err != nil {
		return nil, err
	}
	if err := st.failed(); err != nil {
		return nil, fmt.Errorf("mux: open %s: %w", path, err)
	}
	return st, nil
}

// stream is one multiplexed connection; a net.Conn without deadlines (like
// an SSH channel): Close unblocks its Read and Write.
type stream struct {
	s    *Session
	id   uint32
	path string

	accepted chan struct{} // closed on accept, error or end
	openOnce sync.Once
	openErr  error

	mu         sync.Mutex
	cond       *sync.Cond
	buf        []byte // received, not yet read
	unacked    int    // read, not yet returned as credit
	sendCredit int
	err        error // set when the stream ended: io.EOF (closed by the far side) or the session's error
	closed     bool  // closed on this side
}

func (st *stream) opened(kind byte, msg string) {
	st.openOnce.Do(func() {
		if kind == frameError {
			e := &OpenError{Path: st.path, Errno: syscall.EIO, Msg: msg}
			if code, rest, ok := strings.Cut(msg, " "); ok {
				if n, err := strconv.Atoi(code); err == nil {
					e.Errno, e.Msg = syscall.Errno(n), rest
				}
			}
			st.openErr = e
			st.s.forget(st.id)
		}
		close(st.accepted)
	})
}

func (st *stream) failed() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.err
}

// end marks the stream ended for why; notify sends the close frame.
func (st *stream) end(why error, notify bool) {
	st.mu.Lock()
	if st.err == nil {
		st.err = why
	}
	st.cond.Broadcast()
	st.mu.Unlock()
	st.opened(frameAccept, "") // wakes an Open in progress; it sees err
	if notify {
		st.s.send(frameClose, st.id, nil)
	}
}

func (st *stream) data(p []byte) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return nil // in flight when we closed
	}
	if len(st.buf)+st.unacked+len(p) > Window {
		return fmt.Errorf("mux: stream %d sent past its window", st.id)
	}
	st.buf = append(st.buf, p...)
	st.cond.Broadcast()
	return nil
}

func (st *stream) credit(n int) {
	st.mu.Lock()
	st.sendCredit += n
	st.cond.Broadcast()
	st.mu.Unlock()
}

func (st *stream) Read(p []byte) (int, error) {
	st.mu.Lock()
	for len(st.buf) == 0 && st.err == nil {
		st.cond.Wait()
	}
	if len(st.buf) == 0 {
		err := st.err
		st.mu.Unlock()
		if err != io.EOF {
			err = fmt.Errorf("mux: read %s: %w", st.path, err)
		}
		return 0, err
	}
	n := copy(p, st.buf)
	st.buf = st.buf[n:]
	if len(st.buf) == 0 {
		st.buf = nil
	}
	st.unacked += n
	var ack int
	if st.unacked >= Window/4 || len(st.buf) == 0 {
		ack, st.unacked = st.unacked, 0
	}
	st.mu.Unlock()
	if ack > 0 {
		var w [4]byte
		binary.BigEndian.PutUint32(w[:], uint32(ack))
		st.s.send(frameWindow, st.id, w[:])
	}
	return n, nil
}

func (st *stream) Write(p []byte) (int, error) {
	total := 0
	for len(p) > 0 {
		st.mu.Lock()
		for st.sendCredit == 0 && st.err == nil {
			st.cond.Wait()
		}
		if err := st.err; err != nil {
			st.mu.Unlock()
			if err == io.EOF {
				err = fmt.Errorf("closed by the far side: %w", syscall.EPIPE)
			}
			return total, fmt.Errorf("mux: write %s: %w", st.path, err)
		}
		n := min(len(p), st.sendCredit, MaxPayload)
		st.sendCredit -= n
		st.mu.Unlock()
		st.s.send(frameData, st.id, p[:n])
		p, total = p[n:], total+n
	}
	return total, nil
}

func (st *stream) Close() error {
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		return nil
	}
	st.closed = true
	notify := st.err == nil
	st.buf = nil
	st.mu.Unlock()
	st.s.forget(st.id)
	st.end(net.ErrClosed, notify)
	return nil
}

type addr string

func (a addr) Network() string { return "mux" }
func (a addr) String() string  { return string(a) }

func (st *stream) LocalAddr() net.Addr  { return addr("mux") }
func (st *stream) RemoteAddr() net.Addr { return addr(st.path) }

// Deadlines are not supported (as on SSH channels): close the stream instead.
func (st *stream) SetDeadline(time.Time) error      { return os.ErrNoDeadline }
func (st *stream) SetReadDeadline(time.Time) error  { return os.ErrNoDeadline }
func (st *stream) SetWriteDeadline(time.Time) error { return os.ErrNoDeadline }
