package provisioner

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopyk/gopyk/provisioner/remote"
)

// fakeRelay is the supervisor's side of relayed streams (remote/gopyk/relay.py,
// class Stream) in process, over links that can be cut the way a dead network
// cuts them: writes vanish, reads wait, and nobody knows until the
// connection is declared lost. The e2e tests run the real one.
type fakeRelay struct {
	t      *testing.T
	kernel func() net.Conn // the kernel side of a new stream

	mu      sync.Mutex
	streams map[string]*fakeStream
	seq     int
	up      chan struct{} // closed while the connection is up
	lost    chan struct{} // closed when it is declared lost
	links   []*cutConn
	opens   int
}

type fakeStream struct {
	mu   sync.Mutex
	k    net.Conn
	ch   *cutConn
	sent []byte // kernel bytes not acknowledged
	base uint64
	recv uint64
}

func newFakeRelay(t *testing.T, kernel func() net.Conn) *fakeRelay {
	r := &fakeRelay{t: t, kernel: kernel, streams: map[string]*fakeStream{}, up: make(chan struct{}), lost: make(chan struct{})}
	close(r.up)
	return r
}

func (r *fakeRelay) open(ctx context.Context) (net.Conn, <-chan struct{}, error) {
	r.mu.Lock()
	up, lost := r.up, r.lost
	r.mu.Unlock()
	select {
	case <-up:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	}
	a, b := net.Pipe()
	ca, cb := &cutConn{Conn: a}, &cutConn{Conn: b}
	r.mu.Lock()
	r.links = append(r.links, ca, cb)
	r.opens++
	r.mu.Unlock()
	go r.serve(cb)
	return ca, lost, nil
}

// cut makes every live link a black hole.
func (r *fakeRelay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.links {
		l.cut()
	}
	r.up = make(chan struct{})
}

// lose declares the cut connection lost: its links close, and no new one
// is up until restore.
func (r *fakeRelay) lose() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.links {
		l.Close()
	}
	r.links = nil
	close(r.lost)
	r.lost = make(chan struct{})
}

// restore brings up a new connection, after losing the old one.
func (r *fakeRelay) restore() {
	r.lose()
	r.mu.Lock()
	close(r.up)
	r.mu.Unlock()
}

func (r *fakeRelay) serve(c *cutConn) {
	br := bufio.NewReader(c)
	line, err := br.ReadBytes('\n')
	if err != nil {
		c.Close()
		return
	}
	var req struct {
		ID   string `json:"id"`
		Recv uint64 `json:"recv"`
	}
	if err := json.Unmarshal(line, &req); err != nil {
		r.t.Errorf("fake relay: request %q: %v", line, err)
		c.Close()
		return
	}
	r.mu.Lock()
	s := r.streams[req.ID]
	if req.ID == "" {
		r.seq++
		req.ID = fmt.Sprint(r.seq)
		s = &fakeStream{k: r.kernel()}
		r.streams[req.ID] = s
		go s.fromKernel()
	}
	r.mu.Unlock()
	if s == nil {
		c.Write([]byte(`{"ok":false,"code":"no_stream","error":"stream is gone"}` + "\n"))
		c.Close()
		return
	}
	s.mu.Lock()
	if req.Recv < s.base || req.Recv > s.base+uint64(len(s.sent)) {
		s.mu.Unlock()
		r.t.Errorf("fake relay: resume at %d, kept %d from %d", req.Recv, len(s.sent), s.base)
		c.Close()
		return
	}
	s.sent = s.sent[req.Recv-s.base:]
	s.base = req.Recv
	hello, _ := json.Marshal(map[string]any{"ok": true, "id": req.ID, "recv": s.recv})
	out := append(hello, '\n')
	if len(s.sent) > 0 {
		out = remote.AppendFrame(out, remote.FrameData, s.sent)
	}
	c.Write(out)
	s.ch = c
	s.mu.Unlock()
	buf := make([]byte, 64<<10)
	for {
		kind, p, err := remote.ReadFrame(br, buf)
		if err != nil {
			return
		}
		switch kind {
		case remote.FrameData:
			s.k.Write(p)
			s.mu.Lock()
			s.recv += uint64(len(p))
			s.mu.Unlock()
		case remote.FrameAck:
			s.mu.Lock()
			n := binary.BigEndian.Uint64(p)
			s.sent = s.sent[n-s.base:]
			s.base = n
			s.mu.Unlock()
		case remote.FrameFin:
			s.k.Close()
			return
		}
	}
}

func (s *fakeStream) fromKernel() {
	buf := make([]byte, 4096)
	for {
		n, err := s.k.Read(buf)
		if err != nil {
			return
		}
		s.mu.Lock()
		s.sent = append(s.sent, buf[:n]...)
		if s.ch != nil {
			s.ch.Write(remote.AppendFrame(nil, remote.FrameData, buf[:n]))
		}
		s.mu.Unlock()
	}
}

// cutConn is one end of a link; once cut, what is written to it vanishes.
type cutConn struct {
	net.Conn
	mu     sync.Mutex
	isCut  bool
	closed bool
}

func (c *cutConn) cut() {
	c.mu.Lock()
	c.isCut = true
	c.mu.Unlock()
}

func (c *cutConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	isCut, closed := c.isCut, c.closed
	c.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	if isCut {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

func (c *cutConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return c.Conn.Close()
}

// gatedEcho is a kernel that reads every line at once but echoes only
// after release: so that its answers can be made to fall into a cut.
func gatedEcho(release <-chan struct{}) func() net.Conn {
	return func() net.Conn {
		a, b := net.Pipe()
		lines := make(chan string, 1024)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(b)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		go func() {
			<-release
			for l := range lines {
				if _, err := b.Write([]byte(l + "\n")); err != nil {
					return
				}
			}
			b.Close()
		}()
		return a
	}
}

func startForwarder(t *testing.T, channel string, open openFunc, ready func(context.Context) error) *forwarder {
	t.Helper()
	ln, err := listenLocal("127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	f := newForwarder(channel, ln, open, ready, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.serve(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		f.close()
		<-done
	})
	return f
}

// A cut that swallows both a request the client sends and answers the
// kernel sends: after the reconnect the client gets every answer exactly
// once, in order, on the connection it never closed.
func TestStreamResumesAcrossCut(t *testing.T) {
	release := make(chan struct{})
	r := newFakeRelay(t, gatedEcho(release))
	f := startForwarder(t, "shell", r.open, func(context.Context) error { return nil })
	c, err := net.Dial("tcp", f.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	send := func(from, to int) {
		var b strings.Builder
		for i := from; i < to; i++ {
			fmt.Fprintf(&b, "msg-%d\n", i)
		}
		if _, err := c.Write([]byte(b.String())); err != nil {
			t.Fatal(err)
		}
	}
	send(0, 10)
	waitRecv(t, r, 10*len("msg-0\n"))
	r.cut()
	close(release) // the kernel answers into the cut
	send(10, 20)   // and the client asks into it
	r.restore()
	sc := bufio.NewScanner(c)
	for i := 0; i < 20; i++ {
		if !sc.Scan() {
			t.Fatalf("line %d: %v", i, sc.Err())
		}
		if want := fmt.Sprintf("msg-%d", i); sc.Text() != want {
			t.Fatalf("line %d is %q, want %q", i, sc.Text(), want)
		}
	}
	if r.opens != 2 {
		t.Errorf("%d relay channels opened, want 2 (open, resume)", r.opens)
	}
}

// waitRecv waits until the fake relay's only stream has received n bytes.
func waitRecv(t *testing.T, r *fakeRelay, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		s := r.streams["1"]
		r.mu.Unlock()
		if s != nil {
			s.mu.Lock()
			got := s.recv
			s.mu.Unlock()
			if got >= uint64(n) {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("relay did not receive %d bytes", n)
}

// A stream the relay no longer has (it expired, the kernel restarted) ends
// the client's connection, so that ZMQ dials again and gets a fresh one.
func TestStreamGoneClosesClient(t *testing.T) {
	r := newFakeRelay(t, gatedEcho(make(chan struct{})))
	f := startForwarder(t, "iopub", r.open, func(context.Context) error { return nil })
	c, err := net.Dial("tcp", f.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello\n"))
	waitRecv(t, r, 6)
	r.cut()
	r.mu.Lock()
	delete(r.streams, "1")
	r.mu.Unlock()
	r.restore()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes; want the connection closed", n)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("client connection still open after the relay lost the stream")
	}
}

// A client that goes away while its stream waits for the link ends the
// stream at once, rather than when the link is back.
func TestStreamEndsWhileDetached(t *testing.T) {
	r := newFakeRelay(t, gatedEcho(make(chan struct{})))
	f := startForwarder(t, "hb", r.open, func(context.Context) error { return nil })
	c, err := net.Dial("tcp", f.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("ping\n"))
	waitRecv(t, r, 5)
	r.cut()
	r.lose()
	c.Close()
	select {
	case <-f.drained():
	case <-time.After(10 * time.Second):
		t.Fatal("stream still running 10 s after its client left during an outage")
	}
}
