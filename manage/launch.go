package manage

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/provisioner"
	"github.com/gopyk/gopyk/wire"
)

// launchStep is one timed step of `gopyk list --launch`.
type launchStep struct {
	Step    string  `json:"step"` // start, ready, cell, shutdown
	Status  Status  `json:"status"`
	Seconds float64 `json:"seconds"`
	Message string  `json:"message"`
}

// launchCell is the one cell --launch runs: it shows where the kernel runs.
const launchCell = "import os, socket, sys; print(socket.gethostname(), os.getpid(), sys.executable)"

// trialLaunch launches s for real, as gopyk-kernel would (same provisioner),
// runs one cell through the local forwards and shuts the kernel down,
// timing each step. A failed step ends the trial; the provisioner leaves no
// remote process behind a failed launch.
func (a *App) trialLaunch(ctx context.Context, s *kernelspec.Spec) (Check, []launchStep) {
	var steps []launchStep
	fail := func(step string, t0 time.Time, err error) (Check, []launchStep) {
		steps = append(steps, launchStep{Step: step, Status: StatusError, Seconds: secs(time.Since(t0)), Message: oneLine(err.Error())})
		return Check{Label: "Launch", Status: StatusError, Message: step + " failed: " + oneLine(err.Error())}, steps
	}
	ports, err := wire.FreeTCPPorts(5)
	if err != nil {
		return fail("start", time.Now(), err)
	}
	ci := wire.ConnInfo{IP: "127.0.0.1", Key: wire.NewKey(), Transport: "tcp", SignatureScheme: wire.SchemeHMACSHA256, KernelName: s.Name}
	ci.SetPorts(ports)
	started := newStartedHook(a.log.Handler())
	cfg := provisioner.Config{SpecName: s.Name, Gopyk: *s.Gopyk, Local: ci, Log: slog.New(started), GiveUpAfter: time.Minute}

	wait := time.Duration(s.Gopyk.LaunchTimeout) * time.Second
	if wait <= 0 {
		wait = kernelspec.DefaultLaunchTimeout * time.Second
	}
	if s.Gopyk.Launcher == "slurm" {
		q := s.Gopyk.QueueTimeout
		if q <= 0 {
			q = kernelspec.DefaultQueueTimeout
		}
		wait += time.Duration(q) * time.Second
	}
	t0 := time.Now()
	lctx, cancel := context.WithTimeout(ctx, wait+30*time.Second)
	k, err := provisioner.Launch(lctx, cfg)
	cancel()
	if err != nil {
		return fail("start", t0, err)
	}
	ready := time.Now()
	if at, host := started.get(); !at.IsZero() {
		steps = append(steps,
			launchStep{Step: "start", Status: StatusOK, Seconds: secs(at.Sub(t0)), Message: "remote kernel started on " + host + " (ssh connection, remote launcher, kernel process)"},
			launchStep{Step: "ready", Status: StatusOK, Seconds: secs(ready.Sub(at)), Message: "kernel answered kernel_info through the local forwards"})
	} else {
		steps = append(steps, launchStep{Step: "start", Status: StatusOK, Seconds: secs(ready.Sub(t0)), Message: "kernel started and answered through the local forwards"})
	}

	shutdown := func() error {
		sctx, cancel := context.WithTimeout(context.Background(), time.Duration(cmpOr(s.Gopyk.ShutdownTimeout, kernelspec.DefaultShutdownTimeout))*time.Second+30*time.Second)
		defer cancel()
		return k.Shutdown(sctx)
	}
	t1 := time.Now()
	out, err := runCell(ctx, k.Local())
	if err != nil {
		shutdown()
		return fail("cell", t1, err)
	}
	steps = append(steps, launchStep{Step: "cell", Status: StatusOK, Seconds: secs(time.Since(t1)), Message: "ran one cell: " + out})

	t2 := time.Now()
	if err := shutdown(); err != nil {
		return fail("shutdown", t2, err)
	}
	steps = append(steps, launchStep{Step: "shutdown", Status: StatusOK, Seconds: secs(time.Since(t2)), Message: "remote kernel shut down"})
	return Check{Label: "Launch", Status: StatusOK, Message: fmt.Sprintf("launched, ran a cell and shut down in %.2f s", time.Since(t0).Seconds())}, steps
}

func runCell(ctx context.Context, ci wire.ConnInfo) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	c, err := wire.Dial(ctx, ci)
	if err != nil {
		return "", fmt.Errorf("connect a client to the local forwards: %w", err)
	}
	defer c.Close()
	// Until iopub delivers, the cell's output could be lost (ZeroMQ's late joiner).
	if err := c.WaitReady(ctx); err != nil {
		return "", fmt.Errorf("wait for the kernel through the local forwards: %w", err)
	}
	r, err := c.Execute(ctx, launchCell)
	if err != nil {
		return "", fmt.Errorf("execute: %w", err)
	}
	if r.Status != "ok" {
		return "", fmt.Errorf("the cell ended %s: %s: %s", r.Status, r.Ename, r.Evalue)
	}
	return strings.TrimSpace(r.Stdout), nil
}

func secs(d time.Duration) float64 { return float64(d.Round(time.Millisecond)) / float64(time.Second) }

func cmpOr(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}

// startedHook notes when the provisioner logs that the remote kernel
// started, to split the launch into its SSH/remote part and the wait for the
// kernel's first answer; it passes every record on to next.
type startedHook struct {
	next slog.Handler
	seen *startedAt // shared by the handlers WithAttrs/WithGroup derive
}

type startedAt struct {
	mu   sync.Mutex
	at   time.Time
	host string
}

func newStartedHook(next slog.Handler) *startedHook {
	return &startedHook{next: next, seen: &startedAt{}}
}

func (h *startedHook) Enabled(context.Context, slog.Level) bool { return true }

func (h *startedHook) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "remote kernel started" {
		h.seen.mu.Lock()
		h.seen.at = r.Time
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "remote_host" {
				h.seen.host = a.Value.String()
			}
			return true
		})
		h.seen.mu.Unlock()
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *startedHook) WithAttrs(as []slog.Attr) slog.Handler {
	return &startedHook{next: h.next.WithAttrs(as), seen: h.seen}
}

func (h *startedHook) WithGroup(name string) slog.Handler {
	return &startedHook{next: h.next.WithGroup(name), seen: h.seen}
}

func (h *startedHook) get() (time.Time, string) {
	h.seen.mu.Lock()
	defer h.seen.mu.Unlock()
	return h.seen.at, h.seen.host
}
