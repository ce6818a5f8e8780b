//go:build linux

package remote

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// A kernel started through specs.py's PUB_SHIM sees what `python -m` gives
// it (argv, sys.path[0], __main__), also through a wrapper script that
// re-splits its arguments, and its PUB sockets, only those, hold the mark.
// Argvs that are not a python running ipykernel with -m are left as they
// are.
func TestPubShimIsPythonDashM(t *testing.T) {
	dir := t.TempDir()
	cwd := filepath.Join(dir, "cwd")
	run := filepath.Join(dir, "run")
	for _, d := range []string{cwd, run} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	probe := `import json, os, sys, zmq
ctx = zmq.Context()
print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "name": __name__, "main": sorted(globals()),
                  "pub": ctx.socket(zmq.PUB).get(zmq.SNDHWM), "router": ctx.socket(zmq.ROUTER).get(zmq.SNDHWM)}))
`
	if err := os.WriteFile(filepath.Join(cwd, "ipykernel_launcher.py"), []byte(probe), 0o600); err != nil {
		t.Fatal(err)
	}
	// A site's wrapper, as found in the wild: $@ unquoted (paths with a
	// space, the connection file's too, do not pass it).
	wrapper := filepath.Join(dir, "python3-env")
	if err := os.WriteFile(wrapper, []byte("#!/bin/sh\nexec /usr/bin/python3 $@\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	shim := filepath.Join(run, "pubhwm.py")
	driver := `import json, sys
sys.path.insert(0, sys.argv[1])
from gopyk.specs import PUB_SHIM, pub_hwm_argv
with open(sys.argv[2], "w") as f:
    f.write(PUB_SHIM % {"hwm": 16384})
print(json.dumps([pub_hwm_argv(a, sys.argv[2]) for a in json.loads(sys.argv[3])] + [pub_hwm_argv(json.loads(sys.argv[3])[0], None)]))
`
	argvs := [][]string{
		{"/usr/bin/python3", "-m", "ipykernel_launcher", "-f", "/x/kernel.json"},
		{"/usr/bin/python3", "-X", "frozen_modules=off", "-m", "ipykernel_launcher", "-f", "/x/kernel.json"},
		{"/opt/R/bin/R", "-m", "ipykernel_launcher"},
		{"python3", "script.py", "-m", "ipykernel_launcher"},
		{"python3", "-mipykernel_launcher"},
		{"python3", "-m", "other_kernel"},
	}
	in, _ := json.Marshal(argvs)
	out, err := exec.Command("/usr/bin/python3", "-c", driver, ".", shim, string(in)).Output()
	if err != nil {
		t.Fatalf("pub_hwm_argv: %v", err)
	}
	var got [][]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	for i, a := range append(argvs[2:], argvs[0]) {
		if g := got[i+2]; !slices.Equal(g, a) {
			t.Errorf("%q became %q; only a python's -m ipykernel is wrapped, and only with a shim", a, g)
		}
	}
	runProbe := func(argv []string) map[string]any {
		c := exec.Command(argv[0], argv[1:]...)
		c.Dir = cwd
		out, err := c.Output()
		if err != nil {
			t.Fatalf("%q: %v", argv, err)
		}
		var r map[string]any
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("%q: %q: %v", argv, out, err)
		}
		return r
	}
	plain := runProbe(argvs[0])
	wrapped := got[0]
	if !slices.Contains(wrapped, shim) || slices.Contains(wrapped, "-m") {
		t.Fatalf("%q does not run the shim", wrapped)
	}
	for _, argv := range [][]string{wrapped, got[1], append([]string{wrapper}, wrapped[1:]...)} {
		r := runProbe(argv)
		for _, k := range []string{"argv", "path0", "name", "main"} {
			if a, b := jsonOf(r[k]), jsonOf(plain[k]); a != b {
				t.Errorf("%q: %s is %s, with python -m %s", argv, k, a, b)
			}
		}
		if r["pub"] != float64(16384) || r["router"] != plain["router"] {
			t.Errorf("%q: SNDHWM of PUB %v, ROUTER %v; want 16384 and ZMQ's %v", argv, r["pub"], r["router"], plain["router"])
		}
	}
	if plain["pub"] != float64(1000) {
		t.Errorf("without the shim PUB's SNDHWM is %v; the test expects ZMQ's 1000", plain["pub"])
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
