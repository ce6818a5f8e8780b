//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package sshconf

import "golang.org/x/sys/unix"

// The ioctls that read and set a terminal's settings (macOS and the BSDs).
const (
	ioctlGetTermios = unix.TIOCGETA
	ioctlSetTermios = unix.TIOCSETA
)
