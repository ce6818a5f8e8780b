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

// The launch runs with every P; the launcher drops to one once the kernel
// is ready, and not when the launch fails.
func TestSteadyAfterLaunch(t *testing.T) {
	f := newFake(nil)
	r := startRun(t, t.TempDir(), f, "--kernel", "remote")
	r.ready()
	if n := f.steadied.Load(); n != 1 {
		t.Errorf("steady ran %d times after the launch, want 1", n)
	}

	f = newFake(nil)
	f.launchErr = errFakeLaunch
	if code, _ := runToEnd(t, t.TempDir(), f, "--kernel", "remote"); code != 1 {
		t.Errorf("failed launch: exit %d, want 1", code)
	}
	if n := f.steadied.Load(); n != 0 {
		t.Errorf("steady ran %d times after a failed launch, want 0", n)
	}
}
