package wire

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-zeromq/zmq4"
)

// DefaultDialTimeout bounds Dial when ctx carries no deadline.
const DefaultDialTimeout = 30 * time.Second

// Option configures a Client.
type Option func(*options)

type options struct {
	log  *slog.Logger
	dial DialFunc
	user string
}

// WithLogger sends the client's and zmq4's diagnostics to l (default: discarded).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithDialer makes every socket dial through d, e.g. an SSH client's
// DialContext so the kernel is reached without a local port.
func WithDialer(d DialFunc) Option { return func(o *options) { o.dial = d } }

// WithUsername sets the header username (default "gopyk").
func WithUsername(u string) Option { return func(o *options) { o.user = u } }

// Client talks to one kernel over shell, control, iopub and (lazily) hb.
// Its methods are safe for concurrent use.
type Client struct {
	ci      ConnInfo
	signer  *Signer
	session string
	user    string
	log     *slog.Logger
	zlog    *log.Logger
	dial    DialFunc

	shell, control, iopub *channel
	hb                    hbChannel

	mu      sync.Mutex
	waiters map[string]*waiter

	iopubSeen chan struct{}
	seenOnce  sync.Once

	closed    chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// channel is one zmq4 socket plus the reader goroutine that owns its Recv.
type channel struct {
	name string
	sock zmq4.Socket
	mu   sync.Mutex // zmq4 sockets are not safe for concurrent Send
	down chan struct{}
	err  error // why the reader stopped; read after down is closed
}

type waiter struct {
	ch   chan *Message
	done chan struct{}
}

// Dial connects shell, control and iopub (subscribed to everything). Each
// socket is retried with backoff until ctx ends, because a port forwarder
// whose remote end is not up yet accepts and then closes at once. Without a
// deadline on ctx, Dial gives up after DefaultDialTimeout.
func Dial(ctx context.Context, ci ConnInfo, opts ...Option) (*Client, error) {
	if err := ci.Validate(); err != nil {
		return nil, fmt.Errorf("dial kernel: %w", err)
	}
	signer, err := ci.Signer()
	if err != nil {
		return nil, fmt.Errorf("dial kernel: %w", err)
	}
	o := options{user: "gopyk"}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.dial == nil {
		var d net.Dialer
		o.dial = d.DialContext
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultDialTimeout)
		defer cancel()
	}
	c := &Client{
		ci:        ci,
		signer:    signer,
		session:   NewID(),
		user:      o.user,
		log:       o.log,
		zlog:      slog.NewLogLogger(o.log.Handler(), slog.LevelDebug),
		dial:      o.dial,
		waiters:   map[string]*waiter{},
		iopubSeen: make(chan struct{}),
		closed:    make(chan struct{}),
	}

	// Dial the three sockets concurrently: over SSH each is a channel open
	// round trip, and the launch time is what users wait on.
	names := []string{Shell, Control, IOPub}
	socks := make([]zmq4.Socket, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { socks[i], errs[i] = c.dialRetry(ctx, name) })
	}
	wg.Wait()
	var msgs []string
	var cause error
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
			cause = err
		}
	}
	if cause != nil {
		for _, s := range socks {
			if s != nil {
				s.Close()
			}
		}
		// One line, and still errors.Is-able for the deadline.
		return nil, fmt.Errorf("dial kernel: %s (is the kernel running and the connection file current?): %w",
			strings.Join(msgs, "; "), ctxErr(cause))
	}
	c.shell, c.control, c.iopub = c.start(Shell, socks[0]), c.start(Control, socks[1]), c.start(IOPub, socks[2])
	return c, nil
}

func (c *Client) newSocket(name string, h *connHook) zmq4.Socket {
	sctx := context.WithValue(context.Background(), hookKey{}, h)
	zopts := []zmq4.Option{zmq4.WithLogger(c.zlog), zmq4.WithDialerMaxRetries(0)}
	switch name {
	case IOPub:
		s := zmq4.NewSub(sctx, zopts...)
		// Stored before Dial; zmq4 sends it on every new connection.
		_ = s.SetOption(zmq4.OptionSubscribe, "")
		return s
	case HB:
		return zmq4.NewReq(sctx, zopts...)
	default:
		return zmq4.NewDealer(sctx, zopts...)
	}
}

// dialRetry dials one channel until it connects or ctx ends.
func (c *Client) dialRetry(ctx context.Context, name string) (zmq4.Socket, error) {
	ep, err := hookEndpoint(c.ci.Addr(name))
	if err != nil {
		return nil, err
	}
	backoff := 20 * time.Millisecond
	var last error
	for attempt := 1; ; attempt++ {
		h := &connHook{dial: c.dial}
		s := c.newSocket(name, h)
		err := dialOnce(ctx, s, h, ep)
		if err == nil {
			return s, nil
		}
		s.Close()
		if ctx.Err() != nil {
			if last == nil || errors.Is(err, errSilentPeer) {
				last = err
			}
			return nil, &dialError{channel: name, addr: c.ci.Addr(name), attempts: attempt, last: cause(last), ctx: ctx.Err()}
		}
		last = err
		c.log.Debug("kernel channel not ready, retrying", "channel", name, "addr", c.ci.Addr(name), "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

func (c *Client) start(name string, s zmq4.Socket) *channel {
	ch := &channel{name: name, sock: s, down: make(chan struct{})}
	c.wg.Add(1)
	go c.read(ch)
	return ch
}

// read owns ch's Recv until the socket fails or Close closes it.
func (c *Client) read(ch *channel) {
	defer c.wg.Done()
	defer close(ch.down)
	for {
		zm, err := ch.sock.Recv()
		if err != nil {
			select {
			case <-c.closed:
				ch.err = errors.New("client closed")
			default:
				ch.err = fmt.Errorf("kernel closed the %s channel: %w", ch.name, err)
				c.log.Debug("channel down", "channel", ch.name, "err", err)
			}
			return
		}
		m, err := c.signer.Decode(zm.Frames)
		if err != nil {
			c.log.Warn("dropping undecodable message", "channel", ch.name, "err", err)
			continue
		}
		m.Channel = ch.name
		if ch.name == IOPub {
			c.seenOnce.Do(func() { close(c.iopubSeen) })
		}
		c.dispatch(m)
	}
}

func (c *Client) dispatch(m *Message) {
	id := m.ParentHeader.MsgID
	if id == "" {
		return
	}
	c.mu.Lock()
	w := c.waiters[id]
	c.mu.Unlock()
	if w == nil {
		return
	}
	// Blocking hand-off: dropping output would be worse than backpressure.
	select {
	case w.ch <- m:
	case <-w.done:
	case <-c.closed:
	}
}

func (c *Client) register(id string) *waiter {
	w := &waiter{ch: make(chan *Message, 64), done: make(chan struct{})}
	c.mu.Lock()
	c.waiters[id] = w
	c.mu.Unlock()
	return w
}

func (c *Client) unregister(id string) {
	c.mu.Lock()
	w := c.waiters[id]
	delete(c.waiters, id)
	c.mu.Unlock()
	if w != nil {
		close(w.done)
	}
}

func (c *Client) channel(name string) (*channel, error) {
	switch name {
	case Shell:
		return c.shell, nil
	case Control:
		return c.control, nil
	}
	return nil, fmt.Errorf("channel %q: requests go to shell or control", name)
}

// Session is the client's session id (one per Client).
func (c *Client) Session() string { return c.session }

// NewMessage builds a request in this client's session.
func (c *Client) NewMessage(msgType string, content any) *Message {
	m := NewMessage(msgType, content, c.session)
	m.Header.Username = c.user
	return m
}

func (c *Client) send(ch *channel, m *Message) error {
	frames, err := c.signer.Encode(m)
	if err != nil {
		return err
	}
	select {
	case <-c.closed:
		return errors.New("send: client closed")
	case <-ch.down:
		return fmt.Errorf("send %s: %w", m.Header.MsgType, ch.err)
	default:
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	// SendMulti writes the whole message with one writev, as libzmq does;
	// Send writes each frame's header and body apart, and every small write
	// then crosses a forward (and an SSH packet) on its own.
	if err := ch.sock.SendMulti(zmq4.NewMsgFrom(frames...)); err != nil {
		return fmt.Errorf("send %s on %s: %w", m.Header.MsgType, ch.name, err)
	}
	return nil
}

// next waits for the next message of a registered request.
func (c *Client) next(ctx context.Context, w *waiter, ch *channel, what string) (*Message, error) {
	select {
	case m := <-w.ch:
		return m, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for %s: %w", what, ctx.Err())
	case <-ch.down:
		return nil, fmt.Errorf("waiting for %s: %w", what, ch.err)
	case <-c.closed:
		return nil, fmt.Errorf("waiting for %s: client closed", what)
	}
}

// Request sends m on shell or control and returns its *_reply.
func (c *Client) Request(ctx context.Context, channel string, m *Message) (*Message, error) {
	ch, err := c.channel(channel)
	if err != nil {
		return nil, err
	}
	id := m.Header.MsgID
	w := c.register(id)
	defer c.unregister(id)
	if err := c.send(ch, m); err != nil {
		return nil, err
	}
	want := strings.TrimSuffix(m.Header.MsgType, "_request") + "_reply"
	for {
		r, err := c.next(ctx, w, ch, want+" on "+channel)
		if err != nil {
			return nil, err
		}
		if r.Channel == channel && strings.HasSuffix(r.Header.MsgType, "_reply") {
			return r, nil
		}
	}
}

// KernelInfo asks on control, which a busy shell does not delay.
func (c *Client) KernelInfo(ctx context.Context) (*Message, error) {
	return c.Request(ctx, Control, c.NewMessage("kernel_info_request", nil))
}

// Interrupt sends interrupt_request on control (interrupt_mode "message").
func (c *Client) Interrupt(ctx context.Context) (*Message, error) {
	return c.Request(ctx, Control, c.NewMessage("interrupt_request", nil))
}

// Shutdown sends shutdown_request on control.
func (c *Client) Shutdown(ctx context.Context, restart bool) (*Message, error) {
	return c.Request(ctx, Control, c.NewMessage("shutdown_request", map[string]any{"restart": restart}))
}

// WaitReady repeats kernel_info_request on shell until a reply has come back
// and iopub has delivered at least one message, like jupyter_client's
// wait_for_ready: a SUB socket joined after a publish misses it, so the first
// reply alone doesn't prove that output of the next cell will arrive.
func (c *Client) WaitReady(ctx context.Context) error {
	for {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := c.Request(rctx, Shell, c.NewMessage("kernel_info_request", nil))
		cancel()
		if err == nil {
			t := time.NewTimer(200 * time.Millisecond)
			select {
			case <-c.iopubSeen:
				t.Stop()
				return nil
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		if ctx.Err() != nil {
			if err == nil {
				err = errors.New("no message on iopub")
			}
			return fmt.Errorf("wait for kernel ready: %v: %w", err, ctx.Err())
		}
		select {
		case <-c.shell.down:
			return fmt.Errorf("wait for kernel ready: %w", c.shell.err)
		default:
		}
	}
}

// Close closes every socket and waits for the reader goroutines.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		for _, ch := range []*channel{c.shell, c.control, c.iopub} {
			ch.sock.Close()
		}
		c.hb.close()
		c.wg.Wait()
	})
	return nil
}

// dialError says which channel never connected and why, in one line.
type dialError struct {
	channel, addr string
	attempts      int
	last          string
	ctx           error
}

func (e *dialError) Error() string {
	return fmt.Sprintf("%s %s: %s (%d attempts)", e.channel, e.addr, e.last, e.attempts)
}

func (e *dialError) Unwrap() error { return e.ctx }

func ctxErr(err error) error {
	var de *dialError
	if errors.As(err, &de) {
		return de.ctx
	}
	return err
}

// cause reduces zmq4's nested wrapping to the part a user can act on.
func cause(err error) string {
	var op *net.OpError
	switch {
	case errors.Is(err, errSilentPeer):
		return errSilentPeer.Error()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "peer closed the connection during the ZMTP handshake (a forward whose far end is not listening yet?)"
	case errors.As(err, &op):
		return op.Error()
	}
	return err.Error()
}
