package wsproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Run is `gopyk ws-proxy`: it dials o and copies stdin to the WebSocket and
// the WebSocket to stdout until one side ends. EOF on stdin (ssh is done)
// closes the WebSocket cleanly and returns nil, as does a normal closure by
// the server. Run may return while a read of stdin is still pending; the
// caller (a process about to exit) owns stdin.
func Run(ctx context.Context, o Options, stdin io.Reader, stdout io.Writer) error {
	o.defaults()
	nc, err := Dial(ctx, o)
	if err != nil {
		return err
	}
	c := nc.(*Conn)
	up := make(chan error, 1)
	down := make(chan error, 1)
	var sent, received atomic.Int64
	go func() {
		n, err := io.Copy(c, stdin)
		sent.Store(n)
		up <- err
	}()
	go func() {
		n, err := io.Copy(stdout, c)
		received.Store(n)
		down <- err
	}()

	t0 := time.Now()
	var result error
	select {
	case err := <-up:
		// stdin EOF: no half-close in WebSocket, so close; the server's
		// closing frame ends the copy to stdout.
		c.Close()
		<-down
		if result = c.Err(); result == nil && err != nil {
			var we *Error
			if !errors.As(err, &we) {
				err = fmt.Errorf("ws-proxy %s: %w", Redacted(o.URL), err)
			}
			result = err
		}
	case err := <-down:
		result = c.Err()
		switch {
		case result != nil:
		case received.Load() == 0:
			// Nothing, not even the SSH banner: the gateway is up but its
			// sshd is not (jupyter-sshd-proxy without sshd installed, say).
			result = &Error{URL: Redacted(o.URL), Kind: ErrServerGone, Err: err,
				Msg: fmt.Sprintf("the server closed the WebSocket before sshd said anything (%s); the sshd behind the proxy is not running or not reachable, check the server side", closeReason(err))}
		case err != nil && !isNormalClose(err):
			result = err // Read says what happened
		}
		c.Close()
	case <-ctx.Done():
		c.abort()
		c.Close()
		<-down
		result = ctx.Err()
	}
	o.Log.Debug("websocket closed", "url", Redacted(o.URL), "sent", sent.Load(), "received", received.Load(), "duration", time.Since(t0).Round(time.Millisecond))
	return result
}

func isNormalClose(err error) bool {
	switch websocket.CloseStatus(err) {
	case websocket.StatusNormalClosure, websocket.StatusGoingAway:
		return true
	}
	return errors.Is(err, io.EOF)
}

func closeReason(err error) string {
	var ce websocket.CloseError
	switch {
	case errors.As(err, &ce) && ce.Reason != "":
		return fmt.Sprintf("status %d, %q", int(ce.Code), ce.Reason)
	case errors.As(err, &ce):
		return fmt.Sprintf("status %d", int(ce.Code))
	case err == nil || errors.Is(err, io.EOF):
		return "a normal closure"
	}
	var we *Error
	if errors.As(err, &we) && we.Err != nil {
		return innermost(we.Err).Error()
	}
	return err.Error()
}
