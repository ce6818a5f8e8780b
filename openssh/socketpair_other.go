//go:build !windows && !linux

package openssh

import "golang.org/x/sys/unix"

// unixSocketpair: no SOCK_CLOEXEC here; the caller holds ForkLock.
func unixSocketpair(fds *[2]int) error {
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.CloseOnExec(p[0])
		unix.CloseOnExec(p[1])
	}
	*fds = p
	return err
}
