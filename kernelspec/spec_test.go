package kernelspec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

func TestParseErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{"argv": "python"}`, `kernel.json at /x: "argv" must be a list of strings`},
		{`{"argv": ["a", 1]}`, `kernel.json at /x: "argv" must be a list of strings`},
		{`{"argv": null}`, `kernel.json at /x: "argv" must be a list of strings`},
		{`{"display_name": 3}`, `kernel.json at /x: "display_name" must be a string`},
		{`{"env": {"A": 1}}`, `kernel.json at /x: "env" must be an object whose values are strings`},
		{`{"metadata": []}`, `kernel.json at /x: "metadata" must be an object`},
		{`{"interrupt_mode": "sometimes"}`, `kernel.json at /x: "interrupt_mode" must be "signal" or "message", not "sometimes"`},
		{`{"metadata": {"gopyk": "x"}}`, `kernel.json at /x: "metadata.gopyk" must be an object`},
		{`{"metadata": {"gopyk": {"launch_timeout": "10"}}}`, `kernel.json at /x: "metadata.gopyk.launch_timeout" must be an integer`},
		{`{"metadata": {"gopyk": {"ssh_host_alias": ["a"]}}}`, `kernel.json at /x: "metadata.gopyk.ssh_host_alias" must be a string`},
		{`[1]`, `kernel.json at /x: must hold a JSON object`},
		{`null`, `kernel.json at /x: must hold a JSON object`},
		{"{\n \"argv\": [\n}", `kernel.json at /x: invalid JSON at line 3, column 1: invalid character '}' looking for beginning of value`},
		{``, `kernel.json at /x: invalid JSON at line 1, column 1: unexpected end of JSON input`},
	}
	for _, c := range cases {
		_, err := Parse("/x", []byte(c.in))
		if err == nil || err.Error() != c.want {
			t.Errorf("Parse(%s):\n got  %v\n want %s", c.in, err, c.want)
		}
	}
}

func TestParseAcceptsJupyterSpecs(t *testing.T) {
	s, err := Parse("/x", []byte(`{"argv": ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
		"display_name": "Python 3 (ipykernel)", "language": "python", "interrupt_mode": "Message",
		"metadata": {"debugger": true}}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Gopyk != nil || s.InterruptMode != "message" || len(s.Argv) != 5 || s.Env != nil {
		t.Errorf("unexpected spec %+v", s)
	}
}

// Unknown keys anywhere (top level, metadata, metadata.gopyk) survive a
// read-modify-write; known fields change; omitted optional fields disappear.
func TestRoundTripKeepsUnknownKeys(t *testing.T) {
	in := `{"argv": ["x"], "display_name": "D", "language": "python", "future_key": {"a": [1, 2.50, "<&>"], "b": "x && y"},
		"env": {"A": "1"}, "metadata": {"debugger": true, "gopyk": {"ssh_host_alias": "h", "remote_kernel_name": "python3",
		"remote_pre": "module load x", "launch_timeout": 5, "newer_field": "keep"}}}`
	s, err := Parse("/x", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	s.DisplayName = "E"
	s.Gopyk.RemotePre = ""
	s.Gopyk.Transport = "tcp"
	s.Gopyk.RemotePython = "a&&b"
	dir := filepath.Join(t.TempDir(), "MySpec")
	if err := s.Write(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 && runtime.GOOS != "windows" { // no modes there
		t.Errorf("kernel.json mode %v, want 0644", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("spec dir holds %d entries, want only kernel.json (temp file left?)", len(entries))
	}
	back, err := Load("myspec", dir)
	if err != nil {
		t.Fatal(err)
	}
	var got, want map[string]any
	data, _ := os.ReadFile(back.File())
	json.Unmarshal(data, &got)
	json.Unmarshal([]byte(`{"argv": ["x"], "display_name": "E", "language": "python", "future_key": {"a": [1, 2.50, "<&>"], "b": "x && y"},
		"env": {"A": "1"}, "metadata": {"debugger": true, "gopyk": {"ssh_host_alias": "h", "remote_kernel_name": "python3",
		"launch_timeout": 5, "transport": "tcp", "remote_python": "a&&b", "newer_field": "keep"}}}`), &want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("written spec:\n%s\nwant the same as\n%v", data, want)
	}
	if strings.Contains(string(data), `\u003c`) || strings.Contains(string(data), `\u0026`) {
		t.Errorf("HTML-escaped output: %s", data)
	}
}

func TestValidName(t *testing.T) {
	for _, ok := range []string{"python3", "ssh_host.a-b", "MiXeD"} {
		if err := ValidName(ok); err != nil {
			t.Errorf("ValidName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a b", "a/b", "é", "a\n"} {
		if err := ValidName(bad); err == nil {
			t.Errorf("ValidName(%q) accepted", bad)
		}
	}
}

// Find and All follow jupyter_client: first dir wins, names lower-cased, a
// broken spec is reported without hiding the others.
func TestFindAndAll(t *testing.T) {
	tmp := t.TempDir()
	for _, v := range pathVars {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	t.Setenv("HOME", tmp)
	t.Setenv("APPDATA", filepath.Join(tmp, "appdata")) // Windows's user data dir
	t.Setenv("JUPYTER_PATH", filepath.Join(tmp, "first"))
	write := func(dir, body string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, FileName), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	user := UserKernelDir()
	write(filepath.Join(tmp, "first", "kernels", "Dup"), `{"display_name": "first"}`)
	write(filepath.Join(user, "dup"), `{"display_name": "second"}`)
	write(filepath.Join(user, "broken"), `{"argv": 1}`)
	write(filepath.Join(user, "ok"), `{"display_name": "ok"}`)
	os.MkdirAll(filepath.Join(user, "nojson"), 0o755)

	s, err := Find("DUP")
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "dup" || s.DisplayName != "first" || s.Dir != filepath.Join(tmp, "first", "kernels", "Dup") {
		t.Errorf("Find(DUP) = %q %q %q", s.Name, s.DisplayName, s.Dir)
	}
	if _, err := Find("nojson"); err == nil || !strings.Contains(err.Error(), user) {
		t.Errorf("Find(nojson) error %v should name the dirs searched", err)
	}
	specs, errs := All()
	var names []string
	for _, s := range specs {
		if strings.HasPrefix(s.Dir, tmp) { // the machine's own specs (python3) are not ours to check
			names = append(names, s.Name)
		}
	}
	if !reflect.DeepEqual(names, []string{"dup", "ok"}) || len(errs) != 1 || !strings.Contains(errs[0].Error(), `"argv" must be`) {
		t.Errorf("All() = %v, %v", names, errs)
	}
}

// Remove deletes a symlinked spec's link, not the directory it points to,
// as jupyter_client's remove_kernel_spec does.
func TestRemoveSymlink(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("a directory symlink needs developer mode or an administrator on Windows (and wine 8 cannot read it back)")
	}
	tmp := t.TempDir()
	target := filepath.Join(tmp, "real")
	os.MkdirAll(target, 0o755)
	os.WriteFile(filepath.Join(target, FileName), []byte(`{}`), 0o644)
	link := filepath.Join(tmp, "kernels", "linked")
	os.MkdirAll(filepath.Dir(link), 0o755)
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := (&Spec{Name: "linked", Dir: link}).Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(link); !os.IsNotExist(err) {
		t.Errorf("link still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(target, FileName)); err != nil {
		t.Errorf("target removed: %v", err)
	}
}
