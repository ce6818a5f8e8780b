package launcher

import (
	"strconv"
	"time"
)

// parentEnv is what jupyter_client sets (POSIX, non-independent kernels) to
// the pid of the process that started the kernel. ipykernel exits when that
// process is gone; so does gopyk-kernel, or it would hold the remote kernel
// (and its lease) for a Jupyter that no longer exists.
// On Windows it holds an inheritable handle on that process instead
// (parent_windows.go).
const parentEnv = "JPY_PARENT_PID"

// interruptEnv is what jupyter_client sets on Windows to an inheritable
// auto-reset event that it sets to interrupt a kernel whose spec says
// interrupt_mode signal; IPY_INTERRUPT_EVENT is its older name.
const interruptEnv = "JPY_INTERRUPT_EVENT"

const parentPollEvery = time.Second // ipykernel's ParentPollerUnix polls as often

// watchParent returns a channel closed when the parent named by
// JPY_PARENT_PID has gone (the launcher was re-parented, or that pid no
// longer exists), or nil when there is nothing to watch. The watcher ends
// when stop is closed.
func watchParent(stop <-chan struct{}, getenv func(string) string, getppid func() int, alive func(pid int) bool, every time.Duration) <-chan struct{} {
	pid, err := strconv.Atoi(getenv(parentEnv))
	if err != nil || pid <= 1 {
		return nil
	}
	ppid := getppid()
	if ppid <= 1 {
		return nil // already orphaned at start: nothing to compare against
	}
	gone := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if getppid() != ppid || !alive(pid) {
					close(gone)
					return
				}
			}
		}
	}()
	return gone
}
