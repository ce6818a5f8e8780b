//go:build !windows

package sshconf

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// openTTY opens the terminal to ask on: the controlling terminal, as ssh's
// readpassphrase does, else the terminal on stderr, stdout or stdin.
// Jupyter starts kernels in a new session (setsid), so gopyk-kernel under
// `jupyter console` has no controlling terminal, yet its stderr is the
// user's terminal. O_NOCTTY: opening it must not make it ours.
func openTTY() (in, out *os.File, err error) {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR|unix.O_NOCTTY, 0)
	if err == nil {
		return f, f, nil
	}
	for _, fd := range []int{2, 1, 0} {
		if !term.IsTerminal(fd) {
			continue
		}
		if f, ferr := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), os.O_RDWR|unix.O_NOCTTY, 0); ferr == nil {
			return f, f, nil
		}
	}
	return nil, nil, err
}

// haveTTY reports whether openTTY would find a terminal.
func haveTTY() bool {
	in, _, err := openTTY()
	if err != nil {
		return false
	}
	in.Close()
	return true
}

// readTTY shows question on the terminal and reads one line. For a secret,
// echo is turned off before the question is printed: a user who types the
// moment the prompt appears must never see the answer in clear.
func readTTY(in, out *os.File, question string, echo bool) (string, error) {
	fd := int(in.Fd())
	if !echo {
		old, err := unix.IoctlGetTermios(fd, ioctlGetTermios)
		if err != nil {
			return "", fmt.Errorf("read the terminal's settings: %w", err)
		}
		quiet := *old
		quiet.Lflag &^= unix.ECHO
		quiet.Lflag |= unix.ICANON | unix.ECHONL
		if err := unix.IoctlSetTermios(fd, ioctlSetTermios, &quiet); err != nil {
			return "", fmt.Errorf("turn the terminal's echo off: %w", err)
		}
		defer unix.IoctlSetTermios(fd, ioctlSetTermios, old)
	}
	if _, err := out.WriteString(question); err != nil {
		return "", err
	}
	return readLine(in)
}

// readLine reads up to a newline one byte at a time, so nothing typed after
// the answer is taken from whoever reads the terminal next.
func readLine(in *os.File) (string, error) {
	var b strings.Builder
	buf := make([]byte, 1)
	for {
		n, err := in.Read(buf)
		if n == 1 {
			if buf[0] == '\n' || buf[0] == '\r' {
				return b.String(), nil
			}
			b.WriteByte(buf[0])
			continue
		}
		if err != nil {
			if b.Len() > 0 && errors.Is(err, os.ErrClosed) {
				return b.String(), nil
			}
			return "", err
		}
	}
}

// ControllingTTY reports whether this process has a controlling terminal,
// where OpenSSH's ssh asks by itself.
func ControllingTTY() bool {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

// TerminalPath is the terminal on stderr, stdout or stdin ("" when there is
// none, or it cannot be named): where a process without a controlling
// terminal (Jupyter starts kernels with setsid) can still ask the user.
// Linux only (it reads /proc).
func TerminalPath() string {
	for _, fd := range []int{2, 1, 0} {
		if !term.IsTerminal(fd) {
			continue
		}
		if p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); err == nil && strings.HasPrefix(p, "/dev/") {
			return p
		}
	}
	return ""
}

// AskTerminal asks question on the terminal at path (see TerminalPath) and
// reads one line; for a secret (echo false) echo is off before the question
// shows.
func AskTerminal(path, question string, echo bool) (string, error) {
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errNoTTY, err)
	}
	defer f.Close()
	return readTTY(f, f, question, echo)
}
