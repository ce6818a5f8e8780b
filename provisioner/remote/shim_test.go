//go:build linux

package remote

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A kernel started through specs.py's PUB_SHIM sees what `python -m` gives
// it (argv, sys.path[0], __main__), and its PUB sockets, only those, hold
// the given number of messages. Argvs that are not a python running
// ipykernel with -m are left as they are.
func TestPubShimIsPythonDashM(t *testing.T) {
	dir := t.TempDir()
	probe := `import json, os, sys, zmq
ctx = zmq.Context()
print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "name": __name__,
                  "pub": ctx.socket(zmq.PUB).get(zmq.SNDHWM), "router": ctx.socket(zmq.ROUTER).get(zmq.SNDHWM)}))
`
	if err := os.WriteFile(filepath.Join(dir, "ipykernel_launcher.py"), []byte(probe), 0o600); err != nil {
		t.Fatal(err)
	}
	driver := `import json, sys
sys.path.insert(0, sys.argv[1])
from gopyk.specs import pub_hwm_argv
print(json.dumps([pub_hwm_argv(a, 16384) for a in json.loads(sys.argv[2])]))
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
	out, err := exec.Command("/usr/bin/python3", "-c", driver, ".", string(in)).Output()
	if err != nil {
		t.Fatalf("pub_hwm_argv: %v", err)
	}
	var got [][]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	for i, a := range argvs[2:] {
		if strings.Join(got[i+2], " ") != strings.Join(a, " ") {
			t.Errorf("%q became %q; only a python's -m ipykernel is wrapped", a, got[i+2])
		}
	}
	run := func(argv []string) map[string]any {
		c := exec.Command(argv[0], argv[1:]...)
		c.Dir = dir
		out, err := c.Output()
		if err != nil {
			t.Fatalf("%q: %v", argv[:3], err)
		}
		var r map[string]any
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("%q: %q: %v", argv[:3], out, err)
		}
		return r
	}
	plain := run(argvs[0])
	for _, wrapped := range got[:2] {
		if !slices.Contains(wrapped, "-c") {
			t.Fatalf("%q is not wrapped", wrapped)
		}
		r := run(wrapped)
		for _, k := range []string{"argv", "path0", "name"} {
			if a, b := jsonOf(r[k]), jsonOf(plain[k]); a != b {
				t.Errorf("%s through the shim is %s, with python -m %s", k, a, b)
			}
		}
		if r["pub"] != float64(16384) || r["router"] != plain["router"] {
			t.Errorf("SNDHWM of PUB %v, ROUTER %v; want 16384 and ZMQ's %v", r["pub"], r["router"], plain["router"])
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
