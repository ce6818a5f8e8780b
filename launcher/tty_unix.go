//go:build unix

package launcher

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

var errReaderClosed = errors.New("tty reader closed")

// menuAvailable: the Ctrl+D menu runs on a terminal.
const menuAvailable = true

// ttyReader reads a terminal without blocking the process for good: a
// blocked Read wakes up when Close is called. Setting O_NONBLOCK on the
// terminal instead would change it for the shell sharing it.
type ttyReader struct {
	fd    int
	wakeR *os.File // poll wakes up when wakeW is closed
	wakeW *os.File
	once  sync.Once
}

func newTTYReader(f *os.File) (*ttyReader, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("ctrl+d menu: pipe: %w", err)
	}
	return &ttyReader{fd: int(f.Fd()), wakeR: r, wakeW: w}, nil
}

// Read returns io.EOF for a zero-length read (Ctrl+D on a terminal) and
// keeps working afterwards: end of file on a terminal is not sticky.
func (t *ttyReader) Read(p []byte) (int, error) {
	for {
		fds := []unix.PollFd{
			{Fd: int32(t.fd), Events: unix.POLLIN},
			{Fd: int32(t.wakeR.Fd()), Events: unix.POLLIN},
		}
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			return 0, err
		}
		if fds[1].Revents != 0 {
			return 0, errReaderClosed
		}
		if fds[0].Revents&unix.POLLNVAL != 0 {
			return 0, errReaderClosed
		}
		if !foreground(t.fd) {
			// Reading from the background (gopyk-kernel ... &) would stop
			// the process with SIGTTIN; the input belongs to the
			// foreground job anyway. Back off until it moves to the
			// foreground (fg) or the input is consumed.
			time.Sleep(100 * time.Millisecond)
			continue
		}
		n, err := unix.Read(t.fd, p)
		switch {
		case err == unix.EINTR || err == unix.EAGAIN:
			continue
		case err != nil:
			return 0, err // EIO: the terminal went away
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// Close wakes a blocked Read for good. The pipe is closed by release, once
// the reading goroutine has returned.
func (t *ttyReader) Close() error {
	t.once.Do(func() { t.wakeW.Close() })
	return nil
}

func (t *ttyReader) release() { t.wakeR.Close() }

// foreground reports whether this process may read the terminal fd: it is
// in the terminal's foreground process group, or the terminal is not its
// controlling terminal (then reading never raises SIGTTIN).
func foreground(fd int) bool {
	pgrp, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	if err != nil {
		return true
	}
	return pgrp == unix.Getpgrp()
}
