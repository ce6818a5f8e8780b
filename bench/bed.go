//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gopyk/gopyk/testbed"
	"github.com/gopyk/gopyk/wire"
)

const python = "/usr/bin/python3"

// bed is the test bed every figure is measured on: one sshd on loopback,
// a toxiproxy proxy in front of it, and a Jupyter data dir holding two gopyk
// specs (direct and through the proxy).
type bed struct {
	bin      string // dir holding gopyk and gopyk-kernel
	sshd     *testbed.SSHD
	slow     *testbed.Link // -latency each way (netem is not available on the test machines)
	rate     *testbed.Link // floodRate each way
	home     string        // HOME and Jupyter dirs of the local side
	runtime  string        // XDG_RUNTIME_DIR: where gopyk's masters listen
	env      []string
	fastSpec string
	slowSpec string
	rateSpec string // through rate
	// sessionSpec is fastSpec with streams session: every stream over one
	// exec session (the path for servers that refuse forwarding).
	sessionSpec string
	// directSpec and slowDirectSpec: master off, each kernel dials its own
	// connection (gopyk before the master), for the launches beside.
	directSpec, slowDirectSpec string
	// scaleSpec is fastSpec whose master stays scalePersist once unused.
	scaleSpec string
	// baseSpec and baseSlowSpec are fastSpec and slowSpec added by the
	// -baseline-bin build ("" without one).
	baseSpec, baseSlowSpec string
	// masterSpec, slowMasterSpec reach the sshd (directly, through the
	// proxy) with a ControlPath where an OpenSSH master opened with `ssh -M`
	// listens; opensshSpec, slowOpensshSpec use --ssh-client openssh (one
	// ssh login per launch).
	masterSpec, slowMasterSpec   string
	opensshSpec, slowOpensshSpec string
	masters                      []*testbed.Master

	mu    sync.Mutex
	procs []*proc
	used  map[int]bool // ports handed out in this run
}

func newBed(ctx context.Context, binDir, baseDir string, sshdConfig []string, oneWay time.Duration) (*bed, error) {
	bin, err := filepath.Abs(binDir)
	if err != nil {
		return nil, err
	}
	base := ""
	if baseDir != "" {
		if base, err = filepath.Abs(baseDir); err != nil {
			return nil, err
		}
	}
	for _, dir := range []string{bin, base} {
		for _, name := range []string{"gopyk", "gopyk-kernel"} {
			if _, err := os.Stat(filepath.Join(dir, name)); dir != "" && err != nil {
				return nil, fmt.Errorf("%s/%s missing: run make build first: %w", dir, name, err)
			}
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// IsolateHome: cold launches delete ~/.gopyk, which must not be the
	// one other test runs on this machine share.
	sshd, err := testbed.StartSSHD(sctx, testbed.Options{Alias: "gpk-bench", IsolateHome: true, ExtraConfig: sshdConfig})
	if err != nil {
		return nil, fmt.Errorf("start the bench sshd: %w", err)
	}
	home, err := os.MkdirTemp("", "gopyk-bench-")
	if err != nil {
		sshd.Stop()
		return nil, err
	}
	b := &bed{bin: bin, sshd: sshd, home: home, fastSpec: "gpk_bench", slowSpec: "gpk_bench_slow", sessionSpec: "gpk_bench_session", rateSpec: "gpk_bench_rate"}
	// gopyk's masters under the bench's own runtime dir (short: socket
	// paths), stopped at the end.
	if b.runtime, err = os.MkdirTemp("", "gpkb"); err != nil {
		sshd.Stop()
		os.RemoveAll(home)
		return nil, err
	}
	b.env = append(os.Environ(),
		"HOME="+home,
		"XDG_RUNTIME_DIR="+b.runtime,
		"JUPYTER_DATA_DIR="+filepath.Join(home, "data"),
		"JUPYTER_RUNTIME_DIR="+filepath.Join(home, "runtime"),
		"JUPYTER_CONFIG_DIR="+filepath.Join(home, "config"),
		"IPYTHONDIR="+filepath.Join(home, "ipython"),
		"JUPYTER_PATH=",
		"PYDEVD_DISABLE_FILE_VALIDATION=1",
		"PATH="+bin+":"+os.Getenv("PATH"),
	)
	if b.slow, err = sshd.StartLink(testbed.LinkOptions{Alias: "gpk-bench-slow", Latency: oneWay}); err != nil {
		b.close()
		return nil, err
	}
	if b.rate, err = sshd.StartLink(testbed.LinkOptions{Alias: "gpk-bench-rate", Rate: floodRate}); err != nil {
		b.close()
		return nil, err
	}
	b.masterSpec, b.slowMasterSpec = "gpk_bench_master", "gpk_bench_slow_master"
	b.opensshSpec, b.slowOpensshSpec = "gpk_bench_openssh", "gpk_bench_slow_openssh"
	masterCfg, err := b.masterConfig("ssh_config_master", sshd.ConfigBlock())
	if err != nil {
		b.close()
		return nil, err
	}
	slowBlock, err := os.ReadFile(b.slow.ConfigFile)
	if err != nil {
		b.close()
		return nil, err
	}
	slowMasterCfg, err := b.masterConfig("ssh_config_slow_master", string(slowBlock))
	if err != nil {
		b.close()
		return nil, err
	}
	// extra: more flags of gopyk add. The flood spec uses tcp: over ipc the
	// kernel's unix socket (~200 KB) lets a loaded relay fall behind its
	// PUB socket's high-water mark (e2e TestIOPubFloodWholeAndInOrder).
	type spec struct {
		name, alias, cfg, streams, bin string
		extra                          []string
	}
	b.directSpec, b.slowDirectSpec = "gpk_bench_direct", "gpk_bench_slow_direct"
	// direct: today's per-kernel connection, without gopyk's master.
	direct := []string{"--master", "off"}
	// scale: a master that goes soon after its last kernel.
	b.scaleSpec = "gpk_bench_scale"
	scale := []string{"--master-persist", fmt.Sprint(int(scalePersist / time.Second))}
	specs := []spec{
		{b.fastSpec, sshd.Alias, sshd.ConfigFile, "auto", bin, nil},
		{b.slowSpec, b.slow.Alias, b.slow.ConfigFile, "auto", bin, nil},
		{b.directSpec, sshd.Alias, sshd.ConfigFile, "auto", bin, direct},
		{b.scaleSpec, sshd.Alias, sshd.ConfigFile, "auto", bin, scale},
		{b.slowDirectSpec, b.slow.Alias, b.slow.ConfigFile, "auto", bin, direct},
		{b.sessionSpec, sshd.Alias, sshd.ConfigFile, "session", bin, nil},
		{b.rateSpec, b.rate.Alias, b.rate.ConfigFile, "auto", bin, []string{"--transport", "tcp"}},
		{b.masterSpec, sshd.Alias, masterCfg, "auto", bin, nil},
		{b.slowMasterSpec, b.slow.Alias, slowMasterCfg, "auto", bin, nil},
		{b.opensshSpec, sshd.Alias, sshd.ConfigFile, "auto", bin, []string{"--ssh-client", "openssh"}},
		{b.slowOpensshSpec, b.slow.Alias, b.slow.ConfigFile, "auto", bin, []string{"--ssh-client", "openssh"}},
	}
	if base != "" {
		b.baseSpec, b.baseSlowSpec = "gpk_bench_baseline", "gpk_bench_baseline_slow"
		specs = append(specs, spec{b.baseSpec, sshd.Alias, sshd.ConfigFile, "auto", base, nil},
			spec{b.baseSlowSpec, b.slow.Alias, b.slow.ConfigFile, "auto", base, nil})
	}
	for _, s := range specs {
		if err := b.gopykOf(ctx, s.bin, append([]string{"add", "--kernel-name", s.name, "--display-name", s.name,
			"--ssh-host-alias", s.alias, "--ssh-config", s.cfg,
			"--remote-kernel-name", "python3", "--remote-python", python, "--streams", s.streams}, s.extra...)...); err != nil {
			b.close()
			return nil, err
		}
	}
	// The masters a user would open by hand, once, before launching.
	for _, m := range []struct{ cfg, alias string }{{masterCfg, sshd.Alias}, {slowMasterCfg, b.slow.Alias}} {
		mm, err := testbed.OpenMaster(m.cfg, m.alias, nil)
		if err != nil {
			b.close()
			return nil, err
		}
		b.masters = append(b.masters, mm)
	}
	return b, nil
}

// masterConfig writes block (one Host block of the testbed's) with
// ControlMaster auto and a ControlPath, as a user of masters has it.
func (b *bed) masterConfig(name, block string) (string, error) {
	block = strings.Replace(block, "  ControlMaster no\n", "  ControlMaster auto\n", 1)
	block = strings.Replace(block, "  ControlPath none\n", "  ControlPath "+filepath.Join(b.home, "cm-%C")+"\n", 1)
	path := filepath.Join(b.home, name)
	return path, os.WriteFile(path, []byte(block), 0o644)
}

func (b *bed) close() {
	b.mu.Lock()
	procs := b.procs
	b.procs = nil
	b.mu.Unlock()
	for _, p := range procs {
		p.kill()
	}
	testbed.StopMasters(b.runtime)
	os.RemoveAll(b.runtime)
	for _, m := range b.masters {
		m.Stop()
	}
	for _, l := range []*testbed.Link{b.slow, b.rate} {
		if l != nil {
			l.Stop()
		}
	}
	b.sshd.Stop()
	os.RemoveAll(b.home)
}

func (b *bed) gopyk(ctx context.Context, args ...string) error {
	return b.gopykOf(ctx, b.bin, args...)
}

// gopykOf runs the gopyk of the build in bin (the one measured, or the baseline).
func (b *bed) gopykOf(ctx context.Context, bin string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, filepath.Join(bin, "gopyk"), args...)
	c.Env = b.env
	out, err := c.CombinedOutput()
	if err != nil {
		return fmt.Errorf("gopyk %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// proc is a process the bench owns, in its own process group, killed by
// its PID (the group's id) at the end.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	out  strings.Builder
}

func (b *bed) start(name string, args ...string) (*proc, error) {
	c := exec.Command(name, args...)
	c.Env = b.env
	c.Dir = b.home
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &proc{cmd: c, done: make(chan struct{})}
	pr, pw := io.Pipe()
	c.Stdout, c.Stderr = pw, pw
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			if p.out.Len() < 1<<16 {
				p.out.WriteString(sc.Text() + "\n")
			}
			p.mu.Unlock()
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		c.Wait()
		pw.Close()
		close(p.done)
	}()
	b.mu.Lock()
	b.procs = append(b.procs, p)
	b.mu.Unlock()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.TrimSpace(p.out.String())
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to d for the process to exit on its own.
func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(d):
		return false
	}
}

func (p *proc) kill() {
	if !p.exited() {
		syscall.Kill(-p.pid(), syscall.SIGKILL)
		p.wait(5 * time.Second)
	}
}

// stop asks politely (SIGTERM), then kills.
func (p *proc) stop(d time.Duration) {
	if p.exited() {
		return
	}
	syscall.Kill(p.pid(), syscall.SIGTERM)
	if !p.wait(d) {
		p.kill()
	}
}

// scalePersist is how long the scale section's master stays once unused.
const scalePersist = 5 * time.Second

// waitMastersGone waits up to d for every gopyk master of the bench to
// exit, their sockets removed.
func (b *bed) waitMastersGone(d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		pids := testbed.Masters(b.runtime)
		socks, _ := filepath.Glob(filepath.Join(b.runtime, "gopyk-ssh-*", "m-????????????????"))
		if len(pids) == 0 && len(socks) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("masters %v and sockets %v left %v after the last kernel", pids, socks, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// fileTail is the file from byte off on.
func fileTail(path string, off int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < off {
		return ""
	}
	return string(b[off:])
}

// freePorts returns n free ports no earlier call returned: kernels started
// at once would otherwise probe the same free ports (as concurrent
// Jupyter launches can).
func (b *bed) freePorts(n int) ([]int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used == nil {
		b.used = map[int]bool{}
	}
	for range 50 {
		ps, err := wire.FreeTCPPorts(n)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(ps, func(p int) bool { return b.used[p] }) {
			for _, p := range ps {
				b.used[p] = true
			}
			return ps, nil
		}
	}
	return nil, fmt.Errorf("no %d unused free ports on 127.0.0.1 after 50 tries", n)
}

// newConn is a connection file as Jupyter writes one before starting a
// kernel's argv: five free local ports and a fresh key.
func (b *bed) newConn(kernel string) (string, wire.ConnInfo, error) {
	ports, err := b.freePorts(5)
	if err != nil {
		return "", wire.ConnInfo{}, err
	}
	ci := wire.ConnInfo{IP: "127.0.0.1", Key: wire.NewKey(), Transport: "tcp", SignatureScheme: "hmac-sha256", KernelName: kernel}
	ci.SetPorts(ports)
	dir := filepath.Join(b.home, "runtime")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", ci, err
	}
	// Kernels started at once must not share a file: a counter, not the clock.
	path := filepath.Join(dir, fmt.Sprintf("kernel-bench-%d.json", connSeq.Add(1)))
	return path, ci, wire.WriteConnInfo(path, ci)
}

var connSeq atomic.Int64

// kernel is a started kernel (gopyk-kernel or a local ipykernel) and a
// client that saw it ready.
type kernel struct {
	p  *proc
	ci wire.ConnInfo
	c  *wire.Client
}

// startGopyk runs gopyk-kernel as Jupyter does: a connection file first,
// then the spec's argv.
func (b *bed) startGopyk(ctx context.Context, spec string) (*kernel, error) {
	cf, ci, err := b.newConn(spec)
	if err != nil {
		return nil, err
	}
	p, err := b.start(filepath.Join(b.bin, "gopyk-kernel"), "--kernel", spec, "--connection-file", cf)
	if err != nil {
		return nil, err
	}
	return b.ready(ctx, p, ci)
}

// startLocal runs the python3 spec's argv locally: the baseline.
func (b *bed) startLocal(ctx context.Context) (*kernel, error) {
	cf, ci, err := b.newConn("python3")
	if err != nil {
		return nil, err
	}
	p, err := b.start(python, "-m", "ipykernel_launcher", "-f", cf)
	if err != nil {
		return nil, err
	}
	return b.ready(ctx, p, ci)
}

func (b *bed) ready(ctx context.Context, p *proc, ci wire.ConnInfo) (*kernel, error) {
	c, err := connect(ctx, ci, p)
	if err != nil {
		p.kill()
		return nil, err
	}
	return &kernel{p: p, ci: ci, c: c}, nil
}

// connect dials a client and waits until the kernel answers and iopub
// delivers; a process that exits meanwhile is the error.
func connect(ctx context.Context, ci wire.ConnInfo, p *proc) (*wire.Client, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if p != nil {
		go func() {
			select {
			case <-p.done:
				cancel()
			case <-ctx.Done():
			}
		}()
	}
	c, err := wire.Dial(ctx, ci)
	if err == nil {
		if err = c.WaitReady(ctx); err != nil {
			c.Close()
		}
	}
	if err != nil {
		if p != nil && p.exited() {
			return nil, fmt.Errorf("%s exited before the kernel was ready: %s", p.cmd.Args[0], p.output())
		}
		return nil, err
	}
	return c, nil
}

// shutdown ends a kernel the way Jupyter does: shutdown_request on the
// control channel, then wait for the process to exit, then kill it.
// It reports whether the process exited on its own.
func (k *kernel) shutdown(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if k.c != nil {
		k.c.Shutdown(ctx, false)
		k.c.Close()
		k.c = nil
	}
	clean := k.p.wait(20 * time.Second)
	if !clean {
		k.p.kill()
	}
	return clean
}

// remoteKernels lists session processes of the bench sshd that are kernels
// or gopyk supervisors.
func (b *bed) remoteKernels() []int {
	var out []int
	for _, pid := range b.sshd.SessionPIDs() {
		cl := cmdline(pid)
		if strings.Contains(cl, "ipykernel") || strings.Contains(cl, "gopyk") {
			out = append(out, pid)
		}
	}
	return out
}

// waitNoRemote polls until no remote kernel or supervisor is left.
func (b *bed) waitNoRemote(d time.Duration) error {
	return b.waitRemoteAtMost(context.Background(), 0, d)
}

// waitRemoteAtMost waits until at most n remote kernels and supervisors are left.
func (b *bed) waitRemoteAtMost(ctx context.Context, n int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		left := b.remoteKernels()
		if len(left) <= n {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d remote processes left after %v: %v", len(left), d, left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var errSkipped = errors.New("skipped")
