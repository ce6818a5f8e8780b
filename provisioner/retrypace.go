package provisioner

import (
	"errors"
	"time"

	"github.com/gopyk/gopyk/sshconf"
	"github.com/gopyk/gopyk/wsproxy"
)

// Reconnect pacing by cause. A network that is down fails a dial at once
// (no route, no DNS), so for the first minutes an attempt a second costs
// next to nothing and the first cell after the network's return runs within
// 2 s; an outage that lasts longer is a closed laptop or a dead VPN, and
// then one attempt a minute is enough. A server that answers "not running"
// (a stopped JupyterHub server), "no such endpoint" or "rejected" will not
// change its answer within a second: those back off from the start, so a
// Hub is not asked a question a second for 12 hours.
var (
	backoffStart  = 250 * time.Millisecond // network errors: first wait, doubling
	backoffMax    = time.Second            // network errors: wait while the outage is young
	fastFor       = 5 * time.Minute        // how long an outage is young
	slowMax       = time.Minute            // any cause: the wait it grows to
	answeredFirst = 5 * time.Second        // a server's answer: first wait, doubling
)

// answered is a failure the server said in words: retrying soon gets the
// same words.
func answered(err error) bool {
	return errors.Is(err, wsproxy.ErrServerNotRunning) || errors.Is(err, wsproxy.ErrServerStarting) ||
		errors.Is(err, wsproxy.ErrNoEndpoint) || errors.Is(err, wsproxy.ErrAuthRejected)
}

// failureCause names err's kind, so that a new reason is told apart from
// the same one again.
func failureCause(err error) string {
	for _, kind := range []error{
		wsproxy.ErrServerNotRunning, wsproxy.ErrServerStarting, wsproxy.ErrNoEndpoint, wsproxy.ErrAuthRejected,
		wsproxy.ErrServerGone, wsproxy.ErrConnectionLost,
		sshconf.ErrUnknownHost, sshconf.ErrRefused, sshconf.ErrTimeout, sshconf.ErrHandshakeClosed,
		sshconf.ErrProxyCommand, sshconf.ErrJump, sshconf.ErrConnectionLost, sshconf.ErrKeepaliveFailed,
	} {
		if errors.Is(err, kind) {
			return kind.Error()
		}
	}
	return err.Error()
}

// retryPacer paces one outage's reconnect attempts (refused logins excepted:
// authPacer). Only the monitor uses it.
type retryPacer struct {
	start    time.Time // the outage began
	backoff  time.Duration
	lastWhy  string
	attempts int
}

func newRetryPacer(start time.Time) *retryPacer { return &retryPacer{start: start} }

// next says how long to wait after an attempt that failed with err at now,
// and whether its cause differs from the attempt before (log that one).
func (p *retryPacer) next(err error, now time.Time) (wait time.Duration, newCause bool) {
	p.attempts++
	why := failureCause(err)
	newCause = why != p.lastWhy
	p.lastWhy = why
	switch {
	case answered(err):
		if newCause || p.backoff < answeredFirst {
			p.backoff = answeredFirst
		} else {
			p.backoff = min(p.backoff*2, slowMax)
		}
	case now.Sub(p.start) < fastFor:
		if p.backoff <= 0 || p.backoff > backoffMax {
			p.backoff = backoffStart
		} else {
			p.backoff = min(p.backoff*2, backoffMax)
		}
	default:
		p.backoff = min(max(p.backoff*2, backoffMax), slowMax)
	}
	return p.backoff, newCause
}
