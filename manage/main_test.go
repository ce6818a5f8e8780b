package manage

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the scripts run `gopyk` as a real process (the test binary
// re-executed), with the script's own environment and working directory.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"gopyk": func() {
			a := &App{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
			// The test binary is not installed beside a gopyk-kernel; scripts
			// say where "gopyk" lives instead.
			if exe := os.Getenv("GOPYK_TEST_EXECUTABLE"); exe != "" {
				a.Executable = func() (string, error) { return exe, nil }
			}
			os.Exit(a.Run(context.Background(), os.Args))
		},
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 filepath.Join("testdata", "script"),
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Setup: func(env *testscript.Env) error {
			work := env.WorkDir
			// Every Jupyter and ssh path points into the script's own work dir.
			env.Setenv("HOME", filepath.Join(work, "home"))
			env.Setenv("JUPYTER_DATA_DIR", filepath.Join(work, "data"))
			env.Setenv("IPYTHONDIR", filepath.Join(work, "ipython"))
			env.Setenv("PYTHONUSERBASE", filepath.Join(work, "userbase"))
			env.Setenv("GOPYK_SYS_PREFIX", filepath.Join(work, "sysprefix"))
			env.Setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
			env.Setenv("NO_COLOR", "")
			// Under -race each gopyk process would sleep 1 s at exit
			// waiting for late race reports; the exit status still reports races.
			env.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
			// A fake install: gopyk with gopyk-kernel beside it.
			bin := filepath.Join(work, "bin")
			if err := os.MkdirAll(bin, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(bin, "gopyk"), nil, 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(bin, kernelBinary), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
				return err
			}
			env.Setenv("GOPYK_TEST_EXECUTABLE", filepath.Join(bin, "gopyk"))
			return os.MkdirAll(filepath.Join(work, "home"), 0o755)
		},
	})
}
