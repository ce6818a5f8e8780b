//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/provisioner"
	"github.com/gopyk/gopyk/wire"
)

// memory is a process's peak and current RSS in kB.
type memory struct{ peak, rss int }

// supervisor finds the remote supervisor: a session process of the bench
// sshd running gopyk's launcher that is not the kernel.
func (b *bed) supervisor() int {
	for _, pid := range b.remoteKernels() {
		if !strings.Contains(cmdline(pid), "ipykernel") {
			return pid
		}
	}
	return 0
}

// sshdConnMem sums the RSS of the per-connection sshd processes.
func (b *bed) sshdConnMem() int {
	sum := 0
	for _, pid := range b.sshd.ConnPIDs() {
		_, rss := memKB(pid)
		sum += rss
	}
	return sum
}

// idleReport is what a launcher and its supervisor did while nobody used the kernel.
type idleReport struct {
	window      time.Duration
	launcherCPU float64 // % of one core
	superCPU    float64
	started     []string // processes started by gopyk-kernel, or by/under the bench sshd
	sshSystem   int      // new ssh client processes anywhere on the machine
	launcher    memory   // at the end of the window
	super       memory
}

// watchIdle samples /proc every 25 ms for window and records every process
// that appears below the launcher or the bench sshd, or in one of the bench
// sshd's sessions (daemonised processes carry its GOPYK_TESTBED tag).
func (b *bed) watchIdle(ctx context.Context, launcher, super int, window time.Duration) (idleReport, error) {
	rep := idleReport{window: window}
	type key struct {
		pid   int
		start int64
	}
	seen := map[key]bool{}
	ppid := map[int]int{}
	for _, pid := range pids() {
		if st, ok := readStat(pid); ok {
			seen[key{pid, st.startTicks}] = true
			ppid[pid] = st.ppid
		}
	}
	sshdPID := b.sshd.PID()
	tag := []byte("GOPYK_TESTBED=" + b.sshd.Dir)
	below := func(pid int) bool {
		for i := 0; i < 64 && pid > 1; i++ {
			if pid == launcher || pid == sshdPID || pid == super {
				return true
			}
			pid = ppid[pid]
		}
		return false
	}
	l0, _ := readStat(launcher)
	s0, _ := readStat(super)
	t0 := time.Now()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for time.Since(t0) < window {
		select {
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-tick.C:
		}
		for _, pid := range pids() {
			st, ok := readStat(pid)
			if !ok {
				continue
			}
			k := key{pid, st.startTicks}
			if seen[k] {
				continue
			}
			seen[k] = true
			ppid[pid] = st.ppid
			if st.comm == "ssh" {
				rep.sshSystem++
			}
			env, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
			if below(pid) || bytes.Contains(env, tag) {
				rep.started = append(rep.started, fmt.Sprintf("%d %s (%s)", pid, st.comm, cmdline(pid)))
			}
		}
	}
	elapsed := time.Since(t0).Seconds()
	l1, _ := readStat(launcher)
	s1, _ := readStat(super)
	rep.launcherCPU = float64(l1.cpuTicks-l0.cpuTicks) / clockTicks / elapsed * 100
	if super != 0 {
		rep.superCPU = float64(s1.cpuTicks-s0.cpuTicks) / clockTicks / elapsed * 100
	}
	rep.launcher.peak, rep.launcher.rss = memKB(launcher)
	rep.super.peak, rep.super.rss = memKB(super)
	return rep, nil
}

// cycles is the leak check: launch and shut down a kernel in this process
// n times and count goroutines and fds.
type cycles struct {
	n                          int
	goBefore, goFirst, goAfter int
	fdBefore, fdFirst, fdAfter int
	clean                      bool // no remote kernel or supervisor left
}

func (b *bed) runCycles(ctx context.Context, n int) (cycles, error) {
	res := cycles{n: n, goBefore: runtime.NumGoroutine(), fdBefore: fdCount()}
	cfg := provisioner.Config{
		SpecName: b.fastSpec,
		Gopyk: kernelspec.Gopyk{
			SSHHostAlias: b.sshd.Alias, SSHConfig: b.sshd.ConfigFile,
			RemotePython: python, RemoteKernelName: "python3",
		},
	}
	for i := range n {
		cfg.Local = wire.ConnInfo{IP: "127.0.0.1", Key: wire.NewKey()}
		lctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		k, err := provisioner.Launch(lctx, cfg)
		cancel()
		if err != nil {
			return res, fmt.Errorf("cycle %d: launch: %w", i+1, err)
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = k.Shutdown(sctx)
		cancel()
		if err != nil {
			return res, fmt.Errorf("cycle %d: shutdown: %w", i+1, err)
		}
		if i == 0 {
			res.goFirst, res.fdFirst = settle(res.goBefore, res.fdBefore)
		}
	}
	res.goAfter, res.fdAfter = settle(res.goFirst, res.fdFirst)
	res.clean = b.waitNoRemote(15*time.Second) == nil
	return res, nil
}

// settle waits up to 5 s for goroutines and fds to drop to the given
// levels (connections close asynchronously) and returns the last counts.
func settle(goal, fdGoal int) (int, int) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		g, f := runtime.NumGoroutine(), fdCount()
		if (g <= goal && f <= fdGoal) || time.Now().After(deadline) {
			return g, f
		}
		time.Sleep(50 * time.Millisecond)
	}
}
