package sshconf

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"os/user"
	"strconv"
	"strings"
)

// Tokens are the values of ssh_config's % tokens for one host, named as in
// ssh_config(5) "TOKENS".
type Tokens struct {
	Alias        string // %n: the name given to ssh (before HostName)
	HostName     string // %h: the remote host name after HostName
	Port         int    // %p
	User         string // %r: the remote user
	LocalUser    string // %u
	Home         string // %d: the local user's home directory
	UID          string // %i: the local user's numeric id
	HostKeyAlias string // %k: HostKeyAlias, or the alias when unset
	LocalHost    string // %l: the local host name; %L is its first label
	JumpHost     string // %j: the host of the last ProxyJump hop, "" without one
}

// connHash is %C. OpenSSH 9.2 hashes %l%h%p%r (later releases append %j).
func (t Tokens) connHash() string {
	sum := sha1.Sum([]byte(t.LocalHost + t.HostName + strconv.Itoa(t.Port) + t.User))
	return hex.EncodeToString(sum[:])
}

func (t Tokens) value(c byte) (string, bool) {
	switch c {
	case '%':
		return "%", true
	case 'C':
		return t.connHash(), true
	case 'd':
		return t.Home, true
	case 'h':
		return t.HostName, true
	case 'i':
		return t.UID, true
	case 'j':
		return t.JumpHost, true
	case 'k':
		return t.HostKeyAlias, true
	case 'L':
		short, _, _ := strings.Cut(t.LocalHost, ".")
		return short, true
	case 'l':
		return t.LocalHost, true
	case 'n':
		return t.Alias, true
	case 'p':
		return strconv.Itoa(t.Port), true
	case 'r':
		return t.User, true
	case 'u':
		return t.LocalUser, true
	}
	return "", false
}

// ExpandTokens replaces the % tokens that ssh expands in IdentityFile and
// CertificateFile (%% %C %d %h %i %j %k %L %l %n %p %r %u). An unknown token
// or a trailing % is an error, as it is for ssh. It does not touch ~ or ${VAR}.
func ExpandTokens(s string, t Tokens) (string, error) {
	return expand(s, t, "%CdhijkLlnpru", false, nil)
}

// proxyCommandTokens are the only ones ssh expands in ProxyCommand
// (sshconnect.c expand_proxy_command).
const proxyCommandTokens = "%hknpr"

// expand walks s once, like OpenSSH's percent_dollar_expand: % tokens from
// allowed and, when dollar is set, ${VAR} from getenv (an unset variable is
// an error, as in ssh).
func expand(s string, t Tokens, allowed string, dollar bool, getenv func(string) (string, bool)) (string, error) {
	if !strings.ContainsAny(s, "%$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+1 >= len(s) {
				return "", fmt.Errorf("%q: %% at the end (write %%%% for a literal %%)", s)
			}
			i++
			k := s[i]
			v, ok := t.value(k)
			if !ok || (k != '%' && !strings.ContainsRune(allowed, rune(k))) {
				return "", fmt.Errorf("%q: unknown token %%%c", s, k)
			}
			b.WriteString(v)
		case c == '$' && dollar && i+1 < len(s) && s[i+1] == '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", fmt.Errorf("%q: ${ without a closing }", s)
			}
			name := s[i+2 : i+2+end]
			if !validEnvName(name) {
				return "", fmt.Errorf("%q: invalid environment variable name %q", s, name)
			}
			v, ok := getenv(name)
			if !ok {
				return "", fmt.Errorf("%q: environment variable ${%s} is not set", s, name)
			}
			b.WriteString(v)
			i += 2 + end
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// expandTilde does what OpenSSH's tilde_expand_filename does: "~" and "~/x"
// are the local user's passwd home (not $HOME), "~name/x" is name's home.
func expandTilde(s, home string) (string, error) {
	if !strings.HasPrefix(s, "~") {
		return s, nil
	}
	name, rest, hasSlash := strings.Cut(s[1:], "/")
	dir := home
	if name != "" {
		u, err := user.Lookup(name)
		if err != nil {
			return "", fmt.Errorf("%q: no such user %q for ~ expansion", s, name)
		}
		dir = u.HomeDir
	}
	if !hasSlash {
		return dir, nil
	}
	return strings.TrimSuffix(dir, "/") + "/" + rest, nil
}

// expandPath is ssh's treatment of IdentityFile, CertificateFile,
// IdentityAgent and known-hosts paths: ~ first, then ${VAR} and % tokens.
func (l *localEnv) expandPath(s string, t Tokens) (string, error) {
	s, err := expandTilde(s, l.home)
	if err != nil {
		return "", err
	}
	return expand(s, t, "%CdhijkLlnpru", true, l.lookupEnv)
}
