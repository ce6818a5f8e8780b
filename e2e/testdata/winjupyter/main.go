//go:build windows

// Winjupyter starts a kernel as jupyter_client's launch_kernel does on
// Windows (launcher.py, win32): with an inheritable auto-reset event in
// JPY_INTERRUPT_EVENT and an inheritable handle on itself in JPY_PARENT_PID.
// Each "interrupt" line on stdin sets the event, as KernelManager's
// interrupt_kernel does; "exit" (or the end of stdin) ends it, as a killed
// Jupyter would, leaving the kernel to notice.
//
// Usage: winjupyter LOGFILE KERNEL-ARGV...
package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "winjupyter:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) < 3 {
		return fmt.Errorf("usage: winjupyter LOGFILE KERNEL-ARGV...")
	}
	sa := &windows.SecurityAttributes{InheritHandle: 1}
	sa.Length = uint32(unsafe.Sizeof(*sa))
	ev, err := windows.CreateEvent(sa, 0, 0, nil)
	if err != nil {
		return err
	}
	var self windows.Handle
	me := windows.CurrentProcess()
	if err := windows.DuplicateHandle(me, me, me, &self, 0, true, windows.DUPLICATE_SAME_ACCESS); err != nil {
		return err
	}
	log, err := os.Create(os.Args[1])
	if err != nil {
		return err
	}
	cmd := exec.Command(os.Args[2], os.Args[3:]...)
	cmd.Env = append(os.Environ(),
		"JPY_INTERRUPT_EVENT="+strconv.FormatUint(uint64(ev), 10),
		"IPY_INTERRUPT_EVENT="+strconv.FormatUint(uint64(ev), 10),
		"JPY_PARENT_PID="+strconv.FormatUint(uint64(self), 10))
	cmd.Stdout, cmd.Stderr = log, log
	// Go passes only the handles it is told to (Popen with close_fds=False
	// passes every inheritable one).
	cmd.SysProcAttr = &syscall.SysProcAttr{AdditionalInheritedHandles: []syscall.Handle{syscall.Handle(ev), syscall.Handle(self)}}
	if err := cmd.Start(); err != nil {
		return err
	}
	fmt.Println("started", cmd.Process.Pid)
	go func() {
		cmd.Wait()
		fmt.Println("kernel exited", cmd.ProcessState.ExitCode())
		os.Exit(0)
	}()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "interrupt":
			if err := windows.SetEvent(ev); err != nil {
				return err
			}
			fmt.Println("set")
		case "exit":
			return nil
		}
	}
	return nil
}
