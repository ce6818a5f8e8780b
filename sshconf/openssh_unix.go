//go:build unix

package sshconf

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup makes cancelling cmd kill everything it started (a Match
// exec command run by ssh -G), not just ssh.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
