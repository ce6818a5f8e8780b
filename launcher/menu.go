package launcher

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

const (
	menuText   = "Pick an action and press Enter: Y = shutdown (default), i = interrupt, l = leave (kernel keeps running), r = restart, n = nothing\n"
	menuPrompt = "Action? [Y/i/l/r/n]: "
)

// runMenu is the Ctrl+D menu: it discards what is typed, and on end of file
// (Ctrl+D at the start of a line) asks for an action, hands it to send and
// re-arms. It returns when r fails (closed) or send refuses.
func runMenu(r io.Reader, out io.Writer, send func(request) bool) {
	buf := make([]byte, 512)
	for {
		_, err := r.Read(buf)
		if err == nil {
			continue // typed input is not ours to act on
		}
		if err != io.EOF {
			return
		}
		fmt.Fprint(out, "\n"+menuText+menuPrompt)
		line, err := readLine(r, buf)
		if err != nil && err != io.EOF {
			return
		}
		req, ok := menuChoice(line)
		if !ok {
			fmt.Fprintf(out, "Unknown answer %q: no action taken, resuming\n", strings.TrimSpace(line))
			continue
		}
		if req.act == actNothing {
			fmt.Fprintln(out, "No action taken, resuming")
			continue
		}
		if !send(req) {
			return
		}
	}
}

// readLine reads up to a newline; a TTY in canonical mode hands over whole
// lines, so one read is the usual case. End of file ends the line, as
// Python's readline does.
func readLine(r io.Reader, buf []byte) (string, error) {
	var line []byte
	for {
		n, err := r.Read(buf)
		line = append(line, buf[:n]...)
		if i := strings.IndexByte(string(line), '\n'); i >= 0 {
			return string(line[:i]), nil
		}
		if err != nil {
			return string(line), err
		}
	}
}

// menuChoice maps an answer to a request; ok is false for an answer that is
// not on the menu.
func menuChoice(line string) (request, bool) {
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "", "y", "yes":
		return request{act: actForceShutdown, why: "Ctrl+D"}, true
	case "i":
		return request{act: actInterrupt, why: "Ctrl+D"}, true
	case "l":
		return request{act: actLeave, why: "Ctrl+D"}, true
	case "r":
		return request{act: actRestart, why: "Ctrl+D"}, true
	case "n", "no":
		return request{act: actNothing, why: "Ctrl+D"}, true
	}
	return request{}, false
}

var errReaderClosed = errors.New("tty reader closed")

// ttyReader reads a terminal without blocking the process for good: a
// blocked Read wakes up when Close is called. Setting O_NONBLOCK on the
// terminal instead would change it for the shell sharing it.
type ttyReader struct {
	fd   int
	wake [2]int // pipe: a byte (or the closed write end) wakes poll
	once sync.Once
}

func newTTYReader(f *os.File) (*ttyReader, error) {
	t := &ttyReader{fd: int(f.Fd())}
	if err := unix.Pipe2(t.wake[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, fmt.Errorf("ctrl+d menu: pipe: %w", err)
	}
	return t, nil
}

// Read returns io.EOF for a zero-length read (Ctrl+D on a terminal) and
// keeps working afterwards: end of file on a terminal is not sticky.
func (t *ttyReader) Read(p []byte) (int, error) {
	for {
		fds := []unix.PollFd{
			{Fd: int32(t.fd), Events: unix.POLLIN},
			{Fd: int32(t.wake[0]), Events: unix.POLLIN},
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
	t.once.Do(func() { unix.Close(t.wake[1]) })
	return nil
}

func (t *ttyReader) release() { unix.Close(t.wake[0]) }

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
