//go:build !windows

package sshconf

import "os"

// openTTY opens the controlling terminal, as ssh's readpassphrase does.
func openTTY() (in, out *os.File, err error) {
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	return f, f, err
}
