//go:build linux

package e2e

import (
	"context"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopyk/gopyk/testbed"
)

// A kernel through the test bed's jupyter-server-proxy-like gateway (tornado,
// Nagle on towards both peers): gopyk-kernel dials it in-process, cells run,
// and OpenSSH's ssh through `gopyk ws-proxy` works on the same gateway. The
// round trips are logged beside direct TCP for the record; make bench
// judges them.
func TestWSNagleGateway(t *testing.T) {
	sshd := testbed.SSHDForTest(t, testbed.Options{IsolateHome: true})
	gw := testbed.GatewayForTest(t, sshd.Addr, testbed.GatewayOptions{NagleBackend: true})
	e := localEnv(t, sshd, "gpk_gw")
	cfg := wsConfig(t, sshd, t.TempDir(), gw.ProxyCommand(filepath.Join(binDir, "gopyk")))
	e.gopyk("add", "--kernel-name", e.spec, "--ssh-host-alias", "gpk-ws", "--ssh-config", cfg,
		"--remote-kernel-name", "python3", "--remote-python", python)
	e.gopyk("add", "--kernel-name", "gpk_direct", "--ssh-host-alias", sshd.Alias, "--ssh-config", sshd.ConfigFile,
		"--remote-kernel-name", "python3", "--remote-python", python)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := runOpenSSH(t, ctx, "ssh", "-F", cfg, "gpk-ws", "--", "echo via-gateway $USER")
	if got := strings.TrimSpace(string(out)); got != "via-gateway "+sshd.User {
		t.Fatalf("ssh through the gateway: %q", got)
	}

	// gopyk list shows the host by its WebSocket and launches through it.
	lout, code := e.gopykCode("list", "--launch", e.spec)
	for _, want := range []string{
		"(i) websocket: via " + gw.URL + " (token from " + gw.TokenFile + ")",
		"SSH Connection:        (v) " + sshd.User + " via " + gw.URL,
		"Launch:                (v) launched, ran a cell and shut down",
	} {
		if code != 0 || !strings.Contains(lout, want) {
			t.Errorf("gopyk list --launch through the gateway: exit %d, no %q in:\n%s", code, want, lout)
		}
	}
	if strings.Contains(lout, "port: 22") {
		t.Errorf("gopyk list shows a port nobody dials:\n%s", lout)
	}
	e.waitNoRemote(15 * time.Second)

	k, cf := e.launch()
	c := e.client(cf)
	if r := execute(t, c, "import getpass; print(getpass.getuser(), 6*7)"); r.Status != "ok" || !strings.Contains(r.Stdout, sshd.User+" 42") {
		t.Fatalf("cell through the gateway: %+v", r)
	}
	e.spec = "gpk_direct"
	dk, dcf := e.launch()
	dc := e.client(dcf)

	var viaGW, direct []time.Duration
	for i := 0; i < 40; i++ {
		t0 := time.Now()
		execute(t, c, "pass")
		viaGW = append(viaGW, time.Since(t0))
		t0 = time.Now()
		execute(t, dc, "pass")
		direct = append(direct, time.Since(t0))
	}
	med := func(ds []time.Duration) time.Duration {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[len(ds)/2]
	}
	t.Logf("execute round trip, median of 40: through the gateway %v, direct TCP %v", med(viaGW), med(direct))

	for _, p := range []*proc{k, dk} {
		p.signal(syscall.SIGTERM)
		if code := p.waitExit(t, 30*time.Second); code != 0 {
			t.Fatalf("gopyk-kernel exit %d after SIGTERM:\n%s", code, p.output())
		}
	}
	e.waitNoRemote(15 * time.Second)
}
