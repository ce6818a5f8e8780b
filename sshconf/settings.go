package sshconf

import "time"

// Settings are the ssh_config values gopyk uses for one host, fully expanded
// (tokens, ~ and ${VAR}) the way ssh would use them.
type Settings struct {
	Alias    string // the name as given (ssh's "host")
	HostName string
	Port     int
	User     string

	IdentityFiles    []string // in order; may name files that do not exist
	CertificateFiles []string
	IdentitiesOnly   bool
	IdentityAgent    string // "" means SSH_AUTH_SOCK; "none" disables the agent

	ProxyJump    string // raw value, "" when unset or "none"
	ProxyCommand string // tokens %h %p %r %n %% expanded; "" when unset or "none"
	ControlPath  string // OpenSSH's master socket, ~ and tokens expanded; "" when unset or "none"

	UserKnownHostsFiles   []string
	GlobalKnownHostsFiles []string
	StrictHostKeyChecking string // yes, ask, accept-new, no (off is reported as no)
	HashKnownHosts        bool
	HostKeyAlias          string
	HostKeyAlgorithms     []string

	ConnectTimeout      time.Duration // 0 = none configured
	ServerAliveInterval time.Duration // 0 = none configured
	ServerAliveCountMax int

	BatchMode                    bool
	PubkeyAuthentication         bool
	PasswordAuthentication       bool
	KbdInteractiveAuthentication bool

	// Raw holds every key as the backend produced it (lower-case key → values),
	// for display in `gopyk list` and for settings gopyk does not act on.
	Raw map[string][]string
}

// Route is the chain of hosts to dial, in dial order: every ProxyJump hop first,
// the target last. A route of one element is a direct connection.
type Route []*Settings

// Target is the host the route ends at.
func (r Route) Target() *Settings { return r[len(r)-1] }

// Options select where the settings come from.
type Options struct {
	ConfigFile string // ssh -F; "" means the user's and the system's files
	Backend    string // "auto" (default: ssh -G if OpenSSH is installed), "openssh" or "builtin"
	SSHPath    string // the ssh binary for the openssh backend; "" = look up "ssh" on PATH
}
