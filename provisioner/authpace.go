package provisioner

import (
	"errors"
	"log/slog"
	"time"

	"github.com/gopyk/gopyk/sshconf"
	"github.com/gopyk/gopyk/transport"
)

// Re-login pacing. A refused login is not a network error: retrying it at
// network pace gets the user's address banned (fail2ban's default bans
// after 5 failures) and can lock the account. So: at most authFailLimit
// refused logins per authFailWindow, spaced out, each logged at WARN.
var (
	authFailLimit  = 3
	authFailWindow = 10 * time.Minute
	authFailFirst  = 30 * time.Second // wait after the first refusal; doubles
	authFailMax    = 5 * time.Minute
	// A login nobody can answer sends no answer and so costs no failed
	// login; it is tried this often, so a master opened meanwhile
	// (`ssh -M -f -N host`) or a key brings the kernel back.
	cannotAskEvery = 10 * time.Second
	// masterPoll: while a re-login waits, the host's ControlPath is
	// checked this often (a local socket), so that a master the user opens
	// brings the kernel back at once.
	masterPoll = time.Second
)

// authPacer paces the re-logins of one kernel. Only its monitor uses it.
type authPacer struct {
	fails     []time.Time
	saidCannt bool
}

// next says how long to wait before the next attempt after err, and
// whether err was a login failure at all (false: a network error, paced by
// the caller's own backoff).
func (a *authPacer) next(err error, now time.Time, log *slog.Logger, host string) (time.Duration, bool) {
	switch {
	case errors.Is(err, sshconf.ErrCannotAsk):
		if !a.saidCannt {
			log.Warn("cannot log in again: nobody can answer the server; the remote kernel stays up for its grace period, and a master opened now brings it back",
				"host", host, "err", err)
			a.saidCannt = true
		}
		return cannotAskEvery, true
	case errors.Is(err, sshconf.ErrAuth):
		a.saidCannt = false
		kept := a.fails[:0]
		for _, t := range a.fails {
			if now.Sub(t) < authFailWindow {
				kept = append(kept, t)
			}
		}
		a.fails = append(kept, now)
		n := len(a.fails)
		wait := min(authFailFirst<<(n-1), authFailMax)
		if n >= authFailLimit {
			// The window must pass over the oldest refusal first.
			wait = max(wait, a.fails[0].Add(authFailWindow).Sub(now))
		}
		log.Warn("the server refused the login; trying again later", "host", host, "err", err,
			"refused_in_window", n, "window", authFailWindow, "next_try_in", wait.Round(time.Second))
		return wait, true
	}
	a.saidCannt = false
	return 0, false
}

// paceWait waits d before the next re-login, less when an OpenSSH master
// starts answering at the host's ControlPath meanwhile (the next attempt
// goes through it: no login). A master that already answered and failed
// (its own connection stalled) is not a reason to try again sooner. False
// when the kernel was closed.
func (k *kernel) paceWait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	var poll <-chan time.Time
	target := k.route.Target()
	if target.ControlPath != "" && !transport.MasterAlive(k.ctx, target) {
		tk := time.NewTicker(masterPoll)
		defer tk.Stop()
		poll = tk.C
	}
	for {
		select {
		case <-t.C:
			return true
		case <-k.ctx.Done():
			return false
		case <-poll:
			if transport.MasterAlive(k.ctx, target) {
				k.log.Info("an OpenSSH master answers at ControlPath: reconnecting through it", "host", k.cfg.Gopyk.SSHHostAlias, "control_path", target.ControlPath)
				return true
			}
		}
	}
}
