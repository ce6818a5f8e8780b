package mux

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// pair joins a client and a server session with two pipes; the server dials
// unix sockets like the remote launcher's mux.py does.
func pair(t *testing.T) (*Session, *Session) {
	t.Helper()
	cr, sw := io.Pipe()
	sr, cw := io.Pipe()
	c := Client(rwc{cr, cw})
	s := Serve(rwc{sr, sw}, func(path string) (net.Conn, error) { return net.Dial("unix", path) })
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}

type rwc struct {
	*io.PipeReader
	*io.PipeWriter
}

func (p rwc) Close() error { p.PipeReader.Close(); return p.PipeWriter.Close() }

// listen serves each connection to a unix socket with handle.
func listen(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return path
}

func echo(c net.Conn) { io.Copy(c, c); c.Close() }

func ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestEchoManyStreams(t *testing.T) {
	c, _ := pair(t)
	path := listen(t, echo)
	msg := bytes.Repeat([]byte("0123456789abcdef"), 3*Window/16) // 3 windows: credit must come back
	errc := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() {
			conn, err := c.Open(ctx(t), path)
			if err != nil {
				errc <- err
				return
			}
			defer conn.Close()
			go conn.Write(msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(conn, got); err != nil {
				errc <- err
				return
			}
			if !bytes.Equal(got, msg) {
				errc <- errors.New("echo differs")
				return
			}
			errc <- nil
		}()
	}
	for i := 0; i < 4; i++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenRefused(t *testing.T) {
	c, _ := pair(t)
	_, err := c.Open(ctx(t), filepath.Join(t.TempDir(), "none"))
	var oe *OpenError
	if !errors.As(err, &oe) || !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("open of a missing socket: %v", err)
	}
}

// A stream nobody reads holds at most one window; another stream's round
// trips go on meanwhile, and the far side's socket sees back-pressure.
func TestUndrainedStreamDoesNotBlockOthers(t *testing.T) {
	c, s := pair(t)
	wrote := make(chan int64, 1)
	flood := listen(t, func(conn net.Conn) {
		n, _ := io.Copy(conn, zeros{})
		wrote <- n
	})
	path := listen(t, echo)
	fc, err := c.Open(ctx(t), flood)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := c.Open(ctx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	for i := 0; i < 200; i++ {
		if _, err := ec.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(ec, buf); err != nil {
			t.Fatal(err)
		}
	}
	st := fc.(*stream)
	st.mu.Lock()
	held := len(st.buf)
	st.mu.Unlock()
	if held > Window {
		t.Errorf("undrained stream holds %d bytes, window %d", held, Window)
	}
	_ = s
	fc.Close()
	select {
	case n := <-wrote:
		t.Logf("flood wrote %d bytes before its stream closed", n)
	case <-ctx(t).Done():
		t.Fatal("the flooding socket was not closed after its stream was")
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// The carrier ending ends every stream: a blocked Read returns.
func TestCarrierEndsStreams(t *testing.T) {
	c, s := pair(t)
	path := listen(t, echo)
	conn, err := c.Open(ctx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := conn.Read(make([]byte, 1)); errc <- err }()
	s.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("read after the carrier ended: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("read still blocked 5 s after the carrier ended")
	}
	<-c.Done()
	if _, err := c.Open(ctx(t), path); !errors.Is(err, ErrClosed) {
		t.Errorf("open on an ended session: %v", err)
	}
}

// Close on our side ends the far side's socket, and a blocked Read here.
func TestCloseEndsBothSides(t *testing.T) {
	c, _ := pair(t)
	gotEOF := make(chan struct{})
	path := listen(t, func(conn net.Conn) { io.Copy(io.Discard, conn); close(gotEOF) })
	conn, err := c.Open(ctx(t), path)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := conn.Read(make([]byte, 1)); errc <- err }()
	conn.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
	select {
	case <-gotEOF:
	case <-ctx(t).Done():
		t.Fatal("far side never saw the close")
	}
}
