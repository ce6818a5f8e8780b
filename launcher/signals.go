package launcher

import (
	"fmt"
	"os"
	"syscall"
)

// action is what a signal, the Ctrl+D menu or the context asks of the kernel.
type action int

const (
	actNothing       action = iota
	actInterrupt            // interrupt the running cell, keep going
	actRestart              // restart in place, same ports and key
	actShutdown             // shut the kernel down unless persistent (then leave)
	actForceShutdown        // shut the kernel down even if persistent
	actLeave                // exit and leave the kernel running
)

// final reports whether the launcher exits after the action.
func (a action) final() bool {
	return a == actShutdown || a == actForceShutdown || a == actLeave
}

func (a action) String() string {
	switch a {
	case actInterrupt:
		return "interrupt"
	case actRestart:
		return "restart"
	case actShutdown:
		return "shutdown"
	case actForceShutdown:
		return "shutdown (even if persistent)"
	case actLeave:
		return "leave"
	}
	return "nothing"
}

// request is an action and where it came from, for the log.
type request struct {
	act action
	why string // "SIGTERM", "Ctrl+D", ...
}

func handledSignals() []os.Signal {
	s := make([]os.Signal, len(signalTable))
	for i, e := range signalTable {
		s[i] = e.sig
	}
	return s
}

func requestFor(sig os.Signal) request {
	for _, e := range signalTable {
		if e.sig == sig {
			return request{act: e.act, why: e.name}
		}
	}
	return request{act: actNothing, why: sig.String()}
}

func signalName(s syscall.Signal) string {
	for _, e := range signalTable {
		if e.sig == s {
			return e.name
		}
	}
	return fmt.Sprintf("signal %d", int(s))
}
