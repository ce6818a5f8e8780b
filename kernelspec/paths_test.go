package kernelspec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// pythonPaths asks Debian's jupyter_core and jupyter_client, the oracle, for
// the paths under the current environment. sys.prefix is set before the import
// because jupyter_core reads it at import time; that is how GOPYK_SYS_PREFIX
// is compared.
type oracle struct {
	Data, Runtime string // jupyter_data_dir(), jupyter_runtime_dir()
	Path, Kernels []string
}

// pythonPaths asks Debian's jupyter_core and jupyter_client, the oracle, for
// the paths under each environment, in one Python process (importing
// jupyter_client costs 0.5 s of CPU). jupyter_core reads sys.prefix at import
// time, so the module is reloaded after sys.prefix is set: that is how
// GOPYK_SYS_PREFIX is compared. site caches the user base, so it is reset.
// Whether the user site is enabled is fixed at start-up: cases that change it
// need a process of their own.
func pythonPaths(startEnv []string, envs []map[string]string) ([]oracle, error) {
	script := `
import importlib, json, os, site, sys
import jupyter_core.paths as p
from jupyter_client.kernelspec import KernelSpecManager as K
import IPython.paths  # before sys.platform is set to "darwin": importing it then fails
base = dict(os.environ)
out = []
for env in json.loads(sys.stdin.read()):
    os.environ.clear()
    os.environ.update(base)
    os.environ.update(env)
    sys.prefix = env.get("GOPYK_SYS_PREFIX") or "/usr"
    sys.platform = env.pop("_PLATFORM", "linux")
    importlib.reload(p)
    site.USER_BASE = None
    out.append({"data": p.jupyter_data_dir(), "runtime": p.jupyter_runtime_dir(),
                "path": p.jupyter_path(), "kernels": K().kernel_dirs})
print(json.dumps(out))
`
	in, err := json.Marshal(envs)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("/usr/bin/python3", "-c", script)
	cmd.Env = append(startEnv, "PYDEVD_DISABLE_FILE_VALIDATION=1")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("python oracle: %v: %s", err, stderr.String())
	}
	var r []oracle
	if err := json.Unmarshal(out, &r); err != nil || len(r) != len(envs) {
		return nil, fmt.Errorf("python oracle output %q: %v", out, err)
	}
	return r, nil
}

var pathVars = []string{
	"HOME", "JUPYTER_DATA_DIR", "JUPYTER_PATH", "JUPYTER_RUNTIME_DIR", "XDG_DATA_HOME",
	"JUPYTER_PREFER_ENV_PATH", "PYTHONUSERBASE", "PYTHONNOUSERSITE", "IPYTHONDIR", "IPYTHON_DIR",
	SysPrefixEnv, "JUPYTER_PLATFORM_DIRS", "JUPYTER_CONFIG_DIR",
}

func TestPathsMatchJupyter(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the oracle is Debian's jupyter_core; paths_windows_test.go and paths_darwin_test.go check the other platforms")
	}
	tmp := t.TempDir()
	realHome := filepath.Join(tmp, "realhome")
	linkHome := filepath.Join(tmp, "linkhome")
	if err := os.Mkdir(realHome, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(realHome, linkHome); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		env  map[string]string
	}{
		{"defaults", map[string]string{"HOME": realHome}},
		{"symlinked home", map[string]string{"HOME": linkHome}},
		{"home with trailing slash", map[string]string{"HOME": realHome + "/"}},
		{"data dir", map[string]string{"HOME": realHome, "JUPYTER_DATA_DIR": tmp + "/data"}},
		{"empty data dir is unset", map[string]string{"HOME": realHome, "JUPYTER_DATA_DIR": ""}},
		{"jupyter path", map[string]string{"HOME": realHome, "JUPYTER_PATH": tmp + "/a:" + tmp + "/b//::rel"}},
		{"xdg", map[string]string{"HOME": realHome, "XDG_DATA_HOME": tmp + "/xdg/"}},
		{"runtime", map[string]string{"HOME": realHome, "JUPYTER_RUNTIME_DIR": tmp + "/rt"}},
		{"user base", map[string]string{"HOME": realHome, "PYTHONUSERBASE": tmp + "/ub"}},
		{"no user site", map[string]string{"HOME": realHome, "PYTHONNOUSERSITE": "1"}},
		{"ipython dir", map[string]string{"HOME": realHome, "IPYTHONDIR": tmp + "/ipy"}},
		{"env prefix", map[string]string{"HOME": realHome, SysPrefixEnv: tmp + "/venv"}},
		{"prefer env", map[string]string{"HOME": realHome, SysPrefixEnv: tmp + "/venv", "JUPYTER_PREFER_ENV_PATH": "yes"}},
		{"prefer env off", map[string]string{"HOME": realHome, SysPrefixEnv: tmp + "/venv", "JUPYTER_PREFER_ENV_PATH": "Off"}},
		{"system prefix is not repeated", map[string]string{"HOME": realHome, SysPrefixEnv: "/usr/local"}},
		{"everything", map[string]string{
			"HOME": linkHome, "JUPYTER_DATA_DIR": tmp + "/d", "JUPYTER_PATH": tmp + "/p1:" + tmp + "/p2",
			"JUPYTER_RUNTIME_DIR": tmp + "/r", "XDG_DATA_HOME": tmp + "/x", SysPrefixEnv: tmp + "/e",
			"JUPYTER_PREFER_ENV_PATH": "1",
		}},
	}
	var base []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(pathVars, k) {
			base = append(base, kv)
		}
	}
	// Two batches: the user site enabled at start-up, and disabled.
	want := make([]oracle, len(cases))
	for _, noUserSite := range []bool{false, true} {
		var idx []int
		var envs []map[string]string
		for i, c := range cases {
			if (c.env["PYTHONNOUSERSITE"] != "") == noUserSite {
				idx, envs = append(idx, i), append(envs, c.env)
			}
		}
		start := slices.Clone(base)
		if noUserSite {
			start = append(start, "PYTHONNOUSERSITE=1")
		}
		r, err := pythonPaths(start, envs)
		if err != nil {
			t.Fatal(err)
		}
		for j, i := range idx {
			want[i] = r[j]
		}
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, v := range pathVars {
				t.Setenv(v, "")
				if val, ok := c.env[v]; ok {
					os.Setenv(v, val)
				} else {
					os.Unsetenv(v)
				}
			}
			w := want[i]
			data, rt, path, kernels := w.Data, w.Runtime, w.Path, w.Kernels
			if got := DataDir(); got != data {
				t.Errorf("DataDir() = %q, jupyter_core says %q", got, data)
			}
			if got := RuntimeDir(); got != rt {
				t.Errorf("RuntimeDir() = %q, jupyter_core says %q", got, rt)
			}
			if got := JupyterPath(); !reflect.DeepEqual(got, path) {
				t.Errorf("JupyterPath() = %q\njupyter_core says  %q", got, path)
			}
			if got := Path(); !reflect.DeepEqual(got, kernels) {
				t.Errorf("Path() = %q\nKernelSpecManager says %q", got, kernels)
			}
		})
	}
}

func TestPrefixKernelDir(t *testing.T) {
	t.Chdir(t.TempDir())
	got, err := PrefixKernelDir("pfx")
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if want := filepath.Join(wd, "pfx", "share", "jupyter", "kernels"); got != want {
		t.Errorf("PrefixKernelDir(pfx) = %q, want %q", got, want)
	}
}

// TestPathsMatchJupyterOnMacOS runs the macOS branches here, against
// jupyter_core's own (sys.platform set to "darwin" before the calls). The
// Python user site is off on both sides: its macOS location depends on the
// Python build (paths.go leaves it out).
func TestPathsMatchJupyterOnMacOS(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the oracle is Debian's jupyter_core")
	}
	t.Cleanup(func() { goos = runtime.GOOS })
	tmp := t.TempDir()
	home := filepath.Join(tmp, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []map[string]string{
		{"HOME": home},
		{"HOME": home + "/", "JUPYTER_PATH": tmp + "/a:" + tmp + "/b"},
		{"HOME": home, "JUPYTER_DATA_DIR": tmp + "/data", "JUPYTER_RUNTIME_DIR": tmp + "/rt"},
		{"HOME": home, "XDG_DATA_HOME": tmp + "/xdg"}, // not used on macOS
		{"HOME": home, SysPrefixEnv: "/opt/homebrew"},
		{"HOME": home, SysPrefixEnv: tmp + "/conda", "JUPYTER_PREFER_ENV_PATH": "1", "IPYTHONDIR": tmp + "/ipy"},
	}
	var base []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(pathVars, k) {
			base = append(base, kv)
		}
	}
	var envs []map[string]string
	for _, c := range cases {
		e := map[string]string{"_PLATFORM": "darwin", "PYTHONNOUSERSITE": "1"}
		for k, v := range c {
			e[k] = v
		}
		envs = append(envs, e)
	}
	want, err := pythonPaths(append(base, "PYTHONNOUSERSITE=1"), envs)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(want[0].Data, "/Library/Jupyter") {
		t.Fatalf("the oracle did not take its macOS branch: data dir %q", want[0].Data)
	}
	goos = "darwin"
	for i, c := range cases {
		for _, v := range pathVars {
			t.Setenv(v, "")
			os.Unsetenv(v)
		}
		os.Setenv("PYTHONNOUSERSITE", "1")
		for k, v := range c {
			os.Setenv(k, v)
		}
		w := want[i]
		if got := DataDir(); got != w.Data {
			t.Errorf("case %d: DataDir() = %q, jupyter_core on macOS says %q", i, got, w.Data)
		}
		if got := RuntimeDir(); got != w.Runtime {
			t.Errorf("case %d: RuntimeDir() = %q, jupyter_core on macOS says %q", i, got, w.Runtime)
		}
		if got := JupyterPath(); !reflect.DeepEqual(got, w.Path) {
			t.Errorf("case %d: JupyterPath() = %q\njupyter_core on macOS says %q", i, got, w.Path)
		}
		if got := Path(); !reflect.DeepEqual(got, w.Kernels) {
			t.Errorf("case %d: Path() = %q\nKernelSpecManager on macOS says %q", i, got, w.Kernels)
		}
	}
}
