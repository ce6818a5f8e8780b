package provisioner

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// While the connection is down the forwarder accepts nothing (clients wait in
// the backlog); once it is up, what a client sent while waiting arrives.
func TestForwarderWaitsForLink(t *testing.T) {
	ln, err := listenLocal("127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	up := make(chan struct{})
	remoteSide := make(chan net.Conn, 1)
	r := newFakeRelay(t, func() net.Conn {
		a, b := net.Pipe()
		remoteSide <- b
		return a
	})
	var dials atomic.Int32
	open := func(ctx context.Context) (net.Conn, <-chan struct{}, error) {
		dials.Add(1)
		return r.open(ctx)
	}
	ready := func(ctx context.Context) error {
		select {
		case <-up:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	f := newForwarder("shell", ln, open, ready, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.serve(ctx); close(done) }()
	defer func() {
		cancel()
		f.close()
		<-done
	}()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("connect while down: %v (the listener must stay open)", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("queued")); err != nil {
		t.Fatal(err)
	}
	// Nothing waits on the link being down except the forwarder itself;
	// give it the chance to misbehave.
	time.Sleep(100 * time.Millisecond)
	if n := dials.Load(); n != 0 {
		t.Fatalf("%d remote dials while the link was down", n)
	}
	close(up)
	var rc net.Conn
	select {
	case rc = <-remoteSide:
	case <-time.After(5 * time.Second):
		t.Fatal("no remote dial after the link came up")
	}
	buf := make([]byte, 6)
	rc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(rc, buf); err != nil || string(buf) != "queued" {
		t.Fatalf("remote got %q, %v; want the bytes sent while down", buf, err)
	}
	rc.Close()
}

// drop ends forwarded connections but keeps the port: clients reconnect to
// the same address.
func TestForwarderDropKeepsPort(t *testing.T) {
	ln, err := listenLocal("127.0.0.1", 0)
	if err != nil {
		t.Fatal(err)
	}
	r := newFakeRelay(t, func() net.Conn {
		a, b := net.Pipe()
		go io.Copy(b, b) // echo
		return a
	})
	f := newForwarder("hb", ln, r.open, func(context.Context) error { return nil }, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	port := f.port()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.serve(ctx); close(done) }()
	defer func() {
		cancel()
		f.close()
		<-done
	}()
	echo := func() error {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		_, err = io.ReadFull(c, make([]byte, 4))
		return err
	}
	if err := echo(); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1))
	f.drop()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after drop")
	}
	if err := echo(); err != nil || f.port() != port {
		t.Fatalf("after drop: %v, port %d → %d", err, port, f.port())
	}
}
