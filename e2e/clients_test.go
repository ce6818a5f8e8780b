//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// jupyter-console attaches to a standalone gopyk-kernel and runs code remotely.
func TestJupyterConsoleExisting(t *testing.T) {
	e := newEnv(t)
	k, cf := e.launch()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c := e.cmd(ctx, python, "-m", "jupyter_console", "--existing", cf, "--simple-prompt", "--ZMQTerminalInteractiveShell.kernel_timeout=60")
	c.Stdin = strings.NewReader("import getpass\nprint('remote user:', getpass.getuser())\n6*7\n")
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("jupyter console: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "remote user: "+e.sshd.User) || !strings.Contains(string(out), "42") {
		t.Fatalf("jupyter console output does not show remote execution as %s:\n%s", e.sshd.User, out)
	}
	k.signal(syscall.SIGTERM)
	if code := k.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("gopyk-kernel exit %d after SIGTERM:\n%s", code, k.output())
	}
	e.waitNoRemote(15 * time.Second)
}

// nbconvert (nbclient) runs a notebook on the gopyk spec, started through argv as Jupyter does.
func TestNbconvertExecute(t *testing.T) {
	e := newEnv(t)
	nb := map[string]any{
		"nbformat": 4, "nbformat_minor": 5,
		"metadata": map[string]any{"kernelspec": map[string]any{"name": e.spec, "display_name": "gopyk e2e", "language": "python"}},
		"cells": []any{
			map[string]any{"cell_type": "code", "id": "a", "metadata": map[string]any{}, "execution_count": nil, "outputs": []any{},
				"source": "import getpass, os\nprint('USER=' + getpass.getuser())\nprint('HOME=' + os.path.expanduser('~'))"},
			map[string]any{"cell_type": "code", "id": "b", "metadata": map[string]any{}, "execution_count": nil, "outputs": []any{},
				"source": "x = 21\nx * 2"},
		},
	}
	b, _ := json.Marshal(nb)
	in := filepath.Join(e.home, "in.ipynb")
	if err := os.WriteFile(in, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	out, err := e.cmd(ctx, python, "-m", "nbconvert", "--to", "notebook", "--execute",
		"--ExecutePreprocessor.kernel_name="+e.spec, "--ExecutePreprocessor.timeout=60",
		"--output", "out.ipynb", in).CombinedOutput()
	if err != nil {
		t.Fatalf("nbconvert: %v\n%s", err, out)
	}
	res, err := os.ReadFile(filepath.Join(e.home, "out.ipynb"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"USER=" + e.sshd.User, "HOME=" + e.sshd.Home, "42"} {
		if !strings.Contains(string(res), want) {
			t.Fatalf("executed notebook lacks %q (proof it ran remotely):\n%s", want, res)
		}
	}
	e.waitNoRemote(20 * time.Second)
}
