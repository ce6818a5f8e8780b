package launcher

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/windows"
)

var getHandleInformation = kernel32.NewProc("GetHandleInformation")

// checkHandle fails for a number that is no handle of this process. (A wait
// would tell too, but consume a pending interrupt.)
func checkHandle(h windows.Handle) error {
	var flags uint32
	if r, _, err := getHandleInformation.Call(uintptr(h), uintptr(unsafe.Pointer(&flags))); r == 0 {
		return err
	}
	return nil
}

// On Windows jupyter_client (launcher.py, win32) passes handles, not pids:
// JPY_PARENT_PID is an inheritable handle on the Jupyter process, signalled
// when it exits, and JPY_INTERRUPT_EVENT an auto-reset event it sets for each
// interrupt. ipykernel's ParentPollerWindows waits on both; so does
// gopyk-kernel, relaying each interrupt to the remote kernel and shutting
// down (or leaving, if persistent) when Jupyter is gone.

func productionWatchParent(stop <-chan struct{}, log *slog.Logger) <-chan struct{} {
	h, ok := handleFromEnv(log, parentEnv)
	if !ok {
		return nil
	}
	gone := make(chan struct{})
	go func() {
		err := waitHandle(h, stop, func() bool {
			close(gone)
			return false // a process handle stays signalled
		})
		if err != nil {
			log.Warn("stopped watching the Jupyter process; gopyk-kernel will not notice when it exits", "err", err)
		}
	}()
	return gone
}

func productionInterrupts(stop <-chan struct{}, log *slog.Logger) <-chan struct{} {
	h, ok := handleFromEnv(log, interruptEnv, "IPY_INTERRUPT_EVENT")
	if !ok {
		return nil
	}
	c := make(chan struct{})
	go func() {
		err := waitHandle(h, stop, func() bool {
			select {
			case c <- struct{}{}:
				return true
			case <-stop:
				return false
			}
		})
		if err != nil {
			log.Warn("stopped watching for interrupts from Jupyter", "err", err)
		}
	}()
	return c
}

// handleFromEnv reads a handle number from the first of names that is set,
// and checks that it is a handle this process holds.
func handleFromEnv(log *slog.Logger, names ...string) (windows.Handle, bool) {
	for _, name := range names {
		v := os.Getenv(name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err == nil && n != 0 {
			h := windows.Handle(n)
			if err = checkHandle(h); err == nil {
				return h, true
			}
		}
		log.Warn(fmt.Sprintf("%s=%s is not a handle gopyk-kernel inherited; ignored (Jupyter sets it to one)", name, v), "err", err)
		return 0, false
	}
	return 0, false
}

// waitHandle calls signalled each time h is signalled, until it returns
// false or stop is closed.
func waitHandle(h windows.Handle, stop <-chan struct{}, signalled func() bool) error {
	quit, err := windows.CreateEvent(nil, 1, 0, nil)
	if err != nil {
		return fmt.Errorf("create an event: %w", err)
	}
	ended := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-stop:
			windows.SetEvent(quit)
		case <-ended:
		}
	}()
	defer func() {
		close(ended)
		wg.Wait()
		windows.CloseHandle(quit)
	}()
	for {
		ev, err := windows.WaitForMultipleObjects([]windows.Handle{h, quit}, false, windows.INFINITE)
		switch {
		case err != nil:
			return fmt.Errorf("wait for handle %d: %w", h, err)
		case ev != windows.WAIT_OBJECT_0:
			return nil // quit
		case !signalled():
			return nil
		}
	}
}
