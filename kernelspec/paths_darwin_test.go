package kernelspec

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// What jupyter_core 4.12 (paths.py, sys.platform == "darwin") gives on macOS,
// written out: the data dir is ~/Library/Jupyter, the system dirs those of
// Unix. The Python user site (~/Library/Python/X.Y/share/jupyter) depends on
// the Python version and is left out (paths.go). Compiled by `make cross`;
// run on a Mac with `go test ./kernelspec`.
func TestPathsOnMacOS(t *testing.T) {
	for _, v := range pathVars {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	home := t.TempDir()
	if r, err := filepath.EvalSymlinks(home); err == nil {
		home = r // /var is a symlink to /private/var on macOS; jupyter_core resolves
	}
	t.Setenv("HOME", home)
	if got, want := DataDir(), home+"/Library/Jupyter"; got != want {
		t.Errorf("DataDir() = %q, want %q", got, want)
	}
	if got, want := RuntimeDir(), home+"/Library/Jupyter/runtime"; got != want {
		t.Errorf("RuntimeDir() = %q, want %q", got, want)
	}
	want := []string{home + "/Library/Jupyter", "/usr/local/share/jupyter", "/usr/share/jupyter"}
	if got := JupyterPath(); !reflect.DeepEqual(got, want) {
		t.Errorf("JupyterPath() = %q, want %q", got, want)
	}
	t.Setenv(SysPrefixEnv, "/opt/homebrew")
	want = []string{home + "/Library/Jupyter", "/opt/homebrew/share/jupyter", "/usr/local/share/jupyter", "/usr/share/jupyter"}
	if got := JupyterPath(); !reflect.DeepEqual(got, want) {
		t.Errorf("JupyterPath() with %s = %q, want %q", SysPrefixEnv, got, want)
	}
	if got, want := Path()[len(Path())-1], home+"/.ipython/kernels"; got != want {
		t.Errorf("Path() ends with %q, want %q", got, want)
	}
}
