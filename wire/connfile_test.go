package wire

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func validConnInfo() ConnInfo {
	return ConnInfo{ShellPort: 5001, IOPubPort: 5002, StdinPort: 5003, ControlPort: 5004, HBPort: 5005,
		IP: "127.0.0.1", Key: NewKey(), Transport: "tcp", SignatureScheme: SchemeHMACSHA256, KernelName: "python3"}
}

func TestWriteReadConnInfo(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kernel-1.json")
	ci := validConnInfo()
	if err := WriteConnInfo(path, ci); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	got, err := ReadConnInfo(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != ci {
		t.Errorf("round trip: got %+v want %+v", got, ci)
	}
	// Overwrite: still one file, no temp files left behind.
	ci.ShellPort = 6001
	if err := WriteConnInfo(path, ci); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("dir holds %d entries, want only the connection file", len(ents))
	}
}

func TestWriteConnInfoMissingDir(t *testing.T) {
	err := WriteConnInfo(filepath.Join(t.TempDir(), "nope", "k.json"), validConnInfo())
	if err == nil || !strings.Contains(err.Error(), "k.json") {
		t.Fatalf("want an error naming the file, got %v", err)
	}
}

func TestReadConnInfoErrors(t *testing.T) {
	cases := []struct{ name, json, want string }{
		{"notjson", `{"shell_port": `, "not valid JSON"},
		{"string port", `{"shell_port": "5001"}`, "field shell_port"},
		{"missing port", `{"ip":"127.0.0.1","iopub_port":2,"stdin_port":3,"control_port":4,"hb_port":5}`, "shell_port is missing"},
		{"big port", `{"ip":"127.0.0.1","shell_port":70000,"iopub_port":2,"stdin_port":3,"control_port":4,"hb_port":5}`, "shell_port is missing or invalid"},
		{"dup port", `{"ip":"127.0.0.1","shell_port":2,"iopub_port":2,"stdin_port":3,"control_port":4,"hb_port":5}`, "both 2"},
		{"scheme", `{"ip":"127.0.0.1","signature_scheme":"hmac-md5","shell_port":1,"iopub_port":2,"stdin_port":3,"control_port":4,"hb_port":5}`, `unsupported signature_scheme "hmac-md5"`},
		{"transport", `{"ip":"127.0.0.1","transport":"udp","shell_port":1,"iopub_port":2,"stdin_port":3,"control_port":4,"hb_port":5}`, `unsupported transport "udp"`},
		{"ipc no ip", `{"transport":"ipc","shell_port":1,"iopub_port":2,"stdin_port":3,"control_port":4,"hb_port":5}`, "transport ipc needs"},
		{"tcp bad ip", `{"ip":"localhost","shell_port":1,"iopub_port":2,"stdin_port":3,"control_port":4,"hb_port":5}`, "not an IP address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "k.json")
			if err := os.WriteFile(path, []byte(tc.json), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := ReadConnInfo(path)
			if err == nil {
				t.Fatal("want an error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.want) || !strings.Contains(msg, path) || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line naming %s and containing %q", msg, path, tc.want)
			}
		})
	}
	if _, err := ReadConnInfo(filepath.Join(t.TempDir(), "absent.json")); err == nil || !strings.Contains(err.Error(), "absent.json") {
		t.Errorf("missing file: %v", err)
	}
}

func TestConnInfoDefaultsAndAddr(t *testing.T) {
	ci, err := ParseConnInfo([]byte(`{"ip":"127.0.0.1","key":"k","shell_port":1,"iopub_port":2,"stdin_port":3,"control_port":4,"hb_port":5}`))
	if err != nil {
		t.Fatal(err)
	}
	if ci.Transport != "tcp" || ci.SignatureScheme != SchemeHMACSHA256 {
		t.Errorf("defaults: %+v", ci)
	}
	if got := ci.Addr(Control); got != "tcp://127.0.0.1:4" {
		t.Errorf("tcp addr %q", got)
	}
	ci.IP = "::1"
	if got := ci.Addr(Shell); got != "tcp://[::1]:1" {
		t.Errorf("tcp6 addr %q", got)
	}
	ci.Transport, ci.IP = "ipc", "/run/k/kernel"
	if got := ci.Addr(HB); got != "ipc:///run/k/kernel-5" {
		t.Errorf("ipc addr %q", got)
	}
}

func TestNewKeyAndFreePorts(t *testing.T) {
	a, b := NewKey(), NewKey()
	if a == b || len(a) != 64 {
		t.Errorf("keys %q %q", a, b)
	}
	ps, err := FreeTCPPorts(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ps {
		if p <= 0 || seen[p] {
			t.Errorf("ports %v not distinct/positive", ps)
		}
		seen[p] = true
	}
}

func FuzzReadConnInfo(f *testing.F) {
	f.Add([]byte(`{"ip":"127.0.0.1","key":"k","shell_port":1,"iopub_port":2,"stdin_port":3,"control_port":4,"hb_port":5}`))
	f.Add([]byte(`{"transport":"ipc","ip":"/tmp/x","shell_port":1,"iopub_port":2,"stdin_port":3,"control_port":4,"hb_port":5}`))
	f.Add([]byte(`{"shell_port":-1}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "k.json")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		ci, err := ReadConnInfo(path)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if ci.Validate() != nil {
			t.Fatal("ReadConnInfo returned an invalid ConnInfo")
		}
		// What we accept we must be able to write and read back unchanged.
		if err := WriteConnInfo(path, ci); err != nil {
			t.Fatal(err)
		}
		again, err := ReadConnInfo(path)
		if err != nil || again != ci {
			t.Fatalf("rewrite changed %+v → %+v (%v)", ci, again, err)
		}
	})
}
