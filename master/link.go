//go:build !windows

package master

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gopyk/gopyk/sshconf"
	"golang.org/x/crypto/ssh"
)

// Dial pacing. Every client that lost its streams comes back at once and
// asks: they share one dial. A dial that failed on the network is tried
// again a second after the last one started, by whoever asks next; a login
// the server refused, or one nobody can answer, is not tried again for
// authHold: the answer would be the same, and each try is a failed login
// in the server's log.
var (
	netRetry = time.Second
	authHold = 10 * time.Second
)

// maxSessions bounds the session channels open at once on the connection,
// below sshd's MaxSessions (10 by default): launches beyond wait for one
// to end. A server that allows fewer says so by refusing one; the limit
// then drops to what it allowed.
const maxSessions = 9

// sessionLag paces the tries of a session the server refused while none of
// ours was open (see session).
var sessionLag = []time.Duration{20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond}

// link is the master's one SSH connection: dialled once for everyone who
// needs it, and again after a loss, for all of them at once.
type link struct {
	dial func(ctx context.Context) (*sshconf.Client, error)
	log  *slog.Logger
	lost func(gen uint64) // the connection of generation gen is gone

	mu        sync.Mutex
	c         *sshconf.Client // nil while down
	gen       uint64          // generation of c: one more per connection
	since     time.Time       // when c connected
	dialing   chan struct{}   // closed when the dial in progress ends
	lastStart time.Time       // when the last dial started
	lastErr   error           // how the last dial failed (nil: it did not)
	lastErrAt time.Time
	dials     int // dials that connected, for status

	// Session channels: at most limit open at once, one spare kept open
	// (opened before anyone asks, so a launch does not wait for it).
	sessions  int
	limit     int
	slot      chan struct{} // closed when a session ends (a slot frees)
	spare     *sessChan
	refilling bool
	closed    bool
}

func newLink(dial func(context.Context) (*sshconf.Client, error), log *slog.Logger, lost func(uint64)) *link {
	return &link{dial: dial, log: log, lost: lost, limit: maxSessions, slot: make(chan struct{})}
}

// client returns the live connection and its generation, dialling (or
// joining the dial in progress) when there is none.
func (l *link) client(ctx context.Context) (*sshconf.Client, uint64, error) {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, 0, errors.New("the master is exiting")
		}
		if l.c != nil {
			c, g := l.c, l.gen
			l.mu.Unlock()
			return c, g, nil
		}
		ch := l.dialing
		var wait time.Duration
		if ch == nil {
			if l.lastErr != nil && holds(l.lastErr) && time.Since(l.lastErrAt) < authHold {
				err := l.lastErr
				l.mu.Unlock()
				return nil, 0, err
			}
			wait = netRetry - time.Since(l.lastStart)
			if wait <= 0 {
				ch = make(chan struct{})
				l.dialing = ch
				l.lastStart = time.Now()
				go l.dialOnce(ch)
			}
		}
		l.mu.Unlock()
		if ch == nil {
			select {
			case <-time.After(wait):
				continue
			case <-ctx.Done():
				return nil, 0, ctx.Err()
			}
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
		l.mu.Lock()
		c, g, err := l.c, l.gen, l.lastErr
		l.mu.Unlock()
		if c != nil {
			return c, g, nil
		}
		return nil, 0, err
	}
}

// holds: a dial error that another try would only repeat.
func holds(err error) bool {
	for _, k := range []error{sshconf.ErrAuth, sshconf.ErrCannotAsk, sshconf.ErrHostKeyChanged, sshconf.ErrHostKeyUnknown, sshconf.ErrHostKeyRevoked, sshconf.ErrUnknownHost} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}

func (l *link) dialOnce(done chan struct{}) {
	// A dial's own steps have deadlines (ConnectTimeout, the handshake);
	// this bounds a ProxyCommand or a prompt that never ends.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t0 := time.Now()
	c, err := l.dial(ctx)
	l.mu.Lock()
	defer func() {
		l.dialing = nil
		l.mu.Unlock()
		close(done)
	}()
	if err != nil {
		l.lastErr, l.lastErrAt = err, time.Now()
		l.log.Info("dial failed", "err", err, "took", time.Since(t0).Round(time.Millisecond))
		return
	}
	if l.closed {
		c.Close()
		l.lastErr = errors.New("the master is exiting")
		return
	}
	l.c, l.lastErr, l.since = c, nil, time.Now()
	l.gen++
	l.dials++
	l.log.Info("connected", "generation", l.gen, "took", time.Since(t0).Round(time.Millisecond))
	go l.watch(c, l.gen)
	go l.nodelay(c, l.gen)
}

// nodelay runs one command on a new connection: sshd turns Nagle off on
// a connection only once a session runs a command, and until then every
// forwarded round trip waits ~40 ms for a delayed ACK. Then the spare
// session is opened.
func (l *link) nodelay(c *sshconf.Client, gen uint64) {
	defer l.refill(c, gen)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := l.session(ctx, c, gen)
	if err != nil {
		return
	}
	_, _ = s.ch.SendRequest("exec", false, ssh.Marshal(struct{ Command string }{"exit 0"}))
	select {
	case <-s.done:
	case <-ctx.Done():
		s.ch.Close()
	}
}

// watch turns the end of connection gen into its loss.
func (l *link) watch(c *sshconf.Client, gen uint64) {
	<-c.Done()
	l.mu.Lock()
	cur := l.c == c
	if cur {
		l.c = nil
		l.lastErr, l.lastErrAt = c.Err(), time.Now()
		l.spare = nil // its channel ends with the connection, and with it its slot
	}
	l.mu.Unlock()
	if cur {
		l.log.Info("connection lost", "generation", gen, "err", c.Err())
		l.lost(gen)
	}
	c.Close()
}

// drop closes connection gen (the clients found it dead before its keepalive did).
func (l *link) drop(gen uint64) {
	l.mu.Lock()
	c := l.c
	if l.gen != gen {
		c = nil
	}
	l.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// sessChan is a session channel and what the server said on it: its
// requests are read from the start (a spare's too: sshd's ClientAlive
// probes go to an open channel, and unread requests would stall the whole
// connection), answered no, and exit-status and exit-signal kept.
type sessChan struct {
	ch   ssh.Channel
	gen  uint64
	done chan struct{} // closed when the server closed the channel

	mu     sync.Mutex
	status int    // -1 until exit-status
	signal string // exit-signal's name
}

func (l *link) newSessChan(ch ssh.Channel, reqs <-chan *ssh.Request, gen uint64) *sessChan {
	s := &sessChan{ch: ch, gen: gen, done: make(chan struct{}), status: -1}
	go func() {
		for r := range reqs {
			switch r.Type {
			case "exit-status":
				var v struct{ Status uint32 }
				if ssh.Unmarshal(r.Payload, &v) == nil {
					s.mu.Lock()
					s.status = int(v.Status)
					s.mu.Unlock()
				}
			case "exit-signal":
				var v struct {
					Signal string
					Core   bool
					Msg    string
					Lang   string
				}
				if ssh.Unmarshal(r.Payload, &v) == nil {
					s.mu.Lock()
					s.signal = v.Signal
					s.mu.Unlock()
				}
			}
			if r.WantReply {
				_ = r.Reply(false, nil)
			}
		}
		close(s.done)
		l.sessionEnded(s)
	}()
	return s
}

// exit is the command's exit status (-1 if none was sent) and signal.
func (s *sessChan) exit() (int, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status, s.signal
}

// session opens a session channel on connection gen, waiting while the
// server's limit is reached; the spare, when there is one, at once.
func (l *link) session(ctx context.Context, c *sshconf.Client, gen uint64) (*sessChan, error) {
	lagged := 0
	for {
		l.mu.Lock()
		if sp := l.spare; sp != nil && sp.gen == gen {
			l.spare = nil
			l.mu.Unlock()
			select {
			case <-sp.done: // the server closed it meanwhile
				continue
			default:
			}
			go l.refill(c, gen)
			return sp, nil
		}
		if l.sessions < l.limit {
			l.sessions++
			l.mu.Unlock()
			ch, reqs, err := c.OpenChannel("session", nil)
			if err == nil {
				return l.newSessChan(ch, reqs, gen), nil
			}
			l.mu.Lock()
			l.free()
			var oce *ssh.OpenChannelError
			refused := errors.As(err, &oce) && (oce.Reason == ssh.Prohibited || oce.Reason == ssh.ConnectionFailed)
			switch {
			case refused && l.sessions > 0:
				// The server's MaxSessions is lower than ours (sshd
				// says "open failed"): wait for one of ours to end.
				if l.sessions < l.limit {
					l.limit = l.sessions
					l.log.Info("the server allows fewer sessions at once; launches wait", "limit", l.limit, "err", err)
				}
				l.mu.Unlock()
				continue
			case refused && lagged < len(sessionLag):
				// None of ours is open: sshd has not yet let go of one
				// that just closed (it frees a session in its main loop,
				// after the close is read; the open can come in the
				// same read). Nothing says when: try again shortly.
				l.mu.Unlock()
				if err := awaitSession(ctx, c, time.After(sessionLag[lagged])); err != nil {
					return nil, err
				}
				lagged++
				continue
			}
			l.mu.Unlock()
			return nil, err
		}
		slot := l.slot
		l.mu.Unlock()
		if err := awaitSession(ctx, c, slot); err != nil {
			return nil, err
		}
	}
}

// awaitSession waits for ready (a slot, or the time to try again), or says
// why no session will come.
func awaitSession[T any](ctx context.Context, c *sshconf.Client, ready <-chan T) error {
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for a free session on the connection (sshd's MaxSessions): %w", ctx.Err())
	case <-c.Done():
		return c.Err()
	}
}

// free gives back a session slot (l.mu held) and wakes whoever waits for
// one: every slot taken and not kept ends here, or a launch that waits for
// it waits for good.
func (l *link) free() {
	l.sessions--
	l.wake()
}

// wake tells whoever waits for a session (l.mu held) to look again: a slot
// or a spare is there.
func (l *link) wake() {
	close(l.slot)
	l.slot = make(chan struct{})
}

// sessionEnded frees the slot of a session channel the server closed.
func (l *link) sessionEnded(s *sessChan) {
	l.mu.Lock()
	l.free()
	if l.spare == s {
		l.spare = nil
	}
	c, gen := l.c, l.gen
	l.mu.Unlock()
	if c != nil {
		go l.refill(c, gen)
	}
}

// refill opens the spare session when there is room and none.
func (l *link) refill(c *sshconf.Client, gen uint64) {
	l.mu.Lock()
	if l.closed || l.spare != nil || l.refilling || l.c != c || l.sessions+1 >= l.limit {
		l.mu.Unlock()
		return
	}
	l.sessions++
	l.refilling = true
	l.mu.Unlock()
	ch, reqs, err := c.OpenChannel("session", nil)
	l.mu.Lock()
	l.refilling = false
	if err != nil {
		l.free()
		l.mu.Unlock()
		return
	}
	sp := l.newSessChan(ch, reqs, gen)
	if l.c != c || l.closed {
		l.mu.Unlock()
		ch.Close()
		return
	}
	l.spare = sp
	l.wake() // a launch may wait for the slot it holds
	l.mu.Unlock()
}

// status says how the connection is, for `gopyk connect --status`.
func (l *link) status() (up bool, since time.Time, gen uint64, dials, sessions int, lastErr error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.c != nil, l.since, l.gen, l.dials, l.sessions, l.lastErr
}

// close ends the connection for good.
func (l *link) close() {
	l.mu.Lock()
	l.closed = true
	c := l.c
	l.c = nil
	l.mu.Unlock()
	if c != nil {
		c.Close()
	}
}
