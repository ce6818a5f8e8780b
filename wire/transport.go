package wire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/transport"
)

// DialFunc opens the byte stream under one ZeroMQ connection. network is
// "tcp" or "unix". It must honour ctx.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// zmq4's Dial reads the ZMTP greeting with no deadline and without looking at
// any context, so a peer that accepts and stays silent blocks it forever. Our
// own transports ("gopyk-tcp", "gopyk-ipc") dial through a hook kept in the
// socket's context; the hook remembers the conn so Dial can close it when its
// deadline passes, which is the only thing that unblocks the greeting read.
const (
	schemeTCP = "gopyk-tcp"
	schemeIPC = "gopyk-ipc"
)

func init() {
	for scheme, network := range map[string]string{schemeTCP: "tcp", schemeIPC: "unix"} {
		if err := zmq4.RegisterTransport(scheme, hookTransport{network: network}); err != nil {
			panic(err)
		}
	}
}

type hookKey struct{}

// connHook belongs to one zmq4 socket.
type connHook struct {
	dial DialFunc

	mu      sync.Mutex
	attempt context.Context
	conn    net.Conn
	aborted bool
}

func (h *connHook) begin(ctx context.Context) {
	h.mu.Lock()
	h.attempt, h.conn, h.aborted = ctx, nil, false
	h.mu.Unlock()
}

// abort closes the conn of the attempt in flight, and any conn that the
// dialer hands over later.
func (h *connHook) abort() (connected bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.aborted = true
	if h.conn != nil {
		h.conn.Close()
		return true
	}
	return false
}

var errSilentPeer = errors.New("connected, but the peer sent no ZMTP greeting before the deadline")

type hookTransport struct{ network string }

func (t hookTransport) Dial(ctx context.Context, d transport.Dialer, addr string) (net.Conn, error) {
	h, _ := ctx.Value(hookKey{}).(*connHook)
	if h == nil {
		return d.DialContext(ctx, t.network, addr)
	}
	h.mu.Lock()
	actx := h.attempt
	h.mu.Unlock()
	if actx == nil {
		actx = ctx
	}
	c, err := h.dial(actx, t.network, addr)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.aborted {
		c.Close()
		return nil, errors.New("dial aborted")
	}
	h.conn = c
	return c, nil
}

func (t hookTransport) Listen(ctx context.Context, addr string) (net.Listener, error) {
	return net.Listen(t.network, addr)
}

func (t hookTransport) Addr(ep string) (string, error) {
	return ep, nil
}

// hookEndpoint rewrites a Jupyter endpoint to our transport's scheme.
func hookEndpoint(ep string) (string, error) {
	switch {
	case strings.HasPrefix(ep, "tcp://"):
		return schemeTCP + "://" + strings.TrimPrefix(ep, "tcp://"), nil
	case strings.HasPrefix(ep, "ipc://"):
		return schemeIPC + "://" + strings.TrimPrefix(ep, "ipc://"), nil
	}
	return "", fmt.Errorf("endpoint %q: want tcp:// or ipc://", ep)
}

// dialOnce runs one zmq4 Dial (TCP connect + ZMTP handshake) bounded by ctx.
// On failure the half-open conn is closed (zmq4 leaks it otherwise).
func dialOnce(ctx context.Context, sock zmq4.Socket, h *connHook, ep string) error {
	h.begin(ctx)
	done := make(chan error, 1)
	go func() { done <- sock.Dial(ep) }()
	select {
	case err := <-done:
		if err != nil {
			h.abort()
		}
		return err
	case <-ctx.Done():
		connected := h.abort()
		<-done
		if connected {
			return fmt.Errorf("%w: %w", errSilentPeer, ctx.Err())
		}
		return ctx.Err()
	}
}
