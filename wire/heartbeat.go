package wire

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/go-zeromq/zmq4"
)

// hbChannel is dialed on first use. A REQ socket that missed a reply is
// stuck in its send/recv lockstep, so a failed beat throws the socket away.
type hbChannel struct {
	mu     sync.Mutex
	sock   zmq4.Socket
	closed bool
}

// Heartbeat sends one ping on hb and waits for the echo. The echo comes from
// a thread of the kernel process, so it proves the process is alive, not
// that Python is responsive.
func (c *Client) Heartbeat(ctx context.Context) error {
	ctx, cancel := c.bind(ctx)
	defer cancel()
	h := &c.hb
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return errors.New("heartbeat: client closed")
	}
	if h.sock == nil {
		s, err := c.dialRetry(ctx, HB)
		if err != nil {
			return fmt.Errorf("heartbeat: %w", err)
		}
		h.sock = s
	}
	ping := []byte("ping-" + NewID())
	if err := h.sock.Send(zmq4.NewMsg(ping)); err != nil {
		h.drop()
		return fmt.Errorf("heartbeat send: %w", err)
	}
	type result struct {
		m   zmq4.Msg
		err error
	}
	done := make(chan result, 1)
	go func() {
		m, err := h.sock.Recv()
		done <- result{m, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			h.drop()
			return fmt.Errorf("heartbeat: %w", r.err)
		}
		if len(r.m.Frames) != 1 || !bytes.Equal(r.m.Frames[0], ping) {
			h.drop()
			return fmt.Errorf("heartbeat: echo %q does not match ping", r.m.Frames)
		}
		return nil
	case <-ctx.Done():
		h.drop() // unblocks the Recv
		<-done
		return fmt.Errorf("heartbeat: no echo from %s: %w", c.ci.Addr(HB), ctx.Err())
	}
}

func (h *hbChannel) drop() {
	if h.sock != nil {
		h.sock.Close()
		h.sock = nil
	}
}

func (h *hbChannel) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	h.drop()
}

// bind returns a ctx that also ends when the client is closed, so Close never
// waits on a caller's long deadline.
func (c *Client) bind(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-c.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
