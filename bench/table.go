//go:build linux

package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/gopyk/gopyk/provisioner/remote"
)

// markdown renders the one table of the run, with the machine it ran on.
func (r *results) markdown() string {
	var sb strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&sb, format+"\n", a...) }
	host, _ := os.Hostname()
	w("## gopyk benchmarks, %s", r.start.UTC().Format("2006-01-02 15:04 UTC"))
	w("")
	w("Machine: %s, %s, %d CPUs, %s; load average %s at the start, %s at the end; run took %v.",
		host, cpuModel(), runtime.NumCPU(), runtime.Version(), strings.TrimSpace(r.loadStart), strings.TrimSpace(r.loadEnd),
		r.end.Sub(r.start).Round(time.Second))
	w("Test bed: OpenSSH sshd on 127.0.0.1 (package testbed), Debian's ipykernel as the remote kernel spec `python3`; "+
		"launches by jupyter_client %s's KernelManager until wait_for_ready; round trips and throughput with one Go client (wire) for every row. "+
		"MB = MiB. Flags: -n %d -rt %d -mb %d -idle %v -cycles %d -scale %d; sshd_config additions: %s.",
		r.jupyterClient, r.opts.launches, r.opts.roundTrips, r.opts.mb, r.opts.idle, r.opts.cycles, r.opts.scale, yesNo(len(r.opts.sshdConfig) == 0, "none (sshd defaults, MaxStartups 10:30:100)", r.opts.sshdConfig.String()))
	w("")
	w("| figure | local kernel (baseline) | gopyk | other, same run | target | | sshpyk 1.2 (DESIGN.md) |")
	w("|---|---|---|---|---|---|---|")

	lm := median(r.local.launch)
	launchRow := func(name string, g launches, sshpyk string) {
		gm := median(g.launch)
		other := ""
		if gm > 0 && lm > 0 {
			other = fmt.Sprintf("gopyk − local = %+.2f s", (gm - lm).Seconds())
		}
		w("| %s (min / median / max) | %s | %s | %s | ≤ local + 0.30 s | %s | %s |",
			name, minMedMax(r.local.launch), minMedMax(g.launch), other, verdict(gm > 0 && lm > 0, gm <= lm+300*time.Millisecond), sshpyk)
	}
	launchRow("launch, cold (no cached launcher, no master)", r.cold, "2.28 s (local 0.95 s: +1.33 s)")
	launchRow("launch, repeated (with a live gopyk master)", r.warm, "1.95 s (+1.00 s)")
	launchRow("launch, master off (each kernel its own connection), repeated", r.directWarm, "")
	baseRow := func(name string, g, base launches) {
		if len(base.launch) == 0 {
			return
		}
		gm, bm := median(g.launch), median(base.launch)
		w("| %s, baseline build `%s` (min / median / max) | | %s | this build − baseline = %+.2f s (medians, interleaved) | ≤ baseline | %s | |",
			name, r.opts.baseline, minMedMax(base.launch), (gm - bm).Seconds(), verdict(gm > 0 && bm > 0, gm <= bm))
	}
	baseRow("launch, cold", r.cold, r.baseCold)
	baseRow("launch, repeated", r.warm, r.baseWarm)
	w("| remote launcher uploaded by a cold launch (this tree's provisioner/remote) | | %d bytes | %d modules, %d bytes of Python | | | |",
		len(remote.Artifact()), len(remote.ModuleNames()), launcherSource())
	w("| shutdown by KernelManager (median) | %s | %s | | | | |", durOr(median(r.local.shutdown)), durOr(median(r.warm.shutdown)))
	// Launches that do not dial: through the user's master, beside the
	// repeated launch's fresh native dial of the same run.
	wm := median(r.directWarm.launch) // a native dial per kernel
	besideNative := func(g launches) string {
		if gm := median(g.launch); gm > 0 && wm > 0 {
			return fmt.Sprintf("native dial (master off, repeated): %s; this / native %.2f×", dur(wm), float64(gm)/float64(wm))
		}
		return ""
	}
	mm := median(r.master.launch)
	w("| launch through an OpenSSH master (`ssh -M -f -N`), repeated (min / median / max) | %s | %s | %s | < native dial | %s | 1.95 s (sshpyk always uses one) |",
		minMedMax(r.local.launch), minMedMax(r.master.launch), besideNative(r.master), verdict(mm > 0 && wm > 0, mm < wm))
	w("| launch with `--ssh-client openssh` (one ssh login per launch), repeated (min / median / max) | %s | %s | %s | | | |",
		minMedMax(r.local.launch), minMedMax(r.openssh.launch), besideNative(r.openssh))

	lrt, grt := median(r.rtLocal), median(r.rtGopyk)
	var ssh []string
	for _, m := range []sshMode{sshExec, sshPty, sshNoSession} {
		if d := r.rtSSH[m.name]; len(d) > 0 {
			ssh = append(ssh, fmt.Sprintf("%s: %s", m.name, medP99(d)))
		}
	}
	ratio := ""
	if lrt > 0 && grt > 0 {
		ratio = fmt.Sprintf(" (%.2f×)", float64(grt)/float64(lrt))
	}
	w("| execute round trip of `pass` (median / p99 of %d) | %s | %s%s | %s | ≤ 1.10× local | %s | 6.49 ms vs 4.90 ms (1.32×) |",
		r.opts.roundTrips, medP99(r.rtLocal), medP99(r.rtGopyk), ratio, strings.Join(ssh, "; "),
		verdict(lrt > 0 && grt > 0, float64(grt) <= 1.1*float64(lrt)))

	// sshpyk's path beside gopyk's round trip, on loopback and at rtt.
	cmRow := func(at string, g, cm, gm, direct []time.Duration) {
		c, gt := median(cm), median(g)
		if c == 0 || gt == 0 {
			return
		}
		w("| execute round trip%s beside sshpyk's path: OpenSSH ControlMaster (`ssh -M`, `ssh -S … -O forward -L` to a kernel started by hand; median / p99 of %d) | %s | %s (%.2f× ControlMaster) | ControlMaster: %s; the same forwards through gopyk's master: %s (%+.3f ms vs ControlMaster); %s: %s | gopyk ≤ ControlMaster | %s | |",
			at, r.opts.roundTrips, medP99(r.rtLocal), medP99(g), float64(gt)/float64(c), medP99(cm), medP99(gm), ms(median(gm))-ms(c), sshExec.name, medP99(direct), verdict(true, gt <= c))
	}
	cmRow("", r.rtGopyk, r.rtCM, r.rtGopykMaster, r.rtSSH[sshExec.name])
	lt, gt := medianF(r.tpLocal), medianF(r.tpGopyk)
	tpRatio := ""
	if lt > 0 && gt > 0 {
		tpRatio = fmt.Sprintf(" (%.2f×)", gt/lt)
	}
	w("| %d MB of stream output on iopub (median of %d) | %.1f MB/s | %.1f MB/s%s | | ≥ 0.80× local | %s | 19.9 vs 34.1 MB/s (0.58×) |",
		r.opts.mb, len(r.tpGopyk), lt, gt, tpRatio, verdict(lt > 0 && gt > 0, gt >= 0.8*lt))
	// The session path (one exec session carries every stream, for servers
	// that refuse forwarding) beside the forwarding path: no target of its own.
	if srt := median(r.rtSession); srt > 0 && grt > 0 {
		w("| session path (`--streams session`): execute round trip (median / p99 of %d) | %s | %s | forwarding (gopyk column above): %s; session / forwarding %.2f× | | | — |",
			r.opts.roundTrips, medP99(r.rtLocal), medP99(r.rtSession), medP99(r.rtGopyk), float64(srt)/float64(grt))
	}
	if st := medianF(r.tpSession); st > 0 && gt > 0 {
		w("| session path: %d MB of stream output on iopub (median of %d) | %.1f MB/s | %.1f MB/s | forwarding: %.1f MB/s; session / forwarding %.2f× | | | — |",
			r.opts.mb, len(r.tpSession), lt, st, gt, st/gt)
	}
	if gp, sp := pct(r.hbFloodGopyk, 99), pct(r.hbFloodSession, 99); gp > 0 && sp > 0 {
		w("| session path: heartbeat round trips while each kernel prints %d MB, both at once, alternating (median / p99 of %d) | | %s | forwarding: %s; p99 session / forwarding %.2f× | session p99 < 2× forwarding p99 | %s | — |",
			r.opts.mb, len(r.hbFloodSession), medP99(r.hbFloodSession), medP99(r.hbFloodGopyk), float64(sp)/float64(gp), verdict(true, sp < 2*gp))
	}

	ir := r.idle
	measured := ir.window > 0
	w("| gopyk-kernel RSS: peak (after the above) / idle | — | %s / %s | | ≤ 25 MB | %s | 61.5 MB + an ssh master |",
		mbOr(r.launcherPeak), mbOr(ir.launcher.rss), verdict(measured, r.launcherPeak <= 25*1024 && ir.launcher.rss <= 25*1024))
	w("| remote memory beside the kernel: supervisor RSS peak / idle | — | %s / %s | sshd processes of the connection: %s | ≤ 15 MB | %s | 69.5 MB |",
		mbOr(r.superPeak), mbOr(ir.super.rss), mbOr(r.sshdConn), verdict(measured, ir.super.rss > 0 && r.superPeak <= 15*1024))
	fl, fg := r.floodLocal, r.floodGopyk
	w("| 200 MiB as %d flushed 64 KiB writes, gopyk over a 20 MB/s link: chunks whole and in order (time to idle) | %d of %d (%s) | %d of %d (%s) | during it: supervisor RSS peak %s, gopyk-kernel RSS peak %s | every chunk | %s | |",
		floodChunks, fl.ok, floodChunks, floodTook(fl), fg.ok, floodChunks, floodTook(fg), mbOr(r.floodSuperPeak), mbOr(r.floodLauncherPeak),
		verdict(fg.ok > 0, fg.ok == floodChunks && fg.took > 0))
	startedNote := ""
	if len(ir.started) > 0 {
		startedNote = ": " + strings.Join(ir.started, ", ")
	}
	w("| processes started in %v idle (by gopyk-kernel, the supervisor, or any session of the sshd) | 0 | %d%s | new `ssh` processes machine-wide: %d (other test runs share the machine) | 0 | %s | 48–81 ssh a minute |",
		ir.window, len(ir.started), startedNote, ir.sshSystem, verdict(measured, len(ir.started) == 0))
	w("| CPU while idle (%% of one core over %v) | — | gopyk-kernel %.2f %% | supervisor %.2f %% | < 0.5 %% | %s | |",
		ir.window, ir.launcherCPU, ir.superCPU, verdict(measured, ir.launcherCPU < 0.5 && ir.superCPU < 0.5))
	c := r.cyc
	w("| goroutines / fds: before, after 1, after %d launch+shutdown cycles (in-process provisioner) | — | %d / %d → %d / %d → %d / %d | remote processes left: %s | no growth after the first | %s | |",
		c.n, c.goBefore, c.fdBefore, c.goFirst, c.fdFirst, c.goAfter, c.fdAfter, yesNo(c.goFirst == 0, "n/a", yesNo(!c.clean, "some", "none")),
		verdict(c.goFirst > 0, c.goAfter <= c.goFirst && c.fdAfter <= c.fdFirst && c.clean))
	sg, sl := r.scaleGopyk, r.scaleLocal
	gone := "not gone"
	if r.scaleMasterGone > 0 {
		gone = fmt.Sprintf("exited %s after the last shutdown (persist %v), nothing left", dur(r.scaleMasterGone), scalePersist)
	}
	w("| %d kernels launched at once, no master yet: all answered after | %s (%d failed) | %s (%d failed) | clean exits after shutdown_request: %d/%d; remote left over: %s; TCP connections in sshd's log: %d; their master %s | all answer, all shut down cleanly; 1 TCP connection | %s | |",
		sg.n, durOr(sl.ready), len(sl.failed), durOr(sg.ready), len(sg.failed), sg.clean, sg.n, leftover(sg), r.scaleConns, gone,
		verdict(sg.ready > 0, len(sg.failed) == 0 && sg.clean == sg.n && sg.leftErr == nil && r.scaleConns == 1 && r.scaleMasterGone > 0))
	rtt := r.rtt
	slm := median(r.slowLocal.launch)
	rttsAbove := func(g launches) float64 {
		if gm := median(g.launch); rtt > 0 && gm > 0 && slm > 0 {
			return float64(gm-slm) / float64(rtt)
		}
		return 0
	}
	slowRow := func(name string, g, direct launches, limit float64) {
		gm, dm := median(g.launch), median(direct.launch)
		n := rttsAbove(g)
		beside := ""
		if dm > 0 {
			beside = fmt.Sprintf("; each kernel its own connection (master off), same run: %s, %.1f RTT above", minMedMax(direct.launch), rttsAbove(direct))
		}
		w("| launch at %v RTT, %s (min / median / max) | %s (no network; interleaved with these) | %s | %.1f RTT above the local kernel's start%s | ≤ kernel start + %.0f RTT | %s | |",
			rtt, name, minMedMax(r.slowLocal.launch), minMedMax(g.launch), n, beside, limit, verdict(gm > 0 && slm > 0, n <= limit))
	}
	slowRow("cold: no master yet, no cached launcher (the first launch logs in and starts the host's gopyk master)", r.slowCold, r.slowDirectCold, 10)
	slowRow("with a live gopyk master (repeated)", r.slowWarm, r.slowDirectWarm, 4)
	baseSlowRow := func(name string, g, base launches) {
		if len(base.launch) == 0 {
			return
		}
		gm, bm := median(g.launch), median(base.launch)
		n := 0.0
		if rtt > 0 && bm > 0 && slm > 0 {
			n = float64(bm-slm) / float64(rtt)
		}
		w("| launch at %v RTT, %s, baseline build `%s` (min / median / max) | | %s | %.1f RTT above the local kernel's start; this build − baseline = %+.2f s (medians, interleaved) | ≤ baseline | %s | |",
			rtt, name, r.opts.baseline, minMedMax(base.launch), n, (gm - bm).Seconds(), verdict(gm > 0 && bm > 0, gm <= bm))
	}
	baseSlowRow("cold", r.slowCold, r.baseSlowCold)
	baseSlowRow("repeated", r.slowWarm, r.baseSlowWarm)
	swm := median(r.slowDirectWarm.launch) // a native dial per kernel
	slowBeside := func(name string, g launches, target bool) {
		gm := median(g.launch)
		n, other := 0.0, ""
		if rtt > 0 && gm > 0 && slm > 0 {
			n = float64(gm-slm) / float64(rtt)
			other = fmt.Sprintf("%.1f RTT above the local kernel's start", n)
		}
		if gm > 0 && swm > 0 {
			other += fmt.Sprintf("; native dial (master off, repeated): %s, this / native %.2f×", dur(swm), float64(gm)/float64(swm))
		}
		tgt, v := "", ""
		if target {
			tgt, v = "< native dial", verdict(gm > 0 && swm > 0, gm < swm)
		}
		w("| launch at %v RTT, %s (min / median / max) | %s (no network; interleaved with these) | %s | %s | %s | %s | |",
			rtt, name, minMedMax(r.slowLocal.launch), minMedMax(g.launch), other, tgt, v)
	}
	slowBeside("through an OpenSSH master, repeated", r.slowMaster, true)
	slowBeside("`--ssh-client openssh`, repeated", r.slowOpenSSH, false)
	sm, ssm := median(r.rtSlow), median(r.rtSlowSSH)
	w("| execute round trip at %v RTT (median / p99) | %s | %s | %s: %s | ≤ 1.10× ssh -L | %s | |",
		rtt, medP99(r.rtLocal), medP99(r.rtSlow), sshExec.name, medP99(r.rtSlowSSH), verdict(sm > 0 && ssm > 0, float64(sm) <= 1.1*float64(ssm)))
	cmRow(fmt.Sprintf(" at %v RTT", rtt), r.rtSlow, r.rtSlowCM, r.rtSlowGopykMaster, r.rtSlowSSH)
	im, lim := median(r.intSlow), median(r.intLocal)
	ni := 0.0
	if rtt > 0 && im > 0 && lim > 0 {
		ni = float64(im-lim) / float64(rtt)
	}
	w("| interrupt at %v RTT: SIGINT to the kernel's process → KeyboardInterrupt reply (min / median / max) | %s | %s | %.2f RTT above the local kernel's | ≤ local + 1.2 RTT | %s | local + 1 RTT (ControlMaster) |",
		rtt, minMedMaxMs(r.intLocal), minMedMaxMs(r.intSlow), ni, verdict(im > 0 && lim > 0, ni <= 1.2))
	wm, dm := median(r.rtWS), median(r.rtWSDirect)
	wsRatio := ""
	if wm > 0 && dm > 0 {
		wsRatio = fmt.Sprintf(" (%.2f× direct)", float64(wm)/float64(dm))
	}
	w("| execute round trip through a WebSocket gateway that leaves Nagle on (tornado, as jupyter-server-proxy behind JupyterHub; median / p99) | %s | %s%s | the same spec over direct TCP: %s | ≤ 1.5× direct TCP | %s | |",
		medP99(r.rtLocal), medP99(r.rtWS), wsRatio, medP99(r.rtWSDirect), verdict(wm > 0 && dm > 0, float64(wm) <= 1.5*float64(dm)))
	w("")
	w("Launch: KernelManager.start_kernel() until wait_for_ready() (a kernel_info_reply and a message on iopub); cold launches delete the remote ~/.gopyk (an isolated HOME per bench sshd) before each one; every gopyk launch dials a new SSH connection, except those through an OpenSSH master (opened once with `ssh -M -f -N` before the run; no TCP connection, no login) and those with `--ssh-client openssh` (one `ssh -f -N` login each). " +
		"Footprint is of a launcher started with a Jupyter-written connection file; RSS from /proc VmHWM/VmRSS. The last round-trip row's target is ours (the issue sets none): within 10 %% of OpenSSH's forwards over the same link.")
	if len(r.notes) > 0 {
		w("")
		w("Failures behind the rows above:")
		for _, n := range r.notes {
			w("- %s", n)
		}
	}
	if len(r.errs) > 0 {
		w("")
		w("Not measured in this run:")
		for _, e := range r.errs {
			w("- %s", e)
		}
	}
	return sb.String()
}

func verdict(measured, ok bool) string {
	if !measured {
		return "n/a"
	}
	return met(ok)
}

func durOr(d time.Duration) string {
	if d == 0 {
		return "n/a"
	}
	return dur(d)
}

func mbOr(kb int) string {
	if kb == 0 {
		return "n/a"
	}
	return mb(kb)
}

func yesNo(b bool, y, n string) string {
	if b {
		return y
	}
	return n
}

func leftover(s scale) string {
	if s.leftErr != nil {
		return s.leftErr.Error()
	}
	return "none"
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			if i := strings.IndexByte(line, ':'); i >= 0 {
				return strings.TrimSpace(line[i+1:])
			}
		}
	}
	return runtime.GOARCH
}

// launcherSource is the size of the launcher's modules before compression.
func launcherSource() int {
	n := 0
	for _, m := range remote.ModuleNames() {
		n += len(remote.ModuleSource(m))
	}
	return n
}

func floodTook(f flood) string {
	if f.took == 0 && f.ok > 0 {
		return fmt.Sprintf("no idle within %v", floodWait)
	}
	return durOr(f.took)
}
