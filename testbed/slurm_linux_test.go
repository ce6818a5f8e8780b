package testbed

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestSlurmRunsJobsOfTheTestUser(t *testing.T) {
	s := SlurmForTest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "su", "gpktest", "-s", "/bin/sh", "-c",
		"cd /tmp && "+s.Env()+" srun -N1 sh -c 'id -un; echo job=$SLURM_JOB_ID'").CombinedOutput()
	if err != nil {
		t.Fatalf("srun as gpktest: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "gpktest") || !strings.Contains(string(out), "job=1") {
		t.Fatalf("srun output %q: want user gpktest in job 1", out)
	}
	if err := s.WaitNoJobs(ctx); err != nil {
		t.Fatal(err)
	}
}
