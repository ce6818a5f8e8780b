package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// results holds every figure of one run; a zero value means "not measured".
type results struct {
	opts               options
	start, end         time.Time
	loadStart, loadEnd string
	jupyterClient      string

	cyc cycles

	local, cold, warm launches

	rtLocal, rtGopyk []time.Duration
	tpLocal, tpGopyk []float64
	launcherPeak     int // kB, after the round trips and throughput
	superPeak        int
	sshdConn         int // kB, per-connection sshd processes of one launcher
	idle             idleReport

	rtSSH map[string][]time.Duration

	scaleGopyk, scaleLocal scale

	rtt                time.Duration
	slowCold, slowWarm launches
	rtSlow             []time.Duration
	rtSlowSSH          []time.Duration

	errs []string
}

func benchCycles(ctx context.Context, b *bed, r *results) error {
	c, err := b.runCycles(ctx, r.opts.cycles)
	r.cyc = c
	return err
}

func benchLaunches(ctx context.Context, b *bed, r *results) error {
	cold := filepath.Join(b.sshd.Home, ".gopyk")
	err := b.runLaunches(ctx, r.opts.launches,
		series{"python3", "", &r.local},
		series{b.fastSpec, cold, &r.cold},
		series{b.fastSpec, "", &r.warm})
	return errors.Join(err, b.waitNoRemote(15*time.Second))
}

// benchKernels measures a local kernel and a gopyk kernel side by side,
// alternating, then watches the gopyk one idle.
func benchKernels(ctx context.Context, b *bed, r *results) error {
	lk, err := b.startLocal(ctx)
	if err != nil {
		return fmt.Errorf("local kernel: %w", err)
	}
	defer lk.shutdown(ctx)
	gk, err := b.startGopyk(ctx, b.fastSpec)
	if err != nil {
		return fmt.Errorf("gopyk kernel: %w", err)
	}
	defer gk.shutdown(ctx)
	rts, err := interleavedRoundTrips(ctx, r.opts.roundTrips, lk.c, gk.c)
	if err != nil {
		return fmt.Errorf("round trips (1 local, 2 gopyk): %w", err)
	}
	r.rtLocal, r.rtGopyk = rts[0], rts[1]
	for range r.opts.tpRuns {
		v, err := throughput(ctx, lk.c, r.opts.mb)
		if err != nil {
			return fmt.Errorf("local: %w", err)
		}
		r.tpLocal = append(r.tpLocal, v)
		if v, err = throughput(ctx, gk.c, r.opts.mb); err != nil {
			return fmt.Errorf("gopyk: %w", err)
		}
		r.tpGopyk = append(r.tpGopyk, v)
	}
	lk.shutdown(ctx)
	super := b.supervisor()
	if super == 0 {
		return errors.New("no remote supervisor found among the bench sshd's session processes")
	}
	r.launcherPeak, _ = memKB(gk.p.pid())
	r.superPeak, _ = memKB(super)
	r.sshdConn = b.sshdConnMem()
	// Idle as in Jupyter between cells: no client traffic at all.
	gk.c.Close()
	gk.c = nil
	if r.idle, err = b.watchIdle(ctx, gk.p.pid(), super, r.opts.idle); err != nil {
		return err
	}
	if gk.p.exited() {
		return fmt.Errorf("gopyk-kernel exited while idle: %s", gk.p.output())
	}
	if gk.c, err = connect(ctx, gk.ci, gk.p); err != nil {
		return fmt.Errorf("gopyk kernel after the idle window: %w", err)
	}
	if !gk.shutdown(ctx) {
		return errors.New("gopyk-kernel did not exit after shutdown_request")
	}
	return b.waitNoRemote(15 * time.Second)
}

func benchForwards(ctx context.Context, b *bed, r *results) error {
	h, err := b.startHandKernel(ctx)
	if err != nil {
		return err
	}
	defer h.stop()
	r.rtSSH = map[string][]time.Duration{}
	var errs []error
	for _, m := range []sshMode{sshExec, sshPty, sshNoSession} {
		d, err := b.forwardRoundTrips(ctx, h, m, b.sshd.ConfigFile, b.sshd.Alias, r.opts.roundTrips)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.rtSSH[m.name] = d
	}
	return errors.Join(errs...)
}

func benchScale(ctx context.Context, b *bed, r *results) error {
	r.scaleLocal = b.runScale(ctx, r.opts.scale, b.startLocal)
	r.scaleGopyk = b.runScale(ctx, r.opts.scale, func(ctx context.Context) (*kernel, error) {
		return b.startGopyk(ctx, b.fastSpec)
	})
	var errs []error
	for _, s := range []scale{r.scaleLocal, r.scaleGopyk} {
		for _, f := range s.failed {
			errs = append(errs, errors.New(f))
		}
	}
	if r.scaleGopyk.leftErr != nil {
		errs = append(errs, r.scaleGopyk.leftErr)
	}
	return errors.Join(errs...)
}

func benchSlow(ctx context.Context, b *bed, r *results) error {
	r.rtt = b.slow.rtt
	var errs []error
	var err error
	cold := filepath.Join(b.sshd.Home, ".gopyk")
	if err := b.runLaunches(ctx, r.opts.launches,
		series{b.slowSpec, cold, &r.slowCold},
		series{b.slowSpec, "", &r.slowWarm}); err != nil {
		errs = append(errs, err)
	}
	gk, err := b.startGopyk(ctx, b.slowSpec)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	if r.rtSlow, err = roundTrips(ctx, gk.c, r.opts.roundTrips); err != nil {
		errs = append(errs, err)
	}
	gk.shutdown(ctx)
	h, err := b.startHandKernel(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer h.stop()
	if r.rtSlowSSH, err = b.forwardRoundTrips(ctx, h, sshExec, b.slow.config, b.slow.alias, r.opts.roundTrips); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
