package sshconf

import (
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// Defaults when the config sets no ServerAliveInterval: a dead path is
// noticed within 15 s. A longer outage then goes through a fresh dial, which
// answers within a second of the network's return; riding it out on the old
// connection waits for TCP's retransmission back-off instead (4-25 s after a
// 30 s outage). Shorter blips are still carried by TCP, losing nothing.
const (
	DefaultAliveInterval = 5 * time.Second
	DefaultAliveCountMax = 3
)

// alive is how a connection watches its peer: a probe after interval of
// silence, and the connection declared dead after deadAfter of silence.
type alive struct {
	interval  time.Duration
	deadAfter time.Duration
	why       string // the settings that gave deadAfter, for the error
}

// aliveParams combines the config's ServerAlive* with the caller's bound
// (DialOptions.DeadAfter): the shorter wins. ssh -G reports
// ServerAliveInterval 300 for every host when BatchMode is set (Debian's
// OpenSSH derives it), so the config's value alone cannot tell a user's
// choice from a default that leaves a dead link unnoticed for 15 minutes.
func aliveParams(s *Settings, deadAfter time.Duration) alive {
	iv, n := s.ServerAliveInterval, s.ServerAliveCountMax
	configured := iv > 0
	if iv <= 0 {
		iv = DefaultAliveInterval
	}
	if n <= 0 {
		n = DefaultAliveCountMax
	}
	a := alive{interval: iv, deadAfter: time.Duration(n) * iv}
	if configured {
		a.why = fmt.Sprintf("ServerAliveCountMax %d × ServerAliveInterval %s", n, iv)
	} else {
		a.why = fmt.Sprintf("the default %d × %s", n, iv)
	}
	if deadAfter > 0 && deadAfter < a.deadAfter {
		a.deadAfter = deadAfter
		a.interval = max(deadAfter/time.Duration(n), 100*time.Millisecond)
		a.why = fmt.Sprintf("the kernel's link timeout %s", deadAfter)
	}
	return a
}

// rxConn records when its last read returned data: anything received from
// the server proves the path alive, as in OpenSSH, so a keepalive reply
// stuck behind bulk output on a slow link is not taken for a dead link.
type rxConn struct {
	net.Conn
	last atomic.Int64 // time.Now().UnixNano() of the last read with data
}

func newRxConn(c net.Conn) *rxConn {
	r := &rxConn{Conn: c}
	r.last.Store(time.Now().UnixNano())
	return r
}

func (r *rxConn) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	if n > 0 {
		r.last.Store(time.Now().UnixNano())
	}
	return n, err
}

func (r *rxConn) silence(now time.Time) time.Duration {
	return now.Sub(time.Unix(0, r.last.Load()))
}

// keepalive is OpenSSH's ServerAlive logic: after interval without a byte
// from the server it sends keepalive@openssh.com (one at a time: global
// requests serialize in x/crypto, stacking them hides a dead peer), and
// after deadAfter without a byte it breaks the connection.
func (c *Client) keepalive(a alive, rx *rxConn) {
	defer c.wg.Done()
	timer := time.NewTimer(a.interval)
	defer timer.Stop()
	var (
		pending chan error // the probe in flight, if any
		sent    time.Time
	)
	for {
		select {
		case <-c.done:
			if pending != nil {
				<-pending // the closed connection ends the request
			}
			return
		case err := <-pending:
			pending = nil
			if err != nil {
				c.lost(fmt.Errorf("%w: keepalive: %v", ErrConnectionLost, err))
				return
			}
		case <-timer.C:
		}
		now := time.Now()
		last := now.Add(-rx.silence(now))
		if now.Sub(last) >= a.deadAfter {
			c.lost(fmt.Errorf("%w: nothing from the server for %s (%s)", ErrKeepaliveFailed, now.Sub(last).Round(time.Second), a.why))
			if pending != nil {
				<-pending
			}
			return
		}
		if pending == nil && now.Sub(last) >= a.interval && now.Sub(sent) >= a.interval {
			pending, sent = make(chan error, 1), now
			go func(reply chan<- error) {
				// Any reply counts, even "false": OpenSSH answers unknown requests that way.
				_, _, err := c.Client.SendRequest("keepalive@openssh.com", true, nil)
				reply <- err
			}(pending)
		}
		// Wake when the silence reaches deadAfter, or when the next probe is due.
		next := last.Add(a.deadAfter)
		if pending == nil {
			if due := later(last, sent).Add(a.interval); due.Before(next) {
				next = due
			}
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(max(time.Until(next), 10*time.Millisecond))
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// LastHeard is when the last byte came from the server: when it went
// silent, for a connection lost to a dead path.
func (c *Client) LastHeard() time.Time {
	return time.Unix(0, c.hops[len(c.hops)-1].conn.(*rxConn).last.Load())
}
