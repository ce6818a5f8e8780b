package testbed

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// OpenPTY returns a new pseudo-terminal pair, for tests that drive a program
// through a real terminal (the Ctrl+D menu). The master stays in Go's poller,
// so closing it ends a pending read.
func OpenPTY() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("testbed: open /dev/ptmx: %w", err)
	}
	var n uint32
	var ioErr error
	rc, err := m.SyscallConn()
	if err == nil {
		err = rc.Control(func(fd uintptr) {
			if ioErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ioErr != nil {
				return
			}
			n, ioErr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN)
		})
	}
	if err == nil {
		err = ioErr
	}
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("testbed: unlock pty: %w", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("testbed: open pty slave: %w", err)
	}
	return m, s, nil
}
