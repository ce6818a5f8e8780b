//go:build linux

package remote

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The full life of an ipc kernel: launch, secrets and permissions, a real
// client, interrupt, restart (same key and sockets), shutdown and cleanup.
func TestLaunchIPC(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	key := "s3cret-ipc-" + filepath.Base(b.home)
	r := b.launch(Params{KernelName: "GOPYK-test", Key: key, Grace: time.Minute, Tag: "spec-a"})

	if r.Transport != "ipc" || r.InterruptMode != "message" || r.KernelName != "GOPYK-test" || r.Tag != "spec-a" {
		t.Errorf("reply: transport %q interrupt_mode %q kernel %q tag %q", r.Transport, r.InterruptMode, r.KernelName, r.Tag)
	}
	if !strings.HasPrefix(r.RunDir, filepath.Join(b.home, ".gopyk", "run")+"/") {
		t.Errorf("run dir %s not under the home", r.RunDir)
	}
	if r.Channels.Shell != r.RunDir+"/k-1" || r.Channels.HB != r.RunDir+"/k-5" {
		t.Errorf("channels %+v", r.Channels)
	}
	if r.Hostname == "" || r.User == "" || !strings.HasPrefix(r.Uname, "Linux") || !strings.HasPrefix(r.Python, "3.") {
		t.Errorf("host facts: %q %q %q %q", r.Hostname, r.User, r.Uname, r.Python)
	}
	for path, want := range map[string]os.FileMode{
		filepath.Join(b.home, ".gopyk"): 0o700, r.RunDir: 0o700, r.ConnFile: 0o600,
		r.Control: 0o600, filepath.Join(b.home, CachePath()): 0o700, filepath.Join(b.home, CachePath(), "gopyk", "main.py"): 0o600,
	} {
		if got := mode(t, path); got&^want != 0 {
			t.Errorf("%s: mode %v, want at most %v", path, got, want)
		}
	}
	cf := readConnFile(t, r.ConnFile)
	if cf["key"] != key || cf["transport"] != "ipc" {
		t.Fatalf("connection file: %v", cf)
	}

	out := b.run(r.ConnFile, "exec", "import os; print(os.environ['GOPYK_TEST_ENV'], os.getpid())")
	if !strings.Contains(out, "OUT from-spec:base ") || !strings.Contains(out, "STATUS ok") {
		t.Fatalf("spec env or execute: %s", out)
	}
	if hits := procCmdlinesContaining(key); len(hits) > 0 {
		t.Errorf("the key is on a command line: %v", hits)
	}

	c := ctl(r)
	lease, err := c.Lease(tctx(t, 10*time.Second), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Close()
	if lease.Status().Leases != 1 || lease.Status().KernelPID != r.KernelPID {
		t.Errorf("lease status %+v", lease.Status())
	}

	// Interrupt: a sleeping cell gets KeyboardInterrupt.
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
	t0 := time.Now()
	if err := c.Interrupt(tctx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if !sc.Scan() || sc.Text() != "ENAME KeyboardInterrupt" {
		t.Fatalf("after interrupt: %q %v", sc.Text(), sc.Err())
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("interrupt took %v", d)
	}
	if err := cl.Wait(); err != nil {
		t.Fatal(err)
	}

	// Restart: new kernel process, same key, same sockets, and the lease hears of it.
	r2, err := c.Restart(tctx(t, 40*time.Second), 0)
	if err != nil {
		t.Fatal(err)
	}
	if r2.KernelPID == r.KernelPID || r2.KernelPID == 0 || r2.Channels != r.Channels || r2.Restarts != 1 {
		t.Fatalf("restart reply: pid %d→%d channels %+v→%+v restarts %d", r.KernelPID, r2.KernelPID, r.Channels, r2.Channels, r2.Restarts)
	}
	b.own(r2)
	waitGone(t, 5*time.Second, r.KernelPID)
	// ipykernel rewrites the file in its own format; what matters must stay.
	cf2 := readConnFile(t, r.ConnFile)
	for _, k := range []string{"key", "ip", "transport", "signature_scheme", "shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"} {
		if cf2[k] != cf[k] {
			t.Errorf("connection file: %s changed on restart: %v → %v", k, cf[k], cf2[k])
		}
	}
	select {
	case ev := <-lease.Events():
		if ev.Type != EventRestarted || ev.Status == nil || ev.Status.KernelPID != r2.KernelPID {
			t.Errorf("lease event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Error("no restarted event on the lease")
	}
	if out := b.run(r.ConnFile, "info"); !strings.Contains(out, "STATUS ok") {
		t.Fatalf("after restart: %s", out)
	}
	checkSecrets(t, r, key)

	// Shutdown: the kernel and supervisor exit, the run dir goes, the lease ends.
	exit, err := c.Shutdown(tctx(t, 20*time.Second), 0)
	if err != nil {
		t.Fatal(err)
	}
	if exit.KernelPID != r2.KernelPID || exit.Signal != int(syscall.SIGTERM) && exit.ExitCode == nil {
		t.Errorf("shutdown exit %+v", exit)
	}
	waitGone(t, 5*time.Second, r.SupervisorPID, r2.KernelPID)
	if exists(r.RunDir) {
		t.Errorf("run dir %s left behind", r.RunDir)
	}
	ev, ok := <-lease.Events()
	if !ok || ev.Type != EventKernelExited || ev.Reason != "shutdown" {
		t.Errorf("lease event after shutdown: %+v %v", ev, ok)
	}
	if _, ok := <-lease.Events(); ok || !errors.Is(lease.Err(), ErrLeaseClosed) {
		t.Errorf("lease not closed after shutdown: %v", lease.Err())
	}
	if left := pidsWithEnv("HOME=" + b.home); len(left) > 0 {
		t.Errorf("processes left after shutdown: %v", left)
	}
}

// tcp transport, with a HOME so long that unix sockets could not live under it.
func TestLaunchTCPLongHome(t *testing.T) {
	t.Parallel()
	home := filepath.Join(t.TempDir(), strings.Repeat("h", 90))
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	b := newBedAt(t, home)
	r := b.launch(Params{Transport: "tcp", Grace: time.Minute})
	if want := "/tmp/gopyk-" + itoa(os.Getuid()) + "/"; !strings.HasPrefix(r.RunDir, want) {
		t.Errorf("run dir %s, want under %s", r.RunDir, want)
	}
	if r.Transport != "tcp" || r.IP != "127.0.0.1" || len(r.Ports) != 5 || r.Channels.Shell != "127.0.0.1:"+itoa(r.Ports[0]) {
		t.Fatalf("tcp reply: %+v", r)
	}
	if out := b.run(r.ConnFile, "info"); !strings.Contains(out, "STATUS ok") {
		t.Fatalf("kernel_info: %s", out)
	}
	r2, err := ctl(r).Restart(tctx(t, 40*time.Second), 0)
	if err != nil {
		t.Fatal(err)
	}
	b.own(r2)
	if r2.Channels != r.Channels {
		t.Errorf("tcp restart changed ports: %+v → %+v", r.Channels, r2.Channels)
	}
	if out := b.run(r.ConnFile, "info"); !strings.Contains(out, "STATUS ok") {
		t.Fatalf("kernel_info after restart: %s", out)
	}
	if _, err := ctl(r).Shutdown(tctx(t, 20*time.Second), 0); err != nil {
		t.Fatal(err)
	}
	waitGone(t, 5*time.Second, r.SupervisorPID, r2.KernelPID)
	if exists(r.RunDir) {
		t.Errorf("run dir %s left behind", r.RunDir)
	}
}

// The last lease closes → grace → gone; persistent kernels stay until made
// non-persistent; status/list see them; status of a gone one says so.
func TestGraceAndPersistence(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	pr := b.launch(Params{Grace: 700 * time.Millisecond, Persistent: true, Tag: "keep"})
	// The lease is taken while the kernel starts, as the local side takes
	// its own: taken after the launch, it would race the grace period that
	// the launching session's end starts. Pings far apart enough that a
	// loaded machine never lets the lease go silent (3 pings missed).
	var lease *Lease
	r := b.launch(Params{Grace: 700 * time.Millisecond, OnControl: func(control, _ string) {
		var err error
		if lease, err = NewControl(UnixDialer(control)).Lease(tctx(t, 5*time.Second), 2*time.Second); err != nil {
			t.Error(err)
		}
	}})
	if lease == nil {
		t.Fatal("no lease")
	}
	time.Sleep(1500 * time.Millisecond) // longer than the grace period: the lease holds the kernel
	if !alive(r.KernelPID) || !alive(r.SupervisorPID) {
		t.Fatal("kernel gone while a lease was open")
	}
	st, err := b.exec(Params{Action: ActionStatus, RunDir: r.RunDir})
	if err != nil || st.KernelPID != r.KernelPID || st.Leases != 1 {
		t.Fatalf("status: %+v %v", st, err)
	}
	list, err := b.exec(Params{Action: ActionList})
	if err != nil {
		t.Fatal(err)
	}
	var mine []string
	for _, k := range list.Kernels { // /tmp/gopyk-<uid> may hold other tests' kernels
		if strings.HasPrefix(k.RunDir, b.home) {
			mine = append(mine, k.Tag)
		}
	}
	if len(mine) != 2 || mine[0]+mine[1] != "keep" {
		t.Fatalf("list: tags %q", mine)
	}
	lease.Close()
	t0 := time.Now()
	waitGone(t, 5*time.Second, r.KernelPID, r.SupervisorPID)
	if d := time.Since(t0); d < 500*time.Millisecond {
		t.Errorf("gone after %v, before the grace period", d)
	}
	if exists(r.RunDir) {
		t.Error("run dir left behind")
	}
	_, err = b.exec(Params{Action: ActionStatus, RunDir: r.RunDir})
	var re *ReplyError
	if !errors.As(err, &re) || re.Code != CodeGone || !errors.Is(err, ErrGone) {
		t.Errorf("status of a gone kernel: %v", err)
	}
	if _, err := ctl(r).Status(tctx(t, 5*time.Second)); !errors.Is(err, ErrGone) {
		t.Errorf("control status of a gone kernel: %v", err)
	}
	mc, closeMux := b.muxControl(t, r)
	if _, err := mc.Status(tctx(t, 10*time.Second)); !errors.Is(err, ErrGone) || !strings.Contains(err.Error(), r.Control) {
		t.Errorf("control status of a gone kernel through the mux: %v", err)
	}
	closeMux()

	if !alive(pr.KernelPID) {
		t.Fatal("persistent kernel gone without any lease")
	}
	if err := ctl(pr).SetPersistent(tctx(t, 5*time.Second), false); err != nil {
		t.Fatal(err)
	}
	waitGone(t, 5*time.Second, pr.KernelPID, pr.SupervisorPID)
	if exists(pr.RunDir) {
		t.Error("persistent run dir left behind")
	}
	if left := pidsWithEnv("HOME=" + b.home); len(left) > 0 {
		t.Errorf("processes left: %v", left)
	}
}

// A lease whose pings stop is dropped, and the grace period starts.
func TestLeasePingTimeout(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	// The grace period that the launching session's end starts must outlast
	// the dial below on a loaded machine: a lease that came later would
	// find the kernel gone, and this test would prove nothing (nor fail).
	r := b.launch(Params{Grace: 3 * time.Second})
	conn, err := UnixDialer(r.Control)(tctx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// A silent lease: asks for pings within 0.5 s and never sends one.
	if _, err := conn.Write([]byte(`{"op":"lease","ping_timeout":0.5}` + "\n")); err != nil {
		t.Fatal(err)
	}
	waitGone(t, 15*time.Second, r.KernelPID, r.SupervisorPID)
}

// kill -9 of the kernel: the lease hears kernel_exited within 2 s, then EOF;
// the supervisor exits and removes everything. The lease goes through an
// exec session's mux (what a server without streamlocal forwarding needs).
func TestKernelKilled(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	r := b.launch(Params{Grace: time.Minute})
	c, _ := b.muxControl(t, r)
	st, err := c.Status(tctx(t, 10*time.Second))
	if err != nil || st.KernelPID != r.KernelPID {
		t.Fatalf("status through the mux: %+v %v", st, err)
	}
	lease, err := c.Lease(tctx(t, 10*time.Second), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Close()
	if err := syscall.Kill(r.KernelPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-lease.Events():
		if ev.Type != EventKernelExited || ev.Reason != "died" || ev.Signal != 9 || ev.ExitCode != nil {
			t.Errorf("event %+v", ev)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no kernel_exited within 2 s")
	}
	// The supervisor lingers while the lease is held (a restart may follow),
	// and leaves as soon as it is released.
	lease.Close()
	waitGone(t, 3*time.Second, r.SupervisorPID)
	if exists(r.RunDir) {
		t.Error("run dir left behind")
	}
}

// The local side's usual order: shutdown_request through ZMQ first (the
// kernel exits by itself), then restart or shutdown through the supervisor.
func TestRequestsAfterTheKernelExited(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	r := b.launch(Params{Grace: time.Minute})
	c := ctl(r)
	lease, err := c.Lease(tctx(t, 5*time.Second), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Close()
	exited := func() {
		t.Helper()
		if out := b.run(r.ConnFile, "shutdown"); !strings.Contains(out, "SHUTDOWN ok") {
			t.Fatalf("shutdown_request: %s", out)
		}
		select {
		case ev := <-lease.Events():
			if ev.Type != EventKernelExited || ev.ExitCode == nil || *ev.ExitCode != 0 {
				t.Fatalf("event %+v", ev)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no kernel_exited after shutdown_request")
		}
	}
	exited()
	r2, err := c.Restart(tctx(t, 40*time.Second), -1)
	if err != nil {
		t.Fatalf("restart after the kernel exited: %v", err)
	}
	b.own(r2)
	if r2.KernelPID == r.KernelPID || r2.State != "running" {
		t.Errorf("restart: %+v", r2)
	}
	if ev := <-lease.Events(); ev.Type != EventRestarted {
		t.Errorf("event %+v", ev)
	}
	if out := b.run(r.ConnFile, "info"); !strings.Contains(out, "STATUS ok") {
		t.Fatalf("after restart: %s", out)
	}
	exited()
	t0 := time.Now()
	e, err := c.Shutdown(tctx(t, 20*time.Second), -1)
	if err != nil || e.ExitCode == nil || *e.ExitCode != 0 || time.Since(t0) > 2*time.Second {
		t.Errorf("shutdown after the kernel exited: %+v %v after %v", e, err, time.Since(t0))
	}
	waitGone(t, 5*time.Second, r.SupervisorPID)
	if exists(r.RunDir) {
		t.Error("run dir left behind")
	}
}

// kill -9 of the supervisor: the lease ends at EOF and the kernel follows
// (PR_SET_PDEATHSIG, and ipykernel's parent poller).
func TestSupervisorKilled(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	r := b.launch(Params{Grace: time.Minute})
	lease, err := ctl(r).Lease(tctx(t, 5*time.Second), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer lease.Close()
	if err := syscall.Kill(r.SupervisorPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-lease.Events():
		if ok || !errors.Is(lease.Err(), ErrLeaseClosed) {
			t.Errorf("lease: ok=%v err=%v", ok, lease.Err())
		}
	case <-time.After(2 * time.Second):
		t.Fatal("lease did not end within 2 s of the supervisor's death")
	}
	waitGone(t, 5*time.Second, r.KernelPID)
	// list cleans the dead supervisor's run dir, or the clean-up the launch
	// started (detached, racing this test on a slow machine) already did:
	// either way it is gone after list (TestListStaleDirs checks list's
	// own report).
	list, err := b.exec(Params{Action: ActionList})
	if err != nil || exists(r.RunDir) {
		t.Errorf("list after a dead supervisor: %+v %v", list, err)
	}
}

// A launch abandoned by the local side (its session closed before the reply)
// leaves nothing behind.
func TestAbandonedLaunch(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := Exec(ctx, &LocalSession{Env: b.env}, b.params(Params{KernelName: "slow"}))
		done <- err
	}()
	run := filepath.Join(b.home, ".gopyk", "run")
	waitFor(t, "the slow kernel to start", 10*time.Second, func() bool {
		logs, _ := filepath.Glob(filepath.Join(run, "*", "state.json"))
		return len(logs) == 1
	})
	if len(procCmdlinesContaining(b.home)) == 0 {
		t.Fatal("no kernel process")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("abandoned launch: %v", err)
	}
	waitFor(t, "the abandoned launch to clean up", 10*time.Second, func() bool {
		ents, _ := os.ReadDir(run)
		return len(ents) == 0 && len(procCmdlinesContaining(b.home)) == 0
	})
}

// Shutdown waits for a kernel that was asked to exit (shutdown_request), and
// escalates SIGTERM → SIGKILL for one that ignores SIGTERM.
func TestShutdownEscalation(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	polite := b.launch(Params{Grace: time.Minute})
	stubborn := b.launch(Params{KernelName: "stubborn", Grace: time.Minute, KillAfter: 2 * time.Second})

	type result struct {
		exit *Exit
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		t0 := time.Now()
		e, err := ctl(polite).Shutdown(tctx(t, 40*time.Second), 20*time.Second)
		done <- result{e, err, time.Since(t0)}
	}()
	waitFor(t, "the supervisor to wait for the kernel", 10*time.Second, func() bool {
		st, err := ctl(polite).Status(tctx(t, 5*time.Second))
		return err == nil && st.State == "stopping"
	})
	if out := b.run(polite.ConnFile, "shutdown"); !strings.Contains(out, "SHUTDOWN ok") {
		t.Fatalf("shutdown_request: %s", out)
	}
	res := <-done
	if res.err != nil || res.exit.ExitCode == nil || *res.exit.ExitCode != 0 || res.took > 15*time.Second {
		t.Errorf("polite kernel: %+v %v after %v", res.exit, res.err, res.took)
	}

	t0 := time.Now()
	e, err := ctl(stubborn).Shutdown(tctx(t, 30*time.Second), 0)
	took := time.Since(t0)
	if err != nil || e.Signal != int(syscall.SIGKILL) || took < 2*time.Second || took > 7*time.Second {
		t.Errorf("stubborn kernel: %+v %v after %v", e, err, took)
	}
	waitGone(t, 5*time.Second, polite.SupervisorPID, stubborn.SupervisorPID, stubborn.KernelPID)
}

// readConnFile reads a connection file that ipykernel may be rewriting
// (jupyter_client truncates, then writes).
func readConnFile(t *testing.T, path string) map[string]any {
	t.Helper()
	var cf map[string]any
	waitFor(t, "a complete "+path, 5*time.Second, func() bool {
		data, err := os.ReadFile(path)
		cf = nil
		return err == nil && json.Unmarshal(data, &cf) == nil && cf["hb_port"] != nil
	})
	return cf
}

func itoa(i int) string { return strconv.Itoa(i) }

// A launch says where the supervisor listens before the kernel starts: a
// lease taken then is granted at once, and a stream asked for then waits at
// the supervisor with its first bytes until the kernel accepts. The lease
// carries the quick requests, answered in-band.
func TestEarlyLeaseAndStreams(t *testing.T) {
	t.Parallel()
	b := newBed(t)
	ctx := tctx(t, 60*time.Second)
	type early struct {
		lease *Lease
		conn  net.Conn
		br    *bufio.Reader
		err   error
	}
	got := make(chan early, 1)
	p := b.params(Params{KernelName: "slowecho", Key: "early", Grace: time.Minute})
	calls := 0
	p.OnControl = func(control, runDir string) {
		calls++
		if filepath.Join(runDir, "ctl") != control {
			t.Errorf("control frame: %q is not the ctl of %q", control, runDir)
		}
		go func() {
			var e early
			defer func() { got <- e }()
			if e.lease, e.err = NewControl(UnixDialer(control)).Lease(ctx, 0); e.err != nil {
				return
			}
			if e.conn, e.err = UnixDialer(control)(ctx); e.err != nil {
				return
			}
			if e.err = RequestStream(e.conn, "shell", "", 0, ""); e.err == nil {
				_, e.err = e.conn.Write(AppendFrame(nil, FrameData, []byte("early\n")))
			}
			e.br = bufio.NewReader(e.conn)
		}()
	}
	r, err := Exec(ctx, &LocalSession{Env: b.env}, p)
	if r != nil {
		b.own(r)
	}
	if err != nil || calls != 1 {
		t.Fatalf("launch: %v, %d control frames", err, calls)
	}
	e := <-got
	if e.err != nil {
		t.Fatal(e.err)
	}
	defer e.lease.Close()
	defer e.conn.Close()
	if st := e.lease.Status().State; st != "new" && st != "starting" {
		t.Errorf("lease granted with the kernel %s; want it before the kernel ran", st)
	}
	h, err := ReadHello(ctx, e.conn, e.br, "shell")
	if err != nil || h.ID == "" {
		t.Fatalf("the early stream: %+v, %v", h, err)
	}
	if k, p, err := ReadFrame(e.br, nil); err != nil || k != FrameData || string(p) != "early\n" {
		t.Fatalf("the early bytes came back as %q %q, %v", k, p, err)
	}
	for _, op := range []string{"interrupt", "status", "persist"} {
		if !e.lease.Carries(op) {
			t.Errorf("the lease does not carry %s", op)
		}
	}
	var st Reply
	if err := e.lease.Call(ctx, request{Op: "status"}, &st); err != nil || st.State != "running" || st.Streams != 1 || st.KernelPID != r.KernelPID {
		t.Fatalf("status on the lease: %+v, %v", st, err)
	}
	if err := e.lease.Call(ctx, request{Op: "shutdown"}, nil); !errors.Is(err, ErrNotInBand) {
		t.Errorf("shutdown on the lease: %v; want ErrNotInBand", err)
	}
	// The echo kernel dies of the SIGINT (no handler): the answer comes
	// first, then the event.
	if err := e.lease.Interrupt(ctx); err != nil {
		t.Fatalf("interrupt on the lease: %v", err)
	}
	select {
	case ev := <-e.lease.Events():
		if ev.Type != EventKernelExited || ev.Signal != int(syscall.SIGINT) && (ev.ExitCode == nil || *ev.ExitCode == 0) {
			t.Errorf("event after the interrupt: %+v", ev)
		}
	case <-ctx.Done():
		t.Fatal("no kernel_exited after the interrupt")
	}
	if err := e.lease.Interrupt(ctx); err == nil {
		t.Error("interrupt of an exited kernel: no error")
	}
}
