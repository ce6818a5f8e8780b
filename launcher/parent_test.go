package launcher

import (
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func TestWatchParent(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == parentEnv {
				return v
			}
			return ""
		}
	}
	stop := make(chan struct{})
	defer close(stop)
	alive := func(int) bool { return true }
	for _, v := range []string{"", "x", "1", "0", "-5"} {
		if c := watchParent(stop, env(v), func() int { return 77 }, alive, time.Millisecond); c != nil {
			t.Errorf("%s=%q: watching", parentEnv, v)
		}
	}
	if c := watchParent(stop, env("77"), func() int { return 1 }, alive, time.Millisecond); c != nil {
		t.Error("watching although already orphaned")
	}

	// Re-parented (to init or a subreaper).
	var ppid atomic.Int64
	ppid.Store(77)
	c := watchParent(stop, env("77"), func() int { return int(ppid.Load()) }, alive, time.Millisecond)
	select {
	case <-c:
		t.Fatal("gone while the parent is there")
	case <-time.After(20 * time.Millisecond):
	}
	ppid.Store(1)
	select {
	case <-c:
	case <-time.After(5 * time.Second):
		t.Fatal("re-parenting not noticed")
	}

	// The pid in the variable exits (a wrapper between Jupyter and us).
	var dead atomic.Bool
	c = watchParent(stop, env(strconv.Itoa(4242)), func() int { return 99 }, func(pid int) bool { return pid != 4242 || !dead.Load() }, time.Millisecond)
	dead.Store(true)
	select {
	case <-c:
	case <-time.After(5 * time.Second):
		t.Fatal("dead parent pid not noticed")
	}
}
