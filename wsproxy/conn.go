package wsproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// maxPending bounds what Write buffers before it waits for the sender: one
// WebSocket message carries at most this much plus one write.
const maxPending = 64 << 10

// Conn is the stream Dial returns.
//
// Writes are coalesced: whatever is written while the previous message is
// still being sent goes out as one message. x/crypto's ssh (and ssh through
// a ProxyCommand pipe) writes every packet on its own, and a gateway that
// leaves Nagle on towards sshd (jupyter-server-proxy's raw socket handler
// under tornado) holds the second of two small writes until sshd
// acknowledges the first, which sshd delays by up to 40 ms.
type Conn struct {
	net.Conn // the NetConn: reads, deadlines
	ws       *websocket.Conn
	url      string
	stop     context.CancelFunc
	done     chan struct{} // closed when the pinger has ended
	sent     chan struct{} // closed when the sender has ended

	mu      sync.Mutex
	space   *sync.Cond // signalled when pending shrinks or the sender ends
	kick    chan struct{}
	pending []byte
	spare   []byte
	closing bool
	werr    error // the first failed send; later Writes return it
	reason  error // why the pinger killed the connection
}

func newConn(c *websocket.Conn, o Options) *Conn {
	// The NetConn context bounds the connection's whole life, so it must
	// not be the dial deadline; Close ends it.
	life, stop := context.WithCancel(context.Background())
	wc := &Conn{
		Conn: websocket.NetConn(life, c, websocket.MessageBinary), ws: c, url: Redacted(o.URL), stop: stop,
		done: make(chan struct{}), sent: make(chan struct{}), kick: make(chan struct{}, 1),
	}
	wc.space = sync.NewCond(&wc.mu)
	go wc.send()
	if o.PingInterval > 0 {
		go wc.ping(life, o.PingInterval, o)
	} else {
		close(wc.done)
	}
	return wc
}

// Write queues b for the sender and returns; an error of an earlier send
// is returned instead.
func (c *Conn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.pending) >= maxPending && c.werr == nil && !c.closing {
		c.space.Wait()
	}
	switch {
	case c.werr != nil:
		return 0, c.werr
	case c.closing:
		return 0, net.ErrClosed
	}
	c.pending = append(c.pending, b...)
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return len(b), nil
}

// send is the one goroutine that writes messages: each holds everything
// queued since the last one. It ends after Close has had it send the rest,
// or at the first error.
func (c *Conn) send() {
	defer close(c.sent)
	for range c.kick {
		c.mu.Lock()
		buf, closing := c.pending, c.closing
		c.pending = c.spare[:0]
		c.mu.Unlock()
		var err error
		if len(buf) > 0 {
			if _, err = c.Conn.Write(buf); err != nil {
				err = c.translate(err) // before c.mu: it takes it
			}
		}
		c.mu.Lock()
		c.spare = buf[:0]
		if err != nil && c.werr == nil {
			c.werr = err
		}
		done := c.werr != nil || closing && len(c.pending) == 0
		c.space.Broadcast()
		c.mu.Unlock()
		if done {
			return
		}
	}
}

// endSender refuses further Writes and has the sender send what is queued
// and end.
func (c *Conn) endSender() {
	c.mu.Lock()
	c.closing = true
	c.space.Broadcast()
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// flush is endSender, waiting for the sender at most d.
func (c *Conn) flush(d time.Duration) {
	c.endSender()
	select {
	case <-c.sent:
	case <-time.After(d):
	}
}

// Read returns the messages' bytes in order; a connection that ends other
// than by a normal closure is an *Error saying what happened.
func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if err != nil && err != io.EOF {
		err = c.translate(err)
	}
	return n, err
}

// RemoteAddr is a parseable placeholder; see Dial.
func (c *Conn) RemoteAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero} }

// LocalAddr is a parseable placeholder, like RemoteAddr.
func (c *Conn) LocalAddr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero} }

// Close sends what is queued, then a normal closure, and waits (bounded by
// the library, 5 s) for the server's; it also ends the pinger.
func (c *Conn) Close() error {
	c.flush(5 * time.Second)
	// Not the NetConn's Close first: it cancels the in-flight Read, and a
	// cancelled Read drops the TCP connection before the close frame is out.
	err := c.ws.Close(websocket.StatusNormalClosure, "")
	c.Conn.Close()
	c.stop()
	<-c.done
	return err
}

// abort drops the connection at once, without a close handshake.
func (c *Conn) abort() {
	c.ws.CloseNow()
	c.endSender()
}

// Err is why the connection was killed by a missed ping, or nil.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reason
}

// ping sends a ping every interval; a pong needs a concurrent Read, which
// the bridge (or the SSH client) always has in flight.
func (c *Conn) ping(ctx context.Context, interval time.Duration, o Options) {
	defer close(c.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, interval)
		t0 := time.Now()
		err := c.ws.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			c.mu.Lock()
			c.reason = &Error{URL: c.url, Kind: ErrConnectionLost, Msg: fmt.Sprintf("no answer to a WebSocket ping within %v, the connection is dead; check the network, or raise --ping-interval", interval)}
			c.mu.Unlock()
			o.Log.Debug("websocket ping failed", "err", err)
			c.ws.CloseNow()
			return
		}
		o.Log.Debug("websocket pong", "rtt", time.Since(t0).Round(time.Microsecond))
	}
}

// translate turns how coder/websocket reports the end of a connection
// ("failed to get reader: received header with unexpected rsv bits set")
// into what happened.
func (c *Conn) translate(err error) error {
	if r := c.Err(); r != nil {
		return r
	}
	var we *Error
	if errors.As(err, &we) {
		return err
	}
	e := &Error{URL: c.url, Kind: ErrConnectionLost, Err: err}
	var ce websocket.CloseError
	msg := err.Error()
	switch {
	case errors.Is(err, net.ErrClosed), errors.Is(err, context.Canceled):
		return err // our own Close
	case errors.As(err, &ce):
		e.Kind = ErrServerGone
		e.Msg = fmt.Sprintf("the server closed the WebSocket (%s); the notebook server or the sshd behind it stopped, check that it runs", closeReason(ce))
	case notFrames(msg):
		// Bytes that are no WebSocket frame: the proxy in front of a
		// notebook server that went away (configurable-http-proxy) writes
		// its HTTP error page into the upgraded connection.
		e.Kind = ErrServerGone
		e.Msg = "the server stopped: the proxy in front of it answered with an HTTP error inside the WebSocket; start the notebook server again (e.g. from the JupyterHub home page)"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		e.Msg = "the connection ended without a WebSocket close: the server or a proxy on the way stopped, or the network dropped it"
	default:
		e.Msg = fmt.Sprintf("the connection broke (%v); check the network", innermost(err))
	}
	return e
}

// notFrames reports whether coder/websocket's error says the peer sent
// bytes that are no WebSocket frames.
func notFrames(msg string) bool {
	for _, s := range []string{"rsv bits", "unknown opcode", "unmasked frame", "control frame", "continuation frame",
		"negative payload length", "invalid close payload", "without finishing the previous message"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
