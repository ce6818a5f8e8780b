package testbed

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/rs/zerolog"
)

// LinkOptions shape a Link.
type LinkOptions struct {
	// Alias is the Host name of the link's client config; "" means the
	// sshd's alias with "-link" appended.
	Alias string
	// Latency is added to each direction (the round trip gets twice it).
	Latency time.Duration
	// Rate caps each direction, in bytes per second; 0 leaves it unlimited.
	Rate int
}

// Link is a TCP relay in front of an sshd (toxiproxy as a library) that
// delays and rate-limits what crosses it: a distant or slow network on
// loopback, where netem needs a namespace. Its client config reaches the
// same sshd, through the relay, under its own alias.
type Link struct {
	Alias      string
	Port       int
	ConfigFile string // a client config holding the Alias block
	KnownHosts string // the sshd's host key at the relay's port
	proxy      *toxiproxy.Proxy
}

// StartLink starts a Link in front of s; Stop ends it.
func (s *SSHD) StartLink(o LinkOptions) (*Link, error) {
	if o.Alias == "" {
		o.Alias = s.Alias + "-link"
	}
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(nil), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, o.Alias, "127.0.0.1:0", s.Addr)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("testbed: start a relay in front of %s: %w", s.Addr, err)
	}
	l := &Link{Alias: o.Alias, proxy: p}
	for _, stream := range []string{"upstream", "downstream"} {
		if o.Latency > 0 {
			js := fmt.Sprintf(`{"name":"lat_%s","type":"latency","stream":%q,"attributes":{"latency":%d,"jitter":0}}`,
				stream, stream, o.Latency.Milliseconds())
			if _, err := p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
				p.Stop()
				return nil, fmt.Errorf("testbed: latency on the relay: %w", err)
			}
		}
		if o.Rate > 0 {
			// toxiproxy's rate is in KB/s (1000 bytes, as the MB/s).
			js := fmt.Sprintf(`{"name":"rate_%s","type":"bandwidth","stream":%q,"attributes":{"rate":%d}}`,
				stream, stream, max(1, o.Rate/1000))
			if _, err := p.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
				p.Stop()
				return nil, fmt.Errorf("testbed: rate limit on the relay: %w", err)
			}
		}
	}
	_, portStr, _ := net.SplitHostPort(p.Listen)
	l.Port, _ = strconv.Atoi(portStr)
	// The relay's port differs from the sshd's: known_hosts needs its own entry.
	l.KnownHosts = filepath.Join(s.Dir, "known_hosts_"+o.Alias)
	if err := os.WriteFile(l.KnownHosts, fmt.Appendf(nil, "[127.0.0.1]:%d %s\n", l.Port, s.HostKeyPub), 0o644); err != nil {
		p.Stop()
		return nil, fmt.Errorf("testbed: %w", err)
	}
	l.ConfigFile = filepath.Join(s.Dir, "ssh_config_"+o.Alias)
	if err := os.WriteFile(l.ConfigFile, []byte(s.ConfigBlockAt(o.Alias, l.Port, l.KnownHosts)), 0o644); err != nil {
		p.Stop()
		return nil, fmt.Errorf("testbed: %w", err)
	}
	return l, nil
}

// LinkForTest starts a Link that t.Cleanup stops.
func (s *SSHD) LinkForTest(t testing.TB, o LinkOptions) *Link {
	t.Helper()
	l, err := s.StartLink(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Stop)
	return l
}

// Stop closes the relay and every connection through it.
func (l *Link) Stop() { l.proxy.Stop() }
