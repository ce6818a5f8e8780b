//go:build !unix

package sshconf

import "os/exec"

// ownProcessGroup: without process groups, cancelling kills ssh only.
func ownProcessGroup(cmd *exec.Cmd) {}
