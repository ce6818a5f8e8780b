package launcher

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
)

// dispatcher turns signals, menu answers and the end of the caller's
// context into requests for the launcher's main loop. It runs on its own
// goroutine so that a request to stop can cancel work in progress (a launch
// or a restart stuck on a dead network) instead of queueing behind it.
type dispatcher struct {
	ctx  context.Context // Main's context: its end is a shutdown request
	log  *slog.Logger
	reqs chan request // to the main loop
	menu chan request // from the Ctrl+D menu

	// workCtx bounds launches, restarts and interrupts; a final request
	// cancels it.
	workCtx    context.Context
	cancelWork context.CancelFunc

	ready atomic.Bool
	// abortOnInterrupt makes SIGINT before the kernel is ready abort the
	// launch: Ctrl+C on a terminal. Under Jupyter (no terminal) an early
	// SIGINT is only an impatient interrupt and is dropped.
	abortOnInterrupt bool
	mu               sync.Mutex
	final            *request // the first final request seen
	stop             chan struct{}
}

func newDispatcher(ctx context.Context, log *slog.Logger) *dispatcher {
	d := &dispatcher{
		ctx:  ctx,
		log:  log,
		reqs: make(chan request, 16),
		menu: make(chan request),
		stop: make(chan struct{}),
	}
	d.workCtx, d.cancelWork = context.WithCancel(context.Background())
	return d
}

func (d *dispatcher) setReady() { d.ready.Store(true) }

// finalRequest returns the first request that asked the launcher to end.
func (d *dispatcher) finalRequest() (request, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.final == nil {
		return request{}, false
	}
	return *d.final, true
}

// fromMenu hands a menu answer over; false once the launcher is ending.
func (d *dispatcher) fromMenu(r request) bool {
	select {
	case d.menu <- r:
		return true
	case <-d.stop:
		return false
	}
}

// loop runs until stop is closed.
func (d *dispatcher) loop(stop <-chan struct{}, sigs <-chan os.Signal, parentGone, interrupts <-chan struct{}) {
	defer close(d.stop)
	ctxDone := d.ctx.Done()
	for {
		var r request
		select {
		case <-stop:
			return
		case s := <-sigs:
			r = requestFor(s)
		case r = <-d.menu:
		case <-interrupts:
			r = request{act: actInterrupt, why: interruptEnv}
		case <-ctxDone:
			ctxDone = nil
			r = request{act: actShutdown, why: "context cancelled"}
		case <-parentGone:
			parentGone = nil
			r = request{act: actShutdown, why: "the Jupyter process that started gopyk-kernel (" + parentEnv + ") is gone"}
		}
		if r.act == actInterrupt && d.abortOnInterrupt && !d.ready.Load() {
			r.act = actShutdown
		}
		switch {
		case r.act == actNothing:
			continue
		case r.act.final():
			d.mu.Lock()
			first := d.final == nil
			if first {
				d.final = &r
			}
			d.mu.Unlock()
			if !first {
				d.log.Info("already ending; ignored", "by", r.why)
				continue
			}
			d.cancelWork()
		case !d.ready.Load():
			d.log.Info("the kernel is not ready yet; ignored", "by", r.why, "action", r.act.String())
			continue
		}
		select {
		case d.reqs <- r:
		case <-stop:
			return
		}
	}
}
