//go:build !windows

package master

import (
	"fmt"
	"os"
	"syscall"
)

// privateDir checks that dir is a directory only this user can use.
func privateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("gopyk's socket directory: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Getuid() || fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%s is not a directory that only you can use (mode 0700, yours); remove it and retry", dir)
	}
	return nil
}

// supported: masters work here.
const supported = true
