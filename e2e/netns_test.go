//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gopyk/gopyk/kernelspec"
	"github.com/gopyk/gopyk/provisioner"
	"github.com/gopyk/gopyk/testbed"
	"github.com/gopyk/gopyk/wire"
)

// Link-drop tests. The test process lives in the root network namespace, but
// the launcher and the Jupyter client must live in the "local" one (the
// sshd is in "remote"), and ZMQ sockets can't be told which namespace to
// dial from. So each test re-executes the test binary inside the local
// namespace (ip netns exec) and the child does the work: it takes the link
// down and up itself, runs the launcher (the binary, or the provisioner in
// process where its goroutines are counted) and drives a real
// jupyter_client. The parent owns the namespaces and the sshd.

const childEnv = "GOPYK_NETNS_CHILD"

// childConfig is what the parent hands the child.
type childConfig struct {
	Mode       string           `json:"mode"`
	Iface      string           `json:"iface"` // the local veth end
	Spec       string           `json:"spec"`
	Home       string           `json:"home"`
	TestbedDir string           `json:"testbed_dir"` // the sshd's Dir: its sessions carry it
	Gopyk      kernelspec.Gopyk `json:"gopyk"`
	Outages    int              `json:"outages"`
	Down       time.Duration    `json:"down"`
	Session    bool             `json:"session"` // the server refuses forwarding: the launcher must say it uses the session path
	Kernels    int              `json:"kernels"` // mode drops: kernels through the one link
	Downs      []time.Duration  `json:"downs"`   // mode drops: one outage each
	Spec2      string           `json:"spec2"`   // mode notices: the spec with connection notices off
	Master     string           `json:"master"`  // mode master: the ssh config whose ControlPath the user's master listens on
	Askpass    string           `json:"askpass"` // mode master: the program that types the password for the user
	NoMaster   time.Duration    `json:"no_master"`
}

// newNetEnv is an env whose sshd runs in a fresh remote namespace, with a
// client keepalive short enough (1 s × 3) to notice a dead link in ~3 s.
func newNetEnv(t *testing.T, grace int) (*env, *testbed.Netns) {
	t.Helper()
	return newNetEnvWith(t, grace, "")
}

// newNetEnvWith is newNetEnv with sshd's forwarding restricted (testbed.Options.Forwarding).
func newNetEnvWith(t *testing.T, grace int, forwarding string) (*env, *testbed.Netns) {
	t.Helper()
	return newNetEnvSSHD(t, grace, forwarding, "  ServerAliveInterval 1\n  ServerAliveCountMax 3\n  ConnectTimeout 5\n")
}

// newNetEnvConfig is newNetEnv with the client config's lines for the alias
// (indented) instead of the short keepalive.
func newNetEnvConfig(t *testing.T, grace int, lines string) (*env, *testbed.Netns) {
	t.Helper()
	return newNetEnvSSHD(t, grace, "", lines)
}

func newNetEnvSSHD(t *testing.T, grace int, forwarding, lines string) (*env, *testbed.Netns) {
	t.Helper()
	ns := testbed.NetnsForTest(t)
	sshd := testbed.SSHDForTest(t, testbed.Options{Netns: ns, IsolateHome: true, Forwarding: forwarding})
	f, err := os.OpenFile(sshd.ConfigFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The file ends inside the alias's Host block.
	fmt.Fprint(f, lines)
	f.Close()
	e := newEnvWith(t, sshd)
	setSpecMeta(t, e, "grace", grace)
	return e, ns
}

// setSpecMeta sets metadata.gopyk.<key> in the spec's kernel.json (gopyk add
// has no flag for every setting).
func setSpecMeta(t *testing.T, e *env, key string, value any) {
	t.Helper()
	path := filepath.Join(e.home, "data", "kernels", e.spec, "kernel.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spec map[string]any
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	spec["metadata"].(map[string]any)["gopyk"].(map[string]any)[key] = value
	b, _ = json.MarshalIndent(spec, "", "  ")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readGopyk(t *testing.T, e *env) kernelspec.Gopyk {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.home, "data", "kernels", e.spec, "kernel.json"))
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Metadata struct {
			Gopyk kernelspec.Gopyk `json:"gopyk"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	return spec.Metadata.Gopyk
}

// runChild re-executes this test binary inside the local namespace running
// only TestNetnsChild, and fails t if the child fails.
func runChild(t *testing.T, e *env, ns *testbed.Netns, cfg childConfig, limit time.Duration) {
	t.Helper()
	cfg.Iface, cfg.Spec, cfg.Home, cfg.TestbedDir = ns.LocalIf, e.spec, e.home, e.sshd.Dir
	b, _ := json.Marshal(cfg)
	e.vars = append(e.vars, childEnv+"="+string(b), "GOPYK_E2E_BINDIR="+binDir)
	args := []string{"netns", "exec", ns.Local, os.Args[0], "-test.run=^TestNetnsChild$", "-test.v", "-test.count=1",
		"-test.timeout=" + limit.String()}
	p := e.start("ip", args...)
	code := p.waitExit(t, limit+10*time.Second)
	t.Logf("child in namespace %s:\n%s", ns.Local, p.output())
	if code != 0 {
		t.Fatalf("child test failed (exit %d)", code)
	}
}

// A 30 s outage with a client connected: the cell sent during the outage
// completes once the link is back, state survives, and the next cell runs
// within 2 s of link-up. The binary runs as Jupyter would run it.
func TestNetnsOutage30s(t *testing.T) {
	t.Parallel()
	e, ns := newNetEnv(t, 60)
	runChild(t, e, ns, childConfig{Mode: "outage", Outages: 1, Down: 30 * time.Second}, 3*time.Minute)
	waitNoSessions(t, e)
}

// Ten short outages in a row with the provisioner in process: every one is
// recovered from, and goroutines, descriptors and remote processes don't grow.
func TestNetnsRepeatedOutages(t *testing.T) {
	t.Parallel()
	e, ns := newNetEnv(t, 60)
	cfg := childConfig{Mode: "repeat", Outages: 10, Down: 5 * time.Second, Gopyk: readGopyk(t, e)}
	runChild(t, e, ns, cfg, 3*time.Minute)
	waitNoSessions(t, e)
}

// waitNoSessions waits until no process started through e's sshd is left
// (unlike waitNoRemote, blind to other tests' kernels of the same user).
func waitNoSessions(t *testing.T, e *env) {
	t.Helper()
	waitFor(t, 20*time.Second, "no remote session processes", func() bool { return len(e.sshd.SessionPIDs()) == 0 })
}

// TestNetnsChild is the half of the tests above that runs inside the local
// namespace; run on its own it has nothing to do.
func TestNetnsChild(t *testing.T) {
	raw := os.Getenv(childEnv)
	if raw == "" {
		t.Skip("runs only inside a network namespace, started by TestNetnsOutage30s and TestNetnsRepeatedOutages")
	}
	var cfg childConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, home: cfg.Home, spec: cfg.Spec, vars: os.Environ()}
	switch cfg.Mode {
	case "outage":
		childOutage(t, e, cfg)
	case "repeat":
		childRepeat(t, e, cfg)
	case "drops":
		childDrops(t, e, cfg)
	case "notices":
		childNotices(t, e, cfg)
	case "master":
		childMasterDrop(t, e, cfg)
	case "shared":
		childSharedOutage(t, e, cfg)
	default:
		t.Fatalf("unknown mode %q", cfg.Mode)
	}
}

func link(t *testing.T, iface, state string) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", "link", "set", "dev", iface, state).CombinedOutput(); err != nil {
		t.Fatalf("ip link set %s %s: %v: %s", iface, state, err, out)
	}
	return time.Now()
}

func childOutage(t *testing.T, e *env, cfg childConfig) {
	k, cf := e.launch()
	py := startPyClient(t, e, cf)
	if r := py.exec(t, "x = 41", "x", 30*time.Second); r.Value != "41" {
		t.Fatalf("before the outage: %+v", r)
	}
	// A cell that runs into the outage: its output and reply come while the
	// link is down.
	py.send("print('started', flush=True)\nimport time\ntime.sleep(2)\nprint('during', flush=True)\nw = x + 2", "w", 120*time.Second)
	py.waitOutput(t, "started", 30*time.Second)
	tDown := link(t, cfg.Iface, "down")
	// A cell sent at once, long before the launcher can know the link is
	// dead: its bytes go into the dead connection and must be sent again.
	py.send("y = x + 1", "y", 120*time.Second)
	waitFor(t, 15*time.Second, "the launcher to notice the dead link", func() bool {
		return strings.Contains(k.output(), "connection lost")
	})
	lost := time.Since(tDown)
	time.Sleep(time.Until(tDown.Add(cfg.Down))) // the outage itself, not a synchronisation
	tUp := link(t, cfg.Iface, "up")
	py.waitOutput(t, "during", 60*time.Second)
	if r := py.recv(t, 60*time.Second); r.Status != "ok" || r.Value != "43" {
		t.Fatalf("cell running when the link went down: %+v", r)
	}
	r := py.recv(t, 60*time.Second)
	during := time.Since(tUp)
	if r.Status != "ok" || r.Value != "42" {
		t.Fatalf("cell sent during the outage: %+v", r)
	}
	r = py.exec(t, "z = x * 2", "z", 30*time.Second)
	next := time.Since(tUp)
	if r.Status != "ok" || r.Value != "82" {
		t.Fatalf("cell after the outage: %+v (x lost?)", r)
	}
	t.Logf("outage %v: loss noticed after %v; queued cell done %v after link-up; next cell done %v after link-up",
		cfg.Down, lost.Round(time.Millisecond), during.Round(time.Millisecond), next.Round(time.Millisecond))
	// The ≤ 2 s target is measured and logged above; what must never happen
	// is waiting on the dead connection's TCP back-off (many seconds after
	// a 30 s outage). The bound leaves room for a loaded CI machine.
	if next > recoveryBound {
		t.Errorf("next cell ran %v after link-up, want ≤ %v (target 2 s)", next, recoveryBound)
	}
	// Through a master the streams may resume before the kernel's own
	// reconnect (its status check and lease) is done and logged.
	waitFor(t, 30*time.Second, "the launcher to log its reconnect", func() bool { return strings.Contains(k.output(), "reconnected") })
	out := k.output()
	lines := []string{"connection lost", "reconnect failed, retrying", "reconnected"}
	if cfg.Session {
		lines = append(lines, "refuses forwarding to unix sockets")
	}
	for _, line := range lines {
		if n := strings.Count(out, line); n != 1 {
			t.Errorf("log has %q %d times, want once:\n%s", line, n, out)
		}
	}
	py.close()
	k.signal(syscall.SIGTERM)
	if code := k.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("gopyk-kernel exit %d after SIGTERM:\n%s", code, out)
	}
}

func childRepeat(t *testing.T, e *env, cfg childConfig) {
	var logBuf lockedBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() { t.Logf("provisioner log:\n%s", logBuf.String()) })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	k, err := provisioner.Launch(ctx, provisioner.Config{SpecName: e.spec, Gopyk: cfg.Gopyk, Log: log,
		Local: wire.ConnInfo{IP: "127.0.0.1", Transport: "tcp", SignatureScheme: "hmac-sha256"}})
	if err != nil {
		t.Fatalf("launch: %v", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := k.Shutdown(sctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	}()
	cf := filepath.Join(e.home, "repeat.json")
	if err := wire.WriteConnInfo(cf, k.Local()); err != nil {
		t.Fatal(err)
	}
	py := startPyClient(t, e, cf)
	defer py.close()
	remote := func() int { return len(testbed.SessionPIDsIn(cfg.TestbedDir)) }
	if r := py.exec(t, "n = 0", "n", 30*time.Second); r.Status != "ok" {
		t.Fatalf("first cell: %+v", r)
	}
	wantRemote := remote()
	outage := func(i int) time.Duration {
		lost := strings.Count(logBuf.String(), "connection lost")
		tDown := link(t, cfg.Iface, "down")
		py.send("n += 1", "n", 60*time.Second) // into the dead connection
		waitFor(t, 15*time.Second, "the loss to be noticed", func() bool {
			return strings.Count(logBuf.String(), "connection lost") > lost
		})
		time.Sleep(time.Until(tDown.Add(cfg.Down))) // the outage itself
		tUp := link(t, cfg.Iface, "up")
		r := py.recv(t, 60*time.Second)
		if r.Status != "ok" || r.Value != fmt.Sprint(i) {
			t.Fatalf("cell after outage %d: %+v", i, r)
		}
		return time.Since(tUp)
	}
	// One outage first, so that everything a reconnect creates once exists
	// in the baseline.
	first := outage(1)
	baseG, baseFD := settle(runtime.NumGoroutine, 0), fdCount(t)
	var rec []time.Duration
	for i := 2; i <= cfg.Outages+1; i++ {
		rec = append(rec, outage(i))
	}
	t.Logf("recovery (link-up → cell done) after %v outages: first %v, then %v", cfg.Down, first.Round(time.Millisecond), roundAll(rec))
	g := settle(runtime.NumGoroutine, baseG)
	fd := settle(func() int { return fdCount(t) }, baseFD)
	t.Logf("goroutines %d → %d, fds %d → %d, remote processes %d → %d", baseG, g, baseFD, fd, wantRemote, remote())
	if g > baseG {
		t.Errorf("goroutines grew from %d to %d over %d outages", baseG, g, cfg.Outages)
	}
	if fd > baseFD {
		t.Errorf("file descriptors grew from %d to %d over %d outages", baseFD, fd, cfg.Outages)
	}
	if n := remote(); n != wantRemote {
		t.Errorf("remote processes: %d, want %d (supervisor and kernel)", n, wantRemote)
	}
	for i, d := range rec {
		if d > recoveryBound {
			t.Errorf("outage %d: cell ran %v after link-up, want ≤ %v (target 2 s)", i+2, d, recoveryBound)
		}
	}
}

// recoveryBound is how long after link-up a cell may take in these tests.
// Typical figures are 0.5-1.1 s (logged); a bound near the 2 s target would
// fail on a loaded machine, while the failure it guards against — waiting on
// TCP retransmission back-off — costs 4-25 s.
const recoveryBound = 4 * time.Second

// settle polls f for up to 5 s until it is at most want (0: just let
// short-lived goroutines finish) and returns the last value.
func settle(f func() int, want int) int {
	deadline := time.Now().Add(5 * time.Second)
	v := f()
	for time.Now().Before(deadline) {
		if want > 0 && v <= want {
			return v
		}
		time.Sleep(100 * time.Millisecond)
		if n := f(); want == 0 && n == v {
			return v
		} else {
			v = n
		}
	}
	return v
}

func fdCount(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// pyClient is jupyter_client's BlockingKernelClient driven line by line: the
// client JupyterLab and nbclient use, with ZMQ's own reconnects. Each line is
// executed at once (several may be pending); results come from the shell
// reply (user_expressions), stream output from iopub on its own channel.
type pyClient struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    chan pyResult
	stream chan string
	done   chan struct{}
}

type pyResult struct {
	Status string `json:"status"`
	Value  string `json:"value"`
	Error  string `json:"error"`
}

const pyDriver = `
import sys, json, queue, threading, time
from jupyter_client import BlockingKernelClient
kc = BlockingKernelClient(connection_file=sys.argv[1]); kc.load_connection_file(); kc.start_channels()
kc.wait_for_ready(timeout=60)
def out(d):
    print(json.dumps(d), flush=True)
out({"status": "ready"})
reqs = queue.Queue()
def read():
    for line in sys.stdin:
        reqs.put(json.loads(line))
    reqs.put(None)
threading.Thread(target=read, daemon=True).start()
pending, eof = {}, False
while not eof or pending:
    try:
        while True:
            req = reqs.get_nowait()
            if req is None:
                eof = True
                break
            mid = kc.execute(req["code"], user_expressions={"v": req["expr"]})
            pending[mid] = time.monotonic() + req["timeout"]
    except queue.Empty:
        pass
    try:
        m = kc.get_iopub_msg(timeout=0.02)
        if m["msg_type"] == "stream":
            out({"status": "stream", "value": m["content"]["text"]})
    except queue.Empty:
        pass
    try:
        m = kc.get_shell_msg(timeout=0.02)
        if pending.pop(m["parent_header"].get("msg_id"), None) is not None:
            c = m["content"]
            v = c.get("user_expressions", {}).get("v", {})
            out({"status": c["status"], "value": v.get("data", {}).get("text/plain", ""),
                 "error": c.get("ename", "") or v.get("ename", "")})
    except queue.Empty:
        pass
    for mid, deadline in list(pending.items()):
        if time.monotonic() > deadline:
            del pending[mid]
            out({"status": "client-error", "error": "no reply within the timeout"})
`

func startPyClient(t *testing.T, e *env, cf string) *pyClient {
	t.Helper()
	c := exec.Command(python, "-c", pyDriver, cf)
	c.Env = e.vars
	c.Stderr = os.Stderr
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := c.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	p := &pyClient{cmd: c, stdin: stdin, out: make(chan pyResult, 16), stream: make(chan string, 256), done: make(chan struct{})}
	go func() {
		defer close(p.out)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var r pyResult
			if json.Unmarshal(sc.Bytes(), &r) != nil {
				continue
			}
			if r.Status == "stream" {
				select {
				case p.stream <- r.Value:
				default: // nobody is looking for output
				}
				continue
			}
			p.out <- r
		}
	}()
	go func() { c.Wait(); close(p.done) }()
	t.Cleanup(p.close)
	if r := p.recv(t, 90*time.Second); r.Status != "ready" {
		t.Fatalf("jupyter_client: %+v", r)
	}
	return p
}

func (p *pyClient) send(code, expr string, timeout time.Duration) {
	b, _ := json.Marshal(map[string]any{"code": code, "expr": expr, "timeout": timeout.Seconds()})
	p.stdin.Write(append(b, '\n'))
}

func (p *pyClient) recv(t *testing.T, d time.Duration) pyResult {
	t.Helper()
	select {
	case r, ok := <-p.out:
		if !ok {
			t.Fatal("jupyter_client driver exited")
		}
		return r
	case <-time.After(d):
		t.Fatalf("no answer from jupyter_client within %v", d)
	}
	return pyResult{}
}

// waitOutput waits until the stream output seen so far contains want.
func (p *pyClient) waitOutput(t *testing.T, want string, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	var seen strings.Builder
	for !strings.Contains(seen.String(), want) {
		select {
		case s := <-p.stream:
			seen.WriteString(s)
		case <-timer.C:
			t.Fatalf("no output %q within %v (saw %q)", want, d, seen.String())
		}
	}
}

func (p *pyClient) exec(t *testing.T, code, expr string, d time.Duration) pyResult {
	t.Helper()
	p.send(code, expr, d)
	return p.recv(t, d+5*time.Second)
}

func (p *pyClient) close() {
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}
