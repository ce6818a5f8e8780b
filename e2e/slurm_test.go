//go:build linux

package e2e

import (
	"context"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopyk/gopyk/testbed"
)

// slurmEnv is a test world whose spec runs the kernel as a batch job of the
// one-node test cluster; the login node is the testbed sshd (same machine).
func slurmEnv(t *testing.T, s *testbed.Slurm, args ...string) *env {
	t.Helper()
	return newEnv(t, append([]string{"--launcher", "slurm", "--remote-pre", "export SLURM_CONF=" + s.Conf}, args...)...)
}

var jobLine = regexp.MustCompile(`Slurm job (\d+) submitted`)

// A kernel with --launcher slurm: cells run inside the job, SIGINT
// interrupts the running cell and the kernel survives, SIGUSR1 restarts it as
// a new job, SIGTERM shuts it down, and nothing is left in squeue.
func TestSlurmKernel(t *testing.T) {
	s := testbed.SlurmForTest(t)
	e := slurmEnv(t, s, "--launcher-args", "--time=10 --job-name=gpk-e2e", "--queue-timeout", "60")
	// gopyk list shows the launcher and finds Slurm on the login node.
	list := e.gopyk("list", "-r")
	for _, want := range []string{"Launcher:              slurm: sbatch --time=10 --job-name=gpk-e2e (on a compute node)",
		"Slurm Commands:        (v) slurm-wlm 22.", "Queue Timeout:         60 s"} {
		if !strings.Contains(list, want) {
			t.Fatalf("gopyk list lacks %q:\n%s", want, list)
		}
	}

	k, cf := e.launch()
	m := jobLine.FindStringSubmatch(k.output())
	if m == nil {
		t.Fatalf("no progress line naming the job in the launcher's output:\n%s", k.output())
	}
	c := e.client(cf)
	r := execute(t, c, "import os; print(os.environ.get('SLURM_JOB_ID'), os.environ.get('SLURM_JOB_NAME'))")
	if strings.TrimSpace(r.Stdout) != m[1]+" gpk-e2e" {
		t.Fatalf("cell output %q: want job %s named gpk-e2e", r.Stdout, m[1])
	}
	if jobs, err := s.Jobs(context.Background()); err != nil || !strings.Contains(jobs, m[1]+" RUNNING") {
		t.Fatalf("squeue: %q %v: want job %s running", jobs, err, m[1])
	}

	interruptSleep(t, c, func() { k.signal(syscall.SIGINT) })
	alive(t, k)
	if after := execute(t, c, "x = 7; x"); after.Result != "7" {
		t.Fatalf("after the interrupt: %+v", after)
	}

	c.Close()
	k.signal(syscall.SIGUSR1)
	waitFor(t, 60*time.Second, "the launcher to report the restart", func() bool {
		return strings.Contains(k.output(), "remote kernel restarted")
	})
	c2 := e.client(cf)
	r = execute(t, c2, "import os; print('x' in dir(), os.environ.get('SLURM_JOB_ID'))")
	if f := strings.Fields(r.Stdout); len(f) != 2 || f[0] != "False" || f[1] == m[1] {
		t.Fatalf("after SIGUSR1: %q, want a fresh kernel in a new job (not %s)", r.Stdout, m[1])
	}
	alive(t, k)

	c2.Close()
	k.signal(syscall.SIGTERM)
	if code := k.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, k.output())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.WaitNoJobs(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitNoRemote(15 * time.Second)

	// A job that Slurm ends (scancel, a time limit) ends the launcher with an error.
	t.Run("cancelled by Slurm", func(t *testing.T) {
		k, cf := e.launch()
		m := jobLine.FindStringSubmatch(k.output())
		if m == nil {
			t.Fatalf("no job id in:\n%s", k.output())
		}
		e.client(cf).Close()
		if out, err := s.Command(ctx, "scancel", m[1]).CombinedOutput(); err != nil {
			t.Fatalf("scancel: %v %s", err, out)
		}
		if code := k.waitExit(t, 30*time.Second); code == 0 {
			t.Fatalf("exit 0 after the job was cancelled:\n%s", k.output())
		}
		e.waitNoRemote(15 * time.Second)
	})

	// Slurm's own words, with the spec's name, and no waiting.
	t.Run("bad partition", func(t *testing.T) {
		e.gopyk("edit", "--kernel-name", e.spec, "--launcher-args", "--partition=nope")
		t0 := time.Now()
		k := e.start(binDir+"/gopyk-kernel", "--kernel", e.spec, "--connection-file", e.home+"/bad.json")
		if code := k.waitExit(t, 30*time.Second); code == 0 {
			t.Fatalf("exit 0 with a bad partition:\n%s", k.output())
		}
		out := k.output()
		if !strings.Contains(out, "invalid partition specified: nope") || !strings.Contains(out, e.spec) ||
			strings.Count(out, "invalid partition specified") != 1 {
			t.Fatalf("output does not quote Slurm with the spec name:\n%s", out)
		}
		if d := time.Since(t0); d > 10*time.Second {
			t.Errorf("failing took %v", d)
		}
	})

	// A job held in the queue past the queue timeout is cancelled, with squeue's reason.
	t.Run("queue timeout", func(t *testing.T) {
		e.gopyk("edit", "--kernel-name", e.spec, "--launcher-args", "--hold", "--queue-timeout", "3")
		k := e.start(binDir+"/gopyk-kernel", "--kernel", e.spec, "--connection-file", e.home+"/held.json")
		if code := k.waitExit(t, 30*time.Second); code == 0 {
			t.Fatalf("exit 0 with a held job:\n%s", k.output())
		}
		out := k.output()
		if !strings.Contains(out, "JobHeldUser") || !strings.Contains(out, "queue timeout") || !strings.Contains(out, "pending") {
			t.Fatalf("output does not report the pending job and its reason:\n%s", out)
		}
		if err := s.WaitNoJobs(ctx); err != nil {
			t.Fatal(err)
		}
		e.waitNoRemote(15 * time.Second)
	})
}
