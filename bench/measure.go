//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gopyk/gopyk/wire"
)

// roundTrips times n executes of "pass" after a short warm-up.
func roundTrips(ctx context.Context, c *wire.Client, n int) ([]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if _, err := c.RoundTrip(ctx, 10); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	return c.RoundTrip(ctx, n)
}

// interleavedRoundTrips times n executes of "pass" on each client, in
// blocks of 10 taking turns, so that load drifts on a busy machine hit
// every client alike.
func interleavedRoundTrips(ctx context.Context, n int, cs ...*wire.Client) ([][]time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	out := make([][]time.Duration, len(cs))
	for i, c := range cs {
		if _, err := c.RoundTrip(ctx, 10); err != nil {
			return nil, fmt.Errorf("warm-up of client %d: %w", i+1, err)
		}
	}
	for done := 0; done < n; done += 10 {
		for i, c := range cs {
			d, err := c.RoundTrip(ctx, min(10, n-done))
			if err != nil {
				return nil, fmt.Errorf("client %d: %w", i+1, err)
			}
			out[i] = append(out[i], d...)
		}
	}
	return out, nil
}

// throughputCell prints mb MiB in 1 MiB writes of 1 KiB lines.
func throughputCell(mb int) string {
	return fmt.Sprintf("import sys\n_c = ('x' * 1023 + '\\n') * 1024\nfor _ in range(%d):\n    sys.stdout.write(_c)\nsys.stdout.flush()\ndel _c", mb)
}

// throughput runs the cell and returns MiB/s from request to idle; all
// bytes must have arrived on iopub.
func throughput(ctx context.Context, c *wire.Client, mb int) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var got int
	t := time.Now()
	r, err := c.Execute(ctx, throughputCell(mb), wire.OnIOPub(func(m *wire.Message) {
		if m.Header.MsgType == "stream" {
			got += len(m.Str("text"))
		}
	}))
	d := time.Since(t)
	if err != nil {
		return 0, fmt.Errorf("throughput cell: %w", err)
	}
	if r.Status != "ok" || got != mb<<20 {
		return 0, fmt.Errorf("throughput cell: status %q, %d of %d bytes on iopub", r.Status, got, mb<<20)
	}
	return float64(mb) / d.Seconds(), nil
}

// sshMode is one way of running OpenSSH's forwards.
type sshMode struct {
	name string
	args []string // between ssh's options and the alias
	cmd  []string // remote command, if any
}

var (
	sshNoSession = sshMode{name: "ssh -N -L (no session)", args: []string{"-N"}}
	sshExec      = sshMode{name: "ssh -T -L + exec session", args: []string{"-T", "-n"}, cmd: []string{"sleep 3600"}}
	sshPty       = sshMode{name: "ssh -tt -L + pty session", args: []string{"-tt"}, cmd: []string{"sleep 3600"}}
)

// handKernel is a kernel started over ssh by hand, as infra.md §3 does.
type handKernel struct {
	pid    int
	remote wire.ConnInfo
}

func (b *bed) startHandKernel(ctx context.Context) (*handKernel, error) {
	ports, err := b.freePorts(5)
	if err != nil {
		return nil, err
	}
	key := wire.NewKey()
	mk := func(p []int) wire.ConnInfo {
		ci := wire.ConnInfo{IP: "127.0.0.1", Key: key, Transport: "tcp", SignatureScheme: "hmac-sha256", KernelName: "python3"}
		ci.SetPorts(p)
		return ci
	}
	h := &handKernel{remote: mk(ports[:5])}
	js := fmt.Sprintf(`{"shell_port":%d,"iopub_port":%d,"stdin_port":%d,"control_port":%d,"hb_port":%d,"ip":"127.0.0.1","key":%q,"transport":"tcp","signature_scheme":"hmac-sha256","kernel_name":"python3"}`,
		h.remote.ShellPort, h.remote.IOPubPort, h.remote.StdinPort, h.remote.ControlPort, h.remote.HBPort, key)
	// The key goes on stdin, never on a command line.
	remote := "umask 077; mkdir -p ~/gpkbench; cat > ~/gpkbench/k.json; " +
		"PYDEVD_DISABLE_FILE_VALIDATION=1 nohup " + python + " -m ipykernel_launcher -f ~/gpkbench/k.json " +
		"> ~/gpkbench/k.log 2>&1 < /dev/null & echo $!"
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c := exec.CommandContext(cctx, "ssh", "-F", b.sshd.ConfigFile, b.sshd.Alias, remote)
	c.Stdin = strings.NewReader(js)
	out, err := c.Output()
	if err != nil {
		return nil, fmt.Errorf("start a kernel by hand over ssh: %w", err)
	}
	if h.pid, err = strconv.Atoi(strings.TrimSpace(string(out))); err != nil {
		return nil, fmt.Errorf("start a kernel by hand over ssh: pid %q: %w", out, err)
	}
	return h, nil
}

// stop kills the hand-started kernel by its PID (same machine, and root).
func (h *handKernel) stop() {
	syscall.Kill(h.pid, syscall.SIGKILL)
}

// forward runs OpenSSH's forwards of the given mode to h on fresh local
// ports, through the sshd reached by alias in config, and returns a client
// that saw the kernel ready through them. Closing the client and stopping
// the ssh are the caller's.
func (b *bed) forward(ctx context.Context, h *handKernel, mode sshMode, config, alias string) (*wire.Client, *proc, error) {
	ports, err := b.freePorts(5)
	if err != nil {
		return nil, nil, err
	}
	local := h.remote
	local.SetPorts(ports)
	args := []string{"-F", config, "-o", "ExitOnForwardFailure=yes"}
	for _, ch := range []string{wire.Shell, wire.IOPub, wire.Stdin, wire.Control, wire.HB} {
		args = append(args, "-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", local.Port(ch), h.remote.Port(ch)))
	}
	args = append(append(args, mode.args...), alias)
	args = append(args, mode.cmd...)
	p, err := b.start("ssh", args...)
	if err != nil {
		return nil, nil, err
	}
	if err := waitListen(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(local.ShellPort)), p); err != nil {
		p.stop(3 * time.Second)
		return nil, nil, fmt.Errorf("%s: %w", mode.name, err)
	}
	c, err := connect(ctx, local, p)
	if err != nil {
		p.stop(3 * time.Second)
		return nil, nil, fmt.Errorf("%s: %w", mode.name, err)
	}
	return c, p, nil
}

func waitListen(ctx context.Context, addr string, p *proc) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("ssh exited: %s", p.output())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("forward %s not listening after 30 s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
