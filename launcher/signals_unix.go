//go:build unix

package launcher

import (
	"os"
	"os/signal"
	"syscall"
)

// notifySignals delivers the signals of signalTable until stop is called.
func notifySignals() (<-chan os.Signal, func()) {
	c := make(chan os.Signal, 16)
	signal.Notify(c, handledSignals()...)
	return c, func() { signal.Stop(c) }
}

// signalHint is how the log tells what a signal does.
func signalHint(name, help string) string { return "send " + name + " to " + help }

// menuHint is logged on a terminal.
const menuHint = "press Ctrl+D for a menu: shutdown, interrupt, leave, restart"

// signalTable is the standalone launcher's signal table (DESIGN.md). Under
// Jupyter only SIGINT (interrupt_mode signal, sent to the process group) and
// SIGTERM/SIGKILL arrive.
var signalTable = []struct {
	sig  syscall.Signal
	name string
	act  action
	help string
}{
	{syscall.SIGINT, "SIGINT", actInterrupt, "interrupt the running cell (Ctrl+C)"},
	{syscall.SIGUSR1, "SIGUSR1", actRestart, "restart the kernel in place"},
	{syscall.SIGTERM, "SIGTERM", actShutdown, "shut down (a persistent kernel keeps running)"},
	{syscall.SIGHUP, "SIGHUP", actShutdown, "shut down (a persistent kernel keeps running)"},
	{syscall.SIGUSR2, "SIGUSR2", actForceShutdown, "shut down, even a persistent kernel"},
	{syscall.SIGQUIT, "SIGQUIT", actLeave, "leave: exit, the kernel keeps running and its running cell is not interrupted (Ctrl+\\)"},
}
