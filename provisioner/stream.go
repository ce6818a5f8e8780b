package provisioner

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gopyk/gopyk/provisioner/remote"
)

// Stream tuning; the supervisor's side has the same in remote/gopyk/relay.py.
const (
	streamCap   = 2 << 20   // unacknowledged bytes kept; reading the client stops beyond (x/crypto's window is 2 MiB too)
	ackEvery    = 256 << 10 // acknowledge received data at least this often
	streamChunk = 32 << 10  // one read from the client, one frame
)

// openFunc opens a control connection to the supervisor over the live SSH
// connection, waiting while it is being restored. lost is closed when that
// SSH connection ends.
type openFunc func(ctx context.Context) (conn net.Conn, lost <-chan struct{}, err error)

// relayStream carries one client connection to the kernel through the
// supervisor's relay, and survives the SSH connection it runs on: what it
// sends is kept until the relay acknowledges it, and after a reconnect it
// resumes the same stream, sending again from where the relay says it got
// to. The client's ZMQ session never sees the outage, so a cell sent while
// the link was already dead but not yet known to be runs once it is back.
type relayStream struct {
	lc      net.Conn
	channel string
	open    openFunc
	log     *slog.Logger
	tap     tap    // nil: bytes pass untouched
	zmtp    string // how the relay treats the kernel's handshake (see zmtpFront)

	mu   sync.Mutex
	more *sync.Cond // buf shrank, or the stream ended
	buf  []byte     // read from the client, not yet acknowledged
	base uint64     // stream offset of buf[0]
	done bool
	end  context.CancelFunc // ends run's context: waits and reads stop

	wmu  sync.Mutex // held while writing to ch, and while resuming
	ch   net.Conn   // the relay channel now; nil while detached
	wbuf []byte
	fin  bool // the client closed and the relay was sent F: wait for its F
}

// newRelayStream: zmtp and early are zmtpFront's mode and, in its
// strip10 mode, the first bytes of the stream, already read from lc.
func newRelayStream(lc net.Conn, channel string, open openFunc, log *slog.Logger, t tap, zmtp string, early []byte) *relayStream {
	s := &relayStream{lc: lc, channel: channel, open: open, log: log, tap: t, zmtp: zmtp}
	s.more = sync.NewCond(&s.mu)
	s.buf = append(s.buf, early...) // sent with the request, kept until acknowledged
	return s
}

var (
	// errFin: the relay ended the stream (the kernel closed its socket).
	errFin = errors.New("stream ended by the remote side")
	// errResume: the relay's offset is not one this side can resume from.
	errResume = errors.New("cannot resume the stream")
)

// run serves the stream until the client or the kernel closes it, the relay
// forgets it, or ctx ends.
func (s *relayStream) run(ctx context.Context) {
	ctx, s.end = context.WithCancel(ctx)
	defer s.lc.Close()
	var (
		id   string
		recv uint64 // data bytes from the relay written to the client
		up   chan struct{}
	)
	defer func() {
		s.finish()
		if up != nil {
			<-up
		}
		if s.tap != nil {
			s.tap.ended()
		}
	}()
	for {
		conn, lost, err := s.open(ctx)
		if err == nil {
			// However the stream ends, the channel must close to end downstream.
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			var br *bufio.Reader
			if id == "" {
				// A new stream has nothing to send again: the client's first
				// bytes go right behind the request, a round trip saved on
				// every connection (and so on every launch).
				if err = remote.RequestStream(conn, s.channel, "", 0, s.zmtp); err == nil {
					br = bufio.NewReaderSize(conn, 64<<10)
					s.resume(conn, 0)
					if up == nil {
						up = make(chan struct{})
						go s.upstream(up)
					}
					var h remote.StreamHello
					h, err = remote.ReadHello(ctx, conn, br, s.channel)
					id = h.ID
				}
			} else {
				var h remote.StreamHello
				if h, br, err = remote.OpenStream(ctx, conn, s.channel, id, recv); err == nil && !s.resume(conn, h.Recv) {
					err = fmt.Errorf("%w: the relay is at byte %d, outside what was kept", errResume, h.Recv)
				}
				if err == nil && s.tap != nil {
					s.tap.resumed()
				}
			}
			if err == nil {
				err = s.downstream(br, &recv)
			}
			stop()
			s.detach(conn)
		}
		var re *remote.ReplyError
		switch {
		case errors.Is(err, errFin), ctx.Err() != nil:
			return
		case errors.Is(err, remote.ErrGone), errors.Is(err, errResume), errors.As(err, &re):
			// The client reconnects and gets a fresh stream.
			s.debug("open", err)
			return
		case s.finSent():
			// The client left and the channel failed before the relay
			// answered: an outage must not keep the stream; the relay
			// expires its side after the grace period.
			return
		case id == "":
			// The link failed before the supervisor answered: the client
			// (whose handshake was answered here) may have sent requests
			// already, which are kept and go on the next try.
			s.debug("open, trying again", err)
			if !s.pause(ctx, lost) {
				return
			}
			continue
		}
		s.debug("channel lost, resuming", err)
		if !s.pause(ctx, lost) {
			return
		}
	}
}

func (s *relayStream) debug(what string, err error) {
	if err != nil && !errors.Is(err, context.Canceled) {
		s.log.Debug("forward: stream "+what, "channel", s.channel, "err", err)
	}
}

// pause waits until the SSH connection the last attempt used is gone (a
// channel can fail on a connection that is still up: then a short wait
// stops a tight loop) or ctx ends (so does the stream).
func (s *relayStream) pause(ctx context.Context, lost <-chan struct{}) bool {
	t := time.NewTimer(250 * time.Millisecond)
	defer t.Stop()
	select {
	case <-lost:
	case <-t.C:
	case <-ctx.Done():
		return false
	}
	return true
}

// resume makes conn the stream's channel: it drops what the relay has
// received (relayRecv) and sends the rest again.
func (s *relayStream) resume(conn net.Conn, relayRecv uint64) bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if relayRecv < s.base || relayRecv > s.base+uint64(len(s.buf)) {
		s.mu.Unlock()
		return false
	}
	s.trimLocked(relayRecv)
	pending := s.buf
	s.wbuf = s.wbuf[:0]
	for len(pending) > 0 {
		n := min(len(pending), remote.MaxFrame)
		s.wbuf = remote.AppendFrame(s.wbuf, remote.FrameData, pending[:n])
		pending = pending[n:]
	}
	s.mu.Unlock()
	if len(s.wbuf) > 0 {
		if _, err := conn.Write(s.wbuf); err != nil {
			return true // downstream sees the same failure and resumes again
		}
	}
	s.ch = conn
	return true
}

func (s *relayStream) finSent() bool {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.fin
}

func (s *relayStream) detach(conn net.Conn) {
	s.wmu.Lock()
	s.ch = nil
	s.wmu.Unlock()
	conn.Close()
}

func (s *relayStream) trimLocked(acked uint64) {
	if acked < s.base || acked > s.base+uint64(len(s.buf)) {
		return
	}
	n := int(acked - s.base)
	if n == len(s.buf) {
		s.buf = s.buf[:0]
	} else {
		s.buf = s.buf[n:]
	}
	s.base = acked
	s.more.Broadcast()
}

// downstream delivers the relay's frames to the client until the channel
// fails or the stream ends.
func (s *relayStream) downstream(br *bufio.Reader, recv *uint64) error {
	buf := make([]byte, 64<<10)
	var unacked uint64
	gone := false // the client is: what still comes is read (acks, the F) but not delivered
	for {
		kind, p, err := remote.ReadFrame(br, buf)
		if err != nil {
			return err
		}
		if cap(p) > cap(buf) {
			buf = p
		}
		switch kind {
		case remote.FrameData:
			if !gone && s.deliver(p) != nil {
				// upstream's read fails too, and tells the relay.
				gone = true
				s.lc.Close()
			}
			*recv += uint64(len(p))
			unacked += uint64(len(p))
			if unacked >= ackEvery {
				unacked = 0
				s.write(remote.AppendAck(nil, *recv))
			}
		case remote.FrameAck:
			s.mu.Lock()
			s.trimLocked(binary.BigEndian.Uint64(p))
			s.mu.Unlock()
		case remote.FrameNote:
			s.log.Warn("remote: "+string(p), "channel", s.channel)
			if s.tap != nil {
				s.tap.remark(string(p))
			}
		case remote.FrameFin:
			return errFin
		}
	}
}

// deliver writes what the relay sent to the client. Only these bytes count
// in recv, the resume offset: a tap's own additions do not.
func (s *relayStream) deliver(p []byte) error {
	if s.tap != nil {
		return s.tap.toClient(p)
	}
	_, err := s.lc.Write(p)
	return err
}

// write sends a frame on the current channel, if any; a failure is left to
// downstream, which sees the channel fail too.
func (s *relayStream) write(frame []byte) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.ch != nil {
		_, _ = s.ch.Write(frame)
	}
}

// upstream reads the client and sends what it reads, keeping it until
// acknowledged; while the stream is detached it only keeps it.
func (s *relayStream) upstream(done chan<- struct{}) {
	defer close(done)
	b := make([]byte, streamChunk)
	for {
		n, err := s.lc.Read(b)
		if n > 0 && s.tap != nil {
			s.tap.fromClient(b[:n])
		}
		if n > 0 && !s.push(b[:n]) {
			return
		}
		if err != nil {
			// The client closed its connection: tell the relay so it closes
			// the kernel side. The stream ends when the relay answers F
			// (downstream), not before: closing the SSH connection right
			// after writing F (leaving, shutting down) could cut it off,
			// and the relay would keep the kernel side for the grace period.
			// While detached the stream ends at once: an outage must not
			// pile up streams of clients that left.
			s.wmu.Lock()
			s.fin = s.ch != nil
			if s.fin {
				_, _ = s.ch.Write(remote.AppendFrame(nil, remote.FrameFin, nil))
			}
			s.wmu.Unlock()
			if !s.fin {
				s.finish()
			}
			return
		}
	}
}

func (s *relayStream) push(p []byte) bool {
	s.mu.Lock()
	for len(s.buf) >= streamCap && !s.done {
		s.more.Wait()
	}
	done := s.done
	s.mu.Unlock()
	if done {
		return false
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	s.buf = append(s.buf, p...)
	s.mu.Unlock()
	if s.ch != nil {
		s.wbuf = remote.AppendFrame(s.wbuf[:0], remote.FrameData, p)
		_, _ = s.ch.Write(s.wbuf)
	}
	return true
}

// finish ends the stream: upstream stops, the client's connection closes.
func (s *relayStream) finish() {
	s.mu.Lock()
	if !s.done {
		s.done = true
		s.end()
		s.more.Broadcast()
	}
	s.mu.Unlock()
	s.lc.Close()
}
