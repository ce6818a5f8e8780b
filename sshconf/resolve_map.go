package sshconf

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// settingsFromRaw types the ssh -G view of one host. Both backends produce
// that view; what ssh -G leaves raw (IdentityFile, CertificateFile,
// ProxyCommand) is expanded here, with ssh's rules for each.
func settingsFromRaw(alias string, raw map[string][]string, local *localEnv) (*Settings, error) {
	first := func(k string) string {
		if v := raw[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	s := &Settings{Alias: alias, HostName: first("hostname"), User: first("user"), Raw: raw}
	if s.HostName == "" {
		s.HostName = alias
	}
	var err error
	if s.Port, err = intSetting(raw, "port", 22); err != nil {
		return nil, err
	}
	if pj := first("proxyjump"); pj != "" && !strings.EqualFold(pj, "none") {
		s.ProxyJump = pj
	}
	t := Tokens{
		Alias:        alias,
		HostName:     s.HostName,
		Port:         s.Port,
		User:         s.User,
		LocalUser:    local.user,
		Home:         local.home,
		UID:          local.uid,
		HostKeyAlias: alias,
		LocalHost:    local.hostname,
	}
	if hka := first("hostkeyalias"); hka != "" && !strings.EqualFold(hka, "none") {
		s.HostKeyAlias = hka
		t.HostKeyAlias = hka
	}
	if js, err := ParseJump(s.ProxyJump); err == nil && len(js) > 0 {
		t.JumpHost = js[len(js)-1].Host
	}

	for _, f := range raw["identityfile"] {
		if strings.EqualFold(f, "none") { // configured, so no defaults, but no file
			continue
		}
		p, err := local.expandPath(f, t)
		if err != nil {
			return nil, fmt.Errorf("host %s: IdentityFile %w", alias, err)
		}
		s.IdentityFiles = append(s.IdentityFiles, p)
	}
	for _, f := range raw["certificatefile"] {
		if strings.EqualFold(f, "none") {
			continue
		}
		p, err := local.expandPath(f, t)
		if err != nil {
			return nil, fmt.Errorf("host %s: CertificateFile %w", alias, err)
		}
		s.CertificateFiles = append(s.CertificateFiles, p)
	}
	if pc := first("proxycommand"); pc != "" && pc != "none" && s.ProxyJump == "" {
		if s.ProxyCommand, err = expand(pc, t, proxyCommandTokens, false, nil); err != nil {
			return nil, fmt.Errorf("host %s: ProxyCommand %w", alias, err)
		}
	}
	s.IdentityAgent = identityAgent(first("identityagent"), local)
	if cp := first("controlpath"); cp != "" && !strings.EqualFold(cp, "none") {
		// ssh -G prints it expanded, the built-in reader does not. A path
		// that does not expand only means no master is looked for there.
		s.ControlPath, _ = local.expandPath(cp, t)
	}

	s.UserKnownHostsFiles = fileList(first("userknownhostsfile"))
	s.GlobalKnownHostsFiles = fileList(first("globalknownhostsfile"))
	if s.StrictHostKeyChecking, err = strictHostKeyChecking(first("stricthostkeychecking")); err != nil {
		return nil, fmt.Errorf("host %s: %w", alias, err)
	}
	s.HashKnownHosts = yes(first("hashknownhosts"))
	if hka := first("hostkeyalgorithms"); hka != "" {
		s.HostKeyAlgorithms = strings.Split(hka, ",")
	}

	if s.ConnectTimeout, err = seconds(raw, "connecttimeout"); err != nil {
		return nil, err
	}
	if s.ServerAliveInterval, err = seconds(raw, "serveraliveinterval"); err != nil {
		return nil, err
	}
	if s.ServerAliveCountMax, err = intSetting(raw, "serveralivecountmax", 3); err != nil {
		return nil, err
	}

	s.IdentitiesOnly = yes(first("identitiesonly"))
	s.BatchMode = yes(first("batchmode"))
	s.PubkeyAuthentication = yesDefault(first("pubkeyauthentication"), true)
	s.PasswordAuthentication = yesDefault(first("passwordauthentication"), true)
	s.KbdInteractiveAuthentication = yesDefault(first("kbdinteractiveauthentication"), true)
	return s, nil
}

// identityAgent maps ssh's IdentityAgent forms onto Settings' convention:
// "" = use $SSH_AUTH_SOCK, "none" = no agent, else a socket path.
func identityAgent(v string, local *localEnv) string {
	switch {
	case v == "" || v == "SSH_AUTH_SOCK":
		return ""
	case strings.EqualFold(v, "none"):
		return "none"
	case strings.HasPrefix(v, "$") && !strings.HasPrefix(v, "${"):
		// "IdentityAgent $VAR" names the variable that holds the socket.
		if p, ok := local.lookupEnv(v[1:]); ok && p != "" {
			return p
		}
		return "none"
	}
	return v
}

func strictHostKeyChecking(v string) (string, error) {
	switch strings.ToLower(v) {
	case "", "ask":
		return "ask", nil
	case "yes", "true":
		return "yes", nil
	case "no", "false", "off":
		return "no", nil
	case "accept-new":
		return "accept-new", nil
	}
	return "", fmt.Errorf("StrictHostKeyChecking %q: want yes, accept-new, no or ask", v)
}

func yes(v string) bool { return yesDefault(v, false) }

func yesDefault(v string, def bool) bool {
	switch strings.ToLower(v) {
	case "":
		return def
	case "yes", "true", "unbound", "host-bound":
		return true
	}
	return false
}

func intSetting(raw map[string][]string, key string, def int) (int, error) {
	v := raw[key]
	if len(v) == 0 || v[0] == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v[0])
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s %q: not a number", key, v[0])
	}
	return n, nil
}

// seconds reads a time value as ssh -G prints it: seconds, or "none".
func seconds(raw map[string][]string, key string) (time.Duration, error) {
	v := raw[key]
	if len(v) == 0 || v[0] == "" || v[0] == "none" {
		return 0, nil
	}
	d, err := parseSSHTime(v[0])
	if err != nil {
		return 0, fmt.Errorf("%s %q: %w", key, v[0], err)
	}
	return d, nil
}

// parseSSHTime reads sshd_config(5) TIME FORMATS: 90, 1m30s, 1h, 2w.
func parseSSHTime(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("empty time")
	}
	var total time.Duration
	num := ""
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '0' && c <= '9' {
			num += string(c)
			if len(num) > 9 {
				return 0, fmt.Errorf("time too large")
			}
			continue
		}
		if num == "" {
			return 0, fmt.Errorf("bad time")
		}
		n, _ := strconv.Atoi(num)
		unit := time.Second
		switch c | 0x20 {
		case 's':
		case 'm':
			unit = time.Minute
		case 'h':
			unit = time.Hour
		case 'd':
			unit = 24 * time.Hour
		case 'w':
			unit = 7 * 24 * time.Hour
		default:
			return 0, fmt.Errorf("bad time unit %q", c)
		}
		total += time.Duration(n) * unit
		num = ""
	}
	if num != "" {
		n, _ := strconv.Atoi(num)
		total += time.Duration(n) * time.Second
	}
	return total, nil
}

// fileList splits a known-hosts setting. "none" (no file at all) stays as
// the one element "none", so it cannot be mistaken for "unset".
func fileList(v string) []string {
	if strings.EqualFold(v, "none") {
		return []string{"none"}
	}
	return strings.Fields(v)
}
