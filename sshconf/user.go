package sshconf

import (
	"os/user"
	"runtime"
	"strings"
)

// userName is the login name OpenSSH uses for u: on Windows user.Current
// says DOMAIN\name (or MACHINE\name), and Windows OpenSSH sends name alone
// (a remote host knows no DOMAIN\name).
func userName(u *user.User) string {
	return stripDomain(u.Username, runtime.GOOS)
}

func stripDomain(name, goos string) string {
	if goos == "windows" {
		if i := strings.LastIndexByte(name, '\\'); i >= 0 {
			return name[i+1:]
		}
	}
	return name
}
