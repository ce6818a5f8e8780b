package manage

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// isolate points every Jupyter path of this process into a temp dir.
func isolate(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for k, v := range map[string]string{
		"HOME": filepath.Join(dir, "home"), "JUPYTER_DATA_DIR": filepath.Join(dir, "data"),
		"JUPYTER_PATH": "", "IPYTHONDIR": filepath.Join(dir, "ipython"), "PYTHONUSERBASE": filepath.Join(dir, "ub"),
		"GOPYK_SYS_PREFIX": filepath.Join(dir, "sys"), "NO_COLOR": "",
	} {
		t.Setenv(k, v)
	}
	return dir
}

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &App{Stdout: &out, Stderr: &errb, Executable: func() (string, error) { return "/nonexistent/gopyk", nil }}
	code = a.Run(context.Background(), append([]string{"gopyk"}, args...))
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	dir := isolate(t)
	t.Setenv("PATH", "") // no gopyk-kernel anywhere: add warns but succeeds
	cases := []struct {
		args []string
		code int
	}{
		{[]string{}, 2},
		{[]string{"frobnicate"}, 2},
		{[]string{"--bogus"}, 2},
		{[]string{"add"}, 2},
		{[]string{"add", "--ssh-host-alias", "h", "--nope"}, 2},
		{[]string{"add", "--ssh-host-alias", "h", "--launch-timeout", "x"}, 2},
		{[]string{"add", "--ssh-host-alias", "h", "--user", "--sys-prefix"}, 2},
		{[]string{"edit"}, 2},
		{[]string{"edit", "--kernel-name", "x"}, 2},
		{[]string{"delete"}, 2},
		{[]string{"list", "extra"}, 2},
		{[]string{"add", "--ssh-host-alias", "bad alias"}, 1},
		{[]string{"add", "--ssh-host-alias", "h", "--ssh-config", filepath.Join(dir, "nope")}, 1},
		{[]string{"edit", "--kernel-name", "nosuch", "--language", "r"}, 1},
		{[]string{"delete", "nosuch"}, 1},
		{[]string{"add", "--ssh-host-alias", "h"}, 0},
		{[]string{"add", "--ssh-host-alias", "h"}, 1},
		{[]string{"list", "-n"}, 0},
		{[]string{"--version"}, 0},
	}
	for _, c := range cases {
		code, stdout, stderr := run(t, c.args...)
		if code != c.code {
			t.Errorf("gopyk %q: exit %d, want %d (stderr %q)", c.args, code, c.code, stderr)
		}
		if code != 0 && (stdout != "" || strings.Count(stderr, "gopyk: error: ") != 1 || !strings.HasSuffix(stderr, "\n") || strings.Count(stderr, "\n") != 1) {
			t.Errorf("gopyk %q: want one error line on stderr and nothing on stdout, got stdout %q stderr %q", c.args, stdout, stderr)
		}
	}
}

func TestVersionAndVerbosity(t *testing.T) {
	isolate(t)
	code, out, _ := run(t, "--version")
	if code != 0 || !strings.HasPrefix(out, "gopyk ") {
		t.Errorf("--version: %d %q", code, out)
	}
	_, _, quiet := run(t, "list", "-n")
	_, _, loud := run(t, "list", "-vv", "-n")
	_, _, louder := run(t, "-vvv", "list", "-n")
	if quiet != "" || !strings.Contains(loud, "level=INFO") || !strings.Contains(loud, "kernel spec search path") || strings.Contains(loud, "DEBUG") {
		t.Errorf("verbosity: quiet %q, -vv %q", quiet, loud)
	}
	if !strings.Contains(louder, "level=INFO") {
		t.Errorf("-vvv: %q", louder)
	}
}

func TestKernelBinary(t *testing.T) {
	dir := t.TempDir()
	install := filepath.Join(dir, "install")
	onPath := filepath.Join(dir, "path")
	for _, d := range []string{install, onPath} {
		os.MkdirAll(d, 0o755)
	}
	gopyk := filepath.Join(install, "gopyk")
	os.WriteFile(gopyk, nil, 0o755)
	link := filepath.Join(dir, "gopyk-link")
	os.Symlink(gopyk, link)
	t.Setenv("PATH", onPath)
	a := &App{Executable: func() (string, error) { return link, nil }}

	// Neither beside gopyk nor on PATH: the sibling path, with a warning.
	p, warn := a.findKernelBinary()
	if want := filepath.Join(install, "gopyk-kernel"); p != want || !strings.Contains(warn, "not found beside gopyk nor on PATH") || !strings.Contains(warn, want) {
		t.Errorf("missing: %q %q", p, warn)
	}
	// On PATH only.
	os.WriteFile(filepath.Join(onPath, "gopyk-kernel"), []byte("#!/bin/sh\n"), 0o755)
	if p, warn = a.findKernelBinary(); p != filepath.Join(onPath, "gopyk-kernel") || warn != "" {
		t.Errorf("on PATH: %q %q", p, warn)
	}
	// Beside the real gopyk (through the symlink) wins over PATH.
	os.WriteFile(filepath.Join(install, "gopyk-kernel"), []byte("#!/bin/sh\n"), 0o755)
	if p, warn = a.findKernelBinary(); p != filepath.Join(install, "gopyk-kernel") || warn != "" {
		t.Errorf("sibling: %q %q", p, warn)
	}
}

func TestColour(t *testing.T) {
	rep := listReport{Kernels: []kernelReport{{
		Name: "k", Kind: "ssh", Argv: []string{"x"},
		SSH: &sshReport{
			InterruptMode: Check{Status: StatusOK, Message: "signal"},
			Route: []hostReport{{Alias: "h", Checks: []Check{
				{Key: "identityfile", Status: StatusError, Message: "gone"},
				{Key: "x", Status: StatusWarning, Message: "w"},
				{Key: "proxyjump", Status: StatusInfo, Message: "j"},
			}}},
			Remote: unknownRemote("not checked"),
		},
	}}}
	var plain, coloured bytes.Buffer
	newPrinter(&plain, false).print(rep)
	newPrinter(&coloured, true).print(rep)
	if strings.Contains(plain.String(), "\033") {
		t.Errorf("escape codes without colour:\n%s", plain.String())
	}
	for _, want := range []string{
		cyan + "----- SSH Kernel -----" + reset,
		green + "(v)" + reset + " signal",
		red + "(x)" + reset + " identityfile: gone",
		orange + "(!)" + reset + " x: w",
		"   (i) proxyjump: j",
		grey + "(?)" + reset + " not checked",
	} {
		if !strings.Contains(coloured.String(), want) {
			t.Errorf("coloured output lacks %q:\n%s", want, coloured.String())
		}
	}
	// Not a terminal (a buffer, a regular file): no colour.
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if useColor(&plain) || useColor(f) {
		t.Error("useColor on a non-terminal")
	}
}
