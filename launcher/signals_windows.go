package launcher

import (
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/windows"
)

// sigBreak stands for Ctrl+Break (CTRL_BREAK_EVENT), which Go's runtime
// reports as SIGINT like Ctrl+C; ctrlHandler tells them apart. 21 is SIGBREAK
// in the Windows C runtime.
const sigBreak = syscall.Signal(21)

// signalTable on Windows: console events. Go's runtime maps Ctrl+C to SIGINT
// and closing the console window, logging off or shutting down to SIGTERM;
// Ctrl+Break does what SIGQUIT does on Unix. Jupyter interrupts through
// JPY_INTERRUPT_EVENT (parent_windows.go) and stops a kernel with
// TerminateProcess, which no program can catch.
var signalTable = []struct {
	sig  syscall.Signal
	name string
	act  action
	help string
}{
	{syscall.SIGINT, "Ctrl+C", actInterrupt, "interrupt the running cell"},
	{sigBreak, "Ctrl+Break", actLeave, "leave: exit, the kernel keeps running and its running cell is not interrupted"},
	{syscall.SIGTERM, "closing the console window", actShutdown, "shut down (a persistent kernel keeps running)"},
}

// signalHint is how the log tells what a key does.
func signalHint(name, help string) string { return "press " + name + " to " + help }

// menuHint is logged on a console.
const menuHint = "the Ctrl+D menu is not available on Windows: press Ctrl+C to interrupt, Ctrl+Break to leave the kernel running, close the window to shut it down"

var (
	kernel32              = windows.NewLazySystemDLL("kernel32.dll")
	setConsoleCtrlHandler = kernel32.NewProc("SetConsoleCtrlHandler")
	ctrlCallback          uintptr // made once: callbacks are never freed
	ctrlOnce              sync.Once
	ctrlMu                sync.Mutex
	ctrlTo                chan<- os.Signal // nil: nobody listens for Ctrl+Break
)

// notifySignals delivers the events of signalTable until stop is called.
func notifySignals() (<-chan os.Signal, func()) {
	c := make(chan os.Signal, 16)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
	ctrlMu.Lock()
	ctrlTo = c
	ctrlMu.Unlock()
	ctrlOnce.Do(func() {
		ctrlCallback = windows.NewCallback(ctrlHandler)
		// Registered after the runtime's handler, so called before it.
		// Without a console there is nothing to register with: no error.
		setConsoleCtrlHandler.Call(ctrlCallback, 1)
	})
	return c, func() {
		signal.Stop(c)
		ctrlMu.Lock()
		ctrlTo = nil
		ctrlMu.Unlock()
	}
}

// ctrlHandler is the console control handler: it takes Ctrl+Break while
// notifySignals listens and passes everything else on to the runtime's.
func ctrlHandler(ctrlType uint32) uintptr {
	if ctrlType != windows.CTRL_BREAK_EVENT {
		return 0
	}
	ctrlMu.Lock()
	defer ctrlMu.Unlock()
	if ctrlTo == nil {
		return 0
	}
	select {
	case ctrlTo <- sigBreak:
	default: // the launcher is busy with 16 others already
	}
	return 1
}
