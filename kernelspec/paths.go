package kernelspec

import (
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
)

// The functions in this file follow jupyter_core.paths (4.12, and 5.x without
// JUPYTER_PLATFORM_DIRS) line by line, including its string-level path joins,
// so that gopyk writes and finds specs exactly where `jupyter kernelspec list`
// does. Differences a user could meet:
//   - sys.prefix is not known to a Go program. gopyk uses $GOPYK_SYS_PREFIX, else
//     /usr (the prefix of Debian's /usr/bin/python3, which is filtered out of the
//     search path like jupyter_core does for a system Python).
//   - jupyter_core 5.x also prefers the env prefix inside an active venv/conda env
//     when JUPYTER_PREFER_ENV_PATH is unset; gopyk follows 4.12 (only the
//     variable decides), since its env prefix is not the venv's anyway.
//   - On macOS the Python user-site dir (~/Library/Python/X.Y/share/jupyter)
//     depends on the Python version and is left out.

// goos is runtime.GOOS; tests on Linux set it to "darwin" to check the
// macOS branches against jupyter_core's own (sys.platform == "darwin").
var goos = runtime.GOOS

// SysPrefixEnv names the variable that stands in for Python's sys.prefix.
const SysPrefixEnv = "GOPYK_SYS_PREFIX"

// SystemPath is jupyter_core's SYSTEM_JUPYTER_PATH on Unix.
var SystemPath = []string{"/usr/local/share/jupyter", "/usr/share/jupyter"}

// SysPrefix is the prefix that --sys-prefix installs into and whose
// share/jupyter is searched: $GOPYK_SYS_PREFIX, else /usr. On Windows there
// is no system Python to assume: "" (none) unless the variable is set.
func SysPrefix() string {
	if p := os.Getenv(SysPrefixEnv); p != "" {
		return p
	}
	if goos == "windows" {
		return ""
	}
	return "/usr"
}

// DataDir is jupyter_data_dir(): $JUPYTER_DATA_DIR, else the per-user default.
func DataDir() string {
	if d := os.Getenv("JUPYTER_DATA_DIR"); d != "" {
		return d
	}
	home := homeDir()
	switch goos {
	case "darwin":
		return pjoin(home, "Library", "Jupyter")
	case "windows":
		if appdata := os.Getenv("APPDATA"); appdata != "" {
			return resolve(filepath.Join(appdata, "jupyter"))
		}
		cfg := os.Getenv("JUPYTER_CONFIG_DIR")
		if cfg == "" {
			cfg = pjoin(home, ".jupyter")
		}
		return pjoin(cfg, "data")
	}
	xdg := os.Getenv("XDG_DATA_HOME")
	if xdg == "" {
		xdg = pjoin(home, ".local", "share")
	}
	return pjoin(xdg, "jupyter")
}

// RuntimeDir is jupyter_runtime_dir(): $JUPYTER_RUNTIME_DIR, else DataDir()/runtime.
func RuntimeDir() string {
	if d := os.Getenv("JUPYTER_RUNTIME_DIR"); d != "" {
		return d
	}
	return pjoin(DataDir(), "runtime")
}

// JupyterPath is jupyter_path(subdirs...): $JUPYTER_PATH entries first, then
// the user dirs and the env prefix (in the order JUPYTER_PREFER_ENV_PATH asks
// for), then the system dirs.
func JupyterPath(subdirs ...string) []string {
	var paths []string
	if jp := os.Getenv("JUPYTER_PATH"); jp != "" {
		for _, p := range strings.Split(jp, string(os.PathListSeparator)) {
			paths = append(paths, strings.TrimRight(p, string(os.PathSeparator)))
		}
	}

	userDirs := []string{DataDir()}
	if base := userBase(); base != "" {
		if d := pjoin(base, "share", "jupyter"); d != userDirs[0] {
			userDirs = append(userDirs, d)
		}
	}
	var envDirs []string
	if d := pjoin(SysPrefix(), "share", "jupyter"); SysPrefix() != "" && !contains(systemPath(), d) {
		envDirs = append(envDirs, d)
	}
	if envSet("JUPYTER_PREFER_ENV_PATH") {
		paths = append(append(paths, envDirs...), userDirs...)
	} else {
		paths = append(append(paths, userDirs...), envDirs...)
	}
	paths = append(paths, systemPath()...)

	if len(subdirs) > 0 {
		for i, p := range paths {
			paths[i] = pjoin(append([]string{p}, subdirs...)...)
		}
	}
	return paths
}

// Path is the list of directories searched for kernel specs, in precedence
// order (the first directory holding a name wins), as KernelSpecManager's
// kernel_dirs: jupyter_path("kernels") plus IPython's own kernels dir, which
// jupyter_client appends whenever IPython is installed (it is, wherever
// ipykernel is).
func Path() []string {
	return append(JupyterPath("kernels"), pjoin(ipythonDir(), "kernels"))
}

// UserKernelDir is where --user installs: DataDir()/kernels.
func UserKernelDir() string { return pjoin(DataDir(), "kernels") }

// PrefixKernelDir is where --prefix DIR installs: DIR/share/jupyter/kernels,
// with DIR made absolute as jupyter_client does.
func PrefixKernelDir(prefix string) (string, error) {
	abs, err := filepath.Abs(prefix)
	if err != nil {
		return "", err
	}
	return filepath.Join(abs, "share", "jupyter", "kernels"), nil
}

func systemPath() []string {
	if goos == "windows" {
		if pd := os.Getenv("PROGRAMDATA"); pd != "" {
			return []string{pjoin(pd, "jupyter")}
		}
		if SysPrefix() == "" {
			return nil
		}
		return []string{pjoin(SysPrefix(), "share", "jupyter")}
	}
	return SystemPath
}

// homeDir is jupyter_core's get_home_dir(): ~ expanded, symlinks resolved.
func homeDir() string { return resolve(expandHome()) }

// expandHome is Python's os.path.expanduser("~") on POSIX.
func expandHome() string {
	if goos == "windows" {
		h, _ := os.UserHomeDir() // %USERPROFILE%, as Python's expanduser there
		return h
	}
	h, ok := os.LookupEnv("HOME")
	if !ok {
		if u, err := user.Current(); err == nil {
			h = u.HomeDir
		}
	}
	if h = strings.TrimRight(h, "/"); h == "" {
		return "/"
	}
	return h
}

// userBase is site.getuserbase() when site.ENABLE_USER_SITE is true on Linux
// and Windows, "" when Python would not add a user-site dir.
func userBase() string {
	if os.Getenv("PYTHONNOUSERSITE") != "" || (goos != "linux" && goos != "windows") {
		return ""
	}
	if b := os.Getenv("PYTHONUSERBASE"); b != "" {
		return b
	}
	if goos == "windows" { // site.py: %APPDATA%\Python, else ~\Python
		base := os.Getenv("APPDATA")
		if base == "" {
			base = expandHome()
		}
		return filepath.Join(base, "Python")
	}
	// expanduser("~/.local"): not resolved, unlike the data dir.
	h := expandHome()
	if h == "/" {
		h = ""
	}
	return h + "/.local"
}

// ipythonDir is IPython's get_ipython_dir() for the common case.
func ipythonDir() string {
	d := os.Getenv("IPYTHONDIR")
	if d == "" {
		d = os.Getenv("IPYTHON_DIR")
	}
	if d == "" {
		return pjoin(homeDir(), ".ipython")
	}
	if d == "~" || strings.HasPrefix(d, "~/") {
		d = expandHome() + d[1:]
	}
	return filepath.Clean(d)
}

// envSet is jupyter_core's envset: set to anything but a "false" word.
func envSet(name string) bool {
	v, ok := os.LookupEnv(name)
	if !ok {
		return false
	}
	switch strings.ToLower(v) {
	case "no", "n", "false", "off", "0", "0.0":
		return false
	}
	return true
}

// pjoin is Python's os.path.join on POSIX: no cleaning, an absolute element
// restarts the path. Matching it keeps our strings equal to Jupyter's.
func pjoin(elem ...string) string {
	out := ""
	for i, e := range elem {
		switch {
		case i == 0 || filepath.IsAbs(e):
			out = e
		case out == "" || strings.HasSuffix(out, string(os.PathSeparator)):
			out += e
		default:
			out += string(os.PathSeparator) + e
		}
	}
	return out
}

// resolve is pathlib's non-strict Path.resolve(): absolute, with symlinks
// resolved as far as the path exists.
func resolve(p string) string {
	abs, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r
	}
	parent, base := filepath.Split(abs)
	parent = filepath.Clean(parent)
	if parent == abs || base == "" {
		return abs
	}
	return filepath.Join(resolve(parent), base)
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
