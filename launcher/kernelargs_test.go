package launcher

import (
	"reflect"
	"strings"
	"testing"
)

func TestSplitKernelArgs(t *testing.T) {
	for _, tc := range []struct {
		args, own, kernel []string
	}{
		{[]string{"--kernel", "k", "--connection-file", "/c.json"}, []string{"--kernel", "k", "--connection-file", "/c.json"}, nil},
		// jupyter_client appends start_kernel(extra_arguments) after the spec's argv.
		{[]string{"--kernel", "k", "-c", "/c.json", "--matplotlib=inline"}, []string{"--kernel", "k", "-c", "/c.json"}, []string{"--matplotlib=inline"}},
		{[]string{"-k", "k", "--HistoryManager.hist_file=:memory:", "--profile-dir", "/p"}, []string{"-k", "k"}, []string{"--HistoryManager.hist_file=:memory:", "--profile-dir", "/p"}},
		// Everything from the first foreign flag on, even a name we know.
		{[]string{"-k", "k", "--x=1", "-v"}, []string{"-k", "k"}, []string{"--x=1", "-v"}},
		{[]string{"-vv", "--kernel=k", "-p", "--", "-v", "--kernel", "x"}, []string{"-vv", "--kernel=k", "-p"}, []string{"-v", "--kernel", "x"}},
		// A value that looks like a flag is still the value.
		{[]string{"--kernel", "--odd", "--y"}, []string{"--kernel", "--odd"}, []string{"--y"}},
		{[]string{"-k", "k", "-vx"}, []string{"-k", "k"}, []string{"-vx"}},
		{[]string{"-k", "k", "word"}, []string{"-k", "k", "word"}, nil},
	} {
		own, kernel := splitKernelArgs(tc.args)
		if !reflect.DeepEqual(own, tc.own) || !reflect.DeepEqual(kernel, tc.kernel) {
			t.Errorf("split %q = %q, %q; want %q, %q", tc.args, own, kernel, tc.own, tc.kernel)
		}
	}
}

// The split arguments reach the provisioner, unchanged and in order.
func TestKernelArgsReachLaunch(t *testing.T) {
	f := newFake(nil)
	r := startRun(t, t.TempDir(), f, "-k", "remote", "--matplotlib=inline", "--profile-dir", "a b;$(x)")
	r.ready()
	f.mu.Lock()
	got := f.cfg.KernelArgs
	f.mu.Unlock()
	if want := []string{"--matplotlib=inline", "--profile-dir", "a b;$(x)"}; !reflect.DeepEqual(got, want) {
		t.Errorf("kernel args %q, want %q", got, want)
	}
	if strings.Contains(r.stderr.String(), "error") {
		t.Errorf("stderr:\n%s", r.stderr.String())
	}
}
