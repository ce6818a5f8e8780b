package kernelspec

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
)

// pythonPaths asks Debian's jupyter_core and jupyter_client, the oracle, for
// the paths under the current environment. sys.prefix is set before the import
// because jupyter_core reads it at import time; that is how GOPYK_SYS_PREFIX
// is compared.
type oracle struct {
	Data, Runtime string
	Path, Kernels []string
	err           error
}

func pythonPaths(env []string, sysPrefix string) oracle {
	script := `
import json, sys
sys.prefix = sys.argv[1]
import jupyter_core.paths as p
from jupyter_client.kernelspec import KernelSpecManager as K
print(json.dumps({"data": p.jupyter_data_dir(), "runtime": p.jupyter_runtime_dir(),
                  "path": p.jupyter_path(), "kernels": K().kernel_dirs}))
`
	cmd := exec.Command("/usr/bin/python3", "-c", script, sysPrefix)
	cmd.Env = append(env, "PYDEVD_DISABLE_FILE_VALIDATION=1")
	var r oracle
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.err = fmt.Errorf("python oracle: %v\n%s", err, out)
	} else if err := json.Unmarshal(out, &r); err != nil {
		r.err = fmt.Errorf("python oracle output %q: %v", out, err)
	}
	return r
}

var pathVars = []string{
	"HOME", "JUPYTER_DATA_DIR", "JUPYTER_PATH", "JUPYTER_RUNTIME_DIR", "XDG_DATA_HOME",
	"JUPYTER_PREFER_ENV_PATH", "PYTHONUSERBASE", "PYTHONNOUSERSITE", "IPYTHONDIR", "IPYTHON_DIR",
	SysPrefixEnv, "JUPYTER_PLATFORM_DIRS", "JUPYTER_CONFIG_DIR",
}

func TestPathsMatchJupyter(t *testing.T) {
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
	// The oracle runs are slow (0.7 s each), so they run concurrently with an
	// explicit environment; the Go side then runs case by case under t.Setenv.
	var base []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(pathVars, k) {
			base = append(base, kv)
		}
	}
	want := make([]oracle, len(cases))
	var wg sync.WaitGroup
	for i, c := range cases {
		env := slices.Clone(base)
		for k, v := range c.env {
			env = append(env, k+"="+v)
		}
		prefix := c.env[SysPrefixEnv]
		if prefix == "" {
			prefix = "/usr"
		}
		wg.Go(func() { want[i] = pythonPaths(env, prefix) })
	}
	wg.Wait()
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
			if w.err != nil {
				t.Fatal(w.err)
			}
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
