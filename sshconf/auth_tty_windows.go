//go:build windows

package sshconf

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"
)

// openTTY opens the console, the Windows counterpart of /dev/tty.
func openTTY() (in, out *os.File, err error) {
	in, err = os.OpenFile("CONIN$", os.O_RDWR, 0)
	if err != nil {
		return nil, nil, err
	}
	out, err = os.OpenFile("CONOUT$", os.O_RDWR, 0)
	if err != nil {
		in.Close()
		return nil, nil, err
	}
	return in, out, nil
}

func haveTTY() bool {
	in, out, err := openTTY()
	if err != nil {
		return false
	}
	in.Close()
	out.Close()
	return true
}

// readTTY asks on the console; a console's echo is switched per read, so
// ReadPassword turns it off before any key is taken.
func readTTY(in, out *os.File, question string, echo bool) (string, error) {
	fmt.Fprint(out, question)
	if !echo {
		b, err := term.ReadPassword(int(in.Fd()))
		fmt.Fprintln(out)
		return string(b), err
	}
	line, err := bufio.NewReader(in).ReadString('\n')
	return strings.TrimRight(line, "\r\n"), err
}

// ControllingTTY: OpenSSH's ControlMaster, the one user of this, does not
// exist on Windows.
func ControllingTTY() bool { return false }

// TerminalPath: see ControllingTTY.
func TerminalPath() string { return "" }

// AskTerminal: see ControllingTTY.
func AskTerminal(path, question string, echo bool) (string, error) { return "", errNoTTY }
