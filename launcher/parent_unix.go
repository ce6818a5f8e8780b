//go:build unix

package launcher

import (
	"errors"
	"log/slog"
	"os"
	"syscall"
)

func productionWatchParent(stop <-chan struct{}, _ *slog.Logger) <-chan struct{} {
	return watchParent(stop, os.Getenv, os.Getppid, processAlive, parentPollEvery)
}

// productionInterrupts: on Unix Jupyter interrupts with SIGINT.
func productionInterrupts(<-chan struct{}, *slog.Logger) <-chan struct{} { return nil }

// processAlive reports whether pid exists (EPERM: it does, owned by another user).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
