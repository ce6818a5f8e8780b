package launcher

import (
	"runtime"
	"testing"
)

func TestTuneRuntime(t *testing.T) {
	old := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(old) })

	runtime.GOMAXPROCS(2)
	tuneRuntime(func(string) string { return "" })
	if got := runtime.GOMAXPROCS(0); got != 1 {
		t.Errorf("GOMAXPROCS unset: launcher runs with %d Ps, want 1", got)
	}

	runtime.GOMAXPROCS(2)
	tuneRuntime(func(k string) string {
		if k == "GOMAXPROCS" {
			return "2"
		}
		return ""
	})
	if got := runtime.GOMAXPROCS(0); got != 2 {
		t.Errorf("GOMAXPROCS=2 set by the user: launcher runs with %d Ps, want 2", got)
	}
}
