package sshconf

import "golang.org/x/sys/unix"

// The ioctls that read and set a terminal's settings.
const (
	ioctlGetTermios = unix.TCGETS
	ioctlSetTermios = unix.TCSETS
)
