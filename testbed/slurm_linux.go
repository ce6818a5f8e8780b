package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Slurm is a one-node Slurm cluster (munged, slurmctld, slurmd from Debian's
// slurm-wlm and munge) in a temp dir, its only node being this machine
// (NodeAddr 127.0.0.1). The daemons run as root in the foreground, owned by
// the test; clients of any user reach it with SLURM_CONF=Conf in their
// environment (without it they try "configless" DNS lookups).
type Slurm struct {
	Dir       string // the temp dir, mode 0755 so that the test user can read the config
	Conf      string // slurm.conf (absolute)
	Node      string // the node's name: this machine's hostname
	Partition string // the only partition ("debug")

	procs []*exec.Cmd // munged, slurmctld, slurmd: stopped in reverse order
}

// StartSlurm starts munged, slurmctld and slurmd and waits until the node is
// idle. It needs root (the daemons run as SlurmUser root).
func StartSlurm(ctx context.Context) (*Slurm, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("testbed: a Slurm cluster needs root (slurmd runs jobs as their users)")
	}
	host, err := os.Hostname()
	if err != nil {
		return nil, fmt.Errorf("testbed: hostname for the Slurm node: %w", err)
	}
	dir, err := os.MkdirTemp("", "gpk-slurm-")
	if err != nil {
		return nil, fmt.Errorf("testbed: slurm dir: %w", err)
	}
	s := &Slurm{Dir: dir, Conf: filepath.Join(dir, "slurm", "slurm.conf"), Node: host, Partition: "debug"}
	if err := s.start(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// SlurmForTest starts a cluster that t.Cleanup stops; it skips the test when
// not root.
func SlurmForTest(t testing.TB) *Slurm {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the Slurm test bed needs root: slurmd must run jobs as the test user")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := StartSlurm(ctx)
	if err != nil {
		t.Fatalf("start slurm: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

func (s *Slurm) start(ctx context.Context) error {
	// munged wants its socket dir o+x and its key dir private; the test
	// user's clients need the socket and slurm.conf.
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{s.Dir, 0o755}, {s.path("munge"), 0o700}, {s.path("munge-run"), 0o755}, {s.path("slurm"), 0o755},
		{s.path("slurm/state"), 0o700}, {s.path("slurm/spool"), 0o755}, {s.path("slurm/log"), 0o700}} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return fmt.Errorf("testbed: slurm dir: %w", err)
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			return fmt.Errorf("testbed: slurm dir: %w", err)
		}
	}
	key := make([]byte, 128)
	f, err := os.Open("/dev/urandom")
	if err != nil {
		return fmt.Errorf("testbed: munge key: %w", err)
	}
	_, err = io.ReadFull(f, key)
	f.Close()
	if err != nil {
		return fmt.Errorf("testbed: munge key: %w", err)
	}
	if err := os.WriteFile(s.path("munge/munge.key"), key, 0o400); err != nil {
		return fmt.Errorf("testbed: munge key: %w", err)
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return err
		}
	}
	if err := os.WriteFile(s.Conf, []byte(s.config(ports)), 0o644); err != nil {
		return fmt.Errorf("testbed: slurm.conf: %w", err)
	}
	sock := s.path("munge-run/munge.sock")
	if err := s.spawn("/usr/sbin/munged", "--foreground", "--socket="+sock, "--key-file="+s.path("munge/munge.key"),
		"--pid-file="+s.path("munge-run/munged.pid"), "--log-file="+s.path("munge/munged.log"),
		"--seed-file="+s.path("munge/munged.seed")); err != nil {
		return err
	}
	if err := waitFor(ctx, func() bool { _, err := os.Stat(sock); return err == nil }); err != nil {
		return fmt.Errorf("testbed: munged did not create %s: %w (log: %s)", sock, err, s.tail("munge/munged.log"))
	}
	if err := s.spawn("/usr/sbin/slurmctld", "-D", "-f", s.Conf); err != nil {
		return err
	}
	if err := s.spawn("/usr/sbin/slurmd", "-D", "-f", s.Conf); err != nil {
		return err
	}
	err = waitFor(ctx, func() bool {
		out, err := s.Command(ctx, "sinfo", "-h", "-o", "%T").Output()
		return err == nil && strings.Contains(string(out), "idle")
	})
	if err != nil {
		return fmt.Errorf("testbed: the Slurm node did not become idle: %w (slurmctld: %s; slurmd: %s)", err,
			s.tail("slurm/log/slurmctld.log"), s.tail("slurm/log/slurmd.log"))
	}
	return nil
}

func (s *Slurm) config(ports [3]int) string {
	return fmt.Sprintf(`ClusterName=gpk%[3]d
SlurmctldHost=%[1]s(127.0.0.1)
SlurmctldPort=%[3]d
SlurmdPort=%[4]d
SrunPortRange=%[5]d-%[6]d
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=%[2]s/munge-run/munge.sock
StateSaveLocation=%[2]s/slurm/state
SlurmdSpoolDir=%[2]s/slurm/spool/%%n
SlurmctldPidFile=%[2]s/slurm/slurmctld.pid
SlurmdPidFile=%[2]s/slurm/slurmd.pid
SlurmctldLogFile=%[2]s/slurm/log/slurmctld.log
SlurmdLogFile=%[2]s/slurm/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=60
KillWait=5
Waittime=0
NodeName=%[1]s NodeAddr=127.0.0.1 CPUs=%[7]d State=UNKNOWN
PartitionName=debug Nodes=%[1]s Default=YES MaxTime=INFINITE State=UP
`, s.Node, s.Dir, ports[0], ports[1], ports[2], ports[2]+9, runtime.NumCPU())
}

func (s *Slurm) path(rel string) string { return filepath.Join(s.Dir, rel) }

func (s *Slurm) tail(rel string) string {
	b, _ := os.ReadFile(s.path(rel))
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return strings.TrimSpace(string(b))
}

func (s *Slurm) spawn(argv ...string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "SLURM_CONF="+s.Conf)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("testbed: start %s: %w", argv[0], err)
	}
	s.procs = append(s.procs, cmd)
	return nil
}

// Env is the environment line clients need.
func (s *Slurm) Env() string { return "SLURM_CONF=" + s.Conf }

// Command is a Slurm client command (as root) against this cluster.
func (s *Slurm) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), s.Env())
	return cmd
}

// Jobs is squeue's list of jobs not yet gone ("id state reason" lines).
func (s *Slurm) Jobs(ctx context.Context) (string, error) {
	out, err := s.Command(ctx, "squeue", "-h", "-o", "%i %T %r").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("squeue: %w: %s", err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// WaitNoJobs waits until squeue lists no job.
func (s *Slurm) WaitNoJobs(ctx context.Context) error {
	var last string
	err := waitFor(ctx, func() bool {
		j, err := s.Jobs(ctx)
		last = j
		return err == nil && j == ""
	})
	if err != nil {
		return fmt.Errorf("jobs left in squeue: %q: %w", last, err)
	}
	return nil
}

// Stop cancels every job, stops the daemons by PID and removes the dir.
func (s *Slurm) Stop() {
	if len(s.procs) == 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		if out, err := s.Command(ctx, "squeue", "-h", "-o", "%i").Output(); err == nil && len(strings.TrimSpace(string(out))) > 0 {
			_ = s.Command(ctx, "scancel", strings.Fields(string(out))...).Run()
			_ = s.WaitNoJobs(ctx)
		}
		cancel()
	}
	for i := len(s.procs) - 1; i >= 0; i-- {
		c := s.procs[i]
		_ = c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
	}
	s.procs = nil
	os.RemoveAll(s.Dir)
}

// waitFor polls cond every 50 ms until it holds or ctx ends.
func waitFor(ctx context.Context, cond func() bool) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
