package sshconf

import (
	"fmt"
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

func aliveParams(s *Settings) (time.Duration, int) {
	iv, n := s.ServerAliveInterval, s.ServerAliveCountMax
	if iv <= 0 {
		iv = DefaultAliveInterval
	}
	if n <= 0 {
		n = DefaultAliveCountMax
	}
	return iv, n
}

// keepalive sends keepalive@openssh.com every interval, one request at a
// time (global requests serialize in x/crypto, stacking them hides a dead
// peer), and breaks the connection after countMax intervals without a reply.
func (c *Client) keepalive(interval time.Duration, countMax int) {
	defer c.wg.Done()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		reply := make(chan error, 1)
		go func() {
			// Any reply counts, even "false": OpenSSH answers unknown requests that way.
			_, _, err := c.Client.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		missed := 0
	wait:
		for {
			select {
			case err := <-reply:
				if err != nil {
					c.lost(fmt.Errorf("%w: keepalive: %v", ErrConnectionLost, err))
					return
				}
				break wait
			case <-c.done:
				<-reply // the closed connection ends the request
				return
			case <-tick.C:
				missed++
				if missed >= countMax {
					c.lost(fmt.Errorf("%w: no keepalive reply for %s (ServerAliveCountMax %d × ServerAliveInterval %s)",
						ErrKeepaliveFailed, time.Duration(countMax)*interval, countMax, interval))
					<-reply
					return
				}
			}
		}
	}
}
