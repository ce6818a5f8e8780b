//go:build unix

package sshconf

import (
	"fmt"
	"os"
	"syscall"
)

// checkConfigPerm is ssh's check on the user's config files: owned by the
// user or root and not writable by group or others.
func checkConfigPerm(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("read ssh config: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if (ok && st.Uid != 0 && int(st.Uid) != os.Getuid()) || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("bad owner or permissions on %s; fix with chmod go-w %s", path, path)
	}
	return nil
}
