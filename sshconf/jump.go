package sshconf

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Jump is one ProxyJump hop. User and Port are zero when the spec leaves them
// out: the hop's own ssh_config then decides, as it does for ssh -J.
type Jump struct {
	User string
	Host string
	Port int
}

// String formats the hop the way ssh -G prints it, so it round-trips through
// ParseJump.
func (j Jump) String() string {
	var b strings.Builder
	if j.User != "" {
		b.WriteString(j.User)
		b.WriteByte('@')
	}
	host := j.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	b.WriteString(host)
	if j.Port > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(j.Port))
	}
	return b.String()
}

// joinJumps formats a chain as one ProxyJump value.
func joinJumps(js []Jump) string {
	parts := make([]string, len(js))
	for i, j := range js {
		parts[i] = j.String()
	}
	return strings.Join(parts, ",")
}

// ParseJump splits a ProxyJump value into hops in dial order. Each hop is
// [user@]host[:port] or ssh://[user@]host[:port], with IPv6 addresses in
// brackets. "none" and "" give no hops (a direct connection).
func ParseJump(spec string) ([]Jump, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" || strings.EqualFold(spec, "none") {
		return nil, nil
	}
	var out []Jump
	for _, part := range strings.Split(spec, ",") {
		j, err := parseHop(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("ProxyJump %q: %w", spec, err)
		}
		out = append(out, j)
	}
	return out, nil
}

func parseHop(s string) (Jump, error) {
	if s == "" {
		return Jump{}, errors.New("empty hop (check for a stray comma)")
	}
	if rest, ok := cutPrefixFold(s, "ssh://"); ok {
		// A URI may carry a path only as "/"; anything else is not a hop.
		rest = strings.TrimSuffix(rest, "/")
		if strings.ContainsAny(rest, "/?#") {
			return Jump{}, fmt.Errorf("hop %q: an ssh:// hop takes no path", s)
		}
		s = rest
	}
	var j Jump
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		j.User, s = s[:i], s[i+1:]
		if j.User == "" {
			return Jump{}, fmt.Errorf("hop %q: empty user before @", s)
		}
		for _, r := range j.User {
			if r <= ' ' || r == 0x7f || strings.ContainsRune("'\"`\\,", r) {
				return Jump{}, fmt.Errorf("hop %q: invalid character %q in user", s, r)
			}
		}
	}
	host, port, err := splitHostPort(s)
	if err != nil {
		return Jump{}, fmt.Errorf("hop %q: %w", s, err)
	}
	j.Host, j.Port = host, port
	if err := checkHost(j.Host); err != nil {
		return Jump{}, fmt.Errorf("hop %q: %w", s, err)
	}
	return j, nil
}

// splitHostPort accepts host, host:port, [v6] and [v6]:port; a bare IPv6
// address (two or more colons) is a host without a port, as in OpenSSH.
func splitHostPort(s string) (string, int, error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, errors.New("missing ] after IPv6 address")
		}
		host, rest := s[1:end], s[end+1:]
		if rest == "" {
			return host, 0, nil
		}
		if rest[0] != ':' {
			return "", 0, fmt.Errorf("unexpected %q after ]", rest)
		}
		p, err := parsePort(rest[1:])
		return host, p, err
	}
	switch strings.Count(s, ":") {
	case 0:
		return s, 0, nil
	case 1:
		host, ps, _ := strings.Cut(s, ":")
		p, err := parsePort(ps)
		return host, p, err
	default:
		return s, 0, nil
	}
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("bad port %q (want 1-65535)", s)
	}
	return p, nil
}

// checkHost refuses names that would be read as options by ssh or that
// cannot be a host name at all.
func checkHost(h string) error {
	if h == "" {
		return errors.New("empty host")
	}
	if h[0] == '-' {
		return errors.New("host may not start with '-'")
	}
	for _, r := range h {
		if r <= ' ' || r == 0x7f || strings.ContainsRune("'\"`\\@,[]/", r) {
			return fmt.Errorf("invalid character %q in host", r)
		}
	}
	return nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix) {
		return s[len(prefix):], true
	}
	return s, false
}
