package manage

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// kernelBinary is the name of the launcher that a spec's argv runs.
const kernelBinary = "gopyk-kernel"

// findKernelBinary returns the absolute path of gopyk-kernel for a spec's
// argv: beside the running gopyk (symlinks resolved, so a linked gopyk finds
// its real install dir), else on PATH. When neither exists it still returns
// the path beside gopyk, with a warning saying how to fix it, since the spec
// is right as soon as gopyk-kernel is installed there.
func (a *App) findKernelBinary() (path string, warning string) {
	name := kernelBinary
	if runtime.GOOS == "windows" {
		name += ".exe"
	}
	var sibling string
	if exe, err := a.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		if abs, err := filepath.Abs(exe); err == nil {
			sibling = filepath.Join(filepath.Dir(abs), name)
			if isExecutable(sibling) {
				return sibling, ""
			}
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs, ""
		}
	}
	if sibling == "" {
		return name, fmt.Sprintf("%s not found beside gopyk nor on PATH; install it on PATH and run 'gopyk add --replace' again", name)
	}
	return sibling, fmt.Sprintf("%s not found beside gopyk nor on PATH; Jupyter cannot start this kernel until it is installed as %s", name, sibling)
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && (runtime.GOOS == "windows" || fi.Mode().Perm()&0o111 != 0)
}
