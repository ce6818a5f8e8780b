package wine

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The packages whose tests run on Windows too: paths and kernel specs, the
// launcher's flags and Jupyter's Windows handles, and ws-proxy.
var windowsPackages = []string{"kernelspec", "launcher", "wsproxy"}

// BuildTests builds the Windows test binaries of pkgs into dir.
func buildTests(t *testing.T, dir string, pkgs ...string) {
	t.Helper()
	for _, p := range pkgs {
		cmd := exec.Command("go", "test", "-c", "-tags", "wine", "-ldflags=-checklinkname=0",
			"-o", filepath.Join(dir, p+".test.exe"), "./"+p)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build the Windows tests of %s: %v\n%s", p, err, out)
		}
	}
}

func newPrefix(t *testing.T) *Prefix {
	t.Helper()
	dir, err := os.MkdirTemp("", "gopyk-wine-")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(dir) // New makes it
	t0 := time.Now()
	p, err := New(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wine prefix ready in %v", time.Since(t0).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// TestWindowsPackages runs the Windows builds of the tests of
// windowsPackages under wine, in each package's directory (for testdata).
func TestWindowsPackages(t *testing.T) {
	bin := t.TempDir()
	buildTests(t, bin, windowsPackages...)
	p := newPrefix(t)
	for _, pkg := range windowsPackages {
		t.Run(pkg, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cmd := p.Command(ctx, filepath.Join(bin, pkg+".test.exe"), "-test.count=1", "-test.timeout=4m", "-test.v")
			cmd.Dir = filepath.Join("..", pkg)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			t0 := time.Now()
			err := cmd.Run()
			if err != nil || !strings.Contains(out.String(), "\nPASS") {
				t.Fatalf("%s.test.exe under wine: %v\n%s", pkg, err, out.String())
			}
			t.Logf("%d tests passed under wine in %v", strings.Count(out.String(), "--- PASS"), time.Since(t0).Round(time.Millisecond))
		})
	}
}
