//go:build linux

package remote

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopyk/gopyk/testbed"
)

// A kernel as a Slurm batch job on the one-node test cluster (as root, the
// job runs on this machine): it runs inside the job, interrupts reach it,
// restart submits a new job, shutdown leaves nothing in squeue; Slurm's
// refusals and a queue timeout come back verbatim.
func TestSlurmLaunch(t *testing.T) {
	s := testbed.SlurmForTest(t)
	b := newBed(t)
	b.env = append(b.env, s.Env())
	var mu sync.Mutex
	var progress []string
	key := "s3cret-slurm-" + strings.TrimPrefix(b.home, os.TempDir())
	r, err := b.exec(Params{KernelName: "GoPyk-Test", Key: key, Launcher: "slurm", Tag: "spec-slurm",
		LauncherArgs: "--time=10 --job-name 'gopyk test'", Grace: time.Minute,
		Progress: func(m string) { mu.Lock(); progress = append(progress, m); mu.Unlock() }})
	if err != nil {
		t.Fatal(err)
	}
	if r.Launcher != "slurm" || r.JobID == "" || r.Transport != "tcp" || r.KernelPID != 0 || r.Node != s.Node {
		t.Fatalf("reply: launcher %q job %q transport %q kernel pid %d node %q", r.Launcher, r.JobID, r.Transport, r.KernelPID, r.Node)
	}
	if !strings.HasPrefix(r.Channels.Shell, "127.0.0.1:") || r.Ports[0] == 0 {
		t.Errorf("channels %+v ports %v", r.Channels, r.Ports)
	}
	mu.Lock()
	if len(progress) == 0 || !strings.Contains(progress[0], "Slurm job "+r.JobID+" submitted") {
		t.Errorf("progress lines %q", progress)
	}
	mu.Unlock()
	if hits := procCmdlinesContaining(key); len(hits) > 0 {
		t.Errorf("the key is on a command line: %v", hits)
	}
	out := b.run(r.ConnFile, "exec", "import os; print(os.environ['SLURM_JOB_ID'], os.environ['SLURM_JOB_NAME'])")
	if !strings.Contains(out, "OUT "+r.JobID+" gopyk test") {
		t.Fatalf("cell output %q: want the job id %s and name", out, r.JobID)
	}

	c := ctl(r)
	lease, err := c.Lease(tctx(t, 10*time.Second), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Close()

	ctx := tctx(t, 40*time.Second)
	cl := b.client(ctx, r.ConnFile, "sleep")
	stdout, _ := cl.StdoutPipe()
	cl.Stderr = os.Stderr
	if err := cl.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() || sc.Text() != "BUSY" {
		t.Fatalf("client: %q %v", sc.Text(), sc.Err())
	}
	if err := c.Interrupt(tctx(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if !sc.Scan() || sc.Text() != "ENAME KeyboardInterrupt" {
		t.Fatalf("after interrupt: %q %v", sc.Text(), sc.Err())
	}
	_ = cl.Wait()

	r2, err := c.Restart(tctx(t, 40*time.Second), 0)
	if err != nil {
		t.Fatal(err)
	}
	if r2.JobID == r.JobID || r2.JobID == "" || r2.Restarts != 1 {
		t.Fatalf("after restart: job %q (was %q) restarts %d", r2.JobID, r.JobID, r2.Restarts)
	}
	if out := b.run(r2.ConnFile, "exec", "import os; print(os.environ['SLURM_JOB_ID'])"); !strings.Contains(out, "OUT "+r2.JobID) {
		t.Fatalf("after restart: %q", out)
	}
	if _, err := c.Shutdown(tctx(t, 30*time.Second), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitNoJobs(tctx(t, 20*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitGone(t, 10*time.Second, r.SupervisorPID)

	// A supervisor nobody leases (its launcher died) ends the job after the grace period.
	t.Run("grace", func(t *testing.T) {
		// Long enough for squeue below to see the job first on a loaded machine.
		r, err := b.exec(Params{KernelName: "GoPyk-Test", Launcher: "slurm", Grace: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if jobs, _ := s.Jobs(tctx(t, 10*time.Second)); !strings.Contains(jobs, r.JobID+" RUNNING") {
			t.Fatalf("squeue %q: want job %s running", jobs, r.JobID)
		}
		if err := s.WaitNoJobs(tctx(t, 20*time.Second)); err != nil {
			t.Fatal(err)
		}
		waitGone(t, 10*time.Second, r.SupervisorPID)
	})
	// The job of a supervisor killed with SIGKILL is cancelled by the next list.
	t.Run("supervisor killed", func(t *testing.T) {
		r, err := b.exec(Params{KernelName: "GoPyk-Test", Launcher: "slurm", Grace: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		_ = syscall.Kill(r.SupervisorPID, syscall.SIGKILL)
		waitGone(t, 10*time.Second, r.SupervisorPID)
		// list or, racing it on a slow machine, the clean-up the launch
		// started (detached) cancels the job and removes the run dir; which
		// of the two did is not this test's to know.
		l, err := b.exec(Params{Action: ActionList})
		if err != nil {
			t.Fatal(err)
		}
		if exists(r.RunDir) {
			t.Fatalf("run dir %s left after list (removed %q)", r.RunDir, l.Removed)
		}
		if err := s.WaitNoJobs(tctx(t, 20*time.Second)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("bad partition", func(t *testing.T) {
		t0 := time.Now()
		_, err := b.exec(Params{KernelName: "GoPyk-Test", Launcher: "slurm", Tag: "spec-bad", LauncherArgs: "--partition=nope"})
		var re *ReplyError
		if !errors.As(err, &re) || re.Code != CodeSlurm || !strings.Contains(re.Message, "invalid partition specified: nope") ||
			!strings.Contains(re.Message, "spec-bad") || strings.Count(err.Error(), "invalid partition") != 1 {
			t.Fatalf("err %v: want Slurm's message with the spec name", err)
		}
		if d := time.Since(t0); d > 10*time.Second {
			t.Errorf("took %v", d)
		}
	})
	t.Run("queue timeout", func(t *testing.T) {
		_, err := b.exec(Params{KernelName: "GoPyk-Test", Launcher: "slurm", Tag: "spec-held", LauncherArgs: "--hold",
			QueueTimeout: 2 * time.Second})
		var re *ReplyError
		if !errors.As(err, &re) || re.Code != CodeQueueTimeout || !strings.Contains(re.Message, "JobHeldUser") ||
			!strings.Contains(re.Message, "spec-held") {
			t.Fatalf("err %v: want a queue timeout naming squeue's reason", err)
		}
		if err := s.WaitNoJobs(tctx(t, 20*time.Second)); err != nil {
			t.Fatal(err)
		}
	})
}

// inspect with launcher slurm reports where the Slurm commands are, which
// are missing from the login node's PATH, and sbatch's complaint. (The
// version on success: e2e's TestSlurmKernel, through gopyk list.)
func TestSlurmInspect(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	r, err := b.exec(Params{Action: ActionInspect, KernelName: "GoPyk-Test", Launcher: "slurm"})
	if err != nil {
		t.Fatal(err)
	}
	// No SLURM_CONF and no configless DNS records: sbatch says so.
	if len(r.SlurmMissing) != 0 || r.SlurmCommands["sbatch"] != "/usr/bin/sbatch" ||
		!strings.Contains(r.SlurmError, "Could not establish a configuration source") {
		t.Fatalf("with Slurm on PATH: commands %v missing %v error %q", r.SlurmCommands, r.SlurmMissing, r.SlurmError)
	}
	for i, kv := range b.env {
		if strings.HasPrefix(kv, "PATH=") {
			b.env[i] = "PATH=" + t.TempDir()
		}
	}
	r, err = b.exec(Params{Action: ActionInspect, KernelName: "GoPyk-Test", Launcher: "slurm"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(r.SlurmMissing, " ") != "sbatch squeue scancel scontrol" || r.SlurmVersion != "" {
		t.Fatalf("without Slurm on PATH: missing %v version %q", r.SlurmMissing, r.SlurmVersion)
	}
	r, err = b.exec(Params{Action: ActionInspect, KernelName: "GoPyk-Test"})
	if err != nil {
		t.Fatal(err)
	}
	if r.SlurmCommands != nil {
		t.Fatalf("launcher local: Slurm checked: %v", r.SlurmCommands)
	}
}
