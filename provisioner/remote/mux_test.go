//go:build linux

package remote

import (
	"bytes"
	"errors"
	"io"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gopyk/gopyk/mux"
)

// unixServer serves each connection to a new unix socket with handle.
func unixServer(t *testing.T, handle func(net.Conn)) string {
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

// The launcher's mux action (class Mux) against the Go client: several
// streams echo many windows each, a missing socket is ENOENT, and a stream
// nobody drains (a flood) does not hold up another one's round trips.
func TestMuxAction(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	car, err := OpenCarrier(tctx(t, 10*time.Second), &LocalSession{Env: b.env}, b.params(Params{}))
	if err != nil {
		t.Fatal(err)
	}
	s := mux.Client(car)
	defer s.Close()
	ctx := tctx(t, 60*time.Second)

	echo := unixServer(t, func(c net.Conn) { io.Copy(c, c); c.Close() })
	msg := bytes.Repeat([]byte("gopyk-mux-"), 4*mux.Window/10)
	errc := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() {
			c, err := s.Open(ctx, echo)
			if err != nil {
				errc <- err
				return
			}
			defer c.Close()
			go c.Write(msg)
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(c, got); err != nil {
				errc <- err
			} else if !bytes.Equal(got, msg) {
				errc <- errors.New("echo differs")
			} else {
				errc <- nil
			}
		}()
	}
	for i := 0; i < 3; i++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}

	if _, err := s.Open(ctx, filepath.Join(t.TempDir(), "none")); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("open of a missing socket: %v", err)
	}

	flooded := make(chan int64, 1)
	flood := unixServer(t, func(c net.Conn) {
		n, _ := io.Copy(c, bytes.NewReader(make([]byte, 64<<20)))
		flooded <- n
		c.Close()
	})
	fc, err := s.Open(ctx, flood)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := s.Open(ctx, echo)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 200)
	for i := 0; i < 200; i++ {
		if _, err := ec.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(ec, buf); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case n := <-flooded:
		t.Fatalf("the flood's 64 MiB went through (%d bytes) though nobody read them", n)
	default:
	}
	// Drained now, the flood arrives whole.
	n, err := io.Copy(io.Discard, fc)
	if err != nil || n != 64<<20 {
		t.Errorf("flood: %d bytes, %v", n, err)
	}
	fc.Close()
	ec.Close()
}
