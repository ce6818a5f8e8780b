//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopyk/gopyk/testbed"
)

// Arguments Jupyter appends to the spec's argv reach the remote kernel.
func TestStartKernelExtraArguments(t *testing.T) {
	e := newEnv(t)
	const script = `
import sys
from jupyter_client import KernelManager
km = KernelManager(kernel_name=sys.argv[1])
km.start_kernel(extra_arguments=["--matplotlib=inline", "--HistoryManager.hist_file=:memory:"])
kc = km.client(); kc.start_channels()
try:
    kc.wait_for_ready(timeout=60)
    out = []
    r = kc.execute_interactive(
        "import getpass, matplotlib\n"
        "print('BACKEND=' + matplotlib.get_backend())\n"
        "print('HIST=' + get_ipython().history_manager.hist_file)\n"
        "print('USER=' + getpass.getuser())",
        timeout=60, output_hook=lambda m: out.append(m["content"].get("text", "")))
    print("".join(out), "STATUS=" + r["content"]["status"], flush=True)
finally:
    kc.stop_channels()
    km.shutdown_kernel()
`
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	out, err := e.cmd(ctx, python, "-c", script, e.spec).CombinedOutput()
	if err != nil {
		t.Fatalf("jupyter_client: %v\n%s", err, out)
	}
	for _, want := range []string{"BACKEND=module://matplotlib_inline.backend_inline", "HIST=:memory:", "USER=" + e.sshd.User, "STATUS=ok"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("output lacks %q:\n%s", want, out)
		}
	}
	e.waitNoRemote(20 * time.Second)
}

// nbconvert --execute of a notebook written for "python3", where python3 is
// a gopyk spec: nbclient appends --HistoryManager.hist_file=:memory: to its
// argv, and the notebook runs remotely unchanged.
func TestNbconvertPython3Spec(t *testing.T) {
	e := newEnvNamed(t, "python3")
	nb := map[string]any{
		"nbformat": 4, "nbformat_minor": 5,
		"metadata": map[string]any{"kernelspec": map[string]any{"name": "python3", "display_name": "Python 3", "language": "python"}},
		"cells": []any{
			map[string]any{"cell_type": "code", "id": "a", "metadata": map[string]any{}, "execution_count": nil, "outputs": []any{},
				"source": "import getpass\nprint('USER=' + getpass.getuser())\nprint('HIST=' + get_ipython().history_manager.hist_file)"},
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
		"--ExecutePreprocessor.timeout=60", "--output", "out.ipynb", in).CombinedOutput()
	if err != nil {
		t.Fatalf("nbconvert: %v\n%s", err, out)
	}
	res, err := os.ReadFile(filepath.Join(e.home, "out.ipynb"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"USER=" + e.sshd.User, "HIST=:memory:"} {
		if !strings.Contains(string(res), want) {
			t.Fatalf("executed notebook lacks %q (proof it ran remotely with nbclient's arguments):\n%s", want, res)
		}
	}
	e.waitNoRemote(20 * time.Second)
}

// newEnvNamed is newEnv with the gopyk spec called name, in the user's
// Jupyter data dir, which Jupyter searches before the system's python3.
func newEnvNamed(t *testing.T, name string) *env {
	t.Helper()
	sshd := testbed.SSHDForTest(t, testbed.Options{IsolateHome: true})
	e := localEnv(t, sshd, name)
	e.gopyk("add", "--replace", "--kernel-name", name, "--display-name", "gopyk e2e", "--ssh-host-alias", sshd.Alias,
		"--ssh-config", sshd.ConfigFile, "--remote-kernel-name", "python3", "--remote-python", python)
	return e
}
