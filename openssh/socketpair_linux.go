package openssh

import "golang.org/x/sys/unix"

func unixSocketpair(fds *[2]int) error {
	p, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	*fds = p
	return err
}
