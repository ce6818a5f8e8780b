//go:build linux

package remote

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Every launcher module is one job a reader can hold in their head: under
// ~600 lines, opening with what it owns and what it may not touch.
func TestModulesReadable(t *testing.T) {
	if len(ModuleNames()) < 10 {
		t.Fatalf("modules: %v", ModuleNames())
	}
	for _, name := range ModuleNames() {
		src := string(ModuleSource(name))
		if n := strings.Count(src, "\n"); n > 600 {
			t.Errorf("%s: %d lines; split it by job", name, n)
		}
		if !strings.HasPrefix(src, "# gopyk remote launcher") {
			t.Errorf("%s does not open with its header comment", name)
		}
		head, _, _ := strings.Cut(src, "\n\n")
		if name != "__init__.py" && (!strings.Contains(head, "# Owns:") || !strings.Contains(head, "# May not:")) {
			t.Errorf("%s: the header says neither what it owns nor what it may not touch:\n%s", name, head)
		}
		if !strings.Contains(string(ModuleSource("__init__.py")), "\n#   "+strings.TrimSuffix(name, ".py")+" ") && name != "__init__.py" {
			t.Errorf("%s is missing from the map in __init__.py", name)
		}
	}
}

// Every name a module uses is defined or imported, and every import is used
// (testdata/namecheck.py, with the standard library's symtable).
func TestModulesNames(t *testing.T) {
	var args []string
	for _, name := range ModuleNames() {
		args = append(args, filepath.Join("gopyk", name))
	}
	var out bytes.Buffer
	cmd := exec.Command(testPython, append([]string{"testdata/namecheck.py"}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("%v:\n%s", err, out.String())
	}
}
