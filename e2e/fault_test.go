//go:build linux

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/gopyk/gopyk/testbed"
)

// newFaultEnv is an env on a loopback sshd with its own remote HOME (so
// ~/.gopyk and process lists are this test's own), a short grace period and
// a keepalive that notices a dead server in ~3 s.
func newFaultEnv(t *testing.T, grace int, addArgs ...string) *env {
	t.Helper()
	sshd := testbed.SSHDForTest(t, testbed.Options{IsolateHome: true})
	appendKeepalive(t, sshd.ConfigFile)
	e := newEnvWith(t, sshd, addArgs...)
	setSpecMeta(t, e, "grace", grace)
	return e
}

func appendKeepalive(t *testing.T, configFile string) {
	t.Helper()
	f, err := os.OpenFile(configFile, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprint(f, "  ServerAliveInterval 1\n  ServerAliveCountMax 3\n  ConnectTimeout 5\n")
}

// sessionProcs lists the supervisor and kernel processes of e's sshd:
// "supervisor" or "kernel" → pid. The supervisor is the kernel's parent:
// other launcher processes come and go (a reconnect's status check runs the
// launcher for a moment, and through a master its session may still be
// ending when the cell it raced has run).
func sessionProcs(e *env) map[string]int {
	out := map[string]int{}
	launchers := map[int]bool{}
	for _, pid := range e.sshd.SessionPIDs() {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil {
			continue
		}
		cl := string(b)
		switch {
		case strings.Contains(cl, "ipykernel"):
			out["kernel"] = pid
		case strings.Contains(cl, "gopyk"):
			launchers[pid] = true
		}
	}
	if k := out["kernel"]; k != 0 {
		if pp := parentPID(k); launchers[pp] {
			out["supervisor"] = pp
		}
	} else if len(launchers) == 1 {
		for pid := range launchers {
			out["supervisor"] = pid
		}
	}
	return out
}

// parentPID is pid's parent, 0 when it is gone.
func parentPID(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// pid (comm) state ppid …: comm may hold spaces and parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 2 {
		return 0
	}
	pp, _ := strconv.Atoi(f[1])
	return pp
}

// The sshd is killed (listener and connections) and started again on the
// same port: the launcher reconnects and the kernel keeps its state.
func TestSSHDRestartReconnects(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t, 60)
	k, cf := e.launch()
	py := startPyClient(t, e, cf)
	if r := py.exec(t, "x = 7", "x", 30*time.Second); r.Value != "7" {
		t.Fatalf("first cell: %+v", r)
	}
	before := sessionProcs(e)
	e.sshd.KillConns()
	e.sshd.Kill()
	waitFor(t, 15*time.Second, "the launcher to notice the lost server", func() bool {
		return strings.Contains(k.output(), "connection lost")
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.sshd.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	tUp := time.Now()
	r := py.exec(t, "x * 6", "x * 6", 30*time.Second)
	t.Logf("cell done %v after sshd restart", time.Since(tUp).Round(time.Millisecond))
	if r.Status != "ok" || r.Value != "42" {
		t.Fatalf("after sshd restart: %+v", r)
	}
	select {
	case <-k.done:
		t.Fatalf("gopyk-kernel exited during the reconnect:\n%s", k.output())
	default:
	}
	if after := sessionProcs(e); after["kernel"] != before["kernel"] || after["supervisor"] != before["supervisor"] {
		t.Fatalf("remote processes changed across the reconnect: %v → %v", before, after)
	}
	// Through a master the streams may resume before the kernel's own
	// reconnect (its status check and lease) is done and logged.
	waitFor(t, 30*time.Second, "the launcher to log its reconnect", func() bool { return strings.Contains(k.output(), "reconnected") })
	if n := strings.Count(k.output(), "reconnected"); n != 1 {
		t.Errorf("log says reconnected %d times, want once:\n%s", n, k.output())
	}
	py.close()
	k.signal(syscall.SIGTERM)
	if code := k.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, k.output())
	}
	waitNoSessions(t, e)
}

// latencyProxy puts toxiproxy between the client and sshd with delay each
// way and points the env's ssh config at it.
func latencyProxy(t *testing.T, e *env, delay time.Duration) {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "ssh", "127.0.0.1:0", e.sshd.Addr)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	for _, stream := range []string{"upstream", "downstream"} {
		toxic := fmt.Sprintf(`{"name":"lat_%s","type":"latency","stream":%q,"attributes":{"latency":%d,"jitter":0}}`,
			stream, stream, delay.Milliseconds())
		if _, err := p.Toxics.AddToxicJson(strings.NewReader(toxic)); err != nil {
			t.Fatal(err)
		}
	}
	_, port, _ := strings.Cut(p.Listen, "127.0.0.1:")
	cfg, err := os.ReadFile(e.sshd.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(cfg), fmt.Sprintf("Port %d\n", e.sshd.Port), "Port "+port+"\n", 1)
	if err := os.WriteFile(e.sshd.ConfigFile, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	kh, err := os.OpenFile(e.sshd.KnownHosts, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(kh, "[127.0.0.1]:%s %s\n", port, e.sshd.HostKeyPub)
	kh.Close()
}

// At 100 ms round-trip time launch, execute, interrupt and shutdown work.
func TestLatency100ms(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t, 60)
	latencyProxy(t, e, 50*time.Millisecond)
	t0 := time.Now()
	k, cf := e.launch()
	launch := time.Since(t0)
	c := e.client(cf)
	t1 := time.Now()
	if r := execute(t, c, "6 * 7"); r.Result != "42" {
		t.Fatalf("execute: %+v", r)
	}
	rt := time.Since(t1)
	if rt < 100*time.Millisecond {
		t.Fatalf("execute took %v: the proxy's 100 ms RTT is not in the path", rt)
	}
	took := interruptSleep(t, c, func() { k.signal(syscall.SIGINT) })
	t.Logf("at 100 ms RTT: launch %v, execute round trip %v, interrupt %v", launch.Round(time.Millisecond),
		rt.Round(time.Millisecond), took.Round(time.Millisecond))
	if r := execute(t, c, "'still here'"); r.Result != "'still here'" {
		t.Fatalf("after interrupt: %+v", r)
	}
	c.Close()
	k.signal(syscall.SIGTERM)
	if code := k.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, k.output())
	}
	waitNoSessions(t, e)
}

// kill -9 of the launcher: its lease closes while the pings were on time, so
// the supervisor shuts the kernel down within seconds, long before the grace
// period (a network drop goes silent first and gets the grace period, see
// netns_test.go); a persistent kernel stays and --existing re-attaches.
func TestLauncherKilledGrace(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t, 600)
	k, _ := e.launch()
	if p := sessionProcs(e); p["kernel"] == 0 || p["supervisor"] == 0 {
		t.Fatalf("remote processes after launch: %v", p)
	}
	k.signal(syscall.SIGKILL)
	t0 := time.Now()
	k.waitExit(t, 10*time.Second)
	waitNoSessions(t, e)
	t.Logf("remote kernel and supervisor gone %v after kill -9 of the launcher (grace 600s)", time.Since(t0).Round(time.Millisecond))

	pf := filepath.Join(e.home, "persist.json")
	k2, cf2 := e.launch("--persistent", "--persistent-file", pf)
	c := e.client(cf2)
	if r := execute(t, c, "x = 'kept'"); r.Status != "ok" {
		t.Fatalf("execute: %+v", r)
	}
	c.Close()
	procs := sessionProcs(e)
	k2.signal(syscall.SIGKILL)
	k2.waitExit(t, 10*time.Second)
	// Wait well past the abandoned-lease window (4 s): nothing may go away.
	deadline := time.Now().Add(7 * time.Second)
	for time.Now().Before(deadline) {
		if p := sessionProcs(e); p["kernel"] != procs["kernel"] || p["supervisor"] != procs["supervisor"] {
			t.Fatalf("persistent kernel changed after kill -9 of its launcher: %v → %v", procs, p)
		}
		time.Sleep(200 * time.Millisecond)
	}
	cf3 := filepath.Join(e.home, "attached.json")
	k3 := e.start(filepath.Join(binDir, "gopyk-kernel"), "--kernel", e.spec, "--existing", pf, "--connection-file", cf3)
	e.waitReady(k3, cf3)
	c3 := e.client(cf3)
	if r := execute(t, c3, "x"); r.Result != "'kept'" {
		t.Fatalf("after --existing: x = %q, want 'kept'", r.Result)
	}
	c3.Close()
	k3.signal(syscall.SIGUSR2)
	if code := k3.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGUSR2:\n%s", code, k3.output())
	}
	waitNoSessions(t, e)
}

// A remote kernel or supervisor that dies makes the launcher exit non-zero
// within 2 s (what Jupyter's auto-restart needs), leaving nothing behind.
func TestRemoteDeathEndsLauncher(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t, 60)
	for _, victim := range []string{"kernel", "supervisor"} {
		k, _ := e.launch()
		pid := sessionProcs(e)[victim]
		if pid == 0 {
			t.Fatalf("no remote %s: %v", victim, sessionProcs(e))
		}
		syscall.Kill(pid, syscall.SIGKILL)
		t0 := time.Now()
		code := k.waitExit(t, 10*time.Second)
		took := time.Since(t0)
		t.Logf("kill -9 of the remote %s: launcher exit %d after %v", victim, code, took.Round(time.Millisecond))
		if code == 0 {
			t.Errorf("launcher exited 0 after its remote %s died:\n%s", victim, k.output())
		}
		if took > 2*time.Second {
			t.Errorf("launcher took %v to exit after its remote %s died, want ≤ 2s", took, victim)
		}
		waitNoSessions(t, e)
	}
}

// kill -9 of the remote kernel under jupyter-server: the server's restarter
// brings up a new one, the next cell runs, and interrupt and shutdown still
// work (sshpyk fails here and orphans the kernel).
func TestJupyterServerKernelKilled(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t, 60)
	s := e.startServer()
	code, b := s.do("POST", "/api/kernels", map[string]any{"name": e.spec})
	if code != 201 {
		t.Fatalf("POST /api/kernels = %d: %s", code, b)
	}
	var kern struct{ ID string }
	json.Unmarshal(b, &kern)
	ws := s.channels(kern.ID)
	if r := ws.execute("x = 1; print(x)", 90*time.Second); r.status != "ok" {
		t.Fatalf("first cell: %+v", r)
	}
	old := sessionProcs(e)
	syscall.Kill(old["kernel"], syscall.SIGKILL)
	t0 := time.Now()
	var restarted time.Duration
	waitFor(t, 60*time.Second, "a new remote kernel", func() bool {
		p := sessionProcs(e)
		if p["kernel"] != 0 && p["kernel"] != old["kernel"] && restarted == 0 {
			restarted = time.Since(t0)
		}
		return restarted != 0
	})
	// The server reconnects its channels to the new kernel on its own.
	var r wsResult
	waitFor(t, 60*time.Second, "a cell on the restarted kernel", func() bool {
		ws2 := s.channels(kern.ID)
		r = ws2.execute("'x' in dir()", 30*time.Second)
		ws2.c.CloseNow()
		return r.status == "ok"
	})
	t.Logf("kill -9 of the remote kernel: new kernel %v later, a cell ran %v later", restarted.Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
	if !strings.Contains(r.text, "False") {
		t.Fatalf("restarted kernel still has x: %+v", r)
	}
	ws3 := s.channels(kern.ID)
	id := ws3.submit("print('sleeping', flush=True); import time; time.sleep(100)")
	ws3.waitStarted(id, 30*time.Second)
	if code, b := s.do("POST", "/api/kernels/"+kern.ID+"/interrupt", nil); code != 204 {
		t.Fatalf("interrupt = %d: %s", code, b)
	}
	if r := ws3.result(id, 10*time.Second); r.ename != "KeyboardInterrupt" {
		t.Fatalf("interrupted cell after the restart: %+v", r)
	}
	if code, b := s.do("DELETE", "/api/kernels/"+kern.ID, nil); code != 204 {
		t.Fatalf("DELETE = %d: %s", code, b)
	}
	waitNoSessions(t, e)
}
