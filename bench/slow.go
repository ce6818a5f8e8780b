//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"

	"github.com/gopyk/gopyk/testbed"
)

// slowLink is a toxiproxy proxy on 127.0.0.1 in front of the sshd that
// delays each direction, plus an ssh client config whose alias reaches the
// sshd through it (netem is not available on the test machines).
type slowLink struct {
	proxy  *toxiproxy.Proxy
	alias  string
	config string
	rtt    time.Duration
}

func startSlowLink(sshd *testbed.SSHD, oneWay time.Duration) (*slowLink, error) {
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "ssh", "127.0.0.1:0", sshd.Addr)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("start toxiproxy in front of %s: %w", sshd.Addr, err)
	}
	for _, stream := range []string{"upstream", "downstream"} {
		js := fmt.Sprintf(`{"name":"lat_%s","type":"latency","stream":%q,"attributes":{"latency":%d,"jitter":0}}`,
			stream, stream, oneWay.Milliseconds())
		if _, err := p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
			p.Stop()
			return nil, fmt.Errorf("toxiproxy latency toxic: %w", err)
		}
	}
	_, portStr, _ := net.SplitHostPort(p.Listen)
	port, _ := strconv.Atoi(portStr)
	l := &slowLink{proxy: p, alias: "gpk-bench-slow", rtt: 2 * oneWay}
	// The proxy's port differs from the sshd's: known_hosts needs its own entry.
	kh := filepath.Join(sshd.Dir, "known_hosts_slow")
	if err := os.WriteFile(kh, fmt.Appendf(nil, "[127.0.0.1]:%d %s\n", port, sshd.HostKeyPub), 0o644); err != nil {
		p.Stop()
		return nil, err
	}
	block := sshd.ConfigBlockAt(l.alias, port, kh)
	l.config = filepath.Join(sshd.Dir, "ssh_config_slow")
	if err := os.WriteFile(l.config, []byte(block), 0o644); err != nil {
		p.Stop()
		return nil, err
	}
	return l, nil
}

func (l *slowLink) stop() { l.proxy.Stop() }
