//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gopyk/gopyk/wire"
)

// results holds every figure of one run; a zero value means "not measured".
type results struct {
	opts               options
	start, end         time.Time
	loadStart, loadEnd string
	jupyterClient      string

	cyc cycles

	local, cold, warm      launches
	directCold, directWarm launches // master off
	baseCold, baseWarm     launches // the -baseline-bin build, interleaved with cold and warm
	master, openssh        launches // repeated launches through a user's OpenSSH master, and with --ssh-client openssh

	rtLocal, rtGopyk []time.Duration
	tpLocal, tpGopyk []float64
	rtSession        []time.Duration // streams session, in the same turns
	tpSession        []float64
	hbFloodGopyk     []time.Duration // heartbeats while both kernels print a flood at once, alternating
	hbFloodSession   []time.Duration
	launcherPeak     int // kB, after the round trips and throughput
	superPeak        int
	sshdConn         int // kB, per-connection sshd processes of one launcher
	idle             idleReport

	rtSSH map[string][]time.Duration

	floodLocal, floodGopyk            flood // gopyk behind a 20 MB/s link
	floodLauncherPeak, floodSuperPeak int   // kB, of a gopyk-kernel and supervisor started for the flood

	// The hand kernel through OpenSSH's ControlMaster (ssh -M, ssh -S -O
	// forward -L: sshpyk's path), and through gopyk's master the same way.
	rtCM, rtGopykMaster []time.Duration

	scaleGopyk, scaleLocal scale
	scaleConns             int           // TCP connections in sshd's log for the gopyk kernels at once
	scaleMasterGone        time.Duration // from the last shutdown until their master had exited

	rtt                time.Duration
	slowLocal          launches // the local kernel again, interleaved with the slow launches
	slowCold, slowWarm launches // through gopyk's master: the first launch (no master, no cached launcher), then with a live master
	slowDirectCold     launches // master off: each kernel dials its own connection, as before the master
	slowDirectWarm     launches
	baseSlowCold       launches // the -baseline-bin build at rtt, interleaved with the above
	baseSlowWarm       launches
	slowMaster         launches
	slowOpenSSH        launches
	rtSlow             []time.Duration
	rtSlowSSH          []time.Duration
	rtSlowCM           []time.Duration // the hand kernel through an OpenSSH ControlMaster at rtt, and through gopyk's master
	rtSlowGopykMaster  []time.Duration
	intLocal, intSlow  []time.Duration // SIGINT → KeyboardInterrupt reply: the local kernel, gopyk at rtt

	rtWS, rtWSDirect []time.Duration // through the Nagle-on gateway, and direct TCP in the same turns

	errs  []string // sections that could not be measured
	notes []string // failures a target row judges
}

func benchCycles(ctx context.Context, b *bed, r *results) error {
	c, err := b.runCycles(ctx, r.opts.cycles)
	r.cyc = c
	return err
}

func benchLaunches(ctx context.Context, b *bed, r *results) error {
	cold := filepath.Join(b.sshd.Home, ".gopyk")
	ss := []series{
		{spec: "python3", out: &r.local},
		{spec: b.fastSpec, coldDir: cold, out: &r.cold, noMaster: true},
		{spec: b.fastSpec, out: &r.warm},
		{spec: b.directSpec, coldDir: cold, out: &r.directCold},
		{spec: b.directSpec, out: &r.directWarm},
		{spec: b.masterSpec, out: &r.master},
		{spec: b.opensshSpec, out: &r.openssh},
	}
	if b.baseSpec != "" {
		// Each build's repeated launch follows its own cold one (which
		// deleted the other build's cache).
		ss = append(ss, series{spec: b.baseSpec, coldDir: cold, out: &r.baseCold, noMaster: true}, series{spec: b.baseSpec, out: &r.baseWarm})
	}
	err := b.runLaunches(ctx, r.opts.launches, ss...)
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
	sk, err := b.startGopyk(ctx, b.sessionSpec)
	if err != nil {
		return fmt.Errorf("gopyk kernel, streams session: %w", err)
	}
	defer sk.shutdown(ctx)
	if err := b.roundTripsWithSSH(ctx, r, lk, gk, sk); err != nil {
		return err
	}
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
		if v, err = throughput(ctx, sk.c, r.opts.mb); err != nil {
			return fmt.Errorf("gopyk, streams session: %w", err)
		}
		r.tpSession = append(r.tpSession, v)
	}
	if r.hbFloodGopyk, r.hbFloodSession, err = heartbeatsUnderFlood(ctx, r.opts.roundTrips, r.opts.mb, gk, sk); err != nil {
		return err
	}
	lk.shutdown(ctx)
	// The footprint below is the forwarding kernel's alone.
	if !sk.shutdown(ctx) {
		return errors.New("gopyk-kernel (streams session) did not exit after shutdown_request")
	}
	if err := b.waitRemoteAtMost(ctx, 2, 15*time.Second); err != nil {
		return err
	}
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

// benchScale records failed kernels as notes, not errors: they are what
// the target row judges (e.g. sshd's MaxStartups refusing connections).
func benchScale(ctx context.Context, b *bed, r *results) error {
	r.scaleLocal = b.runScale(ctx, r.opts.scale, b.startLocal)
	// No master yet: the kernels, all at once, race to start the host's,
	// which must end as one TCP connection and, its persist time after the
	// last shutdown, leave nothing behind.
	if err := b.gopyk(ctx, "connect", "--stop", "--kernel-name", b.scaleSpec); err != nil {
		return err
	}
	logStart := fileSize(b.sshd.LogFile)
	r.scaleGopyk = b.runScale(ctx, r.opts.scale, func(ctx context.Context) (*kernel, error) {
		return b.startGopyk(ctx, b.scaleSpec)
	})
	r.scaleConns = strings.Count(fileTail(b.sshd.LogFile, logStart), "Connection from ")
	t0 := time.Now()
	if err := b.waitMastersGone(scalePersist + 30*time.Second); err != nil {
		r.notes = append(r.notes, "scale, gopyk: "+err.Error())
	} else {
		r.scaleMasterGone = time.Since(t0)
	}
	for _, s := range []struct {
		name string
		sc   scale
	}{{"local", r.scaleLocal}, {"gopyk", r.scaleGopyk}} {
		for _, f := range s.sc.failed {
			r.notes = append(r.notes, fmt.Sprintf("scale, %s: %s", s.name, strings.ReplaceAll(f, "\n", " ")))
		}
		if s.sc.leftErr != nil {
			r.notes = append(r.notes, fmt.Sprintf("scale, %s: %v", s.name, s.sc.leftErr))
		}
	}
	return nil
}

// roundTripsWithSSH measures the local and the gopyk kernels (forwarding,
// then session) and OpenSSH's forwards to a kernel started by hand, in the
// same turns; the hand kernel and the forwards are gone when it returns.
func (b *bed) roundTripsWithSSH(ctx context.Context, r *results, lk, gk, sk *kernel) error {
	// OpenSSH's forwards to a kernel started by hand, measured in the same
	// turns as the local and the gopyk kernel.
	h, err := b.startHandKernel(ctx)
	if err != nil {
		return err
	}
	defer h.stop()
	modes := []sshMode{sshExec, sshPty, sshNoSession}
	clients := []*wire.Client{lk.c, gk.c, sk.c}
	for _, m := range modes {
		c, p, err := b.forward(ctx, h, m, b.sshd.ConfigFile, b.sshd.Alias)
		if err != nil {
			return err
		}
		defer p.stop(3 * time.Second)
		defer c.Close()
		clients = append(clients, c)
	}
	// sshpyk's path, and the same forwards through gopyk's master.
	cmc, gmc, err := b.masterPaths(ctx, h, b.sshd.ConfigFile, b.sshd.Alias)
	if err != nil {
		return err
	}
	defer cmc.Close()
	defer gmc.Close()
	clients = append(clients, cmc, gmc)
	rts, err := interleavedRoundTrips(ctx, r.opts.roundTrips, clients...)
	if err != nil {
		return fmt.Errorf("round trips (local, gopyk, gopyk session, the ssh modes in order, ControlMaster, gopyk's master): %w", err)
	}
	r.rtLocal, r.rtGopyk, r.rtSession = rts[0], rts[1], rts[2]
	r.rtSSH = map[string][]time.Duration{}
	for i, m := range modes {
		r.rtSSH[m.name] = rts[3+i]
	}
	r.rtCM, r.rtGopykMaster = rts[3+len(modes)], rts[4+len(modes)]
	return nil
}

func benchSlow(ctx context.Context, b *bed, r *results) error {
	r.rtt = 2 * r.opts.oneWay
	var errs []error
	var err error
	cold := filepath.Join(b.sshd.Home, ".gopyk")
	ss := []series{
		{spec: "python3", out: &r.slowLocal},
		{spec: b.slowSpec, coldDir: cold, out: &r.slowCold, noMaster: true},
		{spec: b.slowSpec, out: &r.slowWarm},
		{spec: b.slowDirectSpec, coldDir: cold, out: &r.slowDirectCold},
		{spec: b.slowDirectSpec, out: &r.slowDirectWarm},
		{spec: b.slowMasterSpec, out: &r.slowMaster},
		{spec: b.slowOpensshSpec, out: &r.slowOpenSSH},
	}
	if b.baseSlowSpec != "" {
		ss = append(ss, series{spec: b.baseSlowSpec, coldDir: cold, out: &r.baseSlowCold, noMaster: true}, series{spec: b.baseSlowSpec, out: &r.baseSlowWarm})
	}
	if err := b.runLaunches(ctx, r.opts.launches, ss...); err != nil {
		errs = append(errs, err)
	}
	gk, err := b.startGopyk(ctx, b.slowSpec)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer gk.shutdown(ctx)
	h, err := b.startHandKernel(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer h.stop()
	c, p, err := b.forward(ctx, h, sshExec, b.slow.ConfigFile, b.slow.Alias)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer p.stop(3 * time.Second)
	defer c.Close()
	cmc, gmc, err := b.masterPaths(ctx, h, b.slow.ConfigFile, b.slow.Alias)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer cmc.Close()
	defer gmc.Close()
	rts, err := interleavedRoundTrips(ctx, r.opts.roundTrips, gk.c, c, cmc, gmc)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("round trips (1 gopyk, 2 %s, 3 ControlMaster, 4 gopyk's master): %w", sshExec.name, err))...)
	}
	r.rtSlow, r.rtSlowSSH, r.rtSlowCM, r.rtSlowGopykMaster = rts[0], rts[1], rts[2], rts[3]
	lk, err := b.startLocal(ctx)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("local kernel: %w", err))...)
	}
	defer lk.shutdown(ctx)
	its, err := interrupts(ctx, r.opts.interrupts, lk, gk)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("interrupts (1 local, 2 gopyk): %w", err))...)
	}
	r.intLocal, r.intSlow = its[0], its[1]
	return errors.Join(errs...)
}

// heartbeatsUnderFlood times n heartbeats on each kernel, alternating,
// while both print mb MiB at once: what a flood costs the other streams
// when they share one exec session (sk) against a channel each (gk). Both
// floods run together so that both paths see the same machine.
func heartbeatsUnderFlood(ctx context.Context, n, mb int, gk, sk *kernel) (fwd, sess []time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	ks := []*kernel{gk, sk}
	hbs := make([]*wire.Client, len(ks))
	for i, k := range ks {
		if hbs[i], err = connect(ctx, k.ci, k.p); err != nil {
			return nil, nil, fmt.Errorf("heartbeat client %d: %w", i+1, err)
		}
		defer hbs[i].Close()
		if err = hbs[i].Heartbeat(ctx); err != nil {
			return nil, nil, fmt.Errorf("heartbeat client %d: %w", i+1, err)
		}
	}
	started := make(chan struct{}, len(ks)) // one per flood, at its first output
	done := make(chan error, len(ks))
	for _, k := range ks {
		var once sync.Once
		go func() {
			_, err := k.c.Execute(ctx, throughputCell(mb), wire.OnIOPub(func(m *wire.Message) {
				if m.Header.MsgType == "stream" {
					once.Do(func() { started <- struct{}{} })
				}
			}))
			done <- err
		}()
	}
	// However this ends, both floods have ended (or ctx has) on return.
	defer func() {
		for range ks {
			if ferr := <-done; ferr != nil && err == nil {
				err = fmt.Errorf("flood: %w", ferr)
			}
		}
	}()
	for range ks {
		select {
		case <-started:
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("no flood output: %w", ctx.Err())
		}
	}
	out := make([][]time.Duration, len(ks))
	for range n {
		for i, hb := range hbs {
			t0 := time.Now()
			if err := hb.Heartbeat(ctx); err != nil {
				cancel()
				return nil, nil, fmt.Errorf("heartbeat %d: %w", i+1, err)
			}
			out[i] = append(out[i], time.Since(t0))
		}
	}
	return out[0], out[1], nil
}
