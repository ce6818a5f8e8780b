//go:build linux

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Remote kernel specs as sites write them: one whose python is a wrapper
// script that re-splits its arguments (`exec python3 $@`), one whose argv is
// "{prefix}/bin/python" in a venv. `gopyk list` passes both, and each runs,
// with the kernel's iopub PUB socket holding 16,384 messages (specs.py's
// PUB_SHIM) and the venv's interpreter.
func TestRemoteSpecsWrapperAndPrefix(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := e.sshd.Exec(ctx, `set -e; d=$HOME/gpk-specs; mkdir -p "$d/bin"
printf '#!/bin/sh\nexec /usr/bin/python3 $@\n' > "$d/bin/python3-env"; chmod 755 "$d/bin/python3-env"
k="$HOME/.local/share/jupyter/kernels/gpkwrap"; mkdir -p "$k"
printf '{"argv": ["%s/bin/python3-env", "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "wrapped", "language": "python"}' "$d" > "$k/kernel.json"
/usr/bin/python3 -m venv --without-pip --system-site-packages "$d/venv"; k="$d/venv/share/jupyter/kernels/gpkprefix"; mkdir -p "$k"
printf '{"argv": ["{prefix}/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "prefix", "language": "python"}' > "$k/kernel.json"
echo "$d"`)
	if err != nil {
		t.Fatalf("remote kernel specs: %v\n%s", err, out)
	}
	d := strings.TrimSpace(string(out))
	add := func(name string, extra ...string) {
		e.gopyk(append([]string{"add", "--kernel-name", name, "--ssh-host-alias", e.sshd.Alias, "--ssh-config", e.sshd.ConfigFile}, extra...)...)
	}
	add("k_wrap", "--remote-python", python, "--remote-kernel-name", "gpkwrap")
	add("k_prefix", "--remote-python", d+"/venv/bin/python", "--remote-kernel-name", "gpkprefix")
	list, code := e.gopykCode("list", "-r")
	for _, re := range []string{
		`(?m)^Remote Kernel Module:\s+\(v\) ` + regexp.QuoteMeta(d) + `/bin/python3-env imports ipykernel_launcher$`,
		`(?m)^Remote Kernel Module:\s+\(v\) ` + regexp.QuoteMeta(d) + `/venv/bin/python imports ipykernel_launcher$`,
	} {
		if !regexp.MustCompile(re).MatchString(list) {
			t.Errorf("gopyk list -r has no line matching %q:\n%s", re, list)
		}
	}
	if code != 0 {
		t.Errorf("gopyk list -r exited %d:\n%s", code, list)
	}

	cell := "import sys, zmq\nfrom IPython import get_ipython\nprint(sys.prefix, get_ipython().kernel.iopub_thread.socket.get(zmq.SNDHWM))"
	for _, k := range []struct{ spec, prefix string }{{"k_wrap", "/usr"}, {"k_prefix", d + "/venv"}} {
		e.spec = k.spec
		p, cf := e.launch()
		c := e.client(cf)
		if r := execute(t, c, cell); strings.TrimSpace(r.Stdout) != k.prefix+" 16384" {
			t.Errorf("%s: the kernel's sys.prefix and PUB high-water mark are %q, want %q (%+v)", k.spec, r.Stdout, k.prefix+" 16384", r)
		}
		c.Close()
		p.signal(syscall.SIGTERM)
		if code := p.waitExit(t, 30*time.Second); code != 0 {
			t.Fatalf("%s: gopyk-kernel exit %d after SIGTERM:\n%s", k.spec, code, p.output())
		}
		e.waitNoRemote(15 * time.Second)
	}
}

// What ipykernel captures at the file-descriptor level (os.system, C
// libraries) it also echoes to its own stdout, the run dir's kernel.log, for
// as long as the kernel lives. The supervisor keeps that file under 16 MiB:
// beyond, only its last MiB stays, after a line that says so.
func TestKernelLogBounded(t *testing.T) {
	e := newEnv(t)
	p, cf := e.launch()
	c := e.client(cf)
	defer c.Close()
	if r := execute(t, c, "import os\nos.system(\"head -c 20000000 /dev/zero | tr '\\\\0' 'x'; echo; echo after the flood\")"); r.Status != "ok" {
		t.Fatalf("the cell: %+v", r)
	}
	logs, _ := filepath.Glob(filepath.Join(e.sshd.Home, ".gopyk", "run", "*", "kernel.log"))
	if len(logs) != 1 {
		t.Fatalf("kernel logs: %q, want one", logs)
	}
	var b []byte
	waitFor(t, 30*time.Second, "kernel.log to be cut", func() bool {
		var err error
		b, err = os.ReadFile(logs[0])
		return err == nil && len(b) < 2<<20
	})
	if !strings.HasPrefix(string(b), "[gopyk: kernel.log passed 16 MiB: earlier output was dropped]\n") || !strings.HasSuffix(string(b), "after the flood\n") {
		t.Errorf("kernel.log after the cut (%d bytes) starts %q and ends %q", len(b), b[:min(len(b), 80)], b[max(0, len(b)-40):])
	}
	if r := execute(t, c, "print('still here')"); r.Stdout != "still here\n" {
		t.Errorf("after the cut: %+v", r)
	}
	p.signal(syscall.SIGTERM)
	if code := p.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("gopyk-kernel exit %d after SIGTERM:\n%s", code, p.output())
	}
	e.waitNoRemote(15 * time.Second)
}
