//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gopyk/gopyk/testbed"
)

// benchWS measures a gopyk kernel reached through a WebSocket gateway that
// leaves Nagle on towards both peers (tornado, like jupyter-server-proxy's
// raw socket handler behind JupyterHub) beside the same kernel spec over
// direct TCP, in the same turns.
func benchWS(ctx context.Context, b *bed, r *results) error {
	gw, err := testbed.StartGateway(ctx, b.sshd.Addr, testbed.GatewayOptions{NagleBackend: true})
	if err != nil {
		return err
	}
	defer gw.Stop()
	cfg := filepath.Join(b.home, "ws_ssh_config")
	// The gateway has no host name of its own: the host key is the sshd's
	// known_hosts entry, named verbatim by HostKeyAlias.
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`Host gpk-bench-ws
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  UserKnownHostsFile %s
  GlobalKnownHostsFile /dev/null
  HostKeyAlias [%s]:%d
  StrictHostKeyChecking yes
  BatchMode yes
  ProxyCommand %s
`, b.sshd.User, b.sshd.ClientKey, b.sshd.KnownHosts, b.sshd.Host, b.sshd.Port, gw.ProxyCommand(filepath.Join(b.bin, "gopyk")))), 0o600); err != nil {
		return err
	}
	const spec = "gpk_bench_ws"
	if err := b.gopyk(ctx, "add", "--kernel-name", spec, "--display-name", spec, "--ssh-host-alias", "gpk-bench-ws",
		"--ssh-config", cfg, "--remote-kernel-name", "python3", "--remote-python", python); err != nil {
		return err
	}
	wk, err := b.startGopyk(ctx, spec)
	if err != nil {
		return fmt.Errorf("gopyk kernel through the gateway: %w", err)
	}
	defer wk.shutdown(ctx)
	gk, err := b.startGopyk(ctx, b.fastSpec)
	if err != nil {
		return fmt.Errorf("gopyk kernel: %w", err)
	}
	defer gk.shutdown(ctx)
	rts, err := interleavedRoundTrips(ctx, r.opts.roundTrips, wk.c, gk.c)
	if err != nil {
		return fmt.Errorf("round trips (1 through the gateway, 2 direct): %w", err)
	}
	r.rtWS, r.rtWSDirect = rts[0], rts[1]
	ok := wk.shutdown(ctx)
	ok = gk.shutdown(ctx) && ok
	if !ok {
		return errors.New("gopyk-kernel did not exit after shutdown_request")
	}
	return b.waitNoRemote(15 * time.Second)
}
