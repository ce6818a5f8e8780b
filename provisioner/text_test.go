package provisioner

import "testing"

func TestLastLineSkipsDebuggerNotice(t *testing.T) {
	tail := "Traceback (most recent call last):\nMemoryError\n" +
		"0.00s - Debugger warning: It seems that frozen modules are being used, which may\n" +
		"0.00s - Note: Debugging will proceed. Set PYDEVD_DISABLE_FILE_VALIDATION=1 to disable this validation.\n"
	if got := lastLine(tail); got != "MemoryError" {
		t.Fatalf("lastLine = %q, want MemoryError", got)
	}
	if got := lastLine("0.00s - only noise\n"); got != "" {
		t.Fatalf("lastLine of noise = %q, want empty", got)
	}
}
