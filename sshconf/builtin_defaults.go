package sshconf

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// OpenSSH 9.2's defaults for what ssh -G prints when the config is silent.
var (
	defaultIdentityFiles = []string{
		"~/.ssh/id_rsa", "~/.ssh/id_ecdsa", "~/.ssh/id_ecdsa_sk", "~/.ssh/id_ed25519",
		"~/.ssh/id_ed25519_sk", "~/.ssh/id_xmss", "~/.ssh/id_dsa",
	}
	defaultUserKnownHosts   = "~/.ssh/known_hosts ~/.ssh/known_hosts2"
	defaultGlobalKnownHosts = "/etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2"
	defaultHostKeyAlgs      = []string{
		"ssh-ed25519-cert-v01@openssh.com", "ecdsa-sha2-nistp256-cert-v01@openssh.com",
		"ecdsa-sha2-nistp384-cert-v01@openssh.com", "ecdsa-sha2-nistp521-cert-v01@openssh.com",
		"sk-ssh-ed25519-cert-v01@openssh.com", "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
		"rsa-sha2-512-cert-v01@openssh.com", "rsa-sha2-256-cert-v01@openssh.com",
		"ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
		"sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
		"rsa-sha2-512", "rsa-sha2-256",
	}
	// allHostKeyAlgs is every host key algorithm OpenSSH 9.2 knows, in its
	// order; explicit lists and wildcards are filtered against it.
	allHostKeyAlgs = []string{
		"ssh-ed25519", "ssh-ed25519-cert-v01@openssh.com",
		"sk-ssh-ed25519@openssh.com", "sk-ssh-ed25519-cert-v01@openssh.com",
		"ecdsa-sha2-nistp256", "ecdsa-sha2-nistp256-cert-v01@openssh.com",
		"ecdsa-sha2-nistp384", "ecdsa-sha2-nistp384-cert-v01@openssh.com",
		"ecdsa-sha2-nistp521", "ecdsa-sha2-nistp521-cert-v01@openssh.com",
		"sk-ecdsa-sha2-nistp256@openssh.com", "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com",
		"webauthn-sk-ecdsa-sha2-nistp256@openssh.com",
		"ssh-dss", "ssh-dss-cert-v01@openssh.com",
		"ssh-rsa", "ssh-rsa-cert-v01@openssh.com",
		"rsa-sha2-256", "rsa-sha2-256-cert-v01@openssh.com",
		"rsa-sha2-512", "rsa-sha2-512-cert-v01@openssh.com",
	}
)

// finish fills in what ssh fills in after reading the files and expands
// what ssh -G prints expanded, producing the same view as ssh -G.
func (b *builtinBackend) finish(st *evalState) (map[string][]string, error) {
	o := st.opts
	first := func(k string) string {
		if v := o[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	o["host"] = []string{st.hostArg}
	if first("user") == "" {
		o["user"] = []string{b.local.user}
	}
	hostname := st.hostArg
	if hn := first("hostname"); hn != "" {
		h, err := expand(hn, Tokens{HostName: st.hostArg}, "h", false, nil)
		if err != nil {
			return nil, fmt.Errorf("host %s: HostName %w", st.hostArg, err)
		}
		hostname = h
	}
	hostname = strings.ToLower(hostname)
	o["hostname"] = []string{hostname}
	port := 22
	if p := first("port"); p != "" {
		n, err := lookupPort(p)
		if err != nil {
			return nil, fmt.Errorf("host %s: %w", st.hostArg, err)
		}
		port = n
	}
	o["port"] = []string{strconv.Itoa(port)}
	if len(o["identityfile"]) == 0 {
		o["identityfile"] = append([]string(nil), defaultIdentityFiles...)
	}
	for _, k := range []string{"proxyjump", "proxycommand"} {
		if strings.EqualFold(first(k), "none") {
			delete(o, k)
		}
	}
	if st.canonicalizes(hostname, first("canonicalizehostname"), first("canonicaldomains"), first("canonicalizemaxdots")) {
		return nil, fmt.Errorf("%s: CanonicalizeHostname %s is not supported by the built-in ssh config reader (host %s would be canonicalized); %s",
			st.canonAt, first("canonicalizehostname"), st.hostArg, builtinFix)
	}
	setDefault := func(k, v string) {
		if first(k) == "" {
			o[k] = []string{v}
		}
	}
	setDefault("globalknownhostsfile", defaultGlobalKnownHosts)
	setDefault("userknownhostsfile", defaultUserKnownHosts)
	setDefault("stricthostkeychecking", "ask")
	setDefault("hashknownhosts", "no")
	setDefault("connecttimeout", "none")
	setDefault("serveraliveinterval", "0")
	setDefault("serveralivecountmax", "3")
	setDefault("batchmode", "no")
	setDefault("identitiesonly", "no")
	setDefault("pubkeyauthentication", "yes")
	setDefault("passwordauthentication", "yes")
	setDefault("kbdinteractiveauthentication", "yes")
	algs, err := assembleAlgs(first("hostkeyalgorithms"), defaultHostKeyAlgs, allHostKeyAlgs)
	if err != nil {
		return nil, fmt.Errorf("host %s: HostKeyAlgorithms %w", st.hostArg, err)
	}
	o["hostkeyalgorithms"] = []string{strings.Join(algs, ",")}

	t := Tokens{
		Alias: st.hostArg, HostName: hostname, Port: port, User: first("user"),
		LocalUser: b.local.user, Home: b.local.home, UID: b.local.uid,
		HostKeyAlias: st.hostArg, LocalHost: b.local.hostname,
	}
	if hka := first("hostkeyalias"); hka != "" && hka != "none" {
		t.HostKeyAlias = hka
	}
	if js, err := ParseJump(first("proxyjump")); err == nil && len(js) > 0 {
		t.JumpHost = js[len(js)-1].Host
	}
	// ssh -G prints these expanded (ssh.c expands them before dumping).
	var ukh []string
	for _, f := range strings.Fields(first("userknownhostsfile")) {
		if strings.EqualFold(f, "none") {
			ukh = append(ukh, f)
			continue
		}
		p, err := b.local.expandPath(f, t)
		if err != nil {
			return nil, fmt.Errorf("host %s: UserKnownHostsFile %w", st.hostArg, err)
		}
		ukh = append(ukh, p)
	}
	o["userknownhostsfile"] = []string{strings.Join(ukh, " ")}
	if ia := first("identityagent"); ia != "" && ia != "none" && ia != "SSH_AUTH_SOCK" && !(strings.HasPrefix(ia, "$") && !strings.HasPrefix(ia, "${")) {
		p, err := b.local.expandPath(ia, t)
		if err != nil {
			return nil, fmt.Errorf("host %s: IdentityAgent %w", st.hostArg, err)
		}
		o["identityagent"] = []string{p}
	}
	return o, nil
}

// assembleAlgs is OpenSSH's kex_assemble_names: "+list" appends to the
// defaults, "-list" removes from them, "^list" puts in front, a plain list
// replaces them; wildcards expand against every known algorithm.
func assembleAlgs(spec string, def, all []string) ([]string, error) {
	if spec == "" {
		return append([]string(nil), def...), nil
	}
	var want []string
	switch spec[0] {
	case '+':
		want = catNames(def, strings.Split(spec[1:], ","))
	case '-':
		var out []string
		for _, a := range def {
			if matchPatternList(a, spec[1:], false) != 1 {
				out = append(out, a)
			}
		}
		return out, nil
	case '^':
		want = catNames(strings.Split(spec[1:], ","), def)
	default:
		want = strings.Split(spec, ",")
	}
	var out []string
	seen := map[string]bool{}
	for _, p := range want {
		n := 0
		for _, a := range all {
			if matchPattern(a, p) {
				n++
				if !seen[a] {
					seen[a] = true
					out = append(out, a)
				}
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("%q: unknown algorithm %q", spec, p)
		}
	}
	return out, nil
}

func catNames(a, b []string) []string {
	out := append([]string(nil), a...)
	for _, n := range b {
		dup := false
		for _, x := range out {
			if x == n {
				dup = true
			}
		}
		if !dup {
			out = append(out, n)
		}
	}
	return out
}

// canonicalizes reports whether ssh would change hostname by
// canonicalization (and re-read its config with the new name), which needs
// DNS and a second pass this reader does not do. ssh leaves alone: "yes"
// through a ProxyCommand or ProxyJump, IP addresses, names with more dots
// than CanonicalizeMaxDots, and everything when CanonicalDomains is empty
// (unless the name ends in a dot).
func (st *evalState) canonicalizes(hostname, mode, domains, maxDots string) bool {
	switch strings.ToLower(mode) {
	case "always":
	case "yes", "true":
		if len(st.opts["proxycommand"]) > 0 || len(st.opts["proxyjump"]) > 0 {
			return false
		}
	default:
		return false
	}
	if net.ParseIP(hostname) != nil {
		return false
	}
	if strings.HasSuffix(hostname, ".") {
		return true
	}
	max := 1
	if n, err := strconv.Atoi(maxDots); err == nil {
		max = n
	}
	return domains != "" && !strings.EqualFold(domains, "none") && strings.Count(hostname, ".") <= max
}
