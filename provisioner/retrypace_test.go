package provisioner

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gopyk/gopyk/sshconf"
	"github.com/gopyk/gopyk/wsproxy"
)

// simulate runs a pacer through d of failures (each attempt costs cost),
// with errAt giving each attempt's error; it returns the attempt times
// (from the start) and how many were new causes.
func simulate(d, cost time.Duration, errAt func(time.Duration) error) (times []time.Duration, newCauses int) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newRetryPacer(t0)
	for now := t0; now.Sub(t0) < d; {
		times = append(times, now.Sub(t0))
		now = now.Add(cost)
		wait, nc := p.next(errAt(now.Sub(t0)), now)
		if nc {
			newCauses++
		}
		now = now.Add(wait)
	}
	return times, newCauses
}

// A stopped JupyterHub server (the gateway answers 302, "not running"):
// ten minutes of it cost at most ~20 attempts, and its one cause is one
// INFO line.
func TestRetryPaceServerNotRunning(t *testing.T) {
	notRunning := &sshconf.DialError{Target: "hub", Kind: sshconf.ErrProxyCommand,
		Err: &wsproxy.Error{URL: "wss://hub/user/a/sshd/", Kind: wsproxy.ErrServerNotRunning, Status: 302, Msg: "server answered 302 Found: the notebook server is not running"}}
	times, causes := simulate(10*time.Minute, 50*time.Millisecond, func(time.Duration) error { return notRunning })
	t.Logf("302 for 10 minutes: %d attempts at %v", len(times), roundAll(times))
	if len(times) > 20 {
		t.Errorf("%d attempts in 10 minutes of a stopped server, want ≤ 20", len(times))
	}
	if causes != 1 {
		t.Errorf("%d new causes logged, want 1", causes)
	}
}

// A network that is down: an attempt a second while the outage is young,
// then at most one a minute; a server that then answers is a new cause.
func TestRetryPaceNetworkThenAnswer(t *testing.T) {
	down := &sshconf.DialError{Target: "h", Kind: sshconf.ErrTimeout, Err: errors.New("10.0.0.2:22 is unreachable: connect: network is unreachable")}
	rejected := &sshconf.DialError{Target: "h", Kind: sshconf.ErrProxyCommand,
		Err: &wsproxy.Error{Kind: wsproxy.ErrAuthRejected, Status: 403, Msg: "server answered 403 Forbidden: the token or cookie was rejected"}}
	times, causes := simulate(20*time.Minute, 10*time.Millisecond, func(at time.Duration) error {
		if at > 15*time.Minute {
			return rejected
		}
		return down
	})
	var young, late, answered int
	for _, at := range times {
		switch {
		case at < fastFor:
			young++
		case at >= 6*time.Minute && at < 15*time.Minute:
			late++
		case at >= 15*time.Minute:
			answered++
		}
	}
	t.Logf("young %d, minutes 6-15 %d, 15-20 (403) %d", young, late, answered)
	if young < int(fastFor/time.Second)*9/10 {
		t.Errorf("%d attempts in the first %v of an outage, want about one a second", young, fastFor)
	}
	if late > 11 {
		t.Errorf("%d attempts in minutes 6-15, want at most ~1 a minute", late)
	}
	if answered > 9 {
		t.Errorf("%d attempts in 5 minutes of 403, want it backed off", answered)
	}
	if causes != 2 {
		t.Errorf("%d new causes, want 2 (unreachable, rejected)", causes)
	}
}

func TestFailureCauseKinds(t *testing.T) {
	a := fmt.Errorf("gpk: %w", &sshconf.DialError{Kind: sshconf.ErrRefused, Err: errors.New("connection refused by 1.2.3.4:22")})
	b := fmt.Errorf("gpk: %w", &sshconf.DialError{Kind: sshconf.ErrRefused, Err: errors.New("connection refused by 1.2.3.5:22")})
	if failureCause(a) != failureCause(b) {
		t.Error("two refusals are not one cause")
	}
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Second)
	}
	return out
}
