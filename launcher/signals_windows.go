package launcher

import "syscall"

// signalTable on Windows: only console events Go maps to signals exist.
var signalTable = []struct {
	sig  syscall.Signal
	name string
	act  action
	help string
}{
	{syscall.SIGINT, "SIGINT", actInterrupt, "interrupt the running cell (Ctrl+C)"},
	{syscall.SIGTERM, "SIGTERM", actShutdown, "shut down (a persistent kernel keeps running)"},
	{syscall.SIGHUP, "SIGHUP", actShutdown, "shut down (a persistent kernel keeps running)"},
}
