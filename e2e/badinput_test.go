//go:build linux

package e2e

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakePython writes an executable the remote user can run in place of
// python3, so the launcher's reply can be anything.
func fakePython(t *testing.T, script string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gopyk-fake-python-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "python3")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// failRun runs gopyk-kernel, which must fail within limit with one error line
// containing every want.
func failRun(t *testing.T, e *env, limit time.Duration, want []string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit+10*time.Second)
	defer cancel()
	t0 := time.Now()
	out, err := e.cmd(ctx, filepath.Join(binDir, "gopyk-kernel"), args...).CombinedOutput()
	took := time.Since(t0)
	if err == nil {
		t.Fatalf("gopyk-kernel %v succeeded; want an error:\n%s", args, out)
	}
	if took > limit {
		t.Errorf("gopyk-kernel took %v to fail, want ≤ %v", took, limit)
	}
	var errs []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(l, "gopyk-kernel: ") || strings.Contains(l, "level=ERROR") {
			errs = append(errs, l)
		}
	}
	if len(errs) != 1 {
		t.Fatalf("want exactly one error line, got %d:\n%s", len(errs), out)
	}
	for _, w := range want {
		if !strings.Contains(errs[0], w) {
			t.Errorf("error line lacks %q:\n%s", w, errs[0])
		}
	}
	t.Logf("%v → %s", took.Round(time.Millisecond), errs[0])
	return errs[0]
}

// unchanged fails if path's bytes differ from b.
func unchanged(t *testing.T, path string, b []byte) {
	t.Helper()
	now, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(now, b) {
		t.Errorf("%s was changed (err %v):\n%s", path, err, now)
	}
}

// noFiles fails if dir holds any file (a half-written connection or
// persistence file).
func noFiles(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("left on disk: %s", p)
		}
		return nil
	})
}

// Corrupt local input: each gives one clear error, fast, and changes nothing.
func TestBadLocalInput(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t, 3)
	runtime := filepath.Join(e.home, "runtime")

	t.Run("connection file", func(t *testing.T) {
		cf := filepath.Join(e.home, "corrupt-conn.json")
		b := []byte(`{"shell_port": 5000, "iopub_port": "not a port", "key": "k"`)
		os.WriteFile(cf, b, 0o600)
		failRun(t, e, 5*time.Second, []string{cf}, "--kernel", e.spec, "--connection-file", cf)
		unchanged(t, cf, b)
		noFiles(t, runtime)
	})
	t.Run("persistence file", func(t *testing.T) {
		pf := filepath.Join(e.home, "corrupt-persist.json")
		b := []byte(`{"format": "gopyk-persist-1", "state": {"run_dir": 17`)
		os.WriteFile(pf, b, 0o600)
		failRun(t, e, 5*time.Second, []string{pf, "corrupt"}, "--kernel", e.spec, "--existing", pf)
		unchanged(t, pf, b)
		noFiles(t, runtime)
	})
	t.Run("kernel.json types", func(t *testing.T) {
		specFile := filepath.Join(e.home, "data", "kernels", e.spec, "kernel.json")
		good, _ := os.ReadFile(specFile)
		defer os.WriteFile(specFile, good, 0o644)
		setSpecMeta(t, e, "launch_timeout", "soon")
		bad, _ := os.ReadFile(specFile)
		failRun(t, e, 5*time.Second, []string{"launch_timeout"}, "--kernel", e.spec, "--connection-file", filepath.Join(e.home, "k.json"))
		unchanged(t, specFile, bad)
		noFiles(t, runtime)
		if _, err := os.Stat(filepath.Join(e.home, "k.json")); err == nil {
			t.Error("a connection file was written for a spec that can't be read")
		}
	})
}

// Replies from the remote that are not what the launcher speaks: one clear
// error, no hang, no connection file or remote process left behind.
func TestBadRemoteReply(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t, 3)
	runtime := filepath.Join(e.home, "runtime")
	cases := []struct {
		name, script string
		limit        time.Duration
		want         []string
	}{
		{"not JSON", `echo "Welcome to the cluster"; echo "@@gopyk1@@this is not json"; exit 0`, 10 * time.Second, nil},
		{"truncated", `cat >/dev/null & printf '\n@@gopyk1@@{"ok": true, "kernel_pid": 12'; exit 0`, 10 * time.Second, nil},
		{"silent", `exec sleep 300`, 15 * time.Second, []string{"no answer within the launch timeout (5s)", "--launch-timeout"}},
		{"no reply", `echo "motd only"; exit 1`, 10 * time.Second, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			setSpecMeta(t, e, "remote_python", fakePython(t, c.script))
			setSpecMeta(t, e, "launch_timeout", 5)
			cf := filepath.Join(e.home, "bad-"+strings.ReplaceAll(c.name, " ", "-")+".json")
			failRun(t, e, c.limit, c.want, "--kernel", e.spec, "--connection-file", cf)
			if _, err := os.Stat(cf); err == nil {
				t.Errorf("connection file %s left after a failed launch", cf)
			}
			noFiles(t, runtime)
			waitNoSessions(t, e)
		})
	}
}

// The cached remote launcher overwritten with garbage (or its bytecode): the
// content hash catches it, the next launch uploads a good copy and works.
func TestRemoteScriptGarbage(t *testing.T) {
	t.Parallel()
	e := newFaultEnv(t, 3)
	shutdown := func(p *proc) {
		t.Helper()
		p.signal(15)
		if code := p.waitExit(t, 30*time.Second); code != 0 {
			t.Fatalf("exit %d after SIGTERM:\n%s", code, p.output())
		}
	}
	k, _ := e.launch()
	shutdown(k)
	pkg, _ := filepath.Glob(filepath.Join(e.sshd.Home, ".gopyk", "launcher-*", "gopyk"))
	if len(pkg) != 1 {
		t.Fatalf("cached launchers: %v", pkg)
	}
	scripts, _ := filepath.Glob(filepath.Join(pkg[0], "*.py"))
	if len(scripts) < 2 {
		t.Fatalf("cached launcher modules: %v", scripts)
	}
	good, _ := os.ReadFile(scripts[0])
	for _, victim := range []string{"script", "bytecode"} {
		t.Run(victim, func(t *testing.T) {
			files := scripts
			if victim == "bytecode" {
				files, _ = filepath.Glob(filepath.Join(pkg[0], "__pycache__", "*"))
				if len(files) == 0 {
					t.Skip("the remote launcher keeps no bytecode cache")
				}
			}
			for _, f := range files {
				if err := os.WriteFile(f, []byte("garbage ) ( \x00\xff not python\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			k, cf := e.launch()
			c := e.client(cf)
			if r := execute(t, c, "1 + 1"); r.Result != "2" {
				t.Fatalf("execute after the %s was garbled: %+v", victim, r)
			}
			c.Close()
			shutdown(k)
			unchanged(t, scripts[0], good)
			waitNoSessions(t, e)
		})
	}
}
