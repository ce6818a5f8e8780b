package kernelspec

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// What jupyter_core 4.12 (paths.py, os.name == "nt") and jupyter_client give
// on Windows, written out: the data dir is %APPDATA%\jupyter (else
// ~\.jupyter\data), the system dir %PROGRAMDATA%\jupyter, the user site
// %APPDATA%\Python\share\jupyter, IPython's kernels ~\.ipython\kernels.
// Run under wine by `make test`.
func TestPathsOnWindows(t *testing.T) {
	for _, v := range append(pathVars, "APPDATA", "PROGRAMDATA", "USERPROFILE") {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	tmp := t.TempDir()
	a, p, h := filepath.Join(tmp, "Roaming"), filepath.Join(tmp, "ProgramData"), filepath.Join(tmp, "me")
	for _, tc := range []struct {
		name          string
		env           map[string]string
		data, runtime string
		path          []string
	}{
		{"defaults", map[string]string{"APPDATA": a, "PROGRAMDATA": p, "USERPROFILE": h},
			a + `\jupyter`, a + `\jupyter\runtime`,
			[]string{a + `\jupyter`, a + `\Python\share\jupyter`, p + `\jupyter`}},
		{"no APPDATA", map[string]string{"PROGRAMDATA": p, "USERPROFILE": h},
			h + `\.jupyter\data`, h + `\.jupyter\data\runtime`,
			[]string{h + `\.jupyter\data`, h + `\Python\share\jupyter`, p + `\jupyter`}},
		{"config dir", map[string]string{"PROGRAMDATA": p, "USERPROFILE": h, "JUPYTER_CONFIG_DIR": tmp + `\cfg`},
			tmp + `\cfg\data`, tmp + `\cfg\data\runtime`,
			[]string{tmp + `\cfg\data`, h + `\Python\share\jupyter`, p + `\jupyter`}},
		{"no user site", map[string]string{"APPDATA": a, "PROGRAMDATA": p, "USERPROFILE": h, "PYTHONNOUSERSITE": "1"},
			a + `\jupyter`, a + `\jupyter\runtime`,
			[]string{a + `\jupyter`, p + `\jupyter`}},
		{"env prefix and JUPYTER_PATH", map[string]string{"APPDATA": a, "PROGRAMDATA": p, "USERPROFILE": h,
			SysPrefixEnv: `C:\Python312`, "JUPYTER_PATH": tmp + `\x;` + tmp + `\y\`, "JUPYTER_RUNTIME_DIR": tmp + `\rt`},
			a + `\jupyter`, tmp + `\rt`,
			[]string{tmp + `\x`, tmp + `\y`, a + `\jupyter`, a + `\Python\share\jupyter`, `C:\Python312\share\jupyter`, p + `\jupyter`}},
		{"prefer env", map[string]string{"APPDATA": a, "PROGRAMDATA": p, "USERPROFILE": h,
			SysPrefixEnv: `C:\Python312`, "JUPYTER_PREFER_ENV_PATH": "1"},
			a + `\jupyter`, a + `\jupyter\runtime`,
			[]string{`C:\Python312\share\jupyter`, a + `\jupyter`, a + `\Python\share\jupyter`, p + `\jupyter`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			if got := DataDir(); got != tc.data {
				t.Errorf("DataDir() = %q, want %q", got, tc.data)
			}
			if got := RuntimeDir(); got != tc.runtime {
				t.Errorf("RuntimeDir() = %q, want %q", got, tc.runtime)
			}
			if got := JupyterPath(); !reflect.DeepEqual(got, tc.path) {
				t.Errorf("JupyterPath() = %q\nwant           %q", got, tc.path)
			}
			var kernels []string
			for _, d := range tc.path {
				kernels = append(kernels, d+`\kernels`)
			}
			kernels = append(kernels, h+`\.ipython\kernels`)
			if got := Path(); !reflect.DeepEqual(got, kernels) {
				t.Errorf("Path() = %q\nwant    %q", got, kernels)
			}
			if got := UserKernelDir(); got != tc.data+`\kernels` {
				t.Errorf("UserKernelDir() = %q", got)
			}
		})
	}
}

// The machine's own %APPDATA% (wine sets C:\users\<user>\AppData\Roaming).
func TestPathsOnThisWindows(t *testing.T) {
	for _, v := range pathVars {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	appdata, pd := os.Getenv("APPDATA"), os.Getenv("PROGRAMDATA")
	if appdata == "" || pd == "" {
		t.Fatalf("APPDATA=%q PROGRAMDATA=%q: Windows sets both", appdata, pd)
	}
	if got := DataDir(); !strings.EqualFold(got, filepath.Join(appdata, "jupyter")) {
		t.Errorf("DataDir() = %q, want %s\\jupyter", got, appdata)
	}
	if jp := JupyterPath(); jp[len(jp)-1] != pd+`\jupyter` {
		t.Errorf("JupyterPath() = %q, want %s\\jupyter last", jp, pd)
	}
	if SysPrefix() != "" {
		t.Errorf("SysPrefix() = %q without %s, want none", SysPrefix(), SysPrefixEnv)
	}
}

func TestPrefixKernelDirOnWindows(t *testing.T) {
	t.Chdir(t.TempDir())
	got, err := PrefixKernelDir("pfx")
	wd, _ := os.Getwd()
	if want := wd + `\pfx\share\jupyter\kernels`; err != nil || got != want {
		t.Errorf("PrefixKernelDir(pfx) = %q, %v; want %q", got, err, want)
	}
}
