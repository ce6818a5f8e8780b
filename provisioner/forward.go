package provisioner

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/gopyk/gopyk/provisioner/remote"
)

// channelNames are the five kernel channels in connection-file order.
var channelNames = [5]string{"shell", "iopub", "stdin", "control", "hb"}

// forwarder accepts local connections for one channel and relays each one to
// the remote kernel as a relayStream. Its listener lives as long as the
// launcher, across reconnects and restarts, so clients never see the local
// port change.
type forwarder struct {
	channel string
	ln      net.Listener
	open    openFunc
	ready   func(ctx context.Context) error // waits for a live SSH connection
	tap     func(channel string, lc net.Conn) tap
	log     *slog.Logger
	// zmtp: answer each client's ZMTP handshake here (zmtpFront).
	zmtp bool

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // one per running stream, until it ends
	closed bool
	idle   chan struct{} // closed when conns empties (see drained)
	wg     sync.WaitGroup
}

func listenLocal(ip string, port int) (net.Listener, error) {
	if ip == "" {
		ip = "127.0.0.1"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
	if err != nil {
		return nil, fmt.Errorf("listen on local port %d: %w; another process holds it — stop it or let Jupyter pick new ports", port, err)
	}
	return ln, nil
}

// newForwarder: tap, when not nil, gives each client connection its tap.
func newForwarder(channel string, ln net.Listener, open openFunc, ready func(context.Context) error, tap func(string, net.Conn) tap, log *slog.Logger) *forwarder {
	return &forwarder{channel: channel, ln: ln, open: open, ready: ready, tap: tap, log: log, conns: map[net.Conn]struct{}{}}
}

// serve runs until ctx ends or the listener is closed.
//
// While the SSH connection is down it stops accepting: clients reconnecting
// meanwhile wait in the listen backlog, with what they send kept by the OS,
// instead of each holding a goroutine and a descriptor here for as long as
// the outage lasts (ZMQ gives up a silent handshake every 30 s and dials
// again). At most one accepted connection per channel waits for the link.
func (f *forwarder) serve(ctx context.Context) {
	defer f.wg.Wait()
	for {
		if err := f.ready(ctx); err != nil {
			return
		}
		lc, err := f.ln.Accept()
		if err != nil {
			return
		}
		if !f.track(lc) {
			lc.Close()
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.untrack(lc)
			f.pipe(ctx, lc)
		}()
	}
}

func (f *forwarder) pipe(ctx context.Context, lc net.Conn) {
	if tc, ok := lc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	var t tap
	if f.tap != nil {
		t = f.tap(f.channel, lc)
	}
	var mode string
	var early []byte
	if f.zmtp {
		toClient := func(p []byte) error { _, err := lc.Write(p); return err }
		if t != nil {
			toClient = t.toClient
		}
		var read []byte
		var err error
		mode, read, err = zmtpFront(lc, f.channel, toClient)
		if t != nil && len(read) > 0 {
			t.fromClient(read)
		}
		if err != nil {
			f.log.Debug("forward: client handshake", "channel", f.channel, "err", err)
			if t != nil {
				t.ended()
			}
			lc.Close()
			return
		}
		if mode == remote.ZMTPStrip10 {
			early = read
		}
	}
	newRelayStream(lc, f.channel, f.open, f.log, t, mode, early).run(ctx)
}

func (f *forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.conns, c)
	if len(f.conns) == 0 && f.idle != nil {
		close(f.idle)
		f.idle = nil
	}
}

// drained is closed once no stream runs any more; for one waiter, after close.
func (f *forwarder) drained() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := make(chan struct{})
	if len(f.conns) == 0 {
		close(ch)
	} else {
		f.idle = ch
	}
	return ch
}

// drop closes every forwarded connection but keeps listening: used when the
// kernel restarts, so ZMQ clients reconnect to the new one.
func (f *forwarder) drop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.Close()
	}
}

// close stops listening and ends every forwarded connection.
func (f *forwarder) close() {
	f.ln.Close()
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
}

func (f *forwarder) port() int { return f.ln.Addr().(*net.TCPAddr).Port }
